"""TFLite / LiteRT backend: ai-edge-litert, else tflite-runtime, else TensorFlow's tf.lite."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from gfn_edge.errors import ArtifactError, MissingDependencyError
from gfn_edge.manifest import METADATA_KEY, Manifest

from .base import InferenceModel, check_model_file


def interpreter_class() -> tuple[type, str]:
    """The first TFLite interpreter that imports, and the package it came from."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai-edge-litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter  # type: ignore[import-not-found]

        return Interpreter, "tflite-runtime"
    except ImportError:
        pass
    try:
        import tensorflow as tf  # last resort: a training machine

        return tf.lite.Interpreter, "tensorflow"
    except ImportError as exc:
        raise MissingDependencyError("ai-edge-litert (or tflite-runtime)", "tflite", "running .tflite models") from exc


def available() -> bool:
    try:
        interpreter_class()
    except MissingDependencyError:
        return False
    return True


class TFLiteModel(InferenceModel):
    backend = "tflite"

    def __init__(self, path: Path, manifest: Manifest, threads: int | None = None, **options: Any):
        super().__init__(path, manifest, threads)
        check_model_file(self.path)
        Interpreter, self.package = interpreter_class()
        try:
            self.interpreter = Interpreter(model_path=str(self.path), num_threads=self.threads)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ArtifactError(f"{self.package} cannot load {self.path}: {exc}") from exc
        details = self.interpreter.get_input_details()
        if len(details) != 1:
            raise ArtifactError(f"{self.path}: expected one input tensor, found {len(details)}")
        self._in = details[0]
        by_name = {d["name"]: d for d in self.interpreter.get_output_details()}
        try:
            self._outs = [by_name[o.tensor] for o in self.outputs]
        except KeyError as exc:
            raise ArtifactError(f"{self.path}: manifest output {exc} is not in the model (has {sorted(by_name)})") from exc
        # the model's own shapes (shape_signature: -1 where dynamic), never the manifest's, sized the tensors so far
        self.check_model_shapes(_signature(self._in), [_signature(o) for o in self._outs])

    def _resize_input(self, shape: tuple[int, ...]) -> None:
        self.interpreter.resize_tensor_input(self._in["index"], list(shape))
        self.interpreter.allocate_tensors()
        self._in = self.interpreter.get_input_details()[0]

    def _infer(self, x: np.ndarray) -> list[np.ndarray]:
        if tuple(self._in["shape"]) != x.shape:
            self._resize_input(x.shape)
        self.interpreter.set_tensor(self._in["index"], x)
        self.interpreter.invoke()
        return [self.interpreter.get_tensor(o["index"]).copy() for o in self._outs]


def _signature(details: dict[str, Any]) -> list[int]:
    shape = details.get("shape_signature")
    return [int(d) for d in (shape if shape is not None and len(shape) else details["shape"])]


def read_embedded_manifest(path: Path) -> dict | None:
    """The manifest gfn-export stored in the .tflite metadata, if the schema reader is available."""
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        return None
    data = Path(path).read_bytes()
    try:
        model = schema.Model.GetRootAsModel(data, 0)
        for i in range(model.MetadataLength()):
            meta = model.Metadata(i)
            if meta.Name() and meta.Name().decode() == METADATA_KEY:
                buf = model.Buffers(meta.Buffer())
                raw = buf.DataAsNumpy()
                if isinstance(raw, np.ndarray) and raw.size:
                    return json.loads(raw.tobytes().decode())
                if buf.Offset():  # large models keep buffers after the flatbuffer
                    return json.loads(data[buf.Offset() : buf.Offset() + buf.Size()].decode())
    except Exception as exc:  # a damaged flatbuffer raises anything from IndexError to struct.error
        raise ArtifactError(f"{path} is not a readable TFLite model ({exc})") from exc
    return None
