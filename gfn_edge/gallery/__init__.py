"""Enrolled identities for 1:N search: ``Gallery`` over a durable store and an in-memory index.

Modules, one job each:

* ``facade``   ``Gallery``: argument checks, the index kept in step with the store, the public API;
* ``store``    the storage interface (``GalleryStore``) and ``open_store`` (path -> SQLite, URL -> server);
* ``sqlite_store`` / ``sqlite_schema``  the SQLite file: operations; layout, creation, migration;
* ``index``    the float32 matrix and ranking (max/mean aggregation, threshold, margin);
* ``codec``    vector normalisation, the stored encoding and checksums, argument rules;
* ``enrolment`` which face of which picture becomes a template;
* ``portable`` .npz export/import; ``integrity`` the template check behind ``gfn-edge gallery check``.
"""

from __future__ import annotations

from ..errors import GalleryError
from .codec import normalize_embeddings
from .facade import Gallery
from .sqlite_schema import APPLICATION_ID, SCHEMA_VERSION
from .store import (
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
from .types import EnrollReport, GalleryValueError, Match, UnknownIdentityError

__all__ = [
    "APPLICATION_ID",
    "SCHEMA_VERSION",
    "DamagedTemplate",
    "EnrollReport",
    "Gallery",
    "GalleryError",
    "GalleryStore",
    "GalleryValueError",
    "LoadedTemplates",
    "Match",
    "NewTemplates",
    "StoreInfo",
    "ThresholdRecord",
    "UnknownIdentityError",
    "WriteResult",
    "is_server_url",
    "normalize_embeddings",
    "open_store",
]
