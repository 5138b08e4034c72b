"""insightface verification .bin files (lfw.bin, cfp_fp.bin, agedb_30.bin ...), read safely.

A .bin is a pickle of ``(list of encoded images, issame list)``: images ``2i`` and ``2i+1`` form
pair ``i``. Pickles can run arbitrary code, so a restricted unpickler builds only bytes, str,
lists, tuples, bools and numpy bool/uint8 arrays and scalars; anything else is refused before it
is constructed. Images are decoded lazily, batch by batch, so a 12,000-image set never sits in
memory as pixels.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

log = logging.getLogger(__name__)

_RECONSTRUCT = np.empty(0).__reduce__()[0]  # numpy's ndarray unpickling helpers, whatever their module
_FROMBUFFER = np.empty(0).__reduce_ex__(5)[0]  # used by pickle protocol 5 (pickle.HIGHEST_PROTOCOL)
_SCALAR = np.bool_(True).__reduce__()[0]
_SAFE_DTYPES = (np.dtype(bool), np.dtype(np.uint8))


def _safe_dtype(spec: Any, align: bool = False, copy: bool = False) -> np.dtype:
    dt = np.dtype(spec)
    if dt not in _SAFE_DTYPES:
        raise pickle.UnpicklingError(f"refusing numpy dtype {dt} in a verification .bin (only bool and uint8 are expected)")
    return np.dtype(spec, align, copy)


def _safe_encode(text: str, encoding: str = "utf-8") -> bytes:
    """Python 3 pickles bytes for protocol 2 as ``_codecs.encode(str, 'latin1')``; allow only that."""
    if not isinstance(text, str) or encoding.replace("-", "").lower() != "latin1":
        raise pickle.UnpicklingError("refusing _codecs.encode other than latin1 of a string")
    return text.encode("latin-1")


def _safe_scalar(dtype: np.dtype, data: bytes | None = None) -> Any:
    if dtype not in _SAFE_DTYPES:
        raise pickle.UnpicklingError(f"refusing numpy scalar of dtype {dtype}")
    return _SCALAR(dtype, data) if data is not None else _SCALAR(dtype)


def _safe_frombuffer(buffer: Any, dtype: np.dtype, shape: tuple[int, ...], order: str) -> np.ndarray:
    if dtype not in _SAFE_DTYPES:
        raise pickle.UnpicklingError(f"refusing numpy dtype {dtype} in a verification .bin (only bool and uint8 are expected)")
    return _FROMBUFFER(buffer, dtype, shape, order)


_ALLOWED: dict[tuple[str, str], Any] = {
    ("_codecs", "encode"): _safe_encode,
    ("numpy", "dtype"): _safe_dtype,
    ("numpy", "ndarray"): np.ndarray,
}
for _core in ("numpy.core", "numpy._core"):
    _ALLOWED[(f"{_core}.multiarray", "_reconstruct")] = _RECONSTRUCT
    _ALLOWED[(f"{_core}.multiarray", "scalar")] = _safe_scalar
    _ALLOWED[(f"{_core}.numeric", "_frombuffer")] = _safe_frombuffer


class SafeUnpickler(pickle.Unpickler):
    """Builds plain containers, bytes and numpy bool/uint8 arrays; refuses every other global."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a verification .bin holds only images and labels") from None


def safe_load(data: bytes) -> Any:
    """Unpickle ``data`` with :class:`SafeUnpickler` (Python 2 strings come back as bytes)."""
    return SafeUnpickler(io.BytesIO(data), encoding="bytes").load()


def _as_bytes(entry: Any) -> bytes | np.ndarray | None:
    """An image entry as encoded bytes, or an already-decoded HxWx3 uint8 array."""
    if isinstance(entry, (bytes, bytearray, memoryview)):
        return bytes(entry)
    if isinstance(entry, str):  # a Python 2 str read with encoding="latin1": re-encode to its bytes
        return entry.encode("latin-1")
    if isinstance(entry, np.ndarray) and entry.dtype == np.uint8:
        return entry if entry.ndim == 3 and entry.shape[2] == 3 else entry.tobytes()
    return None


