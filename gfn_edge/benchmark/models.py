"""What gets measured: bundles found on disk and peers, opened with a fixed thread count.

Each candidate is described once (:class:`Candidate`: name, task, target, precision, backend,
input size, files, fidelity from its manifest) so every table row carries the same facts. Thread
counts are passed to the runtime through ``open_model(..., threads=N)`` and read back from the
runtime itself (:func:`runtime_threads`), so a table never claims a setting the runtime ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from gfn_edge.manifest import Manifest, read_manifest

from .peers import (
    PeerSpec,
    native_backends,
    open_peer_model,
    peer_record,
    peer_run_file,
)

log = logging.getLogger(__name__)


@dataclass
class Candidate:
    """One model file to benchmark on one backend."""

    name: str  # registry model name or peer name
    kind: str  # "bundle" | "peer"
    task: str  # "detect" | "embed" | "liveness"
    target: str  # bundle target ("onnx", "openvino-fp16", "tflite-int8"...) or peer file format
    precision: str  # "fp32" | "fp16" | "int8"
    backend: str  # runtime that runs it
    path: Path  # bundle folder or peer model file
    model_file: Path
    input_size: tuple[int, int] | None  # (w, h)
    file_bytes: int
    fidelity: dict[str, Any] = field(default_factory=dict)
    peer: PeerSpec | None = None
    notes: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)  # backend options (OpenVINO precision hint)
    verified: bool = True  # False: the export's verification did not pass, or options it did not check
    complexity: dict[str, Any] = field(default_factory=dict)  # params/MACs/FLOPs recorded at export (or by peer preparation)

    @property
    def key(self) -> str:
        size = f"{self.input_size[0]}x{self.input_size[1]}" if self.input_size else "dyn"
        return f"{self.name}|{self.target}|{self.backend}|{size}"

    @property
    def label(self) -> str:
        size = f" {self.input_size[0]}x{self.input_size[1]}" if self.input_size and self.task == "detect" else ""
        return f"{self.name}{size} {self.target}/{self.backend}"

    def open(self, threads: int, cache: Path | None = None):
        """The runtime model with ``threads`` intra-op threads."""
        if self.kind == "peer":
            assert self.peer is not None
            return open_peer_model(self.peer, self.model_file, self.backend, threads, cache)
        from gfn_edge.runtimes import open_model

        return open_model(self.path, backend=self.backend, threads=threads, **self.options)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "task": self.task,
            "target": self.target,
            "precision": self.precision,
            "backend": self.backend,
            "path": str(self.path),
            "input_size": list(self.input_size) if self.input_size else None,
            "file_bytes": self.file_bytes,
            "fidelity": self.fidelity,
            "notes": list(self.notes),
            "options": dict(self.options),
            "verified": self.verified,
        }


UNKNOWN_FLOPS = "FLOPs unknown: the bundle's manifest records none (exported before gfn-edge recorded them; export again)"


def complexity_of(manifest: Manifest) -> dict[str, Any]:
    """Parameters/MACs/FLOPs gfn-export counted and recorded in the manifest (``export.flops``).

    Counting needs the model's graph library (``onnx``), which the device never imports, so the
    numbers are computed once at export; a bundle without them reports FLOPs as unknown.
    """
    recorded = (manifest.export or {}).get("flops")
    if isinstance(recorded, dict) and isinstance(recorded.get("macs"), int):
        return dict(recorded)
    if isinstance(recorded, dict) and recorded.get("note"):
        return {"note": f"FLOPs unknown: {recorded['note']}"}
    return {"note": UNKNOWN_FLOPS}


def input_size_of(manifest: Manifest) -> tuple[int, int] | None:
    """(w, h) of a bundle's fixed input, or None when dynamic."""
    spec = manifest.inputs[0]
    shape = spec.shape
    if len(shape) != 4:
        return None
    h, w = (shape[1], shape[2]) if (spec.layout or "NCHW") == "NHWC" else (shape[2], shape[3])
    return (int(w), int(h)) if isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0 else None


def fidelity_of(manifest: Manifest) -> dict[str, Any]:
    """The manifest's verification numbers that say how close the artifact is to its reference.

    Recognisers: ``cos_mean`` (and ``cos_min``) of embeddings against the original framework;
    detectors: ``recall``/``precision`` of faces and ``landmark_err_px``; liveness: whatever the
    verifier recorded. ``passed`` is the export's own verdict.
    """
    ver = manifest.verification or {}
    metrics = ver.get("metrics") or {}
    keys = {
        "embed": ("cos_mean", "cos_min", "pair_acc_delta"),
        "detect": ("recall", "precision", "landmark_err_px", "landmark_nme", "box_err_px"),
    }.get(manifest.task, tuple(k for k, v in metrics.items() if isinstance(v, (int, float))))
    out: dict[str, Any] = {k: metrics[k] for k in keys if isinstance(metrics.get(k), (int, float))}
    if isinstance(ver.get("passed"), bool):
        out["passed"] = ver["passed"]
    headline = {"embed": "cos_mean", "detect": "recall"}.get(manifest.task)
    if headline and headline in out:
        out["metric"], out["value"] = headline, out[headline]
    return out


