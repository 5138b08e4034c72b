"""What building a calibration set needs from a face detector, as an interface its caller supplies.

Recogniser and liveness calibration samples are cut around real faces. Which detector finds
them is the caller's choice: gfn-export and gfn-calib hand in the reference RetinaFace
(:class:`gfn_edge.export.faces.ReferenceFaces`); anything with these two methods works. Calibration
itself never imports the export side (export depends on calibration, not the other way round).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from gfn_edge.align import CropGeometry

Skipped = list[tuple[str, str]]  # (picture relative to the folder, why it gave no sample)


class FoundFace(Protocol):
    """One face: ``image`` (its picture, relative to the folder), corner ``box`` and five ``landmarks``."""

    image: str
    box: Sequence[float]
    landmarks: Sequence[Sequence[float]]


class FoundBox(Protocol):
    """One face box: ``image`` (its picture, relative to the folder) and corner ``box``."""

    image: str
    box: Sequence[float]


@runtime_checkable
class CalibrationFaces(Protocol):
    """Finds faces in calibration pictures: aligned crops for recognisers, boxes for liveness models."""

    def aligned_faces(self, files: list[Path], root: Path, min_size: float, geometry: CropGeometry) -> tuple[np.ndarray, Sequence[FoundFace], Skipped]:
        """(K, S, S, 3) uint8 BGR crops aligned to ``geometry``, one description per crop, skipped pictures."""
        ...

    def face_boxes(self, files: list[Path], root: Path, min_size: float) -> tuple[Sequence[FoundBox], Skipped]:
        """Face boxes in upright picture pixels, and skipped pictures."""
        ...


__all__ = ["CalibrationFaces", "FoundBox", "FoundFace", "Skipped"]