def decode_entry(entry: Any, size: int = 112) -> np.ndarray | None:
    """One .bin entry -> BGR uint8 ``size`` x ``size`` crop, or None when nothing can read it.

    Order of attempts: OpenCV's decoder; Pillow's (when installed) for files OpenCV rejects;
    raw ``size*size*3`` pixel buffers, which some converters store instead of JPEG (RGB, as
    mxnet writes them).
    """
    data = _as_bytes(entry)
    if data is None:
        return None
    if isinstance(data, np.ndarray):
        image = data
    else:
        buf = np.frombuffer(data, dtype=np.uint8)
        image = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
        if image is None:
            image = _decode_with_pillow(data)
        if image is None and buf.size == size * size * 3:
            image = np.ascontiguousarray(buf.reshape(size, size, 3)[..., ::-1])
        if image is None:
            return None
    if image.shape[:2] != (size, size):
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if image.shape[0] > size else cv2.INTER_LINEAR)
    return image


def _decode_with_pillow(data: bytes) -> np.ndarray | None:
    try:
        from PIL import Image
    except ImportError:
        return None
    try:
        with Image.open(io.BytesIO(data)) as im:
            rgb = np.asarray(im.convert("RGB"))
    except Exception:
        return None
    return np.ascontiguousarray(rgb[..., ::-1])


@dataclass
class BinPairs:
    """The entries and labels of one .bin; crops come from :meth:`load`."""

    name: str
    entries: list[Any]
    same: np.ndarray  # (N,) bool, pair i = images 2i and 2i+1
    size: int = 112
    failed: set[int] = field(default_factory=set)  # entries no decoder could read
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.entries)

    def load(self, start: int, stop: int) -> np.ndarray:
        """Crops ``start:stop``; unreadable entries become black crops and are recorded in ``failed``."""
        out = np.zeros((stop - start, self.size, self.size, 3), dtype=np.uint8)
        for i in range(start, stop):
            image = decode_entry(self.entries[i], self.size)
            if image is None:
                if i not in self.failed:
                    log.warning("%s: image %d cannot be decoded; its pair is dropped", self.name, i)
                self.failed.add(i)
            else:
                out[i - start] = image
        return out

    @property
    def a(self) -> np.ndarray:
        return np.arange(len(self.same)) * 2

    @property
    def b(self) -> np.ndarray:
        return np.arange(len(self.same)) * 2 + 1


def _labels(raw: Any) -> np.ndarray:
    if isinstance(raw, np.ndarray):
        if raw.dtype != bool:
            raise ValueError(f"issame array has dtype {raw.dtype}, expected bool")
        return raw.ravel().copy()
    if not isinstance(raw, (list, tuple)) or not all(isinstance(v, (bool, np.bool_)) for v in raw):
        raise ValueError("issame must be a list of booleans")
    return np.asarray(raw, dtype=bool)


def read_bin(path: str | os.PathLike[str], size: int = 112) -> BinPairs:
    """Open an insightface .bin (checks structure and counts; decodes nothing yet)."""
    path = Path(path)
    try:
        obj = safe_load(path.read_bytes())
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise ValueError(f"{path}: not a readable verification .bin: {exc}") from exc
    if not isinstance(obj, (tuple, list)) or len(obj) != 2:
        raise ValueError(f"{path}: expected a pickled (images, issame) pair, got {type(obj).__name__}")
    entries, raw_labels = obj
    if not isinstance(entries, (list, tuple)):
        raise ValueError(f"{path}: images must be a list, got {type(entries).__name__}")
    issame = _labels(raw_labels)
    if len(entries) != 2 * len(issame):
        raise ValueError(f"{path}: {len(entries)} images for {len(issame)} pairs (expected {2 * len(issame)})")
    bad = [i for i, e in enumerate(entries) if _as_bytes(e) is None]
    if bad:
        raise ValueError(f"{path}: entries {bad[:5]} are neither bytes nor uint8 arrays")
    info = {"format": "insightface .bin", "file": str(path), "images": len(entries), "crops": "as stored (aligned), resized to %dx%d if needed" % (size, size)}
    return BinPairs(path.stem, list(entries), issame, size, info=info)
