"""Enlarged views of the verification pictures' faces, so a detector is judged on big faces too.

RetinaFace finds a face on the pyramid level whose anchors fit it: on a 640x480 input, faces
under ~90 px land on the two fine levels, bigger ones on the coarse levels (anchors 128-512). A
crowd or street scene letterboxed to 640x480 holds almost no face over 64 px, so an INT8
detector verified on such pictures is never asked about the levels a door camera uses (a person
a metre away is 150-300 px), and a landmark error there turns straight into a misaligned crop.

Each view is a window of a verification picture around one face the reference face finder
sees, cut so that face fills ``fraction`` of the model's input height, and letterboxed by the
device's own canvas builder. Only faces at least ``1 / MAX_UPSCALE`` of their target size are
used, so a view is never a blur of a few source pixels. The views are derived from the
verification pictures only, so calibration pictures stay out of them as they stay out of the set.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .verification_set import VIEW_MARK

log = logging.getLogger(__name__)

# target face height as a fraction of the input height: ~150 px and ~260 px on a 640x480 input
VIEW_FRACTIONS = (0.3, 0.55)
MAX_UPSCALE = 3.0  # a face is enlarged at most this much


@dataclass(frozen=True)
class FaceView:
    source: int  # index of the picture it was cut from
    window: tuple[int, int, int, int]  # x1, y1, x2, y2 in the picture
    fraction: float

    def name(self, picture: str) -> str:
        return f"{picture}{VIEW_MARK}{self.fraction:g}"


def face_window(box: list[float] | np.ndarray, picture: tuple[int, int], size: tuple[int, int], fraction: float) -> tuple[int, int, int, int]:
    """The window of a ``picture`` (h, w) around ``box`` that, letterboxed to ``size`` (w, h), makes
    the face ``fraction`` of the input height: the model's aspect, centred on the face, shifted to
    stay inside the picture where it fits (clipped where it does not)."""
    h, w = picture
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1)
    win_h = side / fraction
    win_w = win_h * size[0] / size[1]
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2

    def place(centre: float, length: float, limit: int) -> tuple[int, int]:
        if length >= limit:
            return 0, limit
        start = min(max(centre - length / 2, 0.0), limit - length)
        return int(round(start)), int(round(start + length))

    left, right = place(cx, win_w, w)
    top, bottom = place(cy, win_h, h)
    return left, top, right, bottom


def plan_views(
    boxes_by_picture: list[list[list[float]]],
    shapes: list[tuple[int, int]],
    size: tuple[int, int],
    fractions: tuple[float, ...] = VIEW_FRACTIONS,
    max_upscale: float = MAX_UPSCALE,
) -> list[FaceView]:
    """One view per picture and fraction, around the picture's largest face big enough for it."""
    views = []
    for index, (boxes, shape) in enumerate(zip(boxes_by_picture, shapes)):
        if not boxes:
            continue
        largest = max(boxes, key=lambda b: max(b[2] - b[0], b[3] - b[1]))
        side = max(largest[2] - largest[0], largest[3] - largest[1])
        for fraction in fractions:
            if side * max_upscale >= fraction * size[1]:
                views.append(FaceView(index, face_window(largest, shape, size, fraction), fraction))
    return views


def face_views(
    files: list[Path],
    folder: Path,
    pictures: list[np.ndarray],
    size: tuple[int, int],
    mirror: str | os.PathLike[str] | None = None,
) -> tuple[list[np.ndarray], list[str]]:
    """The enlarged views of ``pictures`` (read from ``files``) and their names; none, with a warning,
    when the reference face finder cannot run."""
    from gfn_edge.errors import GfnEdgeError

    from .faces import find_face_boxes

    try:
        found, _ = find_face_boxes(files, folder, mirror=mirror, max_per_image=None)  # the finder's own smallest face
    except (GfnEdgeError, OSError, ImportError) as exc:
        log.warning("no enlarged face views: the reference face finder could not run (%s); big faces are not verified", exc)
        return [], []
    names = [str(p.relative_to(folder)) for p in files]
    index = {name: i for i, name in enumerate(names)}
    boxes: list[list[list[float]]] = [[] for _ in files]
    for face in found:
        if face.image in index:
            boxes[index[face.image]].append(face.box)
    views = plan_views(boxes, [p.shape[:2] for p in pictures], size)
    return [pictures[v.source][v.window[1] : v.window[3], v.window[0] : v.window[2]] for v in views], [v.name(names[v.source]) for v in views]
