"""What the learned-quantisation fits and carriers share: NHWC calibration arrays as NCHW tensors,
torch pinned to few threads while fitting, and a backend's tensors matched to the twin's nodes."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np
import torch

K = TypeVar("K")


def nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32))


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's thread count set to ``threads`` (None: left as it is) for the block, then restored.

    The fits' tensors are small: on a busy 2-core machine one thread measured many times faster
    than two (oversubscription), so they run with one by default."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def match_to_twin(values: Mapping[K, np.ndarray], twin: Any, feed_nhwc: np.ndarray, channels_last: bool, rtol: float = 1e-3) -> dict[K, str]:
    """Each of a backend's tensor ``values`` (computed on ``feed_nhwc``; NHWC where
    ``channels_last``) -> the twin node computing the same values, its weights int8 and activations
    float: exporters and converters rename and re-order, they do not change what a tensor holds."""
    with torch.no_grad():
        _, twin_values = twin(nchw(feed_nhwc), quant_acts=False, collect=set(twin.act_names))
    by_shape: dict[tuple, list[tuple[str, np.ndarray]]] = {}
    for name, v in twin_values.items():
        if isinstance(v, torch.Tensor):
            a = v.numpy()
            a = a.transpose(0, 2, 3, 1) if channels_last and a.ndim == 4 else a
            by_shape.setdefault(tuple(a.shape), []).append((name, a))
    mapping: dict[K, str] = {}
    for key, value in values.items():
        for name, twin_value in by_shape.get(tuple(value.shape), []):
            scale = max(float(np.abs(twin_value).max()), 1e-6)
            if float(np.abs(value - twin_value).max()) <= rtol * scale:
                mapping[key] = name
                break
    return mapping
