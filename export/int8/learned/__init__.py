"""Learned post-training quantisation of the INT8-prepared PyTorch twin, label-free.

Plain PTQ rounds every weight to its nearest int8 level and takes activation ranges from
calibration statistics; on GhostFaceNets students that leaves cosine 0.91-0.96 in the worst face
because the error is spread through the whole network. Here the quantisation itself is fitted:
per-channel int8 weights with learned rounding (AdaRound) and learned activation ranges (LSQ-style),
block by block against the FP32 model's own block outputs on the calibration pictures (no labels).

:mod:`.quantizers` holds the two learnable quantisers, :mod:`.twin` runs the traced model with
them, :mod:`.reconstruct` fits them under a time budget, :mod:`.augment` enlarges small
calibration sets, and :mod:`.onnx_qdq` carries the result into an ONNX QDQ graph.
"""
from .reconstruct import LearnedQuantisation, learn_quantisation

__all__ = ["LearnedQuantisation", "learn_quantisation"]
