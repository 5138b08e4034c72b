"""Progress bars for long work (downloads, export, calibration, evaluation).

tqdm is used when installed; otherwise progress goes to the log every few seconds, so the core
install stays numpy + OpenCV. ``GFN_EDGE_PROGRESS=0`` silences bars (logging is unaffected).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger("gfn_edge.progress")


def _enabled() -> bool:
    return os.environ.get("GFN_EDGE_PROGRESS", "1") not in ("0", "false", "no")


class Progress:
    """A minimal tqdm-like counter: ``update(n)``, ``close()``, usable as a context manager."""

    def __init__(self, total: int | None, desc: str, unit: str = "it", unit_scale: bool = False):
        self._bar = None
        self._count = 0
        self._total = total
        self._desc = desc
        self._last = time.monotonic()
        if _enabled():
            try:
                from tqdm.auto import tqdm

                self._bar = tqdm(total=total, desc=desc, unit=unit, unit_scale=unit_scale, leave=False, dynamic_ncols=True)
            except ImportError:
                pass

    def update(self, n: int = 1) -> None:
        self._count += n
        if self._bar is not None:
            self._bar.update(n)
        elif time.monotonic() - self._last > 5.0:
            self._last = time.monotonic()
            of = f"/{self._total}" if self._total else ""
            log.info("%s: %d%s", self._desc, self._count, of)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress(iterable: Iterable[T], desc: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a progress bar."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    with Progress(total, desc) as bar:
        for item in iterable:
            yield item
            bar.update(1)
