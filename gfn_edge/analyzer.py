"""The whole device pipeline in one call: detect, align, embed, judge quality (and liveness).

Faces that fail a quality gate are still returned, marked with the reasons, because the right
reaction depends on the app: a door unit may ask the person to step closer, a photo indexer may
keep the face anyway.

    analyzer = FaceAnalyzer("bundles/retinaface-mnet025-onnx", "bundles/ghostfacenet-dsitweed-w0.5-e16-onnx")
    for face in analyzer.analyze(cv2.imread("door.jpg")):
        if face.passed:
            print(face.box, face.similarity(enrolled_face))
        else:
            print("ask to retry:", face.rejected_reasons)

The stages are public, and every consumer in the project (the door, gfn-eval, the benchmark)
calls them rather than assembling its own pipeline: ``detect`` (picture -> detections),
``align`` (-> crops at the recogniser's size and template), ``recognize`` (align, embed in one
batch, quality gates, ``score_liveness``). The door, for one, detects every frame but recognises
only the tracks that need it.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .align import CropGeometry, align_faces, default_geometry
from .checks import check_number
from .detector import Detector
from .embedder import Embedder, cosine_similarity
from .errors import InvalidArgumentError, InvalidTypeError
from .quality import Quality, QualityGates, assess
from .retinaface_decode import Detections
from .threads import apply_threads

log = logging.getLogger(__name__)

BundleOr = Any  # a bundle folder (str / PathLike) or an already built Detector / Embedder


@runtime_checkable
class LivenessScorer(Protocol):
    """Anything that rates a face as live: higher is more likely a real person in front of the camera."""

    def score(self, image: np.ndarray, box: np.ndarray) -> float: ...


def _floats(values: np.ndarray, digits: int | None = None) -> list:
    arr = np.asarray(values, dtype=np.float64)
    if digits is not None:
        arr = np.round(arr, digits)
    return arr.tolist()


@dataclass
class Face:
    """One face found in a picture, with everything the pipeline measured about it."""

    box: np.ndarray  # (4,) x1, y1, x2, y2 in picture pixels
    score: float  # detector confidence
    landmarks: np.ndarray  # (5, 2): left eye, right eye, nose, mouth left, mouth right
    embedding: np.ndarray | None = None  # (D,) unit vector, when a recogniser is set
    quality: Quality | None = None
    liveness: float | None = None  # the liveness scorer's output, when one is set
    rejected_reasons: list[str] = field(default_factory=list)  # failed quality gates
    crop: np.ndarray | None = field(default=None, repr=False)  # aligned BGR crop the embedding came from

    @property
    def passed(self) -> bool:
        """True when every quality gate passed."""
        return not self.rejected_reasons

    @property
    def size(self) -> float:
        """Shorter side of the box, pixels."""
        return float(min(self.box[2] - self.box[0], self.box[3] - self.box[1]))

    @property
    def area(self) -> float:
        return float((self.box[2] - self.box[0]) * (self.box[3] - self.box[1]))

    def similarity(self, other: Face) -> float:
        """Cosine similarity of two faces' embeddings."""
        if self.embedding is None or other.embedding is None:
            raise InvalidArgumentError("both faces need embeddings: build the FaceAnalyzer with a recognizer")
        return cosine_similarity(self.embedding, other.embedding)

    def to_dict(self, embedding: bool = True) -> dict[str, Any]:
        """Plain JSON types only (lists and floats), ready for ``json.dumps``."""
        out: dict[str, Any] = {
            "box": _floats(self.box, 2),
            "score": round(float(self.score), 5),
            "landmarks": _floats(self.landmarks, 2),
        }
        if embedding:
            out["embedding"] = None if self.embedding is None else _floats(self.embedding, 6)
        out["quality"] = None if self.quality is None else self.quality.to_dict()
        out["liveness"] = None if self.liveness is None else round(float(self.liveness), 5)
        out["passed"] = self.passed
        out["rejected_reasons"] = list(self.rejected_reasons)
        return out


def largest_face(faces: list[Face]) -> Face | None:
    """The face with the largest box (the one nearest the camera), or None."""
    return max(faces, key=lambda f: f.area) if faces else None


