"""Property tests of manifest parsing: any damage to a real manifest ends in ManifestError or a usable manifest.

Starts from the manifests of real exported bundles (a detector and a recogniser) and lets
hypothesis delete keys or put values of any JSON type (NaN, huge numbers, nested junk) anywhere
in them. Parsing must either refuse with the SDK's ManifestError naming a key, or give a
Manifest whose typed views (preprocess, anchors, model spec, tensors) all work: never a bare
KeyError/TypeError from deep inside, never a manifest that fails later when a board opens it.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gfn_edge.errors import GfnEdgeError, ManifestError
from gfn_edge.manifest import Manifest

DET = "retinaface-mnet025"
REC = "ghostfacenet-dsitweed-w0.5-e16"

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=8,
)


@pytest.fixture(scope="module")
def manifests(bundles) -> list[dict[str, Any]]:
    return [json.loads((Path(bundles.get(m, "onnx")) / "manifest.json").read_text()) for m in (DET, REC)]


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key/index path inside a parsed JSON document (containers and leaves)."""
    out = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        out.append((*prefix, key))
        out.extend(_paths(value, (*prefix, key)))
    return out


def _damage(doc: dict[str, Any], path: tuple, value: Any, delete: bool) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    parent = out
    for key in path[:-1]:
        parent = parent[key]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return out


def _use(manifest: Manifest) -> None:
    """What a backend and the pipeline read from a manifest: each view must work or raise the SDK's error."""
    pre = manifest.preprocess
    assert all(math.isfinite(v) for v in (*pre.mean, *pre.std)) and all(v != 0 for v in pre.std)
    assert manifest.anchors is None or len(manifest.anchors.steps) > 0
    assert manifest.model_spec.name == manifest.model
    assert isinstance(manifest.signature, str) and manifest.signature
    for tensor in (*manifest.inputs, *manifest.outputs):
        assert tensor.name and isinstance(tensor.shape, list)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(which=st.integers(0, 1), pick=st.integers(0, 10**6), value=JSON_VALUES, delete=st.booleans())
def test_damaged_manifest_is_refused_with_a_manifest_error_or_parses_whole(manifests, which, pick, value, delete):
    doc = manifests[which]
    paths = _paths(doc)
    damaged = _damage(doc, paths[pick % len(paths)], value, delete)
    try:
        manifest = Manifest.from_dict(damaged)
        _use(manifest)
    except ManifestError as exc:
        assert str(exc).strip() and "\n" not in str(exc).strip(), "one line, naming the problem"
    except GfnEdgeError as exc:  # another SDK error type is acceptable, a builtin one is not
        assert str(exc).strip()


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_manifest_text_that_is_not_a_manifest_is_refused(tmp_path_factory, text):
    folder = tmp_path_factory.mktemp("junk")
    (folder / "manifest.json").write_text(text, encoding="utf-8")
    from gfn_edge.manifest import read_manifest

    with pytest.raises(GfnEdgeError):
        read_manifest(folder)


def test_the_real_manifests_parse(manifests):
    for doc in manifests:
        _use(Manifest.from_dict(copy.deepcopy(doc)))
