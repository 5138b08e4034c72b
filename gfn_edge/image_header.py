"""The pixel size a picture file declares, read from its header without decoding it.

Why: OpenCV can only tell a picture's size by decoding it, and a 1 MB PNG can declare
30000x30000 pixels (a "decompression bomb") that needs gigabytes once decoded, enough to get a
2-4 GB board's process killed. Reading the few header bytes first lets :func:`read_image` refuse
such a file before anything is allocated. Formats: PNG, JPEG, BMP, WebP, GIF, TIFF, PNM.
"""

from __future__ import annotations

import struct

_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM and RSTn carry no length


def declared_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) the file says it holds, or None when the format is not one read here.

    A header that is recognised but cut short returns None too: the decoder then reports the
    file as truncated.
    """
    for reader in (_png, _jpeg, _bmp, _webp, _gif, _tiff, _pnm):
        try:
            size = reader(data)
        except (struct.error, IndexError, ValueError):
            size = None
        if size is not None:
            return size
    return None


def _png(d: bytes) -> tuple[int, int] | None:
    if not d.startswith(b"\x89PNG\r\n\x1a\n") or d[12:16] != b"IHDR":
        return None
    w, h = struct.unpack(">II", d[16:24])
    return w, h


def _jpeg(d: bytes) -> tuple[int, int] | None:
    if not d.startswith(b"\xff\xd8"):
        return None
    i = 2
    while i + 4 <= len(d):
        if d[i] != 0xFF:
            return None
        marker = d[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _JPEG_STANDALONE:
            i += 2
            continue
        (length,) = struct.unpack(">H", d[i + 2 : i + 4])
        if marker in _JPEG_SOF:
            h, w = struct.unpack(">HH", d[i + 5 : i + 9])
            return w, h
        if marker == 0xDA or length < 2:  # scan data before any frame header: not a JPEG we can size
            return None
        i += 2 + length
    return None


def _bmp(d: bytes) -> tuple[int, int] | None:
    if not d.startswith(b"BM") or len(d) < 26:
        return None
    (header,) = struct.unpack("<I", d[14:18])
    if header == 12:  # OS/2 BITMAPCOREHEADER
        w, h = struct.unpack("<HH", d[18:22])
    else:
        w, h = struct.unpack("<ii", d[18:26])
    return abs(w), abs(h)  # a negative height means top-down rows


def _webp(d: bytes) -> tuple[int, int] | None:
    if d[:4] != b"RIFF" or d[8:12] != b"WEBP":
        return None
    chunk = d[12:16]
    if chunk == b"VP8 ":
        w, h = struct.unpack("<HH", d[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L":
        (bits,) = struct.unpack("<I", d[21:25])
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8X":
        w = int.from_bytes(d[24:27], "little") + 1
        h = int.from_bytes(d[27:30], "little") + 1
        return w, h
    return None


def _gif(d: bytes) -> tuple[int, int] | None:
    if d[:6] not in (b"GIF87a", b"GIF89a"):
        return None
    w, h = struct.unpack("<HH", d[6:10])
    return w, h


def _tiff(d: bytes) -> tuple[int, int] | None:
    if d[:4] == b"II*\x00":
        order = "<"
    elif d[:4] == b"MM\x00*":
        order = ">"
    else:
        return None
    (ifd,) = struct.unpack(order + "I", d[4:8])
    (count,) = struct.unpack(order + "H", d[ifd : ifd + 2])
    found: dict[int, int] = {}
    for k in range(min(count, 512)):
        entry = d[ifd + 2 + 12 * k : ifd + 14 + 12 * k]
        tag, kind = struct.unpack(order + "HH", entry[:4])
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT (3) or LONG (4)
            value = struct.unpack(order + ("H" if kind == 3 else "I"), entry[8:10] if kind == 3 else entry[8:12])[0]
            found[tag] = value
    if 256 in found and 257 in found:
        return found[256], found[257]
    return None


def _pnm(d: bytes) -> tuple[int, int] | None:
    if len(d) < 3 or d[0:1] != b"P" or d[1:2] not in b"123456" or d[2:3] not in b" \t\r\n#":
        return None
    fields: list[int] = []
    for line in d[2:512].split(b"\n"):
        line = line.split(b"#")[0]
        fields += [int(x) for x in line.split()]
        if len(fields) >= 2:
            return fields[0], fields[1]
    return None
