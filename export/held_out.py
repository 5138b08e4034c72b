"""Verification pictures held out of the calibration folder when no verification folder is given.

Why: ``gfn-export --model my.h5 --target tflite-int8 --calib photos/ --out out`` is what a user
types, and without ``--verify-images`` (or ``$GFN_EDGE_VERIFY_IMAGES``) the INT8 artifact was
verified on 64 synthetic noise pictures and reported PASS (w0.5-e6 from its file, 2026-12-06):
numbers that say nothing about faces, on the very command the project is known for. The user's
folder already holds real faces; half its pictures, drawn with a fixed seed so every run makes the
same split, now stay out of the calibration and verify every artifact of the run instead. Drawn,
not every other file: photos of one person sit side by side in a sorted folder, and a labelled pair
survives only where both its pictures are held out (129 of the pairs folder's 349, drawn; almost
none, alternating). The INT8 verification floor (:mod:`.verification_floor`) still judges whether
what is held out is enough.

A large folder holds out at most :data:`HOLD_OUT_MAX` pictures, and verification reads only the
held-out ones (before 2026-12-07 it read every picture the calibration had not used, and the
calibration now draws from a large folder instead of reading it whole: :func:`gfn_edge.calib.build.draw_pictures`).
Half of 1,600 photos took 33 s of face search and gave every INT8 attempt 795 faces to verify on.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gfn_edge.calib import ENV_CALIB
from gfn_edge.image import list_images

from .verify_data import verification_folder

log = logging.getLogger(__name__)

SPLIT_SEED = 0
HOLD_OUT_MAX = 300
"""The most pictures held out of a large folder: several hundred faces (the floor asks 50)."""


@dataclass(frozen=True)
class HeldOut:
    """The calibration folder and the names of the pictures kept out of calibration to verify on."""

    folder: Path
    names: frozenset[str]
    pictures: int  # in the folder
    others: frozenset[str] = frozenset()  # the folder's other pictures: the calibration's, never verified on

    def describe(self) -> dict[str, Any]:
        return {"held_out_of_calibration": len(self.names), "calibration_folder_pictures": self.pictures, "split_seed": SPLIT_SEED}


def held_out_verification(calib: Any, verify_images: Any) -> HeldOut | None:
    """The held-out half of the calibration folder, where a verification folder is neither given
    nor set in the environment and the calibration comes from a folder of photos (``calib``, else
    ``$GFN_EDGE_CALIB_IMAGES``); None otherwise (a saved set's pictures are not at hand to split)."""
    if verification_folder(verify_images) is not None:
        return None
    source = calib if calib is not None else os.environ.get(ENV_CALIB)
    if not isinstance(source, (str, os.PathLike)) or not Path(source).is_dir():
        return None
    folder = Path(source)
    files = list_images(folder)
    if len(files) < 2:
        return None  # nothing to split; the calibration and the floor name the problem
    order = np.random.default_rng(SPLIT_SEED).permutation(len(files))
    held = min(len(files) // 2, HOLD_OUT_MAX)
    names = frozenset(files[i].name for i in order[:held])
    log.warning(
        "no verification folder given (--verify-images or $GFN_EDGE_VERIFY_IMAGES): %d of the %d pictures in %s "
        "are held out of the INT8 calibration and every artifact is verified on them",
        len(names),
        len(files),
        folder,
    )
    return HeldOut(folder, names, len(files), frozenset(f.name for f in files) - names)
