"""The one feeder of calibration samples to onnxruntime's calibrators (plain PTQ and learned ranges alike)."""

from __future__ import annotations

import numpy as np


class CalibrationReader:
    """Feeds NHWC calibration samples one at a time as NCHW, as onnxruntime's calibrators expect."""

    def __init__(self, x_nhwc: np.ndarray, input_name: str):
        self.x = np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2), dtype=np.float32)
        self.name = input_name
        self.i = 0

    def get_next(self):
        if self.i >= len(self.x):
            return None
        self.i += 1
        return {self.name: self.x[self.i - 1 : self.i]}

    def rewind(self) -> None:
        self.i = 0
