"""The manifest schema: every key a bundle's manifest.json must have, its type and its sane range.

A manifest is input from disk, so it is checked before anything trusts it: a missing key, a
string where a number belongs, a zero or NaN ``std`` (NaN embeddings, silently), an input side of
100000 pixels (gigabytes allocated before the first error) or an output dimension of 10^12 each
end in one :class:`~gfn_edge.errors.ManifestError` naming the key, the value and what to do.
Whether the model file really has the shapes the manifest claims is checked when a backend
opens it (:meth:`gfn_edge.runtimes.base.InferenceModel.check_model_shapes`).
"""

from __future__ import annotations

import math
import re
from typing import Any

from .bundle_format import FORMAT, FORMAT_BACKENDS, FORMAT_VERSION, PRECISIONS, TASKS, artifact_format
from .errors import ManifestError

REQUIRED = ("format", "format_version", "model", "task", "target", "precision", "files", "spec", "inputs", "outputs", "sha256")
OPTIONAL_SECTIONS = ("source", "tools", "export", "verification")

MAX_SIDE = 16384  # pixels: an input side beyond this is no face model (a 16k square frame is 3 GB as float32)
MAX_DIM = 1 << 24  # any one tensor dimension (a detector's anchor count at 8k input is ~2.8M)
MAX_ELEMENTS = 1 << 28  # elements of one sample of one tensor (1 GB as float32)
MAX_BATCH = 4096
MAX_EMBEDDING_DIM = 8192
MAX_ALIGN_SIDE = 1024
DTYPES = ("float32", "float16", "int8", "uint8", "int16", "int32", "int64")
LAYOUTS = ("NCHW", "NHWC")
COLORS = ("BGR", "RGB")
RESIZES = ("letterbox", "aligned", "face-crop")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_REEXPORT = "re-export the bundle with gfn-export"


class _Check:
    """Raises ManifestError naming the manifest file and the dotted key that is wrong."""

    def __init__(self, where: str):
        self.where = where

    def fail(self, key: str, problem: str, advice: str = _REEXPORT) -> None:
        raise ManifestError(f"manifest{self.where}: {key} {problem}; {advice}")

    def mapping(self, value: Any, key: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(key, f"must be a JSON object, got {_kind(value)}")
        return value

    def require(self, data: dict[str, Any], keys: tuple[str, ...], prefix: str) -> None:
        missing = [k for k in keys if k not in data]
        if missing:
            self.fail(prefix + ", ".join(missing), "is missing" if len(missing) == 1 else "are missing")

    def text(self, value: Any, key: str, choices: tuple[str, ...] | None = None) -> str:
        if not isinstance(value, str) or not value:
            self.fail(key, f"must be a non-empty string, got {_kind(value)}")
        if choices is not None and value not in choices:
            self.fail(key, f"is {value!r}, expected one of {', '.join(choices)}")
        return value

    def integer(self, value: Any, key: str, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"must be an integer, got {_kind(value)}")
        if not low <= value <= high:
            self.fail(key, f"is {value}, outside the sane range {low}..{high}")
        return value

    def number(self, value: Any, key: str, positive: bool = False, high: float = math.inf) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(key, f"must be a number, got {_kind(value)}")
        if not math.isfinite(value):
            self.fail(key, f"is {value}, not a finite number")
        if positive and value <= 0:
            self.fail(key, f"is {value}; it must be greater than 0")
        if value > high:
            self.fail(key, f"is {value}, above the sane limit {high:g}")
        return float(value)

    def sequence(self, value: Any, key: str, length: int | None = None, min_length: int = 0) -> list[Any]:
        if not isinstance(value, (list, tuple)):
            self.fail(key, f"must be a list, got {_kind(value)}")
        if length is not None and len(value) != length:
            self.fail(key, f"has {len(value)} items, expected {length}")
        if len(value) < min_length:
            self.fail(key, f"has {len(value)} items, expected at least {min_length}")
        return list(value)

    def optional_mapping(self, data: dict[str, Any], name: str, key: str) -> None:
        if data.get(name) is not None:
            self.mapping(data[name], key)


def _kind(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:40] + '…' if len(text) > 40 else text}"


