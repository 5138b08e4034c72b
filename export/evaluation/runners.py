"""How each model under evaluation turns crops into embeddings and pictures into detections.

Bundles run through the device classes themselves (:class:`gfn_edge.detector.Detector`,
:class:`gfn_edge.embedder.Embedder`), so gfn-eval measures exactly what a board runs. A reference
(the original framework, via :func:`gfn_edge.export.reference.load_reference`) gets its tensors
from the same builders (:func:`gfn_edge.preprocess.detector_tensor` and
:func:`gfn_edge.preprocess.crop_tensor`) and the same decoder, so a difference in a table is a
difference between models, never between pipelines. Data is streamed batch by batch through
every model at once: each picture is read, decoded and aligned once per run, whatever the
number of models.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import cv2
import numpy as np

from gfn_edge.detector import Detector as DeviceDetector
from gfn_edge.embedder import Embedder as DeviceEmbedder
from gfn_edge.preprocess import Letterbox, crop_tensor, detector_tensor
from gfn_edge.progress import Progress
from gfn_edge.registry import Anchors, Preprocess
from gfn_edge.retinaface_decode import Detections, postprocess

log = logging.getLogger(__name__)


class CropSource(Protocol):
    """Aligned BGR crops addressed by index; ``failed`` collects indices that could not be read."""

    failed: set[int]

    def __len__(self) -> int: ...

    def load(self, start: int, stop: int) -> np.ndarray: ...


@dataclass
class ArrayCrops:
    crops: np.ndarray
    failed: set[int] = field(default_factory=set)

    def __len__(self) -> int:
        return len(self.crops)

    def load(self, start: int, stop: int) -> np.ndarray:
        return self.crops[start:stop]


# ----------------------------------------------------------------------------- recognisers


@dataclass
class Embedder:
    """A recogniser: ``fn`` maps BGR uint8 crops (N, H, W, 3) to (N, D) embeddings."""

    name: str
    kind: str  # "reference" | "bundle" | anything a caller likes
    runs_on: str
    fn: Callable[[np.ndarray], np.ndarray]
    info: dict[str, Any] = field(default_factory=dict)

    def embed(self, crops: np.ndarray) -> np.ndarray:
        return np.asarray(self.fn(crops), dtype=np.float32)


def _fit(crops: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Crops resized to the model's (w, h) when a data set stores them at another size."""
    if size is None or tuple(crops.shape[2:0:-1]) == tuple(size):
        return crops
    return np.stack([cv2.resize(c, tuple(size), interpolation=cv2.INTER_LINEAR) for c in crops])


def reference_embedder(model: str | os.PathLike[str], arch: str | None = None, mirror: str | None = None, batch_size: int = 64) -> Embedder:
    from gfn_edge.export.reference import load_reference

    ref = load_reference(model, arch=arch, mirror=mirror)
    if ref.spec.task != "embed":
        raise ValueError(f"{ref.spec.name} is a {ref.spec.task} model; face verification needs a recogniser")
    pre = ref.spec.preprocess

    def run(crops: np.ndarray) -> np.ndarray:
        return ref.run(crop_tensor(_fit(crops, pre.input_size), pre), batch_size)["embedding"]

    runs_on = f"{ref.framework['framework']} ({ref.framework['device']})"
    return Embedder(ref.spec.name, "reference", runs_on, run, {"source": ref.source, "framework": ref.framework})


def _bundle_label(model) -> str:
    m = model.manifest
    precision = "" if m.precision in m.target else f" {m.precision}"
    return f"{m.target}{precision} / {model.backend}"


def bundle_embedder(path: str | os.PathLike[str], backend: str = "auto", threads: int | None = None, batch_size: int = 64) -> Embedder:
    """A recogniser bundle run by the device :class:`gfn_edge.embedder.Embedder` (raw outputs: the flip sum comes first)."""
    device = DeviceEmbedder(path, backend=backend, threads=threads)

    def run(crops: np.ndarray) -> np.ndarray:
        fitted = _fit(crops, device.crop_size)
        return np.concatenate([device.embed_raw(fitted[i : i + batch_size]) for i in range(0, len(fitted), batch_size)])

    m = device.manifest
    return Embedder(Path(path).name, "bundle", _bundle_label(device.model), run, {"bundle": str(path), "model": m.model, "target": m.target})


def unique_names(items: Sequence[Any]) -> None:
    """Give models with the same name a numeric suffix (results are keyed by name)."""
    seen: dict[str, int] = {}
    for it in items:
        n = seen.get(it.name, 0)
        seen[it.name] = n + 1
        if n:
            it.name = f"{it.name}#{n + 1}"


