"""The PostgreSQL gallery's tables and header checksum (schema version 2, as the SQLite store's).

``gfn_gallery`` is the one-row header (model signature, dim, schema version, threshold record,
their CRC-32, and the generation); ``gfn_identities`` and ``gfn_templates`` hold the gallery.
Each template is kept twice: the exact bytes its checksum covers, and a pgvector column for
server-side search.
"""

from __future__ import annotations

import json
import urllib.parse
import zlib
from typing import Any

SCHEMA_VERSION = 2


def redact_url(url: str) -> str:
    """The URL without its password, for messages and ``location``."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def header_checksum(signature: str, dim: int, schema_version: int, threshold: dict[str, Any] | None) -> int:
    """CRC-32 of the header's canonical JSON: a changed signature, dim or threshold is noticed."""
    text = json.dumps([signature, int(dim), int(schema_version), threshold], sort_keys=True, allow_nan=False)
    return zlib.crc32(text.encode("utf-8"))


def schema_sql(dim: int) -> str:
    return f"""
    CREATE TABLE IF NOT EXISTS gfn_gallery (
        id int PRIMARY KEY CHECK (id = 1),
        signature text NOT NULL,
        dim int NOT NULL,
        schema_version int NOT NULL,
        threshold jsonb,
        checksum bigint NOT NULL,
        generation bigint NOT NULL,
        created double precision NOT NULL
    );
    CREATE TABLE IF NOT EXISTS gfn_identities (
        id bigserial PRIMARY KEY,
        name text NOT NULL UNIQUE,
        metadata text,
        created double precision NOT NULL,
        updated double precision NOT NULL,
        changed bigint NOT NULL  -- generation of the last write that touched this identity
    );
    CREATE TABLE IF NOT EXISTS gfn_templates (
        id bigserial PRIMARY KEY,
        identity bigint NOT NULL REFERENCES gfn_identities(id) ON DELETE CASCADE,
        vector bytea NOT NULL,             -- codec.encode: bit-exact, what the checksum covers
        checksum bigint NOT NULL,          -- codec.template_checksum(name, vector)
        embedding vector({dim}) NOT NULL,  -- the same values, for server-side search
        created double precision NOT NULL
    );
    -- Both 2 KB columns would be moved to the TOAST table by default, and every scan and index
    -- build would fetch them from there: keep the searched vector in the row, the bytes out of it
    -- (never compressed: random floats do not compress).
    ALTER TABLE gfn_templates ALTER COLUMN embedding SET STORAGE PLAIN, ALTER COLUMN vector SET STORAGE EXTERNAL;
    CREATE INDEX IF NOT EXISTS gfn_templates_by_identity ON gfn_templates(identity, id);
    CREATE INDEX IF NOT EXISTS gfn_identities_by_change ON gfn_identities(changed);
    """
