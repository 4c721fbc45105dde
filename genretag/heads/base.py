"""The base class every head derives from."""
from __future__ import annotations

from typing import ClassVar

import torch


class Head(torch.nn.Module):
    """A head over the backbone's slice embedding.

    Subclasses set :attr:`arch` (their name in :data:`genretag.heads.HEADS`),
    :attr:`reads` (the embedding views they need: ``pooled``, ``penultimate``,
    ``tag_logits``) and :attr:`multi_label` (independent per-class scores rather
    than one distribution), take ``n_classes`` and the card's ``head.params`` as
    keyword arguments, and implement :meth:`forward`.
    """

    arch: ClassVar[str] = ""
    reads: ClassVar[tuple[str, ...]] = ("pooled",)
    multi_label: ClassVar[bool] = False

    def forward(self, views: dict[str, torch.Tensor]) -> torch.Tensor:
        """``views`` of ``n`` slices -> scores ``[n, n_classes]`` in 0..1."""
        raise NotImplementedError

    def standardised(self, views: dict[str, torch.Tensor]) -> torch.Tensor:
        """The views the head :attr:`reads`, side by side and standardised with its
        ``feat_mean`` and ``feat_std`` buffers (the training set's): ``[n, n_in]``."""
        x = torch.cat([views[name].float() for name in self.reads], dim=1)
        return (x - self.feat_mean) / self.feat_std