# ------------------------------------------------------------------------------------- manifest
def validate_manifest(data: Any, where: str = "") -> None:
    """Raise ManifestError for the first key of ``data`` (a parsed manifest.json) that is wrong."""
    check = _Check(where)
    if not isinstance(data, dict):
        raise ManifestError(f"manifest{where} is not a JSON object")
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise ManifestError(f"manifest{where} lacks {', '.join(missing)}; {_REEXPORT}")
    if data["format"] != FORMAT:
        raise ManifestError(f"manifest{where} has format {data['format']!r}, expected {FORMAT!r}")
    version = data["format_version"]
    if isinstance(version, bool) or not isinstance(version, int):
        check.fail("format_version", f"must be an integer, got {_kind(version)}")
    if version > FORMAT_VERSION:
        raise ManifestError(f"manifest{where} is format version {version}, newer than this gfn-edge reads ({FORMAT_VERSION}); upgrade gfn-edge")
    check.integer(version, "format_version", 1, FORMAT_VERSION)
    check.text(data["model"], "model")
    task = check.text(data["task"], "task", TASKS)
    target = check.text(data["target"], "target")
    if artifact_format(target) not in FORMAT_BACKENDS:
        check.fail("target", f"is {target!r}, whose format is none of {', '.join(FORMAT_BACKENDS)}")
    check.text(data["precision"], "precision", PRECISIONS)
    _files(check, data["files"], data["sha256"])
    for name in OPTIONAL_SECTIONS:
        check.optional_mapping(data, name, name)
    if (data.get("source") or {}).get("sha256") is not None:  # the weights' digest (none for random weights)
        check.text(data["source"]["sha256"], "source.sha256")
    spec = check.mapping(data["spec"], "spec")
    check.require(spec, ("name", "task", "preprocess"), "spec.")
    if spec["name"] != data["model"]:
        check.fail("spec.name", f"is {spec['name']!r} but model is {data['model']!r}: the manifest mixes two models")
    if spec["task"] != task:
        check.fail("spec.task", f"is {spec['task']!r} but task is {task!r}: the manifest mixes two models")
    validate_spec(spec, where, "spec.")
    inputs = check.sequence(data["inputs"], "inputs", min_length=1)
    outputs = check.sequence(data["outputs"], "outputs", min_length=1)
    for i, tensor in enumerate(inputs):
        _tensor(check, tensor, f"inputs[{i}]", is_input=True)
    names = [_tensor(check, tensor, f"outputs[{i}]", is_input=False) for i, tensor in enumerate(outputs)]
    if len(set(names)) != len(names):
        check.fail("outputs", f"name the same output twice ({', '.join(names)})")
    _input_matches_preprocess(check, inputs[0], spec["preprocess"])
    if task == "embed":
        _embedding_dim(check, outputs, names)


def _files(check: _Check, files: Any, sha256: Any) -> None:
    files = check.mapping(files, "files")
    if "model" not in files:
        check.fail("files.model", "is missing")
    for role, name in files.items():
        check.text(name, f"files.{role}")
        if "/" in name or "\\" in name or name in (".", ".."):
            check.fail(f"files.{role}", f"is {name!r}; it must be a plain file name inside the bundle folder")
    for name, digest in check.mapping(sha256, "sha256").items():
        if not isinstance(digest, str) or not _SHA256.match(digest):
            check.fail(f"sha256[{name!r}]", f"is {_kind(digest)}, not a lowercase hex sha256 (64 characters)")


