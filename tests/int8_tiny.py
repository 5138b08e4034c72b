"""The small network the INT8 mechanics tests share (random weights: mechanics only, never accuracy).

Imported after ``pytest.importorskip("torch")`` by the tests that use it.
"""

from __future__ import annotations

import torch
from torch import nn


class Tiny(nn.Module):
    """conv-BN-ReLU, conv-BN-PReLU with a residual add, global pooling and a linear embedding: each
    place a backend puts (or fuses) a quantiser, and BatchNorms for the preparation to fold."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.prelu = nn.PReLU(8, init=0.2)
        self.fc = nn.Linear(8, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.relu(self.bn1(self.conv1(x)))
        b = self.prelu(self.bn2(self.conv2(a))) + a
        return self.fc(b.mean(dim=(2, 3)))
