"""Face embeddings on the device: aligned crops in, L2-normalised vectors out.

Colour order, mean/std and crop size come from the bundle's manifest. Comparable embeddings
share a :attr:`Embedder.signature` (model + source checkpoint hash), whatever backend or precision
produced them, so a gallery can refuse vectors from another model.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import numpy as np

from .align import CropGeometry
from .checks import check_finite
from .detector import open_for_task
from .errors import (
    ImageError,
    InvalidArgumentError,
    InvalidTypeError,
    ManifestError,
    NonFiniteError,
)
from .image import describe, to_bgr_uint8
from .manifest import Manifest
from .metrics import l2_normalize
from .preprocess import crop_tensor

log = logging.getLogger(__name__)

# Crops run through the model this many at a time: 2,000 crops at once would hold gigabytes of
# activations; chunks keep memory flat while still amortising the per-call overhead.
EMBED_CHUNK = 32


class Embedder:
    """GhostFaceNets-family recogniser from a gfn-export bundle.

    ``flip=True`` adds the embedding of the mirrored crop before normalising: usually a small
    accuracy gain for twice the compute.
    """

    def __init__(self, bundle: str | os.PathLike[str] | Any, backend: str = "auto", threads: int | None = None, flip: bool = False):
        if not isinstance(flip, (bool, np.bool_)):
            raise InvalidTypeError(f"flip must be True or False, got {flip!r}")
        self.model = open_for_task(bundle, "embed", backend, threads)
        self.manifest: Manifest = self.model.manifest
        self.preprocess = self.manifest.preprocess
        self.flip = bool(flip)
        hw = self.model.input_hw
        size = (hw[1], hw[0]) if hw else self.preprocess.input_size
        if size is None:
            raise ManifestError(f"{self.manifest.path}: recogniser {self.manifest.model} records no input size")
        self.crop_size: tuple[int, int] = (int(size[0]), int(size[1]))  # (w, h)
        dims = self.manifest.outputs[0].shape if self.manifest.outputs else []
        self.dim: int | None = int(dims[-1]) if dims and isinstance(dims[-1], int) else None
        self._lock = threading.Lock()

    @property
    def signature(self) -> str:
        """Embeddings with equal signatures are comparable (same model and source weights)."""
        return self.manifest.signature

    @property
    def geometry(self) -> CropGeometry:
        """Crop size and template this recogniser was trained on (from its manifest's alignment entry)."""
        return CropGeometry.from_alignment(self.manifest.model_spec.alignment, self.crop_size[0])

    @property
    def alignment(self) -> tuple[np.ndarray, int]:
        """(template points in crop pixels, crop size): :attr:`geometry` as a pair, for older callers."""
        geometry = self.geometry
        return geometry.template, geometry.size

    @property
    def default_threshold(self) -> float | None:
        value = self.manifest.model_spec.default_threshold
        return float(value) if value is not None else None

    def _batch(self, crops: np.ndarray) -> np.ndarray:
        if isinstance(crops, (list, tuple)):
            crops = np.stack([self._batch(c)[0] for c in crops]) if len(crops) else np.zeros((0, self.crop_size[1], self.crop_size[0], 3), np.uint8)
        if not isinstance(crops, np.ndarray):
            raise ImageError(f"expected aligned face crops as a numpy array, got {describe(crops)}")
        w, h = self.crop_size
        if crops.ndim == 4 and crops.shape[1:] == (h, w, 3) and crops.dtype == np.uint8:
            return crops
        if crops.ndim == 4:
            if crops.shape[1:3] != (h, w):
                raise ImageError(f"expected aligned {w}x{h} crops (K, {h}, {w}, 3), got {describe(crops)}; align faces first")
            return np.stack([to_bgr_uint8(c) for c in crops]) if len(crops) else np.zeros((0, h, w, 3), np.uint8)
        if crops.ndim in (2, 3) and crops.shape[:2] == (h, w):
            return to_bgr_uint8(crops)[None]
        raise ImageError(f"expected one aligned {w}x{h} crop or a (K, {h}, {w}, 3) batch, got {describe(crops)}; align faces first")

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """(K, D) float32 unit vectors for a (K, H, W, 3) uint8 BGR batch of aligned crops (or one crop).

        Large batches run ``EMBED_CHUNK`` crops at a time, so memory stays bounded whatever K is.
        A model that returns NaN, infinite or all-zero vectors raises :class:`NonFiniteError`:
        such a vector must never reach a gallery search.
        """
        batch = self._batch(crops)
        if len(batch) == 0:
            return np.zeros((0, self.dim or 0), np.float32)
        parts = [self._embed_chunk(batch[i : i + EMBED_CHUNK]) for i in range(0, len(batch), EMBED_CHUNK)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _embed_chunk(self, batch: np.ndarray) -> np.ndarray:
        # flip: the mirrored crops ride in the same run (one call is cheaper than two on every backend)
        views = np.concatenate([batch, batch[:, :, ::-1]]) if self.flip else batch
        emb = self.embed_raw(views)
        if self.flip:
            emb = emb[: len(batch)] + emb[len(batch) :]
        if np.any(np.linalg.norm(emb, axis=1) < 1e-12):
            raise NonFiniteError(f"{self.manifest.model} returned an all-zero embedding: it cannot be normalised or compared")
        return l2_normalize(emb).astype(np.float32)

    def embed_raw(self, crops: np.ndarray) -> np.ndarray:
        """(K, D) float32 model outputs before any normalisation or flip, one row per crop.

        For evaluation, which combines views (crop + mirrored crop) before normalising, as the
        recognisers' papers do; :meth:`embed` is built on it.
        """
        batch = self._batch(crops)
        if len(batch) == 0:
            return np.zeros((0, self.dim or 0), np.float32)
        x = crop_tensor(batch, self.preprocess)
        with self._lock:
            out = self.model.run(x)
        emb = out.get("embedding")
        if emb is None:
            emb = next(iter(out.values()))
        return check_finite(np.asarray(emb, np.float32).reshape(len(x), -1), f"{self.manifest.model} embeddings")

    def embed_one(self, crop: np.ndarray) -> np.ndarray:
        """(D,) unit vector for one aligned crop."""
        return self.embed(crop)[0]

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        return self.embed(crops)

    def __repr__(self) -> str:
        return f"<Embedder {self.manifest.model} {self.manifest.target} on {self.model.backend}, flip={self.flip}>"


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of two embeddings (normalised again, so raw vectors work too)."""
    a = check_finite(a, "embedding a").astype(np.float64).ravel()
    b = check_finite(b, "embedding b").astype(np.float64).ravel()
    if a.shape != b.shape:
        raise InvalidArgumentError(f"embeddings differ in size: {a.shape[0]} vs {b.shape[0]}")
    return float(np.dot(a, b) / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))
