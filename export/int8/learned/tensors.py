"""What the learned-quantisation fits share: NHWC calibration arrays as NCHW tensors, and torch
pinned to few threads while fitting."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch


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
