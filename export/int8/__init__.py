"""INT8 preparation shared by every backend: a quantisation-friendly FP32 model and diagnostics.

Post-training INT8 fails on many face models not because of the quantiser but because a few
channels of an activation are hundreds of times smaller than the others: one int8 scale per
tensor then rounds them to nothing (measured here: GhostFaceNets student checkpoints drop to
cosine 0.3 on ONNX Runtime, 0.5 on NNCF). :mod:`.equalize` rescales channels across layers — an
exact re-parameterisation of the FP32 model — before any backend quantises it; :mod:`.simulate`
measures what int8 does to each layer without a backend round trip.
"""
