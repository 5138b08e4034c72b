"""Versions of the tools an artifact was made with (recorded in every manifest)."""

from __future__ import annotations

from importlib import metadata

_PACKAGES = {
    "gfn-edge": "gfn-edge",
    "torch": "torch",
    "onnx": "onnx",
    "onnxsim": "onnxsim",
    "onnxruntime": "onnxruntime",
    "openvino": "openvino",
    "nncf": "nncf",
    "litert-torch": "litert-torch",
    "ai-edge-litert": "ai-edge-litert",
    "ai-edge-quantizer": "ai-edge-quantizer",
    "tensorflow": "tensorflow-cpu",
    "tf-keras": "tf-keras",
    "numpy": "numpy",
    "opencv": "opencv-python-headless",
}


def version(name: str) -> str | None:
    dist = _PACKAGES.get(name, name)
    for candidate in (dist, name, name.replace("-", "_")):
        try:
            return metadata.version(candidate)
        except metadata.PackageNotFoundError:
            continue
    return None


def versions(*names: str) -> dict[str, str]:
    return {n: v for n in names if (v := version(n))}
