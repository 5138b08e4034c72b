"""Frames from a camera, a network stream, a video file or a folder of pictures, through OpenCV.

Live sources (camera index, ``/dev/videoN``, ``rtsp://`` / ``http://`` URLs) are a door unit's
normal case and they fail: a USB camera is unplugged, Wi-Fi drops an RTSP stream, a camera is
not ready at boot. They are (re)opened with exponential backoff and a log line per attempt, for
ever unless ``max_reconnects`` says otherwise, so the service never exits because of a camera.
A live source is read by a background thread that keeps only the newest frame: when recognition
is slower than the camera, the decision is about the person at the door now, not a queue of
frames from seconds ago.

Files and folders are for testing and offline runs: every frame is processed in order, they end
normally, and one that cannot be read is an error (there is nothing to wait for).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import cv2
import numpy as np

from gfn_edge import IMAGE_SUFFIXES, GfnEdgeError, read_image

from .config import redact

log = logging.getLogger(__name__)

SIGNAL_POLL_S = 0.2
"""Longest one wait on the main thread blocks before it looks again. CPython runs signal handlers
on the main thread between bytecodes; when the kernel hands SIGTERM to another thread (it may;
under qemu-user it often does), a main thread parked in one long lock wait sleeps through it."""

DEFAULT_FILE_FPS = 25.0  # a video file that records no frame rate
DEFAULT_FOLDER_FPS = 10.0


class SourceError(Exception):
    """A source that cannot be used: an unreadable file, or a live source given up on."""


@dataclass
class Frame:
    """One picture and where it sits in time.

    ``time`` is in seconds: position in the video for files and folders (so cooldowns behave
    the same however fast a file is processed), ``time.monotonic()`` for live sources.
    """

    image: np.ndarray
    index: int  # frames delivered by this source so far, from 0
    time: float
    name: Optional[str] = None  # folder sources: the picture's file name


def classify(spec: str) -> str:
    """``camera``, ``stream``, ``folder`` or ``file`` for a source specification."""
    text = str(spec).strip()
    if text.isdigit() or text.startswith("/dev/video"):
        return "camera"
    if "://" in text:
        return "stream"
    if Path(text).is_dir():
        return "folder"
    return "file"


class Backoff:
    """Waits between reconnection attempts: ``initial``, doubling, capped at ``maximum``."""

    def __init__(self, initial: float = 1.0, maximum: float = 30.0, factor: float = 2.0):
        self.initial = max(0.0, float(initial))
        self.maximum = max(self.initial, float(maximum))
        self.factor = float(factor)
        self.reset()

    def reset(self) -> None:
        self._next = self.initial

    def next(self) -> float:
        delay = self._next
        self._next = min(self.maximum, self._next * self.factor)
        return delay


CaptureFactory = Callable[[str, str], Any]  # (spec, kind) -> an object with isOpened/read/release/get


def open_capture(spec: str, kind: str, width: int | None = None, height: int | None = None, fps: float | None = None, timeout: float = 10.0) -> Any:
    """A ``cv2.VideoCapture`` for the source (possibly not opened: check ``isOpened``)."""
    if kind == "camera":
        index_or_path: Any = int(spec) if spec.isdigit() else spec
        cap = cv2.VideoCapture(index_or_path)
        if cap.isOpened():
            # keep the driver's queue short: stale frames mean a late door
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
            if width:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            if height:
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
            if fps:
                cap.set(cv2.CAP_PROP_FPS, fps)
        return cap
    if kind == "stream":
        ms = int(timeout * 1000)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
        try:
            return cv2.VideoCapture(spec, cv2.CAP_FFMPEG, params)
        except cv2.error:  # an OpenCV without FFmpeg or without these properties
            return cv2.VideoCapture(spec)
    return cv2.VideoCapture(spec)


class _Grabber(threading.Thread):
    """Reads a live capture as fast as it delivers, keeping only the newest frame."""

    def __init__(self, cap: Any, name: str):
        super().__init__(name=f"grab-{name}", daemon=True)
        self.cap = cap
        self._cond = threading.Condition()
        self._frame: np.ndarray | None = None
        self._seq = 0
        self._taken = 0
        self._stopping = False
        self.failed = False

    def run(self) -> None:
        while not self._stopping:
            try:
                ok, frame = self.cap.read()
            except Exception as exc:  # a backend throwing is a drop like any other
                log.warning("reading the source failed: %s", exc)
                ok, frame = False, None
            with self._cond:
                if not ok or frame is None:
                    self.failed = True
                    self._cond.notify_all()
                    return
                self._frame = frame
                self._seq += 1
                self._cond.notify_all()

    def latest(self, timeout: float, closed: threading.Event) -> np.ndarray | None:
        """The newest frame not yet handed out; None when the source failed, stayed silent or was closed."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._seq == self._taken and not self.failed and not self._stopping and not closed.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(min(left, SIGNAL_POLL_S))
            if self._seq == self._taken:
                return None
            self._taken = self._seq
            return self._frame

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()


