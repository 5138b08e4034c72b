"""One thread setting for the whole device pipeline: the inference runtime and OpenCV alike.

``threads`` given to :class:`~gfn_edge.analyzer.FaceAnalyzer` (and the door's ``[models] threads``)
sizes the runtime's intra-op pool when a model is opened; the picture work around it (resize,
letterbox, warpAffine, colour conversion) runs on OpenCV's own pool, which :func:`apply_threads`
sizes to the same number. Without it a board told to use 2 threads would still run OpenCV on
every core, and a benchmark pinning OpenCV would measure a configuration the door never runs.

OpenCV's pool is process-wide: the last analyzer built with ``threads`` decides it.
"""

from __future__ import annotations

import logging
import numbers

import cv2

from .checks import clamp_threads

log = logging.getLogger(__name__)


def apply_threads(threads: int | None) -> int:
    """Size OpenCV's thread pool to ``threads``; returns the previous size.

    None or 0 leave OpenCV's default, as they leave the runtime's (``cv2.setNumThreads(0)``
    would switch OpenCV's threading off, not to its default). Anything else must be a positive integer.
    """
    previous = int(cv2.getNumThreads())
    if threads is None or (isinstance(threads, numbers.Integral) and not isinstance(threads, bool) and threads == 0):
        return previous
    threads = clamp_threads(threads)  # SDK errors for bad values; never more than the usable cores
    if threads != previous:
        cv2.setNumThreads(threads)
        log.debug("OpenCV threads: %d (was %d)", threads, previous)
    return previous


__all__ = ["apply_threads"]
