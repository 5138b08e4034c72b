"""Read a Keras 2 ``.h5`` model (graph and weights) with h5py alone, and cut the graph into segments.

The GhostFaceNets port maps weights by the structure of this graph, never by layer names, so
files saved by the official release and by any fork of the training code (whose layers are
named ``conv2d_17`` or ``stack3_block1_ghost_1_prim_conv``) load alike.

:func:`segments` splits a single-input/single-output DAG at its cut vertices (tensors every
path passes through). A chain of layers gives one segment per layer; a residual block, a ghost
module's concatenation or a squeeze-excite multiplication gives one multi-layer segment that
the port then parses on its own.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from gfn_edge.errors import CheckpointError


@dataclass
class KerasLayer:
    name: str
    cls: str
    config: dict[str, Any]
    inputs: list[str] = field(default_factory=list)
    consumers: list[str] = field(default_factory=list)

    @property
    def activation(self) -> str | None:
        """Activation name of an Activation/ReLU/PReLU layer (None for other layers)."""
        if self.cls == "PReLU":
            return "prelu"
        if self.cls == "ReLU":
            mv = self.config.get("max_value")
            return "relu6" if mv == 6 else "relu" if mv is None else None
        if self.cls == "Activation":
            act = self.config.get("activation")
            if isinstance(act, dict):  # custom function serialised as {"class_name": "function", "config": name}
                inner = act.get("config")
                act = inner if isinstance(inner, str) else (inner or {}).get("name") or act.get("class_name")
            return str(act).lstrip("_")
        return None


def _refs(obj: Any, known: set[str]) -> list[str]:
    """Layer names referenced by a Keras inbound-node entry (including tensors passed as kwargs)."""
    found: list[str] = []
    if isinstance(obj, list):
        if len(obj) >= 3 and isinstance(obj[0], str) and obj[0] in known and isinstance(obj[1], int):
            found.append(obj[0])
            if len(obj) > 3:
                found.extend(_refs(obj[3], known))
            return found
        for item in obj:
            found.extend(_refs(item, known))
    elif isinstance(obj, dict):
        for value in obj.values():
            found.extend(_refs(value, known))
    return found


class KerasGraph:
    """The layer graph of a saved Keras functional model, plus its weights by layer."""

    def __init__(self, layers: dict[str, KerasLayer], input_name: str, output_name: str, weights: dict[str, dict[str, np.ndarray]], path: Path):
        self.layers = layers
        self.input = input_name
        self.output = output_name
        self._weights = weights
        self.path = path
        self._prune()
        self.order = self._topological()

    # --- construction ----------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> KerasGraph:
        path = Path(path)
        try:
            with h5py.File(path, "r") as h5:
                raw = h5.attrs.get("model_config")
                if raw is None:
                    raise CheckpointError(
                        f"{path} holds weights only (no model_config); save the full model (model.save('x.h5')) or pass the architecture with --arch"
                    )
                config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
                weights = _read_weights(h5, path)
        except OSError as exc:
            raise CheckpointError(f"cannot read {path} as a Keras .h5 file ({exc}); it may be truncated or not HDF5") from exc
        if config.get("class_name") not in ("Functional", "Model"):
            raise CheckpointError(f"{path}: expected a functional Keras model, found {config.get('class_name')!r}")
        layers, inputs, outputs = _flatten(config["config"], prefix="")
        if len(inputs) != 1:
            raise CheckpointError(f"{path}: expected one model input, found {len(inputs)}")
        output = "embedding" if "embedding" in layers else outputs[0]
        return cls(layers, inputs[0], output, weights, path)

    def _prune(self) -> None:
        """Keep only layers on a path from the input to the output (drops training heads)."""
        reach_out: set[str] = set()
        stack = [self.output]
        while stack:
            n = stack.pop()
            if n in reach_out:
                continue
            reach_out.add(n)
            stack.extend(self.layers[n].inputs)
        self.layers = {k: v for k, v in self.layers.items() if k in reach_out}
        for layer in self.layers.values():
            layer.consumers = []
        for layer in self.layers.values():
            for src in layer.inputs:
                self.layers[src].consumers.append(layer.name)

    def _topological(self) -> list[str]:
        indeg = {n: len(set(layer.inputs)) for n, layer in self.layers.items()}
        ready = [n for n, d in indeg.items() if d == 0]
        order: list[str] = []
        while ready:
            n = ready.pop(0)
            order.append(n)
            for c in dict.fromkeys(self.layers[n].consumers):
                indeg[c] -= 1
                if indeg[c] == 0:
                    ready.append(c)
        if len(order) != len(self.layers):
            raise CheckpointError(f"{self.path}: the layer graph has a cycle")
        return order

    # --- queries ---------------------------------------------------------------------
    def __getitem__(self, name: str) -> KerasLayer:
        return self.layers[name]

    def weights(self, name: str) -> dict[str, np.ndarray]:
        return self._weights.get(name, {})

    def segments(self, start: str | None = None, end: str | None = None, exclude: set[str] | None = None) -> list[list[str]]:
        """Split the sub-DAG from ``start`` (exclusive) to ``end`` (inclusive) at its cut vertices.

        Returns node lists in topological order; each list ends at a cut vertex.
        """
        start = start or self.input
        end = end or self.output
        exclude = exclude or set()
        nodes = self._between(start, end, exclude)
        order = [n for n in self.order if n in nodes]
        pending: dict[str, int] = {}  # open edges leaving processed nodes, by source
        segments: list[list[str]] = []
        current: list[str] = []
        outgoing = {n: [c for c in self.layers[n].consumers if c in nodes] for n in order}
        outgoing[start] = [c for c in self.layers[start].consumers if c in nodes]
        pending[start] = len(outgoing[start])
        for n in order:
            for src in self.layers[n].inputs:
                if src in pending:
                    pending[src] -= 1
                    if pending[src] == 0:
                        del pending[src]
            current.append(n)
            if outgoing[n]:
                pending[n] = len(outgoing[n])
            if set(pending) <= {n}:
                segments.append(current)
                current = []
        if current:
            segments.append(current)
        return segments

    def _between(self, start: str, end: str, exclude: set[str]) -> set[str]:
        down: set[str] = set()
        stack = [c for c in self.layers[start].consumers if c not in exclude]
        while stack:
            n = stack.pop()
            if n in down or n in exclude:
                continue
            down.add(n)
            if n != end:
                stack.extend(self.layers[n].consumers)
        up: set[str] = set()
        stack = [end]
        while stack:
            n = stack.pop()
            if n in up or n == start or n in exclude:
                continue
            up.add(n)
            stack.extend(self.layers[n].inputs)
        return down & up


def _read_weights(h5: h5py.File, path: Path) -> dict[str, dict[str, np.ndarray]]:
    group = h5.get("model_weights", h5)
    out: dict[str, dict[str, np.ndarray]] = {}
    for layer_name in group.attrs.get("layer_names", []):
        layer_name = layer_name.decode() if isinstance(layer_name, bytes) else layer_name
        g = group[layer_name]
        for wname in g.attrs.get("weight_names", []):
            wname = wname.decode() if isinstance(wname, bytes) else wname
            try:
                value = np.asarray(g[wname], dtype=np.float32)
            except KeyError as exc:
                raise CheckpointError(f"{path}: weight {wname} of layer {layer_name} is listed but missing") from exc
            key = wname.split("/")[-1].split(":")[0]
            # nested models store "<sublayer>/<kernel>"; keep the sub-layer so names stay unique
            parts = wname.split("/")
            owner = parts[-2] if len(parts) >= 2 else layer_name
            out.setdefault(owner, {})[key] = value
            if owner != layer_name:
                out.setdefault(layer_name, {})[key] = value
    return out


def _flatten(config: dict[str, Any], prefix: str) -> tuple[dict[str, KerasLayer], list[str], list[str]]:
    """Layers of a functional config, with nested functional models inlined."""
    raw_layers = config["layers"]
    known = {raw["name"] for raw in raw_layers}
    layers: dict[str, KerasLayer] = {}
    alias: dict[str, str] = {}  # nested model name -> its output layer; nested input -> outer source
    for raw in raw_layers:
        name = raw["name"]
        inbound = raw.get("inbound_nodes") or []
        refs: list[str] = []
        if inbound:
            refs = _refs(inbound[0], known)
        if raw["class_name"] in ("Functional", "Model"):
            sub_layers, sub_in, sub_out = _flatten(raw["config"], prefix=f"{name}/")
            if len(sub_in) != 1 or len(refs) != 1:
                raise CheckpointError(f"nested model {name} with several inputs is not supported")
            inner_input = sub_in[0]
            for sl in sub_layers.values():
                sl.inputs = [refs[0] if i == inner_input else i for i in sl.inputs]
            sub_layers.pop(inner_input, None)
            layers.update(sub_layers)
            alias[name] = sub_out[0]
            continue
        layers[name] = KerasLayer(name=name, cls=raw["class_name"], config=raw.get("config", {}), inputs=refs)
    for layer in layers.values():
        layer.inputs = list(dict.fromkeys(alias.get(i, i) for i in layer.inputs))
    inputs = [entry[0] for entry in config.get("input_layers", [])]
    outputs = [alias.get(entry[0], entry[0]) for entry in config.get("output_layers", [])]
    return layers, inputs, outputs
