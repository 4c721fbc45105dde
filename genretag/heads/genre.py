"""The trained genre head: standardised pooled features -> linear layer or small MLP -> softmax."""
from __future__ import annotations

import torch
from torch import nn

from ..backbone import EMBEDDING_DIM
from .base import Head


class GenreHead(Head):
    """One distribution over the genres per slice.

    ``hidden=0`` is a linear layer. ``temperature`` (from calibration on held-out
    data) divides the logits before the softmax; 1 leaves them as trained.
    """

    arch = "genre-mlp"
    reads = ("pooled",)

    def __init__(self, n_classes: int, *, n_in: int = EMBEDDING_DIM, hidden: int = 0,
                 dropout: float = 0.2, temperature: float = 1.0):
        super().__init__()
        self.temperature = float(temperature)
        self.register_buffer("feat_mean", torch.zeros(n_in))
        self.register_buffer("feat_std", torch.ones(n_in))
        if hidden:
            self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(n_in, hidden), nn.ReLU(),
                                     nn.Dropout(dropout), nn.Linear(hidden, n_classes))
        else:
            self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(n_in, n_classes))

    def logits(self, pooled: torch.Tensor) -> torch.Tensor:
        """``[n, 1506]`` -> uncalibrated logits ``[n, n_classes]`` (what training optimises)."""
        return self.net((pooled - self.feat_mean) / self.feat_std)

    def forward(self, views: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = self.logits(views["pooled"])
        if self.temperature != 1.0:
            logits = logits / self.temperature
        return torch.softmax(logits, dim=1)
