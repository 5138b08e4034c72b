"""JPEG evidence of decisions (unknown faces, spoof attempts), capped so an SD card never fills up.

A snapshot is the whole frame with the face boxed: who was at the door and what was around them
is what an operator wants when reviewing "unknown at 02:14". Files are written to a temporary
name and renamed, so a power cut leaves no half-written JPEG behind a logged path.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import cv2
import numpy as np

from . import draw

log = logging.getLogger(__name__)


class SnapshotWriter:
    """Writes ``<dir>/<YYYYmmdd-HHMMSS.mmm>-<decision>-t<track>.jpg``, keeping the newest ``max_files``."""

    def __init__(self, folder: str | os.PathLike[str], max_files: int = 2000, quality: int = 90, max_side: int = 1280):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_files = int(max_files)
        self.quality = int(quality)
        self.max_side = int(max_side)
        self._count = len(self._files())

    def _files(self) -> list[Path]:
        return sorted(self.folder.glob("*.jpg"))  # names start with the time: sorted = oldest first

    def write(self, image: np.ndarray, box: np.ndarray | None, decision: str, track: int, label: str = "") -> str | None:
        """Path of the written file, or None when it could not be written (logged, never raised)."""
        try:
            frame = image.copy()
            if box is not None:
                draw.face_box(frame, box, draw.COLORS.get(decision, draw.WHITE), label)
            h, w = frame.shape[:2]
            scale = self.max_side / max(h, w)
            if scale < 1:
                frame = cv2.resize(frame, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
            now = time.time()
            stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now)) + f".{int(now * 1000) % 1000:03d}"
            path = self.folder / f"{stamp}-{decision}-t{track}.jpg"
            ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
            if not ok:
                raise OSError("JPEG encoding failed")
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(data.tobytes())
            os.replace(tmp, path)
        except (OSError, cv2.error) as exc:
            log.error("could not write a snapshot to %s: %s", self.folder, exc)
            return None
        self._count += 1
        if self._count > self.max_files:
            self._trim()
        return str(path)

    def _trim(self) -> None:
        files = self._files()
        for old in files[: max(0, len(files) - self.max_files)]:
            try:
                old.unlink()
            except OSError as exc:
                log.warning("could not delete old snapshot %s: %s", old, exc)
        self._count = min(len(files), self.max_files)
