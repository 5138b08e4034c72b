"""RetinaFace (the training-side reference) for every backbone in the registry.

``RetinaFace(backbone=...)`` has exactly the state_dict of the Pytorch_Retinaface /
Retinaface_Ghost model of that backbone, so their ``.pth`` files load with ``strict=True``.
In test phase the forward returns ``(loc, conf, landms)`` with ``conf`` softmaxed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import BACKBONES
from .retinaface_parts import FPN, SSH, BboxHead, ClassHead, LandmarkHead

# Pytorch_Retinaface calls the pyramid ``fpn``; Retinaface_Ghost renamed it ``FPN``.
_FPN_ATTRIBUTE = {"mobilenet0.25": "fpn", "resnet50": "fpn", "ghostnet": "FPN", "mobilenetv3": "FPN"}
_OUT_CHANNELS = {"mobilenet0.25": 64, "resnet50": 256, "ghostnet": 64, "mobilenetv3": 64}


class RetinaFace(nn.Module):
    def __init__(self, backbone: str = "mobilenet0.25", phase: str = "test", anchors_per_cell: int = 2, **backbone_kwargs):
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"unknown RetinaFace backbone {backbone!r}; known: {sorted(BACKBONES)}")
        self.phase = phase
        self.backbone_name = backbone
        self.body = BACKBONES[backbone](**backbone_kwargs)
        out_channels = _OUT_CHANNELS[backbone]
        self._fpn_attr = _FPN_ATTRIBUTE[backbone]
        setattr(self, self._fpn_attr, FPN(list(self.body.out_channels), out_channels))
        self.ssh1 = SSH(out_channels, out_channels)
        self.ssh2 = SSH(out_channels, out_channels)
        self.ssh3 = SSH(out_channels, out_channels)
        self.ClassHead = nn.ModuleList(ClassHead(out_channels, anchors_per_cell) for _ in range(3))
        self.BboxHead = nn.ModuleList(BboxHead(out_channels, anchors_per_cell) for _ in range(3))
        self.LandmarkHead = nn.ModuleList(LandmarkHead(out_channels, anchors_per_cell) for _ in range(3))

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        fpn = getattr(self, self._fpn_attr)(self.body(inputs))
        features = [self.ssh1(fpn[0]), self.ssh2(fpn[1]), self.ssh3(fpn[2])]
        loc = torch.cat([head(f) for head, f in zip(self.BboxHead, features)], dim=1)
        conf = torch.cat([head(f) for head, f in zip(self.ClassHead, features)], dim=1)
        landms = torch.cat([head(f) for head, f in zip(self.LandmarkHead, features)], dim=1)
        if self.phase == "train":
            return loc, conf, landms
        return loc, F.softmax(conf, dim=-1), landms
