"""The squeeze-and-excitation CNN itself (a plain ``torch.nn.Module``; training lives in :mod:`.trainer`).

Each block is convolution(s) + BatchNorm + ReLU, then an SE block, then 2x2 max pooling. The SE block squeezes each
channel to one number (global average pool), excites through two small fully connected layers (reduction ``r``,
ReLU, sigmoid), and rescales the channels by the result. The head is global average pooling, dropout and a linear
layer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F


@dataclass
class NetConfig:
    num_classes: int = 4
    width: int = 16  # channels of the first block; doubled per block up to 8x
    blocks: int = 5
    convs_per_block: int = 2
    reduction: int = 8
    dropout: float = 0.3
    stem_stride: int = 1  # stride of the first convolution: 2 halves the cost of the full-resolution block

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NetConfig:
        return cls(**{key: data[key] for key in cls.__dataclass_fields__ if key in data})


class SEBlock(nn.Module):
    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        hidden = max(4, channels // reduction)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def excitation(self, x: torch.Tensor) -> torch.Tensor:
        squeezed = x.mean(dim=(2, 3))
        return torch.sigmoid(self.fc2(F.relu(self.fc1(squeezed))))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        weights = self.excitation(x)
        return x * weights[:, :, None, None], weights


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

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns the SE-recalibrated map (before pooling) and the excitation vector."""
        return self.se(self.convs(x))


class SECNN(nn.Module):
    def __init__(self, config: NetConfig | None = None) -> None:
        super().__init__()
        self.config = config or NetConfig()
        c = self.config
        channels = [min(c.width * 2**index, c.width * 8) for index in range(c.blocks)]
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

    @property
    def block_names(self) -> list[str]:
        return [f"block {index + 1} ({block.se.fc2.out_features} channels)" for index, block in enumerate(self.blocks)]

    def forward_all(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], torch.Tensor]:
        """Logits, pooled features, every SE excitation, and the last block's map before its pooling."""
        excitations = []
        last_map = x
        for index, block in enumerate(self.blocks):
            x, weights = block(x)
            excitations.append(weights)
            if index == len(self.blocks) - 1:
                last_map = x
            x = F.max_pool2d(x, 2) if min(x.shape[-2:]) >= 2 else x
        features = x.mean(dim=(2, 3))
        logits = self.head(self.dropout(features))
        return logits, features, excitations, last_map

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_all(x)[0]

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and penultimate (pooled) features."""
        logits, features, _, _ = self.forward_all(x)
        return logits, features
