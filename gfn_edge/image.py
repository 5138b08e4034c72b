"""Reading and normalising input pictures to the BGR uint8 HxWx3 arrays the pipeline works on.

Grayscale, RGBA/BGRA and 16-bit pictures are converted; floats, empty arrays, odd channel counts
and absurd sizes are refused with a message that says what was received.

Size limit: pictures over ``max_pixels`` (default :data:`MAX_PIXELS`, or the environment's
``GFN_EDGE_MAX_IMAGE_PIXELS``) are refused. A file is checked on the size its header declares,
before decoding, so a small file declaring a huge picture (a decompression bomb) never allocates.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from .errors import ImageError, ResourceLimitError
from .image_header import declared_size

MAX_SIDE = 32768  # larger pictures are almost certainly a mistake, and would take gigabytes to decode
# 50 megapixels: a 48 MP phone photo fits; decoded as BGR it is 150 MB, which a 2 GB board can hold.
MAX_PIXELS = 50_000_000
MAX_PIXELS_ENV = "GFN_EDGE_MAX_IMAGE_PIXELS"


class ImageTooLargeError(ImageError, ResourceLimitError):
    """A picture over the pixel limit (refused before it is decoded or converted)."""


def max_pixels_limit(max_pixels: int | None = None) -> int:
    """The pixel limit in force: the argument, else $GFN_EDGE_MAX_IMAGE_PIXELS, else MAX_PIXELS."""
    if max_pixels is None:
        env = os.environ.get(MAX_PIXELS_ENV)
        if not env:
            return MAX_PIXELS
        try:
            max_pixels = int(env)
        except ValueError:
            raise ImageError(f"${MAX_PIXELS_ENV} must be a whole number of pixels, got {env!r}") from None
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)) or max_pixels < 1:
        raise ImageError(f"max_pixels must be a whole number >= 1, got {max_pixels!r}")
    return int(max_pixels)


def check_size(width: int, height: int, max_pixels: int | None = None, what: str = "image") -> None:
    """Refuse a ``width`` x ``height`` picture over the side or pixel limit, naming the limit."""
    limit = max_pixels_limit(max_pixels)
    if max(width, height) > MAX_SIDE:
        raise ImageTooLargeError(f"{what} is {width}x{height}, over {MAX_SIDE} px on a side; downscale it first")
    if width * height > limit:
        raise ImageTooLargeError(
            f"{what} is {width}x{height} ({width * height / 1e6:.1f} megapixels), over the limit of "
            f"{limit / 1e6:g} megapixels (max_pixels, or ${MAX_PIXELS_ENV}); downscale it first"
        )


def describe(image: object) -> str:
    if isinstance(image, np.ndarray):
        return f"array of shape {image.shape} and dtype {image.dtype}"
    return f"{type(image).__name__}"


def to_bgr_uint8(image: np.ndarray, color: str = "BGR", max_pixels: int | None = None) -> np.ndarray:
    """Return ``image`` as contiguous BGR uint8 HxWx3; ``color`` says what a 3/4-channel input holds.

    Pictures over ``max_pixels`` are refused before the conversion allocates (see module doc).
    """
    if image is None:
        raise ImageError("image is None (cv2.imread returns None for unreadable files)")
    if not isinstance(image, np.ndarray):
        raise ImageError(f"expected a numpy image array, got {describe(image)}")
    if image.size == 0 or image.ndim < 2 or min(image.shape[:2]) == 0:
        raise ImageError(f"image is empty ({describe(image)})")
    if color not in ("BGR", "RGB"):
        raise ImageError(f"color must be 'BGR' or 'RGB', got {color!r}")
    check_size(int(image.shape[1]), int(image.shape[0]), max_pixels)
    if image.dtype == np.uint16:
        image = (image.astype(np.uint32) * 255 + 32767) // 65535
        image = image.astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ImageError(
            f"unsupported pixel type {image.dtype} ({describe(image)}); pass uint8 (or uint16) pixels, "
            f"e.g. (img * 255).clip(0, 255).astype(np.uint8) for floats in 0..1"
        )
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ImageError(f"expected HxW, HxWx1, HxWx3 or HxWx4 pixels, got {describe(image)}")
    if image.shape[2] == 4:
        code = cv2.COLOR_BGRA2BGR if color == "BGR" else cv2.COLOR_RGBA2BGR
        return cv2.cvtColor(image, code)
    if color == "RGB":
        return cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    return np.ascontiguousarray(image)


def read_image(path: str | os.PathLike[str], max_pixels: int | None = None) -> np.ndarray:
    """Read a picture from disk as BGR uint8 (EXIF orientation applied; 16-bit and grey files converted).

    The size the file's header declares is checked against ``max_pixels`` before decoding;
    every failure (missing, unreadable, truncated, too large) is an :class:`ImageError`.
    """
    try:
        path = Path(path)
    except TypeError:
        raise ImageError(f"expected a path to a picture, got {describe(path)}") from None
    if not path.is_file():
        raise ImageError(f"image file {path} does not exist")
    try:
        data = np.fromfile(str(path), dtype=np.uint8)  # works with non-ASCII paths, unlike cv2.imread
    except OSError as exc:
        raise ImageError(f"cannot read image file {path}: {exc.strerror or exc}") from None
    if data.size == 0:
        raise ImageError(f"image file {path} is empty")
    declared = declared_size(data[:65536].tobytes())
    if declared is not None:
        check_size(declared[0], declared[1], max_pixels, what=f"{path} (declared in its header)")
    # ANYDEPTH|ANYCOLOR keeps 16-bit and grey pictures and, unlike IMREAD_UNCHANGED, applies the EXIF
    # orientation as cv2.imread does (phone photos are often stored sideways with a rotation tag).
    try:
        image = cv2.imdecode(data, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    except cv2.error as exc:  # e.g. a header past OpenCV's own pixel limit
        text = " ".join(str(exc).split())
        reason = text.split(" error: ", 1)[-1] if text else type(exc).__name__  # drop OpenCV's source path
        raise ImageError(f"cannot decode {path}: OpenCV refused it ({reason})") from None
    if image is None:
        raise ImageError(f"cannot decode {path}: not an image OpenCV can read, or the file is truncated")
    try:
        return to_bgr_uint8(image, max_pixels=max_pixels)
    except ImageError as exc:
        raise type(exc)(f"{path}: {exc}") from exc


# Picture file types every tool lists (folders of photos, calibration sets, the door's picture
# source): defined here only, so a .tif accepted by one tool is accepted by all.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def list_images(folder: str | os.PathLike[str], recursive: bool = True) -> list[Path]:
    """Picture files under ``folder``, sorted so runs are reproducible."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(f"{folder} is not a folder")
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def relative_name(path: Path, root: Path) -> str:
    """How reports name a picture: its path under ``root`` when it is there, else its file name."""
    return str(path.relative_to(root)) if path.is_relative_to(root) else path.name