class FrameSource:
    """Iterate over :class:`Frame` s of ``spec``; see the module docstring for what each kind does.

    ``max_reconnects``: live sources give up (raising :class:`SourceError`) after this many
    failed attempts in a row after the first one (None: never). Any frame received resets the
    count. ``capture_factory`` and ``sleep`` are seams for tests.
    """

    def __init__(
        self,
        spec: str | int,
        *,
        fps: float | None = None,
        width: int | None = None,
        height: int | None = None,
        max_reconnects: int | None = None,
        backoff: Backoff | None = None,
        read_timeout: float = 10.0,
        latest_only: bool = True,
        capture_factory: CaptureFactory | None = None,
        sleep: Callable[[float], Any] | None = None,
    ):
        self.spec = str(spec).strip()
        self.kind = classify(self.spec)
        self.live = self.kind in ("camera", "stream")
        self.requested_fps = fps
        self.width, self.height = width, height
        self.max_reconnects = max_reconnects
        self.backoff = backoff or Backoff()
        self.read_timeout = float(read_timeout)
        self.latest_only = latest_only
        self._factory = capture_factory or (lambda s, k: open_capture(s, k, self.width, self.height, self.requested_fps, self.read_timeout))
        self._stop = threading.Event()
        self._sleep = sleep or self._wait_unless_closed
        self.fps: float | None = fps if self.kind == "folder" else None  # known once opened
        self.description = {"camera": "camera", "stream": "stream", "file": "video file", "folder": "image folder"}[self.kind]
        self.description += f" {redact(self.spec)}"

    def close(self) -> None:
        """Stop iterating (from another thread or a signal handler); a backoff wait ends at once."""
        self._stop.set()

    @property
    def closed(self) -> bool:
        return self._stop.is_set()

    def _wait_unless_closed(self, delay: float) -> None:
        """The backoff wait: ends at once on close(), in slices so a signal handler gets to call it."""
        deadline = time.monotonic() + delay
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._stop.wait(min(left, SIGNAL_POLL_S))

    def __iter__(self) -> Iterator[Frame]:
        if self.kind == "folder":
            return self._folder()
        if self.kind == "file":
            return self._file()
        return self._live()

    # --- offline sources ------------------------------------------------------------------
    def _folder(self) -> Iterator[Frame]:
        paths = sorted(p for p in Path(self.spec).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise SourceError(f"{self.description} holds no pictures ({', '.join(IMAGE_SUFFIXES)})")
        fps = self.fps or DEFAULT_FOLDER_FPS
        self.fps = fps
        delivered = 0
        for path in paths:
            if self.closed:
                return
            try:
                image = read_image(path)
            except GfnEdgeError as exc:
                log.warning("skipping %s: %s", path.name, exc)
                continue
            yield Frame(image, delivered, delivered / fps, path.name)
            delivered += 1
        if delivered == 0:
            raise SourceError(f"no picture in {self.description} could be read")

    def _file(self) -> Iterator[Frame]:
        path = Path(self.spec)
        if not path.is_file():
            raise SourceError(f"{self.description} does not exist")
        cap = self._factory(self.spec, "file")
        try:
            if cap is None or not cap.isOpened():
                raise SourceError(f"cannot open {self.description}: not a video OpenCV can decode (or its codec is missing)")
            fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
            self.fps = fps if 0.1 <= fps <= 1000 else DEFAULT_FILE_FPS
            delivered = 0
            while not self.closed:
                ok, image = cap.read()
                if not ok or image is None:
                    break
                yield Frame(image, delivered, delivered / self.fps)
                delivered += 1
            if delivered == 0 and not self.closed:
                raise SourceError(f"{self.description} opened but no frame could be decoded: the file is damaged or empty")
            log.info("%s ended after %d frames", self.description, delivered)
        finally:
            if cap is not None:
                cap.release()

    # --- live sources ---------------------------------------------------------------------
    def _give_up_or_wait(self, failures: int, what: str) -> None:
        """Log the failure; raise once the reconnection budget is spent, else wait the backoff."""
        limit = self.max_reconnects
        if limit is not None and failures > limit:
            raise SourceError(f"{self.description}: {what}; giving up after {failures} attempt{'s' if failures != 1 else ''} (max_reconnects = {limit})")
        delay = self.backoff.next()
        budget = "" if limit is None else f" of {limit + 1}"
        log.warning("%s: %s (attempt %d%s); retrying in %.1f s", self.description, what, failures, budget, delay)
        self._sleep(delay)

    def _camera_hint(self) -> str:
        if self.kind != "camera":
            return " (is the URL right and the camera reachable from here?)"
        dev = self.spec if self.spec.startswith("/dev/") else f"/dev/video{self.spec}"
        exists = "exists" if Path(dev).exists() else "does not exist"
        return f" ({dev} {exists}; is the camera plugged in and this user in the 'video' group?)"

    def _live(self) -> Iterator[Frame]:
        failures = 0  # failed attempts in a row
        delivered = 0
        self.backoff.reset()
        while not self.closed:
            cap = None
            try:
                cap = self._factory(self.spec, self.kind)
                opened = cap is not None and bool(cap.isOpened())
            except Exception as exc:  # a backend that throws instead of returning a closed capture
                log.debug("opening %s raised %s", self.description, exc)
                opened = False
            if not opened:
                if cap is not None:
                    cap.release()
                failures += 1
                self._give_up_or_wait(failures, "did not open" + (self._camera_hint() if failures == 1 else ""))
                continue
            fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
            self.fps = fps if 0.1 <= fps <= 1000 else (self.requested_fps or 10.0)
            log.info("%s opened (%s fps)", self.description, f"{fps:g}" if fps > 0 else "unknown")
            got = 0
            for image in self._read_live(cap):
                if got == 0:
                    failures = 0
                    self.backoff.reset()
                got += 1
                yield Frame(image, delivered, time.monotonic())
                delivered += 1
                if self.closed:
                    break
            if self.closed:
                return
            failures += 1
            self._give_up_or_wait(failures, f"dropped after {got} frame{'s' if got != 1 else ''}, reconnecting" if got else "opened but sent no frame")

    def _read_live(self, cap: Any) -> Iterator[np.ndarray]:
        """Frames until the capture fails or stays silent for ``read_timeout``; releases it."""
        if not self.latest_only:
            try:
                while not self.closed:
                    ok, image = cap.read()
                    if not ok or image is None:
                        return
                    yield image
            finally:
                cap.release()
            return
        grabber = _Grabber(cap, self.kind)
        grabber.start()
        try:
            while not self.closed:
                image = grabber.latest(self.read_timeout, self._stop)
                if image is None:
                    if not grabber.failed and not self.closed:
                        log.warning("%s sent nothing for %.0f s", self.description, self.read_timeout)
                    return
                yield image
        finally:
            grabber.stop()
            grabber.join(timeout=2.0)
            if grabber.is_alive():  # stuck inside the driver: releasing under it could crash the process
                log.warning("%s: the reading thread is stuck in the driver; abandoning that capture", self.description)
            else:
                cap.release()
