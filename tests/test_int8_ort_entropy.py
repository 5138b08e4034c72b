"""The NumPy entropy thresholds (export/int8/ort_entropy.py) are onnxruntime's, exactly.

Histograms are built by onnxruntime's own HistogramCollector from real face pictures (their pixel
values, the signed, heavy-tailed differences between neighbouring pixels that a first convolution
sees, and those through a ReLU) and from edge cases (a single value, a sparse histogram, a
histogram onnxruntime widened past its 1024 bins while merging batches).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="asset missing: onnxruntime (pip install 'gfn-edge[export]')")
pytest.importorskip("scipy", reason="asset missing: scipy (pip install 'gfn-edge[export]')")

from conftest import shared_path

from gfn_edge.export.int8.ort_entropy import entropy_thresholds


def _collector():
    from onnxruntime.quantization.calibrate import HistogramCollector

    return HistogramCollector(method="entropy", symmetric=False, num_bins=1024, num_quantized_bins=255, percentile=99.999, scenario="same")


def _face_tensors() -> dict[str, list[np.ndarray]]:
    import cv2

    folder = shared_path("faces", "portraits")
    pictures = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:6]
    assert pictures, f"no pictures in {folder}"
    batches: dict[str, list[np.ndarray]] = {"pixels": [], "edges": [], "edges_relu": []}
    for path in pictures:
        image = cv2.imread(str(path))
        assert image is not None, path
        x = (cv2.resize(image, (112, 112)).astype(np.float32) - 127.5) / 127.5
        edges = np.diff(x, axis=1) * 4.0
        batches["pixels"].append(x)
        batches["edges"].append(edges)
        batches["edges_relu"].append(np.maximum(edges, 0))
    return batches


def _ours_and_theirs(batches: dict[str, list[np.ndarray]]) -> tuple[dict, dict, float, float]:
    collector = _collector()
    for i in range(max(len(v) for v in batches.values())):
        collector.collect({name: [arrays[i]] for name, arrays in batches.items() if i < len(arrays)})
    start = time.perf_counter()
    theirs = collector.compute_entropy()
    their_s = time.perf_counter() - start
    start = time.perf_counter()
    ours = entropy_thresholds(collector.histogram_dict, 255)
    our_s = time.perf_counter() - start
    return ours, theirs, our_s, their_s


def _assert_same(ours: dict, theirs: dict) -> None:
    assert ours.keys() == theirs.keys()
    for name in theirs:
        low, high, counts, edges = ours[name]
        assert (low, high) == (theirs[name][0], theirs[name][1]), name
        assert low.dtype == theirs[name][0].dtype and high.dtype == theirs[name][1].dtype
        assert counts is theirs[name][2] or np.array_equal(counts, theirs[name][2])
        assert np.array_equal(edges, theirs[name][3])


def test_real_face_histograms_get_onnxruntimes_thresholds_faster():
    ours, theirs, our_s, their_s = _ours_and_theirs(_face_tensors())
    _assert_same(ours, theirs)
    # the thresholds are not trivially the observed range: the search had something to choose
    low, high = ours["edges"][:2]
    counts, edges = ours["edges"][2:]
    assert (low, high) != (edges[0], edges[-1])
    print(f"\nentropy thresholds of 3 tensors: onnxruntime {their_s:.2f} s, ours {our_s:.3f} s")
    assert our_s < their_s


def test_edge_case_histograms_match():
    rng = np.random.default_rng(0)
    sparse = np.zeros(4000, np.float32)
    sparse[::97] = rng.standard_normal(sparse[::97].size) * 30
    batches = {
        "constant": [np.full(50, 0.5, np.float32)],
        "sparse": [sparse],
        # a second batch far outside the first one's range: onnxruntime widens the histogram
        "widened": [rng.standard_normal(5000).astype(np.float32), (rng.standard_normal(5000) * 9 + 4).astype(np.float32)],
        "one_sided": [np.abs(rng.standard_normal(3000)).astype(np.float32) ** 3],
    }
    ours, theirs, _, _ = _ours_and_theirs(batches)
    _assert_same(ours, theirs)
