"""Reading PyTorch checkpoints safely and recognising which registry architecture they belong to.

Never unpickles: ``.pth`` files go through ``torch.load(weights_only=True)``, ``.npz`` through
``np.load(allow_pickle=False)``.
"""

from __future__ import annotations

import os
import re
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from gfn_edge.errors import CheckpointError
from gfn_edge.model_spec import WeightSource
from gfn_edge.registry import REGISTRY, ModelSpec

from .file_names import safe_name


def load_state_dict(path: str | os.PathLike[str]) -> dict:
    """A flat ``name -> tensor`` dict from .pth/.pt/.npz, without the ``module.`` prefix of DataParallel."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty")
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                state = {k: torch.from_numpy(np.array(data[k])) for k in data.files}
        except (ValueError, OSError, zipfile.BadZipFile) as exc:
            if "allow_pickle" in str(exc):  # numpy refuses object arrays without unpickling them
                raise CheckpointError(
                    f"{path} holds object arrays (pickled Python objects), which gfn-edge never loads ({exc}); save plain numeric arrays, one per tensor name"
                ) from exc
            raise CheckpointError(f"cannot read {path} as an .npz of arrays ({exc}); it may be truncated") from exc
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as exc:
            if "weights_only" in str(exc):
                raise _refusal(path, exc) from None
            raise CheckpointError(f"cannot read {path} as a PyTorch checkpoint ({str(exc) or type(exc).__name__}); it may be truncated or not a .pth") from exc
        except Exception as exc:  # weights_only's unpickler: UnpicklingError, or IndexError etc. on garbage
            raise _refusal(path, exc) from None  # torch's text would advise weights_only=False: never relayed
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{path} does not hold a state_dict (a mapping of tensor names to tensors)")
    return {(k[7:] if k.startswith("module.") else k): v for k, v in state.items()}


# torch's wording changes between releases ("Unsupported global: GLOBAL os.system" up to 2.5,
# "unsupported GLOBAL posix.system whose module posix is blocked" in 2.13): match the pickle opcode.
_GLOBAL = re.compile(r"GLOBAL\s+([A-Za-z_][\w.]*)")
_OPERAND = re.compile(r"Unsupported operand\s+(\d+)")


def _refusal(path: Path, exc: Exception) -> CheckpointError:
    """The SDK's own message for a checkpoint the safe loader refused; torch's advice is never quoted.

    torch's message tells the user that re-running with ``weights_only=False`` "will likely
    succeed": that runs whatever code the file carries, so nothing of it is passed on.
    """
    text = str(exc)
    found = _GLOBAL.search(text)
    if found:
        return CheckpointError(
            f"{path} contains pickled Python objects, which gfn-edge never loads (gfn-edge never unpickles: code in a file could run): "
            f"Unsupported global: GLOBAL {found.group(1)}. Save the tensors alone: torch.save(model.state_dict(), path)"
        )
    detail = _OPERAND.search(text)
    why = f"unsupported pickle opcode {detail.group(1)}" if detail else type(exc).__name__
    return CheckpointError(
        f"cannot read {path} as a PyTorch checkpoint ({why}): it is damaged, not a .pth file, or a pickle "
        f"of Python objects, which gfn-edge never loads (gfn-edge never unpickles)"
    )


def load_strict(model, state: dict, origin: str) -> None:
    """``load_state_dict(strict=True)`` with an error that names the mismatching tensors."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    # BatchNorm's counter is optional in older checkpoints
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)}: {', '.join(missing[:6])}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)}: {', '.join(unexpected[:6])}")
        if wrong:
            parts.append(f"shape mismatch {len(wrong)}: {'; '.join(wrong[:6])}")
        raise CheckpointError(f"{origin} does not fit the architecture: " + " | ".join(parts))
    model.load_state_dict(state, strict=False)


def detect_architecture(path: str | os.PathLike[str]) -> ModelSpec:
    """Registry entry whose architecture a checkpoint file has (by its tensor names and shapes)."""
    path = Path(path)
    if path.suffix in (".h5", ".hdf5", ".keras"):
        return REGISTRY["ghostfacenet-v1-w1.3-s2"]  # the graph inside the file decides the rest
    state = load_state_dict(path)
    keys = set(state)
    if any(k.startswith("conv_6_dw") or k.startswith("conv_23") for k in keys):
        return REGISTRY["minifasnet-v1se-4.0" if any(".se_module." in k for k in keys) else "minifasnet-v2-2.7"]
    if any(k.startswith("body.stage1.") for k in keys):
        return REGISTRY["retinaface-mnet025"]
    if any(k.startswith("body.layer1.") for k in keys):
        return REGISTRY["retinaface-resnet50"]
    if any(k.startswith("body.bneck1.") for k in keys):
        return REGISTRY["retinaface-mobilenetv3"]
    if any(k.startswith("body.blocks1.") for k in keys):
        return REGISTRY["retinaface-ghostnet-se025" if any(".se.conv_reduce." in k for k in keys) else "retinaface-ghostnet"]
    raise CheckpointError(f"cannot tell which architecture {path.name} is (first keys: {sorted(keys)[:4]}); pass --arch NAME")


_FAMILY_TITLES = {"retinaface": "RetinaFace detector", "ghostfacenet": "GhostFaceNets recogniser", "minifasnet": "MiniFASNet liveness model"}
_GRAPH_IN_FILE = {"keras-h5"}  # formats whose file holds the architecture too, not only the weights


def checkpoint_spec(spec: ModelSpec, path: Path, digest: str) -> ModelSpec:
    """``spec`` (the registry architecture a checkpoint file was recognised as, or named with
    ``--arch``) made to describe that file: named after it, its weights the file itself.

    Why: a registry entry's weights, description, licence and INT8 recipes are facts about its own
    release. A user's w0.5 GhostFaceNets file used to ship with a manifest saying "width 1.3, stem
    stride 2 (official release)", HamadYA's download address and an MIT licence; a fine-tuned
    RetinaFace, the WIDER FACE checkpoint's. A file that is the registry's own release (the same
    SHA-256) keeps all of it, recipes included. ``digest``: the file's SHA-256.
    """
    name = safe_name(path.stem, "model")  # it names the bundle folders
    fmt = spec.weights.format if spec.weights is not None else ("keras-h5" if spec.family == "ghostfacenet" else "pytorch")
    from_graph = fmt in _GRAPH_IN_FILE
    arch_tag = "arch:from-checkpoint" if from_graph else f"arch:{spec.name}"
    if spec.weights is not None and spec.weights.sha256 == digest:
        return replace(spec, name=name, tags=tuple(spec.tags) + (arch_tag,))
    title = _FAMILY_TITLES.get(spec.family, spec.family)
    how = "its architecture read from the file's own graph" if from_graph else f"architecture {spec.name}: {spec.description.split(';')[0]}"
    return replace(
        spec,
        name=name,
        description=f"{title} from the checkpoint file {path.name}, {how}",
        arch={"from_checkpoint": True} if from_graph else spec.arch,
        weights=WeightSource(format=fmt, sha256=digest, licence="unknown (the user's checkpoint)", upstream=f"checkpoint file {path.name}"),
        params=None if from_graph else spec.params,
        # a recogniser's threshold is a fact about its weights (0.3 is the official release's; the
        # w0.5-e16 student's best is 0.754): measured at export time (api.measured_threshold) or none
        default_threshold=None if spec.task == "embed" else spec.default_threshold,
        tags=(arch_tag,),  # the registry's tags ("real-weights") are about its release
        int8_recipes={},
    )
