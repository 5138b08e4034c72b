"""How much real verification data an INT8 artifact is judged on, at the least.

Why: INT8 is verified on the pictures its calibration did not use (``api._verification_data``
leaves those out). A user who gave one folder to both ``--calib`` and ``--verify-images`` got an
INT8 recogniser "verified" on the 7 faces the calibration's quality gates had turned down, with
none of the folder's labelled pairs left, and a PASS (w0.5-e6 tflite-int8, 2026-12-06); a detector
whose folder the calibration used up fell back to the synthetic pictures meant for runs without
any folder. An INT8 error is statistical (a worst face, a pair decision), so a handful of faces
cannot show it: the export stops before minutes of quantising and says what to give it instead.
FP32 and FP16 artifacts are judged on whatever they are given, as before: their tolerances are
exactness, which one face already tests. Synthetic pictures (no verification folder, no
calibration folder to hold pictures out of, :mod:`.held_out`) are refused for INT8 alike.
"""

from __future__ import annotations

import logging

from gfn_edge.calib import CalibrationSet
from gfn_edge.errors import InvalidArgumentError

from .held_out import HOLD_OUT_MAX
from .verification_set import VerificationSet

log = logging.getLogger(__name__)

MIN_INT8_VERIFICATION = {"embed": 50, "detect": 8, "liveness": 30}
"""Real verification items an INT8 export needs per task: faces for recognisers (the pairs folder
holds 124), pictures for detectors (the issue's scenes 25, at most 48 used), face crops for
liveness models (the liveness folder 61-66)."""

_UNITS = {"embed": "faces", "detect": "pictures", "liveness": "face crops"}


def real_items(vset: VerificationSet) -> int:
    """How many real items ``vset`` verifies on (0 for synthetic pictures)."""
    desc = vset.description
    if desc.get("synthetic"):
        return 0
    if vset.task == "detect":
        return int(desc.get("images", len(vset)))
    return int(desc.get("faces", len(vset)))


def check_int8_verification(vset: VerificationSet, calib: CalibrationSet | None, force: bool = False, held_out: bool = False) -> None:
    """Refuse (``InvalidArgumentError``) INT8 verification on fewer real items than
    :data:`MIN_INT8_VERIFICATION`, or on synthetic pictures, naming the folder, what is left and
    what the calibration took; with ``force`` only warn. ``held_out``: the verification pictures
    are the calibration folder's held-out half (:mod:`.held_out`)."""
    task = vset.task
    wanted = MIN_INT8_VERIFICATION.get(task)
    if wanted is None:
        return
    have = real_items(vset)
    if have >= wanted:
        return
    folder = vset.description.get("folder")
    unit = _UNITS[task]
    if folder is None:
        message = (
            f"INT8 is judged on real pictures, and no verification folder is given (--verify-images DIR or "
            f"$GFN_EDGE_VERIFY_IMAGES) nor a calibration folder to hold some out of: give --verify-images a folder "
            f"of at least {wanted} {unit} apart from the calibration's; --force verifies on synthetic pictures, "
            f"which say nothing about faces"
        )
    else:
        used = len(calib.source_images) if calib is not None else 0
        taken = f" after leaving out the {used} pictures the INT8 calibration used" if used else ""
        pairs = f", {len(vset.pairs)} labelled pairs" if task == "embed" else ""
        how = (
            f"No --verify-images was given, so half of --calib's pictures (at most {HOLD_OUT_MAX}) were held out to verify on; give "
            "--verify-images a folder of other photos, or --calib a larger folder"
            if held_out
            else "Give --verify-images a folder apart from --calib (or --calib one apart from the verification photos)"
        )
        message = (
            f"only {have} {unit}{pairs} in {folder} are left to verify INT8 on{taken}; INT8 needs at least "
            f"{wanted} {unit} its calibration did not see. {how}; --force goes on with what is left"
        )
    if force:
        log.warning("%s (going on: --force)", message)
        return
    raise InvalidArgumentError(message)
