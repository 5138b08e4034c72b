"""Learned post-training quantisation of the INT8-prepared PyTorch twin, label-free.

Plain PTQ rounds every weight to its nearest int8 level and takes activation ranges from
calibration statistics. The search's learned steps, after the float groups:

- :mod:`.rounding`: each int8 weight's up-or-down rounding learned on the backend's own grid
  (AdaRound), fitted to the FP32 model's outputs and block outputs through an int8 simulation of
  the backend, kept only where it fits held-out calibration inputs better, and written as FP32
  weights on their levels, so each backend's quantiser rounds them as learned;
- :mod:`.distill`: distillation QAT of the FP32 weights themselves, leaving the quantising to each
  backend, so nothing has to be carried exactly.

Both act on weights, and ``--int8-debug``'s error sources put the real models' int8 error mostly
in the activations (RetinaFace-mnet025 landmark NME 0.018 every layer int8, 0.0066 with int8
weights alone; GhostFaceNets w0.5-e16 min/max cosine 0.981, 0.998 with int8 weights alone): what
they can do is let the weights make up for it, which is why both learn with int8 activations in
the loop.

Groundwork not in the search: :mod:`.quantizers` holds the two learnable quantisers (AdaRound
weights, which :mod:`.rounding` uses, and LSQ-style ranges), :mod:`.twin` runs the traced model with
them, :mod:`.reconstruct` fits both block by block, and :mod:`.onnx_qdq` writes the result as an
ONNX QDQ graph. Learned ranges fitted the w0.5 student's 38 calibration faces better and lost
held-out cosine (worst face 0.898 -> 0.879). :mod:`.augment` enlarges small calibration sets.

Measured again 2026-12-07 on today's prepared w0.5-e16 (228 calibration samples, 150 s of
:func:`.reconstruct.learn_quantisation`, simulated, judged on the 123 pairs photos' faces the fit
never saw): every layer int8, min/max 0.9792 / 0.9228, learned rounding 0.9848 / 0.9625, rounding
and ranges 0.9878 / 0.9587; with the search's six highest-ranked groups in float 0.99475 / 0.98982,
0.99489 / 0.98872 and 0.99624 / 0.98743. Learned ranges now pay (about a quarter of the error with
the groups), enough for six groups where the search keeps eight to ten; they stay out of the search
until the ranges are carried into each backend's quantiser (onnxruntime's calibration cache, as
:mod:`.onnx_qdq` does, and the TFLite calibrated model's min/max); learned rounding needs no
carrying, its weights sitting on their levels.
"""

from .reconstruct import LearnedQuantisation, learn_quantisation

__all__ = ["LearnedQuantisation", "learn_quantisation"]
