"""The cross-collection genre head: softmax regression on backbone views, with a reject class.

Reads one or more views of the slice embedding (by default the backbone's own
200-d ``penultimate`` layer and its 50 ``tag_logits``: what it learnt from the Million
Song Dataset, rather than 1506 raw features fitted to a few hundred clips), standardises
them and applies one linear layer. With ``reject=True`` the layer has one more output,
*not music*, trained on generated noise, tones, clicks and speech-like signals
(:mod:`genretag.nonmusic`); the head returns the genre part of the softmax only, so on
such input every genre scores low and no genre reaches ``min_confidence``.
``temperature`` divides the logits before the softmax (fitted on held-out folds).
"""
from __future__ import annotations

import torch
from torch import nn

from .base import Head

#: Widths of the backbone views (see :mod:`genretag.backbone`).
VIEW_DIMS = {"pooled": 1506, "penultimate": 200, "tag_logits": 50}


class SoftmaxHead(Head):
    """Scores ``[n, n_classes]``: the genre columns of ``softmax(logits / temperature)``.

    Their sum is ``1 - p(not music)`` with a reject class, 1 without.
    """

    arch = "genre-softmax"

    def __init__(self, n_classes: int, *, inputs: tuple[str, ...] | list[str] = (
                 "penultimate", "tag_logits"), reject: bool = True,
                 temperature: float = 1.0):
        super().__init__()
        unknown = set(inputs) - set(VIEW_DIMS)
        if unknown:
            raise ValueError(f"unknown embedding views {sorted(unknown)}")
        self.inputs = tuple(inputs)
        self.reads = self.inputs
        self.n_classes = n_classes
        self.temperature = float(temperature)
        n_in = sum(VIEW_DIMS[v] for v in self.inputs)
        self.register_buffer("feat_mean", torch.zeros(n_in))
        self.register_buffer("feat_std", torch.ones(n_in))
        self.linear = nn.Linear(n_in, n_classes + int(reject))

    def logits(self, views: dict[str, torch.Tensor]) -> torch.Tensor:
        """Uncalibrated logits ``[n, n_classes (+1 for not music)]`` (what training fits)."""
        return self.linear(self.standardised(views))

    def forward(self, views: dict[str, torch.Tensor]) -> torch.Tensor:
        probs = torch.softmax(self.logits(views) / self.temperature, dim=1)
        return probs[:, :self.n_classes]
