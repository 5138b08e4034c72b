"""What a model is, as data: preprocessing, anchors, outputs, weights — and its JSON form.

The registry (:mod:`gfn_edge.registry`) holds one :class:`ModelSpec` per model variant; gfn-export
writes ``ModelSpec.to_dict()`` into every bundle's manifest under ``spec`` and the device reads it
back with ``ModelSpec.from_dict``, so both sides share one typed contract instead of string keys.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from .checks import check_input_size

# ArcFace's five-point template for 112x112 crops (left eye, right eye, nose, mouth left, mouth right).
ARCFACE_112_TEMPLATE: tuple[tuple[float, float], ...] = (
    (38.2946, 51.6963),
    (73.5318, 51.5014),
    (56.0252, 71.7366),
    (41.5493, 92.3655),
    (70.7299, 92.2041),
)


@dataclass(frozen=True)
class Preprocess:
    """How a picture becomes the model's input tensor."""

    input_size: tuple[int, int] | None  # (width, height); None: any size (fully convolutional)
    color: str  # "BGR" or "RGB": channel order the model expects
    mean: tuple[float, float, float]  # subtracted from 0..255 pixels, in the model's channel order
    std: tuple[float, float, float]
    resize: str  # "letterbox" (keep aspect, pad right/bottom), "aligned" (already 112x112), "face-crop"
    layout: str = "NCHW"  # layout of the source model; artifacts record their own in the manifest
    crop_scale: float | None = None  # face-crop only: box enlarged by this factor before resizing

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocess:
        size = data.get("input_size")
        return cls(
            input_size=tuple(size) if size else None,
            color=data["color"],
            mean=tuple(data["mean"]),
            std=tuple(data["std"]),
            resize=data["resize"],
            layout=data.get("layout", "NCHW"),
            crop_scale=data.get("crop_scale"),
        )


@dataclass(frozen=True)
class Anchors:
    """RetinaFace prior boxes: per-level square sizes (pixels), strides and box-coding variance."""

    min_sizes: tuple[tuple[int, ...], ...]
    steps: tuple[int, ...]
    variance: tuple[float, float]
    clip: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Anchors:
        return cls(
            min_sizes=tuple(tuple(m) for m in data["min_sizes"]),
            steps=tuple(data["steps"]),
            variance=tuple(data["variance"]),
            clip=bool(data.get("clip", False)),
        )


@dataclass(frozen=True)
class OutputSpec:
    name: str
    shape: str
    meaning: str

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OutputSpec:
        return cls(name=data["name"], shape=str(data.get("shape", "")), meaning=str(data.get("meaning", "")))


@dataclass(frozen=True)
class WeightSource:
    """Where a checkpoint comes from; ``mirror_path`` is relative to a mirror folder."""

    format: str  # "pytorch" | "keras-h5"
    mirror_path: str | None = None
    url: str | None = None
    sha256: str | None = None
    licence: str = "unknown"
    upstream: str = ""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WeightSource:
        return cls(
            format=data["format"],
            mirror_path=data.get("mirror_path"),
            url=data.get("url"),
            sha256=data.get("sha256"),
            licence=data.get("licence", "unknown"),
            upstream=data.get("upstream", ""),
        )


@dataclass(frozen=True)
class ModelSpec:
    name: str
    task: str  # "detect" | "embed" | "liveness"
    family: str  # "retinaface" | "ghostfacenet" | "minifasnet"
    description: str
    arch: dict[str, Any]
    preprocess: Preprocess
    outputs: tuple[OutputSpec, ...]
    weights: WeightSource | None
    anchors: Anchors | None = None
    alignment: dict[str, Any] | None = None
    liveness: dict[str, Any] | None = None
    params: int | None = None  # parameter count of the reference model, when known exactly
    default_threshold: float | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)
    # Known-good INT8 settings per target for the registry weights ({"method", "float_groups"}),
    # found by gfn-export's remedy search on real faces. Tried first; the search still runs
    # (and the artifact is still verified) whenever a recipe misses the tolerance.
    int8_recipes: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def has_release_weights(self) -> bool:
        return self.weights is not None and (self.weights.url is not None or self.weights.mirror_path is not None)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict: what a bundle manifest stores under ``spec``."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        """The inverse of :meth:`to_dict`; keys added after a bundle was written take their defaults.

        Raises KeyError/TypeError/ValueError on malformed input; manifests are checked first by
        :mod:`gfn_edge.manifest_schema`, which names the offending key.
        """
        anchors = data.get("anchors")
        weights = data.get("weights")
        return cls(
            name=data["name"],
            task=data["task"],
            family=data.get("family", ""),
            description=data.get("description", ""),
            arch=dict(data.get("arch") or {}),
            preprocess=Preprocess.from_dict(data["preprocess"]),
            outputs=tuple(OutputSpec.from_dict(o) for o in data.get("outputs") or ()),
            weights=WeightSource.from_dict(weights) if weights else None,
            anchors=Anchors.from_dict(anchors) if anchors else None,
            alignment=dict(data["alignment"]) if data.get("alignment") else None,
            liveness=dict(data["liveness"]) if data.get("liveness") else None,
            params=data.get("params"),
            default_threshold=data.get("default_threshold"),
            tags=tuple(data.get("tags") or ()),
            int8_recipes={k: dict(v) for k, v in (data.get("int8_recipes") or {}).items()},
        )

    def with_input_size(self, size: tuple[int, int] | None) -> ModelSpec:
        """This spec at another detector input size (None: the model's own), checked first."""
        return replace(self, preprocess=replace(self.preprocess, input_size=None if size is None else check_input_size(size)))