def bundle_candidate(folder: Path) -> Candidate:
    """A candidate for a bundle on the backend its manifest names."""
    m = read_manifest(folder, verify_files=True)
    size = sum((folder / f).stat().st_size for f in m.files.values())
    cand = Candidate(
        name=m.model,
        kind="bundle",
        task=m.task,
        target=m.target,
        precision=m.precision,
        backend=m.backend,
        path=folder,
        model_file=m.model_file,
        input_size=input_size_of(m),
        file_bytes=size,
        fidelity=fidelity_of(m),
        complexity=complexity_of(m),
    )
    passed = (m.verification or {}).get("passed")
    cand.verified = passed is True
    if passed is False:
        cand.notes.append("FAILED verification at export (kept with --force)")
    elif passed is not True:
        cand.notes.append(str((m.verification or {}).get("note") or "not verified at export"))
    if m.source.get("random_weights") or "random" in str(m.source.get("weights", "")).lower():
        cand.notes.append("random weights: speed only, no accuracy claim")
    return cand


def with_precision_hint(c: Candidate, hint: str) -> Candidate:
    """An OpenVINO bundle run with another inference precision hint ("bf16", "f16").

    The export verified the bundle at f32 execution; a bf16 hint changes the arithmetic, so its
    fidelity is unknown and left out (the chart shows verified points only).
    """
    if c.backend != "openvino":
        raise ValueError(f"precision hints are OpenVINO options; {c.label} runs on {c.backend}")
    return replace(
        c,
        target=f"{c.target}+{hint}",
        precision=f"{c.precision}>{hint}",  # stored precision > compute precision
        options=dict(c.options, precision=hint),
        fidelity={},
        verified=False,
        notes=c.notes + [f"OpenVINO inference precision hint {hint}: not verified at export (fidelity unknown)"],
    )


def peer_candidates(peers: list[tuple[PeerSpec, Path]], backends: Iterable[str] | None = None, cache: Path | None = None) -> list[Candidate]:
    """One candidate per peer file and backend able to run it (optionally limited to ``backends``).

    ``cache``: where :func:`~.peers.prepare_peers` left the prepared graphs and their counts.
    """
    allowed = set(backends) if backends else None
    out = []
    for spec, path in peers:
        record = peer_record(path, cache) or {}
        _, note = peer_run_file(path, cache)
        counts = record.get("complexity") or {"note": "FLOPs unknown: peer not prepared (needs gfn-edge's training side)"}
        for backend in native_backends(spec):
            if allowed is not None and backend not in allowed:
                continue
            out.append(
                Candidate(
                    name=spec.name,
                    kind="peer",
                    task=spec.task,
                    target=spec.format,
                    precision="fp32",
                    backend=backend,
                    path=path,
                    model_file=path,
                    input_size=spec.input_size,
                    file_bytes=path.stat().st_size,
                    peer=spec,
                    notes=[note] if note else [],
                    complexity=dict(counts),
                )
            )
    return out


def runtime_threads(model: Any) -> int | None:
    """The intra-op thread count the runtime itself reports (None where it cannot be read back).

    ONNX Runtime: the session's ``intra_op_num_threads``; OpenVINO: the compiled model's
    ``INFERENCE_NUM_THREADS``; LiteRT does not expose it, so the value given to the interpreter
    (kept on the model) is returned.
    """
    backend = getattr(model, "backend", None)
    try:
        if backend == "onnxruntime":
            return int(model.session.get_session_options().intra_op_num_threads)
        if backend == "openvino":
            return int(model.compiled.get_property("INFERENCE_NUM_THREADS"))
        if backend == "tflite":
            return int(model.threads)
    except Exception as exc:  # a runtime version without the property
        log.debug("cannot read thread count back from %s: %s", backend, exc)
    return None


def sample_input(model: Any, batch: int = 1, seed: int = 0) -> np.ndarray:
    """A normalised-range NHWC float32 batch of the model's input size (values do not change speed)."""
    hw = model.input_hw
    if hw is None:
        raise ValueError(f"{model.path} has a dynamic spatial input; give the input size explicitly")
    rng = np.random.default_rng(seed)
    return rng.uniform(-1.0, 1.0, size=(batch, hw[0], hw[1], 3)).astype(np.float32)
