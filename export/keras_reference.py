"""The Keras original of a GhostFaceNets checkpoint: the reference every artifact is checked against.

tf-keras (Keras 2) is required: Keras 3 refuses these files. The GhostFaceNets checkpoints were
saved under a ``mixed_float16`` policy, a training-time setting whose float16 arithmetic is
emulated (and noisy) on CPUs; the reference is rebuilt with float32 layers so it measures the
weights, not the emulation. ``policy="as-saved"`` keeps the file's own policy.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from gfn_edge.errors import CheckpointError, MissingDependencyError


def import_tf_keras():
    """tf-keras with TF_USE_LEGACY_KERAS=1 set before TensorFlow is imported."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError("tensorflow-cpu", "export", "the Keras reference of GhostFaceNets") from exc
    try:
        import tf_keras
    except ImportError as exc:
        raise MissingDependencyError("tf-keras (install it with: pip install --no-deps tf-keras==2.21.0)", "export", "loading GhostFaceNets .h5 files") from exc
    return tf_keras


def hard_sigmoid_torch(x):
    import tensorflow as tf

    return tf.nn.relu6(x + 3.0) / 6.0


def hard_swish_torch(x):
    import tensorflow as tf

    return x * tf.nn.relu6(x + 3.0) / 6.0


CUSTOM_OBJECTS = {"hard_sigmoid_torch": hard_sigmoid_torch, "hard_swish_torch": hard_swish_torch}


def _force_float32(obj: Any) -> Any:
    if isinstance(obj, dict):
        if obj.get("class_name") in ("Policy", "DTypePolicy") and isinstance(obj.get("config"), dict):
            return "float32"
        return {
            k: ("float32" if k == "dtype" and isinstance(v, str) and v in ("mixed_float16", "float16", "mixed_bfloat16") else _force_float32(v))
            for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [_force_float32(v) for v in obj]
    return obj


def load_keras_model(path: str | os.PathLike[str], policy: str = "float32"):
    """Load a GhostFaceNets .h5 with tf-keras; ``policy="float32"`` rebuilds mixed-precision layers in float32."""
    keras = import_tf_keras()
    path = Path(path)
    try:
        with h5py.File(path, "r") as h5:
            raw = h5.attrs.get("model_config")
    except OSError as exc:
        raise CheckpointError(f"cannot read {path} as a Keras .h5 file ({exc})") from exc
    if raw is None:
        raise CheckpointError(f"{path} has no model_config; save the full Keras model")
    config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    if policy == "float32":
        config = _force_float32(config)
    with keras.utils.custom_object_scope(CUSTOM_OBJECTS):
        model = keras.models.model_from_json(json.dumps(config))
        model.load_weights(str(path))
    return model


class KerasEmbedder:
    """Runs the Keras reference on NHWC float batches already normalised as the registry says."""

    framework = "tf-keras"

    def __init__(self, path: str | os.PathLike[str], policy: str = "float32"):
        import tensorflow as tf

        self.model = load_keras_model(path, policy)
        self.policy = policy
        self.device = "gpu" if tf.config.list_physical_devices("GPU") else "cpu"
        self._fn = tf.function(lambda x: self.model(x, training=False), reduce_retracing=True)

    def __call__(self, x_nhwc: np.ndarray, batch_size: int = 64) -> np.ndarray:
        outs = []
        for i in range(0, len(x_nhwc), batch_size):
            outs.append(np.asarray(self._fn(x_nhwc[i : i + batch_size]), dtype=np.float32))
        return np.concatenate(outs) if outs else np.zeros((0, self.model.output_shape[-1]), np.float32)

    def describe(self) -> dict[str, str]:
        import tensorflow as tf
        import tf_keras

        return {"framework": f"tf-keras {tf_keras.__version__} (TensorFlow {tf.__version__})", "device": self.device, "policy": self.policy}
