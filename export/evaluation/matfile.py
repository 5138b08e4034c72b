"""Reading MATLAB .mat files: scipy.io.loadmat when installed, else a minimal MAT v5 reader.

WIDER FACE ships its ground truth as MAT v5 files of cells, char arrays and numeric matrices.
scipy is not a gfn-edge dependency (the export extra brings it indirectly), so this reader
covers exactly those classes, with scipy's default return conventions (numeric arrays keep
the stored type, char rows become 1-element str arrays, cells become object arrays), so callers
need not care which reader ran. Structs, sparse matrices and v7.3 (HDF5) files are refused.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

# MAT v5 data types (miXXX) -> numpy dtype letter
_MI_DTYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8", 12: "i8", 13: "u8", 16: "u1", 17: "u2", 18: "u4"}
_MI_MATRIX, _MI_COMPRESSED = 14, 15
_MI_UTF = {16: "utf-8", 17: "utf-16", 18: "utf-32"}
# array classes (mxXXX)
_MX_CELL, _MX_STRUCT, _MX_OBJECT, _MX_CHAR, _MX_SPARSE = 1, 2, 3, 4, 5
_MX_NUMERIC = set(range(6, 16))


class MatFileError(ValueError):
    pass


class _Reader:
    def __init__(self, data: bytes, order: str):
        self.data = data
        self.order = order
        self.pos = 0

    def element(self) -> tuple[int, bytes]:
        """Next data element: (type, payload); handles the small (4-byte) element format."""
        if self.pos + 8 > len(self.data):
            raise MatFileError("truncated data element")
        (first,) = struct.unpack_from(self.order + "I", self.data, self.pos)
        if first >> 16:  # small element: size in the upper 16 bits, payload in the next 4 bytes
            mtype, size = first & 0xFFFF, first >> 16
            payload = self.data[self.pos + 4 : self.pos + 4 + size]
            self.pos += 8
            return mtype, payload
        mtype, size = struct.unpack_from(self.order + "II", self.data, self.pos)
        start = self.pos + 8
        if start + size > len(self.data):
            raise MatFileError("truncated data element")
        payload = self.data[start : start + size]
        self.pos = start + (size if mtype == _MI_COMPRESSED else (size + 7) // 8 * 8)
        return mtype, payload

    def done(self) -> bool:
        return self.pos >= len(self.data)


def _numbers(mtype: int, payload: bytes, order: str) -> np.ndarray:
    if mtype not in _MI_DTYPES:
        raise MatFileError(f"unsupported data type {mtype}")
    return np.frombuffer(payload, dtype=np.dtype(_MI_DTYPES[mtype]).newbyteorder(order))


def _matrix(payload: bytes, order: str) -> tuple[str, Any]:
    """One miMATRIX payload -> (name, value)."""
    sub = _Reader(payload, order)
    _, flags = sub.element()
    flag_word = int(_numbers(6, flags, order)[0])
    mclass, is_complex = flag_word & 0xFF, bool(flag_word & 0x800)
    dtype_dims, dims_raw = sub.element()
    dims = tuple(int(d) for d in _numbers(dtype_dims, dims_raw, order))
    _, name_raw = sub.element()
    name = name_raw.decode("ascii", "replace")
    count = int(np.prod(dims)) if dims else 0
    if mclass == _MX_CELL:
        cells = np.empty(count, dtype=object)
        for i in range(count):
            mtype, child = sub.element()
            if mtype != _MI_MATRIX:
                raise MatFileError(f"{name}: cell element {i} is not a matrix")
            cells[i] = _matrix(child, order)[1]
        return name, cells.reshape(dims, order="F")
    if mclass == _MX_CHAR:
        mtype, raw = sub.element()
        if mtype in _MI_UTF and mtype != 17:
            text = raw.decode(_MI_UTF[mtype])
            codes = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
        else:
            codes = _numbers(mtype, raw, order).astype(np.uint32)
        if count == 0:
            return name, np.asarray([""])
        chars = codes.reshape(dims, order="F")
        rows = chars.reshape(chars.shape[0], -1)
        return name, np.asarray(["".join(chr(c) for c in row) for row in rows])
    if mclass in _MX_NUMERIC:
        mtype, raw = sub.element()
        real = _numbers(mtype, raw, order)
        if is_complex:
            mtype_i, raw_i = sub.element()
            real = real + 1j * _numbers(mtype_i, raw_i, order)
        if real.size != count:
            raise MatFileError(f"{name}: {real.size} values for dimensions {dims}")
        return name, real.astype(real.dtype.newbyteorder("="), copy=False).reshape(dims, order="F")
    kind = {_MX_STRUCT: "struct", _MX_OBJECT: "object", _MX_SPARSE: "sparse"}.get(mclass, f"class {mclass}")
    raise MatFileError(f"{name}: {kind} arrays are not supported by the built-in reader (install scipy)")


def read_mat_v5(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Variables of a MAT v5 file (compressed or not), without scipy."""
    data = Path(path).read_bytes()
    if len(data) < 128:
        raise MatFileError(f"{path}: too short for a MAT file")
    header = data[:128]
    if header[:19] == b"MATLAB 7.3 MAT-file" or header[:8] == b"\x89HDF\r\n\x1a\n":
        raise MatFileError(f"{path}: MAT v7.3 (HDF5) files are not supported; re-save with -v7 or use h5py")
    order = {b"IM": "<", b"MI": ">"}.get(header[126:128])
    if order is None or not header.startswith(b"MATLAB"):
        raise MatFileError(f"{path}: not a MAT v5 file")
    reader = _Reader(data[128:], order)
    out: dict[str, Any] = {}
    while not reader.done():
        mtype, payload = reader.element()
        if mtype == _MI_COMPRESSED:
            mtype, payload = _Reader(zlib.decompress(payload), order).element()
        if mtype != _MI_MATRIX:
            continue
        try:
            name, value = _matrix(payload, order)
        except MatFileError as exc:
            log.debug("%s: skipped a variable: %s", path, exc)
            continue
        out[name] = value
    return out


def load_mat(path: str | os.PathLike[str], reader: str = "auto") -> dict[str, Any]:
    """``reader``: "auto" (scipy if importable), "scipy" or "builtin"."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path} does not exist")
    if reader in ("auto", "scipy"):
        try:
            from scipy.io import loadmat
        except ImportError:
            if reader == "scipy":
                raise
        else:
            return loadmat(str(path))
    if reader not in ("auto", "builtin"):
        raise ValueError(f"reader must be auto, scipy or builtin; got {reader!r}")
    return read_mat_v5(path)