def embed_source(embedders: Sequence[Embedder], source: CropSource, flip: bool, batch_size: int = 64, desc: str = "embedding") -> dict[str, np.ndarray]:
    """Embeddings of every crop of ``source`` by every model; with ``flip`` each is crop + mirrored crop.

    The flip sum is taken before any normalisation, as insightface and GhostFaceNets do.
    """
    parts: dict[str, list[np.ndarray]] = {e.name: [] for e in embedders}
    with Progress(len(source), desc, unit="face") as bar:
        for start in range(0, len(source), batch_size):
            crops = source.load(start, min(start + batch_size, len(source)))
            mirrored = np.ascontiguousarray(crops[:, :, ::-1]) if flip else None
            for e in embedders:
                emb = e.embed(crops)
                if mirrored is not None:
                    emb = emb + e.embed(mirrored)
                parts[e.name].append(emb.astype(np.float32))
            bar.update(len(crops))
    return {name: np.concatenate(p) if p else np.zeros((0, 0), np.float32) for name, p in parts.items()}


# ----------------------------------------------------------------------------- detectors


@dataclass
class Detector:
    """A RetinaFace-style detector: raw head outputs for a normalised NHWC input, decoded here.

    ``size`` is the letterbox input (w, h); None runs each picture at its own size, padded to the
    largest anchor stride (models with a dynamic input only), exactly as the device does.
    ``device`` is the :class:`gfn_edge.detector.Detector` a bundle runs in; a reference has none.
    """

    name: str
    kind: str
    runs_on: str
    run: Callable[[np.ndarray], dict[str, np.ndarray]]
    preprocess: Preprocess
    anchors: Anchors
    size: tuple[int, int] | None
    info: dict[str, Any] = field(default_factory=dict)
    device: DeviceDetector | None = field(default=None, repr=False)

    @property
    def input_label(self) -> str:
        return f"{self.size[0]}x{self.size[1]} letterbox" if self.size else "original size"

    def tensor(self, image: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        """The model input for a BGR picture: the device's own builder for a bundle, the same builder for a reference."""
        if self.device is not None:
            return self.device.tensor(image)
        return detector_tensor(image, self.preprocess, self.size, max(self.anchors.steps))

    def detect(self, image: np.ndarray, score_threshold: float = 0.02, nms_threshold: float = 0.4) -> Detections:
        x, box = self.tensor(image)
        out = self.run(x)
        return postprocess(out["loc"], out["conf"], out["landms"], self.anchors, (box.width, box.height), box.scale, score_threshold, nms_threshold)


def reference_detector(model: str | os.PathLike[str], size: str | tuple[int, int] = "model", arch: str | None = None, mirror: str | None = None) -> Detector:
    """``size``: "model" (the registry input size), "original", or (w, h)."""
    from gfn_edge.export.reference import load_reference

    ref = load_reference(model, arch=arch, mirror=mirror)
    if ref.spec.task != "detect":
        raise ValueError(f"{ref.spec.name} is a {ref.spec.task} model; detection evaluation needs a detector")
    chosen = ref.spec.preprocess.input_size if size == "model" else (None if size == "original" else tuple(size))
    runs_on = f"{ref.framework['framework']} ({ref.framework['device']})"
    return Detector(ref.spec.name, "reference", runs_on, lambda x: ref.run(x, 1), ref.spec.preprocess, ref.spec.anchors, chosen, {"source": ref.source})


def bundle_detector(path: str | os.PathLike[str] | Any, backend: str = "auto", threads: int | None = None) -> Detector:
    """A detection bundle (folder, or an opened model) in the device :class:`gfn_edge.detector.Detector`, at its own input size."""
    device = DeviceDetector(path, backend=backend, threads=threads)
    m = device.manifest
    # results are keyed by the bundle folder's name, as for recognisers
    name = Path(path).name if isinstance(path, (str, os.PathLike)) else (m.path.name if m.path else Path(device.model.path).name)
    return Detector(
        name,
        "bundle",
        _bundle_label(device.model),
        device.model.run,
        device.preprocess,
        device.anchors,
        device.input_size,
        {"bundle": str(path), "model": m.model, "target": m.target},
        device,
    )


class DetectorFaceFinder:
    """Adapts a :class:`Detector` to what :func:`gfn_edge.export.faces.find_faces` expects."""

    def __init__(self, detector: Detector, score_threshold: float = 0.9, key: str = ""):
        self.detector = detector
        self.score_threshold = score_threshold
        self._key = key

    @property
    def signature(self) -> str:
        return f"{self.detector.name}:{self._key}:{self.detector.size}:{self.score_threshold}"

    def detect(self, image: np.ndarray) -> Detections:
        return self.detector.detect(image, self.score_threshold, 0.4)


def bundle_face_finder(path: str | os.PathLike[str], score_threshold: float = 0.9) -> DetectorFaceFinder:
    from gfn_edge.manifest import read_manifest

    m = read_manifest(path)
    key = hashlib.sha256(m.sha256.get(m.files["model"], "").encode()).hexdigest()[:16]
    return DetectorFaceFinder(bundle_detector(path), score_threshold, key)
