"""The squeeze-and-excitation CNN itself (a plain ``torch.nn.Module``; training lives in :mod:`.trainer`).

Each block is convolution(s) + BatchNorm + ReLU, then an SE block, then 2x2 max pooling. The SE block squeezes each
channel to one number (global average pool), excites through two small fully connected layers (reduction ``r``,
ReLU, sigmoid), and rescales the channels by the result. The head is global average pooling, dropout and a linear
layer.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from allgui.core.models.secnn.options import NetConfig


class SEBlock(nn.Module):
    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        hidden = max(4, channels // reduction)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def excitation(self, x: torch.Tensor) -> torch.Tensor:
        squeezed = x.mean(dim=(2, 3))
        return torch.sigmoid(self.fc2(F.relu(self.fc1(squeezed))))


class ConvSEBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, convs: int, reduction: int, stride: int = 1) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for index in range(convs):
            first = index == 0
            layers += [
                nn.Conv2d(
                    in_channels if first else out_channels,
                    out_channels,
                    3,
                    stride=stride if first else 1,
                    padding=1,
                    bias=False,
                ),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(inplace=True),
            ]
        self.convs = nn.Sequential(*layers)
        self.se = SEBlock(out_channels, reduction)


class SECNN(nn.Module):
    def __init__(self, config: NetConfig | None = None) -> None:
        super().__init__()
        self.config = config or NetConfig()
        c = self.config
        channels = c.channels
        self.blocks = nn.ModuleList(
            ConvSEBlock(
                3 if index == 0 else channels[index - 1],
                channels[index],
                c.convs_per_block,
                c.reduction,
                c.stem_stride if index == 0 else 1,
            )
            for index in range(c.blocks)
        )
        self.dropout = nn.Dropout(c.dropout)
        self.head = nn.Linear(channels[-1], c.num_classes)
        self.feature_size = channels[-1]
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """What inference reads, in the order of ``engines.GRAPH_OUTPUTS`` (the ONNX graph is this method):
        logits, pooled features, each block's SE excitation, and the last block's class maps and mean map.

        Max pooling runs before the SE rescaling: the excitations are positive per-channel factors, so the two
        commute exactly and the multiplication touches a quarter of the values. The class maps are Grad-CAM
        without a gradient: the head averages the pooled map and applies a linear layer, so the gradient of class
        c's logit, averaged over the last map, is ``head.weight[c] / (h * w)`` for every image; the map of class c
        is ``sum_k head.weight[c, k] * map_k`` up to that positive factor, which the heat map's scaling removes.
        """
        excitations = []
        class_maps = mean_map = x
        for index, block in enumerate(self.blocks):
            x = block.convs(x)
            weights = block.se.excitation(x)
            excitations.append(weights)
            if index == len(self.blocks) - 1:
                class_maps = torch.einsum("kc,nc,nchw->nkhw", self.head.weight, weights, x)
                mean_map = (x * weights[:, :, None, None]).mean(dim=1)
            if min(x.shape[-2:]) >= 2:
                x = F.max_pool2d(x, 2)
            x = x * weights[:, :, None, None]
        features = x.mean(dim=(2, 3))
        return (self.head(self.dropout(features)), features, *excitations, class_maps, mean_map)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (training reads only these; dropout is active in training mode)."""
        return self.outputs(x)[0]
