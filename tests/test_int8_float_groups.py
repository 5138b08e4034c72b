"""Layer groups kept in float must reach the graph the backend quantises.

A group is a module path (``blocks.3``, ``LandmarkHead.0``); each target finds its nodes by name in
the exported graph. torch.onnx names an indexed child's scope ``parent.index`` inside its parent's
scope only when the parent is called (a Sequential); a ModuleList is iterated, never called, so
RetinaFace's heads are ``/LandmarkHead.0/...``. Until 2026-12-02 the patterns wanted
``/LandmarkHead/LandmarkHead.0/`` and keeping a head in float silently did nothing.
"""

from __future__ import annotations

import re

import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from torch import nn  # noqa: E402

from gfn_edge.errors import InvalidArgumentError  # noqa: E402
from gfn_edge.export.int8.prepare import module_group, names_in_groups, onnx_name_patterns, tf_name_patterns  # noqa: E402


class _Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1x1 = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        return self.conv1x1(x)


class _Net(nn.Module):
    """A Sequential body (called: its children get ``/body/body.N`` scopes) and ModuleList heads."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.body = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 1))
        self.heads = nn.ModuleList(_Head() for _ in range(2))

    def forward(self, x):
        x = self.body(self.stem(x))
        return torch.cat([h(x) for h in self.heads], 1)


@pytest.fixture(scope="module")
def node_names(tmp_path_factory) -> list[str]:
    path = tmp_path_factory.mktemp("groups") / "net.onnx"
    with torch.no_grad():
        torch.onnx.export(_Net().eval(), (torch.zeros(1, 3, 8, 8),), str(path), opset_version=17, dynamo=False)
    return [n.name for n in onnx.load(str(path)).graph.node]


def _groups() -> list[str]:
    return sorted({module_group(name) for name, m in _Net().named_modules() if isinstance(m, nn.Conv2d)})


def test_every_group_of_a_sequential_and_a_module_list_reaches_its_own_nodes(node_names):
    groups = _groups()
    assert groups == ["body.0", "body.2", "heads.0", "heads.1", "stem"]
    convs = [n for n in node_names if n.endswith("/Conv")]
    for group, pattern in zip(groups, onnx_name_patterns(groups)):
        mine = [n for n in convs if pattern.search(n)]
        assert len(mine) == 1, f"{group}: {mine} of {convs}"
    # one head's pattern never takes the other's nodes, nor heads.1 those of a heads.10
    (head0,) = onnx_name_patterns(["heads.0"])
    assert head0.search("/heads.0/conv1x1/Conv") and not head0.search("/heads.01/conv1x1/Conv") and not head0.search("/heads.1/conv1x1/Conv")


def test_the_nested_sequential_form_is_still_matched():
    (pattern,) = onnx_name_patterns(["body.stage1.3"])
    assert pattern.search("/body/stage1/stage1.3/stage1.3.0/Conv")
    assert not pattern.search("/body/stage1/stage1.30/Conv") and not pattern.search("/body/stage2/stage2.3/Conv")


def test_a_group_that_matches_nothing_is_an_error_naming_it(node_names):
    groups = ["heads.1", "LandmarkHead.0"]
    with pytest.raises(InvalidArgumentError, match=r"LandmarkHead\.0 match no ONNX node") as err:
        names_in_groups(node_names, groups, onnx_name_patterns(groups), "ONNX node")
    assert "heads.1" not in str(err.value).split("groups ")[1].split(" match")[0]
    kept = names_in_groups(node_names, ["heads.1"], onnx_name_patterns(["heads.1"]), "ONNX node")
    assert kept and all(re.match(r"^/heads\.1/", n) for n in kept)


def test_tflite_tensor_names_of_a_group():
    # tf_graph's name scope of a node is its module path with dots as underscores
    (pattern,) = tf_name_patterns(["LandmarkHead.0"])
    assert pattern.search("LandmarkHead_0_conv1x1/BiasAdd") and pattern.search("model/LandmarkHead_0_conv1x1/Conv2D")
    assert not pattern.search("LandmarkHead_01_conv1x1/BiasAdd") and not pattern.search("LandmarkHead_1_conv1x1/BiasAdd")
