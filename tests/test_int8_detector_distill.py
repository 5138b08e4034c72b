"""What a detector is tuned on and for, while distilled for int8 (export/int8/learned/detector_views.py,
the detector loss of export/int8/learned/distill.py), and where the simulation puts quantisers
around the identities BatchNorm folding leaves.

Whether it helps the real RetinaFace is measured by the INT8 search on the real checkpoint (the
closing notes' tables); these pin the mechanics on tensors whose right answer is known.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="asset missing: torch (the training side: pip install 'gfn-edge[export]')")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from gfn_edge.export.int8.graph import trace_folded  # noqa: E402
from gfn_edge.export.int8.learned.detector_views import VIEWS, detector_view  # noqa: E402
from gfn_edge.export.int8.learned.distill import _detector_loss, _loss  # noqa: E402
from gfn_edge.export.int8.prepare import group_nodes  # noqa: E402
from gfn_edge.export.int8.simulate import quantisable_nodes, quantised_outputs  # noqa: E402


def _pictures(n: int = 8, h: int = 48, w: int = 64) -> torch.Tensor:
    return torch.randn(n, 3, h, w, generator=torch.Generator().manual_seed(0))


def test_every_view_has_a_quarter_of_the_pixels():
    x = _pictures()
    gen = torch.Generator().manual_seed(1)
    for view in VIEWS:
        out = detector_view(x, view, gen)
        assert out.shape[1:] == (3, 24, 32), view
        assert out.shape[0] == (2 if view == "mosaic" else 8), view


def test_the_window_is_a_piece_of_the_picture_at_full_resolution():
    x = _pictures(2)
    out = detector_view(x, "window", torch.Generator().manual_seed(3))
    hits = [(t, l) for t in range(25) for l in range(33) if torch.equal(x[..., t : t + 24, l : l + 32], out)]
    assert len(hits) == 1


def test_half_and_mosaic_are_the_pictures_made_smaller():
    x = _pictures(8)
    gen = torch.Generator()
    assert torch.allclose(detector_view(x, "half", gen), F.avg_pool2d(x, 2), atol=1e-6)
    mosaic = detector_view(x, "mosaic", gen)
    quarter = F.avg_pool2d(x, 4)  # (8, 3, 12, 16)
    # the second mosaic holds pictures 4..7: top left, top right, bottom left, bottom right
    assert torch.allclose(mosaic[1, :, :12, :16], quarter[4], atol=1e-6)
    assert torch.allclose(mosaic[1, :, :12, 16:], quarter[5], atol=1e-6)
    assert torch.allclose(mosaic[1, :, 12:, :16], quarter[6], atol=1e-6)
    assert torch.allclose(mosaic[1, :, 12:, 16:], quarter[7], atol=1e-6)


def test_an_unknown_view_is_refused():
    with pytest.raises(ValueError, match="unknown detector view 'tiles'"):
        detector_view(_pictures(), "tiles", torch.Generator())


def _outputs(anchors: int = 100, face_at: int = 7):
    gen = torch.Generator().manual_seed(0)
    loc = torch.randn(2, anchors, 4, generator=gen)
    landms = torch.randn(2, anchors, 10, generator=gen)
    p = torch.full((2, anchors), 1e-4)
    p[:, face_at] = 0.99
    conf = torch.stack([1 - p, p], -1)
    return [loc, conf, landms]


def test_the_detector_loss_counts_boxes_and_landmarks_where_faces_are():
    want = _outputs()
    assert float(_detector_loss([t.clone() for t in want], want)) == 0.0
    background = [t.clone() for t in want]
    background[2][:, 50] += 3.0  # landmarks moved at an anchor the FP32 model sees no face at
    background[0][:, 50] += 3.0
    face = [t.clone() for t in want]
    face[2][:, 7] += 0.3  # a tenth of that, at the face's anchor
    assert 10 * float(_detector_loss(background, want)) < float(_detector_loss(face, want))
    # the plain relative error over all anchors ranks them the other way round: why the detector has its own
    generic = [((g - w) ** 2).mean() / ((w**2).mean() + 1e-8) for g, w in zip(background, want)]
    generic_face = [((g - w) ** 2).mean() / ((w**2).mean() + 1e-8) for g, w in zip(face, want)]
    assert float(sum(generic)) > float(sum(generic_face))
    assert torch.equal(_loss("detect", face, want), _detector_loss(face, want))


def test_the_face_score_counts_at_every_anchor():
    want = _outputs()
    got = [t.clone() for t in want]
    got[1][:, 30] = torch.tensor([0.4, 0.6])  # a face appears where the FP32 model sees none: a false detection
    assert float(_detector_loss(got, want)) > 0.1


class _FoldedBlock(nn.Module):
    """What INT8 preparation leaves of conv -> BatchNorm -> ReLU: the BatchNorm an identity."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.Identity(), nn.ReLU(), nn.Conv2d(4, 4, 1), nn.Identity(), nn.LeakyReLU(0.1), nn.Conv2d(4, 2, 1)
        )

    def forward(self, x):
        return self.body(x)


def test_identities_get_no_quantiser_and_are_no_layer_group():
    gm = trace_folded(_FoldedBlock().eval(), torch.zeros(2, 3, 8, 8))
    targets = {str(n.target) for n in quantisable_nodes(gm) if n.op == "call_module"}
    assert targets == {"body.0", "body.2", "body.3", "body.5", "body.6"}
    quantised = {str(n.target) for n in quantised_outputs(gm)}
    # the first convolution reaches its ReLU through the identity: fused, one quantiser after the ReLU;
    # LeakyReLU is not fused by the backends, so the second convolution keeps its own; the last
    # convolution's result is the output, handed over in float (export/int8/float_outputs.py)
    assert quantised == {"body.2", "body.3", "body.5"}
    # the last convolution is still a layer group (int8 weights and input; it may be kept in float)
    assert sorted(group_nodes(gm, quantisable_nodes(gm))) == ["body.0", "body.2", "body.3", "body.5", "body.6"]