class FaceAnalyzer:
    """Detector + optional recogniser + optional liveness scorer + quality gates, as public stages.

    ``detector`` and ``recognizer`` take bundle folders (opened with ``backend``/``threads``) or
    ready :class:`Detector` / :class:`Embedder` objects. ``liveness`` is any object with
    ``score(image_bgr, box) -> float`` (e.g. :class:`gfn_edge.liveness.Liveness`).
    ``max_faces`` / ``min_face_size`` limit what the detector returns (see :meth:`Detector.detect`);
    ``gates`` mark faces, they never drop them (default :class:`QualityGates`).
    ``threads`` sizes the runtimes' pools and OpenCV's (:func:`gfn_edge.threads.apply_threads`).

    The stages, which every consumer (the door, gfn-eval, the benchmark) calls instead of
    assembling its own pipeline: :meth:`detect` -> :meth:`align` -> :meth:`recognize` (align,
    embed, quality, :meth:`score_liveness`); :meth:`analyze` runs them all.
    """

    def __init__(
        self,
        detector: BundleOr,
        recognizer: BundleOr | None = None,
        liveness: LivenessScorer | None = None,
        max_faces: int | None = None,
        min_face_size: float = 0,
        gates: QualityGates | None = None,
        backend: str = "auto",
        threads: int | None = None,
    ):
        if max_faces is not None and (isinstance(max_faces, bool) or not isinstance(max_faces, (int, np.integer)) or max_faces < 1):
            raise InvalidArgumentError(f"max_faces must be a whole number >= 1 (or None for all), got {max_faces!r}")
        min_face_size = check_number(min_face_size, "min_face_size", 0.0)
        if gates is not None and not isinstance(gates, QualityGates):
            raise InvalidTypeError(f"gates must be a QualityGates, got {type(gates).__name__}")
        apply_threads(threads)
        self.threads = threads
        self.detector = detector if isinstance(detector, Detector) else Detector(detector, backend=backend, threads=threads)
        if recognizer is None or isinstance(recognizer, Embedder):
            self.recognizer: Embedder | None = recognizer
        else:
            self.recognizer = Embedder(recognizer, backend=backend, threads=threads)
        if liveness is not None and not callable(getattr(liveness, "score", None)):
            raise InvalidTypeError(f"liveness must have a score(image, box) -> float method; got {type(liveness).__name__}")
        self.liveness = liveness
        self.max_faces = max_faces
        self.min_face_size = min_face_size
        self.gates = gates if gates is not None else QualityGates()
        # without a recogniser, faces are still cut (blur is measured on the crop) at the registry's crop
        self.geometry: CropGeometry = self.recognizer.geometry if self.recognizer is not None else default_geometry()

    @property
    def threshold(self) -> float | None:
        """The recogniser's default same-person threshold on cosine similarity (from its manifest)."""
        return self.recognizer.default_threshold if self.recognizer is not None else None

    @property
    def signature(self) -> str | None:
        return self.recognizer.signature if self.recognizer is not None else None

    # --- stages ------------------------------------------------------------------------------
    def detect(self, image: np.ndarray) -> Detections:
        """Faces in ``image`` (any picture the detector accepts), limited by ``max_faces`` / ``min_face_size``."""
        return self.detector.detect_bgr(self.detector.to_bgr(image), self.max_faces, self.min_face_size)

    def align(self, image_bgr: np.ndarray, detections: Detections) -> np.ndarray:
        """(N, S, S, 3) uint8 BGR crops of the detected faces, S and template from the recogniser's manifest."""
        if len(detections) == 0:
            return np.zeros((0, self.geometry.size, self.geometry.size, 3), np.uint8)
        return align_faces(image_bgr, detections.landmarks, self.geometry)

    def recognize(self, image: np.ndarray, detections: Detections) -> list[Face]:
        """Align, embed (one batch), judge quality and score liveness for ``detections`` made on ``image``."""
        return self._recognize_bgr(self.detector.to_bgr(image), detections)

    def score_liveness(self, image_bgr: np.ndarray, faces: list[Face]) -> None:
        """Fill each face's :attr:`Face.liveness` from the liveness scorer (nothing without one)."""
        if self.liveness is None:
            return
        for face in faces:
            face.liveness = float(self.liveness.score(image_bgr, face.box))

    def analyze(self, image: np.ndarray) -> list[Face]:
        """Every face in ``image`` (best detector score first), each measured and gate-checked."""
        bgr = self.detector.to_bgr(image)
        return self._recognize_bgr(bgr, self.detector.detect_bgr(bgr, self.max_faces, self.min_face_size))

    def faces_from(self, bgr: np.ndarray, dets: Detections) -> list[Face]:
        """Deprecated name of :meth:`recognize` (kept for callers written before the stages were public)."""
        warnings.warn("FaceAnalyzer.faces_from is deprecated; use FaceAnalyzer.recognize", DeprecationWarning, stacklevel=2)
        return self.recognize(bgr, dets)

    def _recognize_bgr(self, bgr: np.ndarray, dets: Detections) -> list[Face]:
        if len(dets) == 0:
            return []
        crops = self.align(bgr, dets)
        embeddings = self.recognizer.embed(crops) if self.recognizer is not None else None
        faces = []
        for i in range(len(dets)):
            quality = assess(dets.boxes[i], dets.landmarks[i], crops[i])
            faces.append(
                Face(
                    box=dets.boxes[i].copy(),
                    score=float(dets.scores[i]),
                    landmarks=dets.landmarks[i].copy(),
                    embedding=None if embeddings is None else embeddings[i],
                    quality=quality,
                    rejected_reasons=self.gates.check(quality),
                    crop=crops[i],
                )
            )
        self.score_liveness(bgr, faces)
        return faces

    def __call__(self, image: np.ndarray) -> list[Face]:
        return self.analyze(image)

    def __repr__(self) -> str:
        return f"<FaceAnalyzer {self.detector!r} {self.recognizer!r} liveness={type(self.liveness).__name__ if self.liveness else None}>"


__all__ = ["Face", "FaceAnalyzer", "LivenessScorer", "largest_face"]
