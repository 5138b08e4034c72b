"""The fixed vocabulary of a bundle: file names, format tags, embedded-metadata keys, format -> backend.

Written once here and imported by both sides (gfn-export writes bundles with these names, the
runtimes read them), so the two can never disagree about a key.
"""

from __future__ import annotations

MANIFEST_NAME = "manifest.json"
FORMAT = "gfn-edge-bundle"
FORMAT_VERSION = 1

# Where gfn-export also embeds the manifest inside the model file, so a lone file stays usable:
METADATA_KEY = "gfn_edge.manifest"  # ONNX metadata_props key and TFLite metadata name
RT_INFO_KEY: tuple[str, ...] = ("gfn_edge", "manifest")  # OpenVINO rt_info path

# artifact format -> backends able to run it, preferred first
FORMAT_BACKENDS: dict[str, tuple[str, ...]] = {
    "onnx": ("onnxruntime", "openvino"),
    "tflite": ("tflite",),
    "openvino": ("openvino",),
}
# model file suffix -> artifact format (lone files opened without a bundle folder)
FORMAT_SUFFIXES: dict[str, str] = {".onnx": "onnx", ".tflite": "tflite", ".xml": "openvino"}

TASKS = ("detect", "embed", "liveness")
PRECISIONS = ("fp32", "fp16", "int8")


def artifact_format(target: str) -> str:
    """``"onnx-int8"`` -> ``"onnx"``: the file format a target name produces."""
    return target.split("-")[0]


def preferred_backend(target: str) -> str:
    """The runtime that runs a target's artifact by default."""
    return FORMAT_BACKENDS[artifact_format(target)][0]
