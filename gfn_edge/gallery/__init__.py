"""Enrolled identities for 1:N search (transitional: the split into modules is in progress)."""
from ._legacy import *  # noqa: F401,F403
from ._legacy import APPLICATION_ID, SCHEMA_VERSION, EnrollReport, Gallery, GalleryValueError, Match, UnknownIdentityError, normalize_embeddings  # noqa: F401
from .store import (  # noqa: F401
    DamagedTemplate,
    GalleryStore,
    LoadedTemplates,
    NewTemplates,
    StoreInfo,
    ThresholdRecord,
    WriteResult,
    is_server_url,
    open_store,
)
