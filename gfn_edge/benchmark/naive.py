"""The naive baseline: the reference code's way of running the models, for the end-to-end table.

Plain ``onnxruntime.InferenceSession`` objects with only the thread count set (so comparisons
are at equal threads), FP32 ONNX, numpy preprocessing as the reference writes it. Everything
else the baseline does (alignment, search) is gfn-edge's own, so the table shows what the
runtime layer and the pipeline's choices buy.
"""

from __future__ import annotations

import os

import numpy as np

from gfn_edge.align import CropGeometry
from gfn_edge.preprocess import normalize
from gfn_edge.retinaface_decode import Detections, postprocess

from . import BenchmarkError

__all__ = ["NaiveOrtDetector", "NaiveOrtEmbedder"]


def _plain_session(bundle: str | os.PathLike[str], threads: int, role: str):
    """(manifest, session, threads) of an FP32 ONNX bundle in a plain ONNX Runtime session."""
    import onnxruntime as ort

    from gfn_edge.manifest import read_manifest

    manifest = read_manifest(bundle)
    if not manifest.target.startswith("onnx") or manifest.precision != "fp32":
        raise BenchmarkError(f"the naive baseline needs an FP32 ONNX {role} bundle, got {manifest.target}")
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads)
    so.log_severity_level = 3
    session = ort.InferenceSession(str(manifest.model_file), so, providers=["CPUExecutionProvider"])
    return manifest, session, int(so.intra_op_num_threads)


class NaiveOrtDetector:
    """The reference code's way: the full frame into a plain ONNX Runtime session, no gfn-edge runtime.

    Only the thread count is set (so the comparison is at equal threads); everything else is
    ONNX Runtime's default. Preprocessing is the reference's: float32 frame minus the BGR mean,
    transposed to NCHW. Decoding uses the project's decoder (the same maths as the reference).
    """

    def __init__(self, bundle: str | os.PathLike[str], threads: int):
        self.manifest, self.session, self.threads = _plain_session(bundle, threads, "detector")
        self.input_name = self.session.get_inputs()[0].name
        shape = self.session.get_inputs()[0].shape
        self.input_size = (shape[3], shape[2]) if all(isinstance(d, int) for d in shape[2:]) else None
        self.anchors = self.manifest.anchors
        self.mean = np.asarray(self.manifest.preprocess.mean, np.float32)
        self.names = [o.tensor for o in self.manifest.outputs]

    def detect(self, frame: np.ndarray) -> Detections:
        h, w = frame.shape[:2]
        if self.input_size is not None and self.input_size != (w, h):
            raise BenchmarkError(f"naive detector takes {self.input_size[0]}x{self.input_size[1]} frames, got {w}x{h}")
        x = (np.float32(frame) - self.mean).transpose(2, 0, 1)[None]
        loc, conf, landms = self.session.run(self.names, {self.input_name: np.ascontiguousarray(x)})
        return postprocess(loc, conf, landms, self.anchors, (w, h), 1.0, 0.5, 0.4)


class NaiveOrtEmbedder:
    """A recogniser bundle's ONNX file in a plain ONNX Runtime session (threads set, nothing else)."""

    def __init__(self, bundle: str | os.PathLike[str], threads: int):
        self.manifest, self.session, self.threads = _plain_session(bundle, threads, "recogniser")
        self.input_name = self.session.get_inputs()[0].name
        self.nchw = (self.manifest.inputs[0].layout or "NCHW") == "NCHW"
        self.pre = self.manifest.preprocess
        # crop size and template from the manifest, as gfn-edge's Embedder takes them
        self.geometry = CropGeometry.from_alignment(self.manifest.model_spec.alignment, self.pre.input_size[0] if self.pre.input_size else None)

    @property
    def alignment(self) -> tuple[np.ndarray, int]:
        return self.geometry.template, self.geometry.size

    def embed(self, crops: np.ndarray) -> np.ndarray:
        x = normalize(crops, self.pre)
        if self.nchw:
            x = x.transpose(0, 3, 1, 2)
        emb = self.session.run(None, {self.input_name: np.ascontiguousarray(x)})[0]
        return emb / np.linalg.norm(emb, axis=1, keepdims=True)
