"""Genre networks: a head on the musicnn backbone, and the from-scratch baseline.

Both map log-mel patches ``[B, 187, 96]`` to genre logits ``[B, n_classes]``.
"""
from __future__ import annotations

import torch
from torch import nn

from .musicnn import POOLED_DIM, Musicnn


class GenreHead(nn.Module):
    """Standardise pooled musicnn features, then a small MLP (or linear layer if ``hidden=0``)."""

    def __init__(self, n_classes: int, *, n_in: int = POOLED_DIM, hidden: int = 0,
                 dropout: float = 0.2):
        super().__init__()
        self.register_buffer("feat_mean", torch.zeros(n_in))
        self.register_buffer("feat_std", torch.ones(n_in))
        if hidden:
            self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(n_in, hidden), nn.ReLU(),
                                     nn.Dropout(dropout), nn.Linear(hidden, n_classes))
        else:
            self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(n_in, n_classes))

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.net((pooled - self.feat_mean) / self.feat_std)


class MusicnnGenre(nn.Module):
    """Frozen MSD_musicnn backbone + :class:`GenreHead`."""

    arch = "musicnn-head"

    def __init__(self, n_classes: int, *, hidden: int = 0):
        super().__init__()
        self.backbone = Musicnn()
        self.head = GenreHead(n_classes, hidden=hidden)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone.pooled(patches))


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2))


class BaselineCNN(nn.Module):
    """Seed-style 2-D CNN trained from scratch: 4 conv blocks, global pooling, linear."""

    arch = "cnn-baseline"

    def __init__(self, n_classes: int, *, width: int = 32, dropout: float = 0.5):
        super().__init__()
        self.input_bn = nn.BatchNorm2d(1)
        self.blocks = nn.Sequential(_block(1, width), _block(width, width * 2),
                                    _block(width * 2, width * 4), _block(width * 4, width * 4))
        self.out = nn.Sequential(nn.Dropout(dropout), nn.Linear(width * 8, n_classes))

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.input_bn(patches.unsqueeze(1)))
        return self.out(torch.cat([x.amax(dim=(2, 3)), x.mean(dim=(2, 3))], dim=1))


ARCHITECTURES = {MusicnnGenre.arch: MusicnnGenre, BaselineCNN.arch: BaselineCNN}
