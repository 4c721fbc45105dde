"""The personal head: a linear softmax over the genres of the user's own library.

Learnt by :mod:`genretag.learning` from tracks the user tagged. It reads one or more
views of the slice embedding (see :mod:`genretag.backbone`), concatenated in the
order the card lists them, standardises them with the training set's mean and
standard deviation, and applies one linear layer and a softmax::

    x = concat(views)                  [n, n_in]
    z = (x - feat_mean) / feat_std     [n, n_in]
    p = softmax(z @ weight.T + bias)   [n, n_classes]

The card's ``head.params`` hold ``views`` and ``n_in``; the buffers come from the
model directory's safetensors file.
"""
from __future__ import annotations

import torch

from ..backbone import VIEWS
from .base import Head


class PersonalHead(Head):
    """One distribution over the learnt genres per slice.

    Parameters
    ----------
    n_classes : int
        Number of learnt genres (the card's ``classes``).
    views : sequence of str
        Embedding views read, in concatenation order (default ``("penultimate",)``).
    n_in : int
        Width of the concatenated views (200 for ``penultimate``, 1506 for ``pooled``).
    """

    arch = "personal-linear"

    def __init__(self, n_classes: int, *, views=("penultimate",), n_in: int = 200):
        super().__init__()
        views = tuple(views)
        unknown = set(views) - set(VIEWS)
        if not views or unknown:
            raise ValueError(f"a personal head reads some of {VIEWS}, not {list(views)}")
        self.reads = views
        self.register_buffer("feat_mean", torch.zeros(n_in))
        self.register_buffer("feat_std", torch.ones(n_in))
        self.register_buffer("weight", torch.zeros(n_classes, n_in))
        self.register_buffer("bias", torch.zeros(n_classes))

    def forward(self, views: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.softmax(self.standardised(views) @ self.weight.T + self.bias, dim=1)
