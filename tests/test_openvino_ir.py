"""The OpenVINO IR writer (export/targets/openvino_ir.py): the .xml without its indentation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

ov = pytest.importorskip("openvino", reason="asset missing: openvino (the training side: pip install 'gfn-edge[export]')")


def _tiny_model():
    from openvino import opset13 as ops

    x = ops.parameter([1, 3, 8, 8], np.float32, name="input")
    w = ops.constant(np.random.default_rng(0).normal(size=(4, 3, 3, 3)).astype(np.float32))
    conv = ops.convolution(x, w, [1, 1], [1, 1], [1, 1], [1, 1])
    lo, hi = ops.constant(np.float32(-2.0)), ops.constant(np.float32(2.0))
    out = ops.fake_quantize(ops.relu(conv), lo, hi, lo, hi, 256)
    model = ov.Model([out], [x], "tiny")
    # a value with the characters a careless rewrite would touch
    model.set_rt_info(json.dumps({"note": "a >= b,\n  <tag>  </tag> > <"}), ["gfn_edge", "manifest"])
    return model


def test_the_compact_ir_computes_the_same_and_keeps_its_embedded_text(tmp_path: Path):
    from gfn_edge.export.targets.openvino_ir import compact_xml

    indented, compact = tmp_path / "indented.xml", tmp_path / "compact.xml"
    model = _tiny_model()
    ov.save_model(model, str(indented))
    ov.save_model(model, str(compact))
    saved = compact_xml(compact)
    assert saved > 0 and compact.stat().st_size == indented.stat().st_size - saved
    assert b"\n\t" not in compact.read_bytes()
    core = ov.Core()
    x = np.random.default_rng(1).normal(size=(1, 3, 8, 8)).astype(np.float32)
    run = lambda xml: core.compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})(x)[0]  # noqa: E731
    np.testing.assert_array_equal(run(compact), run(indented))
    text = lambda xml: core.read_model(str(xml)).get_rt_info(["gfn_edge", "manifest"]).astype(str)  # noqa: E731
    assert json.loads(text(compact)) == {"note": "a >= b,\n  <tag>  </tag> > <"} and text(compact) == text(indented)
    assert compact_xml(compact) == 0  # compact already