def _tensor(check: _Check, data: Any, key: str, is_input: bool) -> str:
    data = check.mapping(data, key)
    check.require(data, ("name", "shape"), key + ".")
    name = check.text(data["name"], f"{key}.name")
    if "tensor" in data:
        check.text(data["tensor"], f"{key}.tensor")
    if "dtype" in data:
        check.text(data["dtype"], f"{key}.dtype", DTYPES)
    if data.get("layout") is not None:
        check.text(data["layout"], f"{key}.layout", LAYOUTS)
    shape = check.sequence(data["shape"], f"{key}.shape", min_length=1)
    if len(shape) > 6:
        check.fail(f"{key}.shape", f"has rank {len(shape)}; face models have tensors of rank 1 to 6")
    elements = 1
    for i, dim in enumerate(shape):
        if isinstance(dim, str) or (type(dim) is int and dim == -1):
            continue  # a dynamic axis: named ("batch", "?") or -1
        size = check.integer(dim, f"{key}.shape[{i}]", 1, MAX_BATCH if i == 0 else MAX_DIM)
        elements *= size if i else 1
    if elements > MAX_ELEMENTS:
        check.fail(f"{key}.shape", f"{shape} holds {elements:,} elements per sample, above the sane limit {MAX_ELEMENTS:,}")
    if is_input:
        _input_shape(check, shape, data.get("layout") or "NCHW", key)
    quant = data.get("quantization")
    if quant is not None:
        quant = check.mapping(quant, f"{key}.quantization")
        check.require(quant, ("scale", "zero_point"), f"{key}.quantization.")
        check.number(quant["scale"], f"{key}.quantization.scale", positive=True)
        check.integer(quant["zero_point"], f"{key}.quantization.zero_point", -(1 << 31), (1 << 31) - 1)
    return name


def _input_shape(check: _Check, shape: list[Any], layout: str, key: str) -> None:
    if len(shape) != 4:
        check.fail(f"{key}.shape", f"is {shape}; an image input has 4 dimensions ({layout})")
    channels, sides = (shape[3], shape[1:3]) if layout == "NHWC" else (shape[1], shape[2:4])
    if isinstance(channels, int) and channels != 3:
        check.fail(f"{key}.shape", f"is {shape}: {channels} channels in layout {layout}, expected 3 colour channels")
    for i, side in enumerate(sides):
        if isinstance(side, int) and side > MAX_SIDE:
            check.fail(f"{key}.shape", f"is {shape}: a {side}-pixel side, above the sane limit {MAX_SIDE}")


def _input_matches_preprocess(check: _Check, tensor: dict[str, Any], pre: dict[str, Any]) -> None:
    size = pre.get("input_size")
    shape = tensor["shape"]
    layout = tensor.get("layout") or "NCHW"
    h, w = (shape[1], shape[2]) if layout == "NHWC" else (shape[2], shape[3])
    if size and isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0 and (w, h) != (size[0], size[1]):
        check.fail(
            "spec.preprocess.input_size",
            f"is {size[0]}x{size[1]} but inputs[0].shape {shape} takes {w}x{h}: the manifest does not describe this model",
        )


def _embedding_dim(check: _Check, outputs: list[dict[str, Any]], names: list[str]) -> None:
    for tensor, name in zip(outputs, names):
        last = tensor["shape"][-1]
        if name == "embedding" and isinstance(last, int) and last != -1:
            check.integer(last, "outputs[embedding].shape[-1]", 2, MAX_EMBEDDING_DIM)


