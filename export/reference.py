"""The reference: a model loaded in its own framework, plus the PyTorch module targets are made from.

- RetinaFace and MiniFASNet ``.pth``: PyTorch is both the reference and the export source.
- GhostFaceNets ``.h5``: tf-keras is the reference; the export source is the PyTorch twin built
  by :mod:`.keras_port`. Every artifact is compared with Keras, not with the twin.
- ``random_weights=True`` (architectures without released weights): seeded initial weights in the
  original framework (Keras for GhostFaceNets), BatchNorm statistics re-estimated on real photos
  when any are given, so activations are well scaled. Good for shape, speed and export checks,
  never for accuracy claims.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from gfn_edge.errors import CheckpointError
from gfn_edge.export.hub import cache_dir, resolve_spec_weights, sha256_file
from gfn_edge.registry import REGISTRY, ModelSpec, get_spec

from .checkpoints import checkpoint_spec, detect_architecture, load_state_dict, load_strict

log = logging.getLogger(__name__)


@dataclass
class Reference:
    spec: ModelSpec
    torch_model: Any  # torch.nn.Module in eval mode, NCHW float32 input
    run_original: Callable[[np.ndarray], list[np.ndarray]]  # NHWC float32 -> outputs in spec order
    framework: dict[str, str]
    source: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self.spec.outputs]

    def run(self, x_nhwc: np.ndarray, batch_size: int = 32) -> dict[str, np.ndarray]:
        """Reference outputs by canonical name for a batch of normalised NHWC inputs."""
        parts = [self.run_original(x_nhwc[i : i + batch_size]) for i in range(0, len(x_nhwc), batch_size)]
        return {name: np.concatenate([p[j] for p in parts]) for j, name in enumerate(self.output_names)}

    def run_torch(self, x_nhwc: np.ndarray) -> dict[str, np.ndarray]:
        """The PyTorch export source's outputs (for diagnosing port problems)."""
        return dict(zip(self.output_names, _torch_runner(self.torch_model)(x_nhwc)))


def _torch_device():
    import torch

    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def _torch_runner(model) -> Callable[[np.ndarray], list[np.ndarray]]:
    import torch

    device = next(model.parameters()).device

    def run(x_nhwc: np.ndarray) -> list[np.ndarray]:
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2))).to(device)
            out = model(x)
            out = out if isinstance(out, (tuple, list)) else (out,)
            return [o.float().cpu().numpy() for o in out]

    return run


def _torch_framework() -> dict[str, str]:
    import torch

    dev = _torch_device()
    name = torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu"
    return {"framework": f"pytorch {torch.__version__}", "device": name}


def build_torch_model(spec: ModelSpec):
    """An untrained PyTorch model of ``spec``'s architecture (RetinaFace and MiniFASNet families)."""
    if spec.family == "retinaface":
        from .models.retinaface import RetinaFace

        return RetinaFace(**spec.arch)
    if spec.family == "minifasnet":
        from .models.minifasnet import build_minifasnet

        return build_minifasnet(spec.arch["variant"], tuple(spec.arch.get("input", (80, 80))))
    raise CheckpointError(f"{spec.name}: {spec.family} models are not built directly in PyTorch")


def recalibrate_batchnorm(model, batches: list[np.ndarray]) -> None:
    """Re-estimate BatchNorm running statistics on real inputs (NHWC batches), then back to eval."""
    import torch

    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over all batches
    model.train()
    with torch.no_grad():
        for x in batches:
            model(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))))
    model.eval()
    for bn in bns:
        bn.momentum = 0.1


def resolve_spec(
    model: str | os.PathLike[str],
    arch: str | None = None,
    input_size: tuple[int, int] | None = None,
    random_weights: bool = False,
    mirror: str | os.PathLike[str] | None = None,
) -> tuple[ModelSpec, Path | None]:
    """The registry entry (renamed after a user's checkpoint file) and the checkpoint path to load.

    ``arch`` names the registry architecture of a checkpoint path (detected from the file when
    omitted). No path is returned for ``random_weights``.
    """
    key = str(model)
    if key in REGISTRY:
        spec = get_spec(key)
        path = None if random_weights else resolve_spec_weights(spec, mirror=mirror)
    else:
        path = Path(key).expanduser()
        if not path.is_file():
            if os.sep not in key and "/" not in key:
                get_spec(key)  # not a file and not a known name: raises with the closest names
            raise CheckpointError(f"checkpoint {path} does not exist")
        spec = checkpoint_spec(get_spec(arch) if arch else detect_architecture(path), path, sha256_file(path))
    if input_size is not None:
        if spec.task != "detect":
            raise ValueError(f"--input-size applies to detectors; {spec.name} takes {spec.preprocess.input_size}")
        spec = spec.with_input_size(tuple(input_size))
    return spec, path


