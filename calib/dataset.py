"""A calibration set on disk: model inputs as uint8 pictures plus a manifest of how they were made.

Samples are stored before normalisation (letterboxed pictures for detectors, aligned crops for
recognisers, face patches for liveness models) so a set is small, inspectable and re-usable by
every INT8 target of the same model; the manifest records the model and its preprocessing, and a
set made for another model or another preprocessing is refused.
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gfn_edge.errors import CalibrationError
from gfn_edge.preprocess import normalize
from gfn_edge.registry import ModelSpec, Preprocess

log = logging.getLogger(__name__)

FORMAT = "gfn-edge-calibration"
VERSION = 1
RECOMMENDED_MINIMUM = 100


def _preprocess_key(pre: dict[str, Any]) -> dict[str, Any]:
    keys = ("input_size", "color", "mean", "std", "resize", "crop_scale")
    return {k: (list(pre[k]) if isinstance(pre.get(k), (list, tuple)) else pre.get(k)) for k in keys}


@dataclass
class CalibrationSet:
    samples: np.ndarray  # (N, H, W, 3) uint8 BGR, exactly what the device feeds the model before normalising
    manifest: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(len(self.samples))

    @property
    def model(self) -> str:
        return self.manifest["model"]

    @property
    def preprocess(self) -> Preprocess:
        return Preprocess.from_dict(self.manifest["preprocess"])

    @property
    def source_images(self) -> list[str]:
        """Pictures the samples came from (verification must not use them)."""
        return [s["image"] for s in self.manifest.get("sources", [])]

    @property
    def augmentation(self) -> dict[str, Any]:
        """Whether copies were added, how many per sample, and whether by default (sets saved before
        automatic augmentation record only ``augment``: two copies or none)."""
        augment = bool(self.manifest.get("augment", False))
        return {
            "augment": augment,
            "augment_copies": self.manifest.get("augment_copies", 2 if augment else 0),
            "augment_auto": self.manifest.get("augment_auto", False),
            "mosaics": self.manifest.get("mosaics"),  # detector sets: k x k grids of shrunken pictures
            "recaptures": self.manifest.get("recaptures"),  # liveness sets: the faces as a print or a screen shows them
        }

    def inputs(self, limit: int | None = None) -> np.ndarray:
        """Normalised NHWC float32 model inputs."""
        samples = self.samples if limit is None else self.samples[:limit]
        return normalize(samples, self.preprocess)

    def check_compatible(self, spec: ModelSpec) -> None:
        """Refuse a set made for another model or with other preprocessing, saying which."""
        if self.manifest.get("task") != spec.task:
            raise CalibrationError(
                f"calibration set was made for {self.manifest.get('model')} ({self.manifest.get('task')}), not for the {spec.task} model {spec.name}"
            )
        arch = next((t.split(":", 1)[1] for t in spec.tags if t.startswith("arch:")), spec.name)
        if self.manifest.get("model") not in (spec.name, arch):
            raise CalibrationError(
                f"calibration set was made for {self.manifest.get('model')}, not for {spec.name}; "
                f"build one with: gfn-calib build --model {spec.name} --images DIR"
            )
        expected = tuple(spec.preprocess.input_size) if spec.preprocess.input_size else None
        have_size = (int(self.samples.shape[2]), int(self.samples.shape[1]))
        if expected and have_size != expected:
            raise CalibrationError(
                f"calibration samples are {have_size[0]}x{have_size[1]}, {spec.name} takes "
                f"{expected[0]}x{expected[1]}; rebuild the set for this input size (gfn-calib build --input-size)"
            )
        want = _preprocess_key(spec.to_dict()["preprocess"])
        have = _preprocess_key(self.manifest.get("preprocess", {}))
        diff = [k for k in want if want[k] != have.get(k) and k != "input_size"]
        if diff:
            detail = ", ".join(f"{k}: set {have.get(k)} vs model {want[k]}" for k in diff)
            raise CalibrationError(f"calibration set preprocessing differs from {spec.name}'s ({detail}); rebuild it")

    # --- files ---------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``path`` (.npz, samples + manifest) and a readable ``path.json`` beside it, atomically."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(".npz")
        path.parent.mkdir(parents=True, exist_ok=True)
        manifest = dict(self.manifest, format=FORMAT, version=VERSION, num_samples=len(self))
        tmp = path.with_name(path.stem + ".tmp.npz")
        np.savez_compressed(tmp, samples=self.samples, manifest=np.asarray(json.dumps(manifest)))
        os.replace(tmp, path)
        path.with_suffix(".json").write_text(json.dumps(manifest, indent=2) + "\n")
        self.manifest = manifest
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CalibrationSet:
        path = Path(path)
        if not path.is_file():
            raise CalibrationError(f"calibration set {path} does not exist")
        try:
            with np.load(path, allow_pickle=False) as data:
                samples = np.asarray(data["samples"])
                manifest = json.loads(str(data["manifest"]))
        except (KeyError, ValueError, OSError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
            raise CalibrationError(f"{path} is not a gfn-edge calibration set ({exc}); make one with gfn-calib build") from exc
        if manifest.get("format") != FORMAT:
            raise CalibrationError(f"{path} is not a gfn-edge calibration set (format {manifest.get('format')!r})")
        if int(manifest.get("version", 0)) > VERSION:
            raise CalibrationError(f"{path} is calibration-set version {manifest['version']}; this gfn-edge reads up to {VERSION}")
        if samples.dtype != np.uint8 or samples.ndim != 4 or samples.shape[-1] != 3:
            raise CalibrationError(f"{path}: samples must be uint8 (N, H, W, 3), found {samples.dtype} {samples.shape}")
        return cls(samples, manifest)

    def channel_statistics(self, chunk: int = 8) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Per-channel mean and standard deviation of the samples' pixels, a few samples at a time:
        the whole set as float64 at once took 2.4 GB for a 150-sample detector set (gfn-calib build)."""
        if not len(self):
            return None, None
        total = np.zeros(3)
        squares = np.zeros(3)
        count = 0
        for start in range(0, len(self), chunk):
            part = self.samples[start : start + chunk].reshape(-1, 3).astype(np.float64)
            total += part.sum(0)
            squares += (part * part).sum(0)
            count += len(part)
        mean = total / count
        return mean, np.sqrt(np.maximum(squares / count - mean * mean, 0.0))

    def summary(self) -> dict[str, Any]:
        """What ``gfn-calib inspect`` prints: provenance and per-channel statistics."""
        mean, std = self.channel_statistics()
        return {
            "model": self.manifest.get("model"),
            "task": self.manifest.get("task"),
            "samples": len(self),
            "shape": list(self.samples.shape[1:]),
            "source_images": len(self.source_images),
            # sets built since 2026-12-07: a folder of more than twice the cap is drawn from (calib.build.draw_pictures)
            "pictures_found": self.manifest.get("pictures_found"),
            "pictures_drawn": self.manifest.get("pictures_drawn"),
            "skipped": len(self.manifest.get("skipped", [])),
            "duplicates_dropped": self.manifest.get("duplicates_dropped", 0),
            **self.augmentation,
            "seed": self.manifest.get("seed"),
            "bgr_mean": mean.round(2).tolist() if mean is not None else None,
            "bgr_std": std.round(2).tolist() if std is not None else None,
            "created": self.manifest.get("created"),
        }
