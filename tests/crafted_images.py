"""Picture files crafted for the bad-input tests: headers that lie, and a real decompression bomb."""

from __future__ import annotations

import functools
import struct
import zlib


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(width: int, height: int, body: bytes | None = None) -> bytes:
    """A grey PNG declaring ``width`` x ``height``; ``body`` is its IDAT (default: no rows at all, so it never decodes)."""
    data = body if body is not None else zlib.compress(b"")
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


@functools.cache
def png_bomb(width: int = 30000, height: int = 30000, rows_per_block: int = 1000) -> bytes:
    """A complete, valid ~0.9 MB grey PNG of ``width`` x ``height`` zero pixels (900 MB decoded at 30000x30000).

    Built in seconds: after a full flush deflate restarts from scratch, so one compressed block
    of ``rows_per_block`` rows is repeated, and only the Adler-32 checksum is computed over it all.
    """
    assert height % rows_per_block == 0
    block = (b"\x00" + bytes(width)) * rows_per_block
    z = zlib.compressobj(9)
    first = z.compress(block) + z.flush(zlib.Z_FULL_FLUSH)  # carries the 2-byte zlib header
    repeat = z.compress(block) + z.flush(zlib.Z_FULL_FLUSH)
    end = z.flush()[:-4]  # the final empty block, without the checksum of two blocks only
    adler = 1
    for _ in range(height // rows_per_block):
        adler = zlib.adler32(block, adler)
    idat = first + repeat * (height // rows_per_block - 1) + end + struct.pack(">I", adler)
    return png(width, height, idat)


def jpeg_header(width: int, height: int) -> bytes:
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    return b"\xff\xd8" + app0 + sof + b"\xff\xd9"


def bmp_header(width: int, height: int) -> bytes:
    return b"BM" + struct.pack("<IHHI", 54, 0, 0, 54) + struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 0, 0, 0, 0)


def webp_vp8x(width: int, height: int) -> bytes:
    body = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00" + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


def webp_vp8l(width: int, height: int) -> bytes:
    bits = (width - 1) | ((height - 1) << 14)
    body = b"VP8L" + struct.pack("<I", 5) + b"\x2f" + struct.pack("<I", bits)
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


def gif_header(width: int, height: int) -> bytes:
    return b"GIF89a" + struct.pack("<HH", width, height) + b"\x00\x00\x00;"


def tiff_header(width: int, height: int, order: str = "<") -> bytes:
    magic = b"II*\x00" if order == "<" else b"MM\x00*"
    entries = struct.pack(order + "HHII", 256, 4, 1, width) + struct.pack(order + "HHII", 257, 4, 1, height)
    return magic + struct.pack(order + "I", 8) + struct.pack(order + "H", 2) + entries + b"\x00\x00\x00\x00"


def sun_raster_header(width: int, height: int) -> bytes:
    """A Sun raster header (a format gfn-edge does not parse: OpenCV's own limits apply)."""
    return struct.pack(">8I", 0x59A66A95, width, height, 8, width * height, 1, 0, 0) + bytes(64)
