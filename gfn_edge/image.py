"""Reading and normalising input pictures to the BGR uint8 HxWx3 arrays the pipeline works on.

Grayscale, RGBA/BGRA and 16-bit pictures are converted; floats, empty arrays, odd channel counts
and absurd sizes are refused with a message that says what was received.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from .errors import ImageError

MAX_SIDE = 32768  # larger pictures are almost certainly a mistake, and would take gigabytes to decode


def describe(image: object) -> str:
    if isinstance(image, np.ndarray):
        return f"array of shape {image.shape} and dtype {image.dtype}"
    return f"{type(image).__name__}"


def to_bgr_uint8(image: np.ndarray, color: str = "BGR") -> np.ndarray:
    """Return ``image`` as contiguous BGR uint8 HxWx3; ``color`` says what a 3/4-channel input holds."""
    if image is None:
        raise ImageError("image is None (cv2.imread returns None for unreadable files)")
    if not isinstance(image, np.ndarray):
        raise ImageError(f"expected a numpy image array, got {describe(image)}")
    if image.size == 0 or image.ndim < 2 or min(image.shape[:2]) == 0:
        raise ImageError(f"image is empty ({describe(image)})")
    if color not in ("BGR", "RGB"):
        raise ImageError(f"color must be 'BGR' or 'RGB', got {color!r}")
    if max(image.shape[:2]) > MAX_SIDE:
        raise ImageError(f"image is {image.shape[1]}x{image.shape[0]}, over {MAX_SIDE} px on a side; downscale it first")
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


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a picture from disk as BGR uint8 (EXIF orientation applied; 16-bit and grey files converted)."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"image file {path} does not exist")
    data = np.fromfile(str(path), dtype=np.uint8)  # works with non-ASCII paths, unlike cv2.imread
    if data.size == 0:
        raise ImageError(f"image file {path} is empty")
    # ANYDEPTH|ANYCOLOR keeps 16-bit and grey pictures and, unlike IMREAD_UNCHANGED, applies the EXIF
    # orientation as cv2.imread does (phone photos are often stored sideways with a rotation tag).
    image = cv2.imdecode(data, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    if image is None:
        raise ImageError(f"cannot decode {path}: not an image OpenCV can read, or the file is truncated")
    try:
        return to_bgr_uint8(image)
    except ImageError as exc:
        raise ImageError(f"{path}: {exc}") from exc


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
