"""Learned post-training quantisation of the INT8-prepared PyTorch twin, label-free.

Plain PTQ rounds every weight to its nearest int8 level and takes activation ranges from
calibration statistics; on GhostFaceNets students that leaves cosine 0.91-0.96 in the worst face
because the error is spread through the whole network. Here the quantisation itself is fitted:
per-channel int8 weights with learned rounding (AdaRound) and learned activation ranges (LSQ-style),
block by block against the FP32 model's own block outputs on the calibration pictures (no labels).
Status (w0.5 epoch-16 student, 38 calibration faces): the fit improves the simulated cosine on the
calibration faces (worst face 0.953 -> 0.972) but not reliably on held-out faces, and the ONNX QDQ
carry does not yet reproduce the twin on onnxruntime; it is not wired into the export search. Nor
is it where the real models lose accuracy: ``--int8-debug``'s error sources put their int8 error in
the activations (RetinaFace-mnet025 landmark NME 0.018 every layer int8, 0.0066 with int8 weights
alone; GhostFaceNets w0.5-e16 min/max cosine 0.981, 0.998 with int8 weights alone), which learned
weight rounding does not touch.
:mod:`.distill` is: it tunes the FP32 weights themselves (distillation QAT) and leaves the
quantising to each backend, so nothing has to be carried exactly.

:mod:`.quantizers` holds the two learnable quantisers, :mod:`.twin` runs the traced model with
them, :mod:`.reconstruct` fits them under a time budget, :mod:`.augment` enlarges small
calibration sets, and :mod:`.onnx_qdq` carries the result into an ONNX QDQ graph.
"""

from .reconstruct import LearnedQuantisation, learn_quantisation

__all__ = ["LearnedQuantisation", "learn_quantisation"]