# ----------------------------------------------------------------------------------------- spec
def validate_spec(data: Any, where: str = "", prefix: str = "spec.") -> dict[str, Any]:
    """Check a ModelSpec dict (a manifest's ``spec``); returns it for chaining."""
    check = _Check(where)
    data = check.mapping(data, prefix.rstrip("."))
    check.require(data, ("name", "task", "preprocess"), prefix)
    check.text(data["name"], prefix + "name")
    task = check.text(data["task"], prefix + "task", TASKS)
    _preprocess(check, data["preprocess"], prefix + "preprocess.")
    if data.get("outputs") is not None:
        for i, out in enumerate(check.sequence(data["outputs"], prefix + "outputs")):
            check.text(check.mapping(out, f"{prefix}outputs[{i}]").get("name"), f"{prefix}outputs[{i}].name")
    for name in ("arch", "int8_recipes", "weights"):
        check.optional_mapping(data, name, prefix + name)
    if data.get("default_threshold") is not None:
        check.number(data["default_threshold"], prefix + "default_threshold")
    if data.get("params") is not None:
        check.integer(data["params"], prefix + "params", 0, 1 << 40)
    for i, tag in enumerate(check.sequence(data.get("tags") or [], prefix + "tags")):
        check.text(tag, f"{prefix}tags[{i}]")
    if task == "detect" or data.get("anchors") is not None:
        if data.get("anchors") is None:
            check.fail(prefix + "anchors", "is missing; a detector needs its prior boxes")
        _anchors(check, data["anchors"], prefix + "anchors.")
    if data.get("alignment") is not None:
        _alignment(check, data["alignment"], prefix + "alignment.")
    if task == "liveness" or data.get("liveness") is not None:
        info = check.mapping(data.get("liveness"), prefix + "liveness")
        check.require(info, ("real_class",), prefix + "liveness.")
        check.integer(info["real_class"], prefix + "liveness.real_class", 0, 1000)
    return data


def _preprocess(check: _Check, data: Any, prefix: str) -> None:
    data = check.mapping(data, prefix.rstrip("."))
    check.require(data, ("color", "mean", "std", "resize"), prefix)
    size = data.get("input_size")
    if size is not None:
        for i, side in enumerate(check.sequence(size, prefix + "input_size", length=2)):
            check.integer(side, f"{prefix}input_size[{i}]", 1, MAX_SIDE)
    check.text(data["color"], prefix + "color", COLORS)
    for i, value in enumerate(check.sequence(data["mean"], prefix + "mean", length=3)):
        check.number(value, f"{prefix}mean[{i}]")
    for i, value in enumerate(check.sequence(data["std"], prefix + "std", length=3)):
        check.number(value, f"{prefix}std[{i}]", positive=True)
    resize = check.text(data["resize"], prefix + "resize", RESIZES)
    if data.get("layout") is not None:
        check.text(data["layout"], prefix + "layout", LAYOUTS)
    if data.get("crop_scale") is not None or resize == "face-crop":
        if data.get("crop_scale") is None:
            check.fail(prefix + "crop_scale", "is missing; a face-crop model needs the scale its crops were cut at")
        check.number(data["crop_scale"], prefix + "crop_scale", positive=True, high=20.0)


def _anchors(check: _Check, data: Any, prefix: str) -> None:
    data = check.mapping(data, prefix.rstrip("."))
    check.require(data, ("min_sizes", "steps", "variance"), prefix)
    levels = check.sequence(data["min_sizes"], prefix + "min_sizes", min_length=1)
    steps = check.sequence(data["steps"], prefix + "steps", length=len(levels))
    for i, sizes in enumerate(levels):
        for j, size in enumerate(check.sequence(sizes, f"{prefix}min_sizes[{i}]", min_length=1)):
            check.number(size, f"{prefix}min_sizes[{i}][{j}]", positive=True, high=MAX_SIDE)
    for i, step in enumerate(steps):
        check.integer(step, f"{prefix}steps[{i}]", 1, 1024)
    for i, value in enumerate(check.sequence(data["variance"], prefix + "variance", length=2)):
        check.number(value, f"{prefix}variance[{i}]", positive=True)


def _alignment(check: _Check, data: Any, prefix: str) -> None:
    data = check.mapping(data, prefix.rstrip("."))
    if data.get("points") is not None:
        for i, point in enumerate(check.sequence(data["points"], prefix + "points", length=5)):
            for j, value in enumerate(check.sequence(point, f"{prefix}points[{i}]", length=2)):
                check.number(value, f"{prefix}points[{i}][{j}]")
    if data.get("size") is not None:
        for i, side in enumerate(check.sequence(data["size"], prefix + "size", length=2)):
            check.integer(side, f"{prefix}size[{i}]", 1, MAX_ALIGN_SIDE)
