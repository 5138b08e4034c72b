"""How openvino-int8 batches the calibration pictures for NNCF's statistics."""

from __future__ import annotations


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
