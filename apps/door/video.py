"""The optional window (``--show``) and annotated recording (``--record out.mp4``).

A door unit usually has no screen: ``--show`` without a usable display says so once and the
door carries on headless, instead of dying at the first frame. The check looks at DISPLAY /
WAYLAND_DISPLAY before touching the GUI, because some OpenCV builds (Qt) abort the whole
process when they cannot reach a display.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

WINDOW = "gfn-edge door"
FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "XVID"}


class VideoError(Exception):
    """A recording that cannot be written."""


class Display:
    """A window showing annotated frames, or nothing when there is no display."""

    def __init__(self, enabled: bool):
        self.enabled = False
        self.quit_requested = False
        if not enabled:
            return
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            log.warning("--show: no display (DISPLAY and WAYLAND_DISPLAY are unset); continuing headless")
            return
        try:
            cv2.namedWindow(WINDOW, cv2.WINDOW_NORMAL)
        except cv2.error as exc:
            first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            log.warning(
                "--show: this OpenCV cannot open windows (%s; opencv-python-headless has no GUI, install opencv-python for one); continuing headless", first
            )
            return
        self.enabled = True
        log.info("showing frames in a window; press q to quit")

    def show(self, image: np.ndarray) -> None:
        if not self.enabled:
            return
        try:
            cv2.imshow(WINDOW, image)
            if (cv2.waitKey(1) & 0xFF) in (ord("q"), 27):
                self.quit_requested = True
        except cv2.error as exc:
            log.warning("--show: the window failed (%s); continuing headless", exc)
            self.enabled = False

    def close(self) -> None:
        if self.enabled:
            with contextlib.suppress(cv2.error):
                cv2.destroyWindow(WINDOW)
            self.enabled = False


class Recorder:
    """Writes frames to a video file; opened on the first frame, when its size is known."""

    def __init__(self, path: str | os.PathLike[str], fps: float | None = None):
        self.path = Path(path)
        self.fps = fps  # None: set before the first write (a source knows its rate once opened)
        if self.path.suffix.lower() not in FOURCC:
            raise VideoError(f"--record {self.path}: unknown video type {self.path.suffix!r}; use {', '.join(FOURCC)}")
        if not self.path.parent.is_dir():
            raise VideoError(f"--record {self.path}: folder {self.path.parent} does not exist")
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        self.frames = 0

    def write(self, image: np.ndarray) -> None:
        h, w = image.shape[:2]
        if self._writer is None:
            fourcc = cv2.VideoWriter_fourcc(*FOURCC[self.path.suffix.lower()])
            self.fps = float(self.fps or 10.0)
            self._writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, (w, h))
            if not self._writer.isOpened():
                raise VideoError(f"cannot write video {self.path} ({FOURCC[self.path.suffix.lower()]} codec unavailable?); try a .avi file")
            self._size = (w, h)
            log.info("recording annotated video to %s (%dx%d @ %g fps)", self.path, w, h, self.fps)
        if (w, h) != self._size:  # a reconnected camera may come back at another size
            image = cv2.resize(image, self._size)
        self._writer.write(image)
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            log.info("recorded %d frames to %s", self.frames, self.path)
