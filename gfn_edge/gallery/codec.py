"""How templates are checked, encoded and checksummed: the rules every store shares.

A template is stored as ``dim`` little-endian float32 values (``dim * 4`` bytes, whatever the
board's byte order) of an L2-normalised embedding. Its checksum (``template_checksum``) covers
the blob *and* the name of the identity it belongs to, so a flipped bit in the vector, in the
identity reference or in the identity's name is noticed when the template is read, never
searched with: a template silently attributed to another person would grant that person.

CRC-32 is the checksum on purpose: it detects every single-bit error and every burst up to 32
bits with certainty (what bit rot on an SD card does), costs ~1 GB/s in zlib, and is defined
exactly enough (ISO-HDLC CRC-32, ``zlib.crc32``) for a second store to reproduce.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from .types import GalleryValueError

DTYPE = np.dtype("<f4")  # stored bytes are little-endian whatever the board
NORM_TOL = 1e-5  # vectors closer than this to unit norm are stored bit-exact
LOAD_NORM_TOL = 1e-4  # a stored row further than this from unit norm is damaged
MAX_NAME = 256


def normalize_embeddings(embeddings: Any, dim: int | None = None) -> np.ndarray:
    """One vector or a batch -> (n, dim) little-endian float32 rows of unit length.

    Rows already within 1e-5 of unit norm are kept bit-exact (so what an embedder returned is
    what is stored); others are rescaled in float64. NaN/Inf, zero vectors and a wrong size raise
    ``GalleryValueError``: storing them would silently break every later search.
    """
    arr = np.asarray(embeddings)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise GalleryValueError(f"embeddings must be real numbers, got an array of {arr.dtype}")
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise GalleryValueError(f"expected one embedding (dim,) or a batch (n, dim) with n >= 1, got shape {np.shape(embeddings)}")
    if dim is not None and arr.shape[1] != dim:
        raise GalleryValueError(
            f"embedding has {arr.shape[1]} values but this gallery holds {dim}-d embeddings; "
            f"it comes from another recogniser than the one the gallery was built with"
        )
    with np.errstate(over="ignore", invalid="ignore"):
        out = arr.astype(DTYPE)  # always a copy: the caller's array is never modified
    bad = ~np.isfinite(out).all(axis=1)
    if bad.any():
        raise GalleryValueError(f"embedding rows {np.flatnonzero(bad).tolist()[:10]} contain NaN or Inf (or overflow float32)")
    norms = np.sqrt(np.einsum("ij,ij->i", out, out, dtype=np.float64))  # no float64 copy of the batch
    zero = norms < 1e-6
    if zero.any():
        raise GalleryValueError(f"embedding rows {np.flatnonzero(zero).tolist()[:10]} are (near) zero and have no direction")
    off = np.abs(norms - 1.0) > NORM_TOL
    if off.any():
        out[off] = (out[off].astype(np.float64) / norms[off, None]).astype(DTYPE)
    return np.ascontiguousarray(out)


def invalid_rows(vectors: np.ndarray, tol: float = LOAD_NORM_TOL) -> np.ndarray:
    """Indices of rows that are not finite or not unit length: never to be stored or searched."""
    with np.errstate(over="ignore", invalid="ignore"):
        norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors, dtype=np.float64))
        bad = ~np.isfinite(norms) | (np.abs(norms - 1.0) > tol)
    return np.flatnonzero(bad)


def require_storable(vectors: np.ndarray, dim: int) -> None:
    """What a store accepts for writing: (k, dim) little-endian float32, finite, unit rows.

    Stores call this on every write even though the facade normalises first: a second line of
    defence, so no code path can put a vector into a gallery that a load would quarantine.
    """
    if not isinstance(vectors, np.ndarray) or vectors.dtype != DTYPE or vectors.ndim != 2 or vectors.shape[1] != dim:
        raise GalleryValueError(f"templates must be a (k, {dim}) little-endian float32 array, got {getattr(vectors, 'shape', None)}")
    bad = invalid_rows(vectors, NORM_TOL * 2)
    if len(bad):
        raise GalleryValueError(f"template rows {bad.tolist()[:10]} are not finite unit vectors; normalise them first")


def encode(vector: np.ndarray) -> bytes:
    """One template -> its stored bytes (``dim`` little-endian float32)."""
    return np.ascontiguousarray(vector, DTYPE).tobytes()


def decode(blobs: list[bytes], dim: int) -> np.ndarray:
    """Stored bytes of ``len(blobs)`` templates -> a writable (n, dim) float32 matrix."""
    return np.frombuffer(b"".join(blobs), DTYPE).reshape(len(blobs), dim).astype(np.float32)


def template_checksum(identity: str, blob: bytes) -> int:
    """CRC-32 of ``identity`` (UTF-8), one NUL byte, then the template's bytes; in [0, 2**32)."""
    return zlib.crc32(blob, zlib.crc32(identity.encode("utf-8") + b"\x00"))


def check_name(identity: Any) -> str:
    """A valid identity name, or ``GalleryValueError`` saying what is wrong with it."""
    if not isinstance(identity, str):
        raise GalleryValueError(f"identity must be a string, got {type(identity).__name__}")
    if not identity.strip():
        raise GalleryValueError("identity must not be empty or blank")
    if identity != identity.strip():
        raise GalleryValueError(f"identity {identity!r} has leading or trailing whitespace; strip it first")
    if len(identity) > MAX_NAME:
        raise GalleryValueError(f"identity is {len(identity)} characters long; at most {MAX_NAME} are allowed")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in identity):
        raise GalleryValueError(f"identity {identity!r} contains control characters")
    try:
        identity.encode("utf-8")
    except UnicodeEncodeError:
        raise GalleryValueError(f"identity {identity!r} is not valid Unicode (lone surrogates)") from None
    return identity


def dump_metadata(metadata: Mapping[str, Any] | None) -> str | None:
    """Metadata as canonical JSON (sorted keys, no NaN), or None when not given."""
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping):
        raise GalleryValueError(f"metadata must be a dict, got {type(metadata).__name__}")
    try:
        return json.dumps(dict(metadata), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise GalleryValueError(f"metadata must be JSON-serialisable: {exc}") from exc


def _real(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise GalleryValueError(f"{what} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise GalleryValueError(f"{what} must be a finite number, got {value!r}")
    return number


def check_threshold(value: Any, what: str = "threshold") -> float:
    """A cosine threshold in [-1, 1]; NaN, Inf and non-numbers raise ``GalleryValueError``."""
    number = _real(value, what)
    if not -1.0 <= number <= 1.0:
        raise GalleryValueError(f"{what} must be a cosine similarity in [-1, 1], got {value!r}")
    return number


def check_margin(value: Any) -> float:
    """A margin between the best and the runner-up identity: finite, in [0, 2]."""
    number = _real(value, "margin")
    if not 0.0 <= number <= 2.0:
        raise GalleryValueError(f"margin must be in [0, 2] (a difference of cosines), got {value!r}")
    return number
