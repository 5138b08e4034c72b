"""How openvino-int8 batches the calibration pictures for NNCF's statistics."""

from __future__ import annotations

import pytest


def test_openvino_statistics_batches_divide_the_set_and_fit_the_cap():
    """NNCF collects statistics on a static batch (no partial last batch), so the batch divides the
    set; detector pictures are large, so the batch also stays under a value budget."""
    from gfn_edge.export.targets.openvino_int8 import STATISTICS_BATCH, STATISTICS_BATCH_VALUES, statistics_batch

    face = 3 * 112 * 112
    assert statistics_batch(228, face) == 12 and statistics_batch(224, face) == STATISTICS_BATCH
    assert statistics_batch(227, face) == 1  # a prime: one sample at a time, as before
    assert statistics_batch(5, face) == 5 and statistics_batch(1, face) == 1
    picture = 3 * 640 * 640
    batch = statistics_batch(150, picture)
    assert 150 % batch == 0 and batch * picture <= STATISTICS_BATCH_VALUES and batch == 10


def _resize_model(tmp_path, sizes_batch: int | None):
    """A 1x1 conv then a nearest resize to 8x8: with explicit output sizes (batch in a constant,
    as RetinaFace's FPN exports) or with scales (any batch)."""
    import numpy as np

    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((2, 2, 1, 1), np.float32), "w")
    if sizes_batch is None:
        extra = [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")]
        resize = helper.make_node("Resize", ["y", "", "scales"], ["z"], mode="nearest", name="/fpn/Resize")
    else:
        extra = [numpy_helper.from_array(np.array([sizes_batch, 2, 8, 8], np.int64), "sizes")]
        resize = helper.make_node("Resize", ["y", "", "", "sizes"], ["z"], mode="nearest", name="/fpn/Resize")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="/conv/Conv"), resize],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
        [w, *extra],
    )
    path = tmp_path / f"resize-{sizes_batch}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


@pytest.mark.parametrize("sizes_batch,expected", [(None, 4), (1, 1)])
def test_a_graph_that_cannot_run_at_the_statistics_batch_gets_one_picture_at_a_time(tmp_path, sizes_batch, expected):
    import numpy as np

    ov = pytest.importorskip("openvino")
    from gfn_edge.export.targets.openvino_int8 import _runnable_batch

    path = _resize_model(tmp_path, sizes_batch)

    def batch_model(size: int = 1):
        model = ov.convert_model(str(path))
        model.reshape([size, 2, 4, 4])
        return model

    calib = np.random.default_rng(0).standard_normal((8, 2, 4, 4)).astype(np.float32)
    assert _runnable_batch(ov, batch_model, calib, 4) == expected
    assert _runnable_batch(ov, batch_model, calib, 1) == 1
