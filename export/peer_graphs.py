"""Benchmark peers prepared on the training side: graphs cleaned for ONNX Runtime, MACs counted.

Why here and not in the benchmark: both jobs need the ``onnx`` package, which the device side
(``gfn_edge.benchmark`` included) never imports. The benchmark runs this module in a child
process (``python -m gfn_edge.export.peer_graphs``), the way benchmarks/run.py runs the export,
and reads what it leaves in the cache folder:

* ``<stem>.<sha12>.clean.onnx``: the peer without initializers listed as graph inputs. Old
  exporters list every weight as an input; ONNX Runtime then treats weights as overridable and
  skips constant folding, which made UltraFace three times slower in our runs. ONNX Runtime's
  own remedy (its remove_initializer_from_input tool) is applied, so the peer is measured at
  its best;
* ``<stem>.<sha12>.peer.json``: which file to run, why, and the parameter/MAC counts of
  :mod:`gfn_edge.export.flops` (the same counter gfn-export records in bundle manifests).

The file names carry the first 12 hex digits of the original file's SHA-256, so a changed
peer file is prepared again and a stale result is never read.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gfn_edge.benchmark.peers import prepared_stem

from .flops import complexity

log = logging.getLogger(__name__)

__all__ = ["clean_onnx_inputs", "main", "prepare_peer"]


def clean_onnx_inputs(path: Path, cache: Path | None = None) -> tuple[Path, str | None]:
    """A copy of an ONNX file without initializers listed as graph inputs, when it has any.

    Returns (file to run, note); the original path and None when there was nothing to remove.
    """
    import onnx

    model = onnx.load(str(path))
    inits = {i.name for i in model.graph.initializer}
    keep = [i for i in model.graph.input if i.name not in inits]
    removed = len(model.graph.input) - len(keep)
    if not removed:
        return path, None
    folder = cache or Path(tempfile.gettempdir()) / "gfn-bench-peers"
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{prepared_stem(path)}.clean.onnx"
    if not out.is_file():
        del model.graph.input[:]
        model.graph.input.extend(keep)
        tmp = out.with_suffix(".tmp")
        onnx.save(model, str(tmp))
        os.replace(tmp, out)
    return out, f"removed {removed} initializers from the graph inputs (ONNX Runtime's remove_initializer_from_input)"


def prepare_peer(path: str | os.PathLike[str], cache: str | os.PathLike[str]) -> dict[str, Any]:
    """Clean (ONNX) and count one peer file; writes and returns its ``.peer.json`` record."""
    path, cache = Path(path), Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    stem = prepared_stem(path)
    record: dict[str, Any] = {"source": str(path), "prepared": stem, "run": str(path), "note": None}
    if path.suffix.lower() == ".onnx":
        run, note = clean_onnx_inputs(path, cache)
        record.update(run=str(run), note=note)
    counts, why = complexity(path)
    record["complexity"] = counts.to_dict() if counts is not None else {"note": why}
    target = cache / f"{stem}.peer.json"
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, target)
    return record


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gfn_edge.export.peer_graphs", description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+", type=Path, help="peer model files (.onnx, .tflite)")
    p.add_argument("--cache", required=True, type=Path, help="folder for the cleaned graphs and .peer.json records")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    failed = 0
    for f in args.files:
        try:
            prepare_peer(f, args.cache)
        except Exception as exc:  # one unreadable peer must not stop the others
            failed += 1
            print(f"peer_graphs: {f}: {type(exc).__name__}: {exc}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
