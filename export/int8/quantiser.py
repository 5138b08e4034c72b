"""What one backend's INT8 target hands the search: how to build an attempt and what its quantiser can store.

The three targets differ in their quantiser (onnxruntime's QDQ graph, NNCF or the QDQ graph compiled
by OpenVINO, the project's full-integer TFLite translation), not in the order of the search; this
description is all :func:`.search.run_search` needs to know about them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..target_info import Artifact
from .attempt import Attempt


@dataclass(frozen=True)
class Quantiser:
    """One backend's INT8 quantiser as the search uses it.

    ``build(attempt, folder)`` writes one INT8 candidate (of :func:`.candidates.int8_model`'s model
    for the attempt); ``methods`` are its calibration methods, tried in order; ``build_fp32(folder)``
    writes the FP32 model of the same backend, timed beside the winner for the manifest's
    comparison. ``weight_qmax``: the backend's weight grid, which the distillation trains for.
    ``corrects_biases``: whether this backend's quantiser leaves biases as they are (ONNX Runtime,
    TFLite), so the search hands it bias-corrected models (:mod:`.bias_correction`; NNCF corrects on
    its own). ``remedy_route``: the quantiser of the remedies (bias correction, float groups,
    distillation) where it is not the backend's own: OpenVINO's remedies go through onnxruntime's
    QDQ graph ("qdq"), which leaves biases alone, so bias correction is tried there too.
    ``int8_float_group_weights``: whether the quantiser can store the float groups' weights as int8
    (the QDQ graph, :mod:`.onnx_weight_only`); a winner with groups in float is then tried that way
    and shipped where it passes and is not slower. ``int8_output_layer_weights``: whether that
    storage also reaches the output layers, which this backend computes in float (TFLite's
    denylist), so a winner without groups is tried too. ``half_float_weights``: whether the build
    stores the float ops' weights as float16 for an attempt with ``half_weights``; a winner that did
    not ship int8 weights is then tried that way, under the same rule. ``plain_routes``: the
    quantisers whose plain attempts (each calibration method) run, in order, before any remedy;
    ``fallback_routes``: those whose plain attempts run only when the float groups did not pass,
    before the learned steps (OpenVINO: the QDQ graph first, NNCF as the fallback).
    """

    build: Callable[[Attempt, Path], Artifact]
    methods: Sequence[str]
    build_fp32: Callable[[Path], Artifact]
    weight_qmax: int = 127
    corrects_biases: bool = False
    remedy_route: str = ""
    int8_float_group_weights: bool = False
    int8_output_layer_weights: bool = False
    half_float_weights: bool = False
    plain_routes: tuple[str, ...] = ("",)
    fallback_routes: tuple[str, ...] = ()