def load_reference(
    model: str | os.PathLike[str],
    arch: str | None = None,
    input_size: tuple[int, int] | None = None,
    random_weights: bool = False,
    seed: int = 0,
    mirror: str | os.PathLike[str] | None = None,
    bn_images: list[np.ndarray] | None = None,
) -> Reference:
    """Load the reference for a registry name or a checkpoint path (see :func:`resolve_spec`).

    ``bn_images`` are normalised NHWC batches used to re-estimate BatchNorm statistics of
    randomly initialised PyTorch models.
    """
    spec, path = resolve_spec(model, arch, input_size, random_weights, mirror)
    return reference_for(spec, path, seed=seed, bn_images=bn_images, digest=resolved_digest(spec, path))


def resolved_digest(spec: ModelSpec, path: Path | None) -> str | None:
    """The SHA-256 :func:`resolve_spec` already has for the ``path`` it returned with ``spec`` (the
    mirror's checked release, or the user's checkpoint file hashed for :func:`checkpoint_spec`),
    so the reference does not read a file of up to hundreds of MB again; None where it has none."""
    return spec.weights.sha256 if path is not None and spec.weights is not None else None


def reference_for(spec: ModelSpec, path: Path | None, seed: int = 0, bn_images: list[np.ndarray] | None = None, digest: str | None = None) -> Reference:
    """The model of ``spec`` in its own framework, from ``path`` (random weights without one).
    ``digest``: the file's SHA-256 where the caller has it (:func:`resolved_digest`), else read here."""
    digest = digest or (sha256_file(path) if path is not None else None)
    if spec.family == "ghostfacenet":
        ref = _ghostfacenet_reference(spec, path, path is None, seed, digest)
    else:
        ref = _torch_reference(spec, path, path is None, seed, bn_images, digest)
    log.info("reference %s: %s on %s (%s)", spec.name, ref.framework["framework"], ref.framework["device"], ref.source.get("weights"))
    return ref


def _torch_reference(spec: ModelSpec, path: Path | None, random_weights: bool, seed: int, bn_images, digest: str | None) -> Reference:
    import torch

    torch.manual_seed(seed)
    net = build_torch_model(spec)
    if path is not None:
        state = load_state_dict(path)
        load_strict(net, state, f"checkpoint {path.name}")
        source = {"path": str(path), "file": path.name, "sha256": digest, "format": "pytorch", "weights": "checkpoint"}
    else:
        if bn_images:
            recalibrate_batchnorm(net, bn_images)
        source = {
            "path": None,
            "sha256": None,
            "format": "pytorch",
            "weights": f"random (seed {seed}{', BatchNorm re-estimated on real photos' if bn_images else ''})",
        }
    net.eval().to(_torch_device())
    return Reference(spec=spec, torch_model=net, run_original=_torch_runner(net), framework=_torch_framework(), source=source)


def random_keras_checkpoint(spec: ModelSpec, seed: int = 0) -> Path:
    """A seeded random GhostFaceNet saved as .h5 in the user cache (built once per spec and seed)."""
    from .models.ghostfacenet_keras import save_keras_ghostfacenet

    arch = spec.arch
    target = cache_dir() / "random" / f"{spec.name}-seed{seed}-v2.h5"  # v2: BatchNorm statistics estimated
    if not target.is_file():
        tmp = target.with_suffix(".tmp.h5")
        save_keras_ghostfacenet(tmp, version=int(arch.get("version", 1)), width=float(arch.get("width", 1.3)), stride=int(arch.get("stride", 2)), seed=seed)
        os.replace(tmp, target)
    return target


def _ghostfacenet_reference(spec: ModelSpec, path: Path | None, random_weights: bool, seed: int, digest: str | None) -> Reference:
    from .keras_port import port_keras_h5
    from .keras_reference import KerasEmbedder

    if path is None:
        if spec.arch.get("from_checkpoint"):
            raise CheckpointError(f"{spec.name} is defined by its checkpoint; it has no architecture to initialise randomly")
        path = random_keras_checkpoint(spec, seed)
        weights = f"random (seed {seed}, built in tf-keras)"
    else:
        weights = "checkpoint"
    if path.suffix not in (".h5", ".hdf5"):
        raise CheckpointError(f"GhostFaceNets checkpoints are Keras .h5 files; got {path.name}")
    ported = port_keras_h5(path)
    keras_ref = KerasEmbedder(path)
    import torch

    ported.model.to(_torch_device())
    framework = keras_ref.describe()
    source = {
        "path": str(path),
        "file": path.name,
        "sha256": digest or sha256_file(path),
        "format": "keras-h5",
        "weights": weights,
        "keras_params": ported.keras_params,
        "torch_twin": f"pytorch {torch.__version__}",
    }
    if spec.params is not None and spec.params != ported.keras_params and weights == "checkpoint":
        log.warning("%s: checkpoint has %d parameters, registry says %d", spec.name, ported.keras_params, spec.params)
    run = lambda x: [keras_ref(x)]  # noqa: E731
    return Reference(spec=spec, torch_model=ported.model, run_original=run, framework=framework, source=source, extra={"config": ported.config})
