"""Small models and long-tailed tensors shared by the PyTorch tests."""

from __future__ import annotations

import torch
from torch import nn

COUNTS = [80, 70, 60, 50, 40, 8, 6, 5]  # classes 5, 6, 7 are few (< 20)


class TinyCNN(nn.Module):
    def __init__(self, n_classes: int = 8) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(2)
        )
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(16, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.features(x).flatten(1)))

    def penultimate(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).flatten(1)


def mlp(d_in: int = 6, n_classes: int = 8) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, 12), nn.ReLU(), nn.Linear(12, n_classes))


def long_tail(seed: int = 0, image: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.repeat_interleave(torch.arange(len(COUNTS)), torch.tensor(COUNTS))
    if image:
        x = torch.randn(len(y), 1, 6, 6, generator=g) + y[:, None, None, None] * 0.2
    else:
        x = torch.randn(len(y), 6, generator=g) + nn.functional.one_hot(y, 8)[:, :6] * 2.0
    return x, y
