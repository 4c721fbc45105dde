"""The musicnn network (Pons & Serra, 2019) as a torch module.

A re-implementation of the published ``MSD_musicnn`` architecture so that its
converted checkpoint (see ``tools/convert_musicnn.py``) runs without TensorFlow.

Input: log-compressed mel patches, ``[batch, frames=187, mels=96]``.
Layer order follows the original: convolution, ReLU, then batch norm.

In eval mode the front end takes cheaper, exact routes to the same numbers (see
:func:`conv_relu_bn_max_over_freq`); :meth:`Musicnn.pooled_plain` is the plain
definition they are tested against. ``bench/backbone_speed.py`` measures them.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

N_MELS = 96
N_FRAMES = 187
#: Size of the pooled mid-end summary (max and mean over time, interleaved).
POOLED_DIM = 2 * (2 * 204 + 3 * 51 + 3 * 64)
BN_EPS = 1e-3


def _bn(n: int) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(n, eps=BN_EPS)


def max_over_last(z: torch.Tensor) -> torch.Tensor:
    """``z.amax(dim=-1)``, computed faster when the last size is not a multiple of 16.

    torch's max over a short contiguous last dimension is quick for multiples of 16
    (96 frequency bins) and two to three times slower otherwise (59 and 30 bins, the
    timbral blocks). An elementwise max of two overlapping halves whose width is a
    multiple of 16 first gives the same maximum, exactly, in half the time.
    """
    n = z.shape[-1]
    half = 16 * -(-n // 32)  # multiple of 16, at least n / 2
    if n % 16 and half < n:
        z = torch.maximum(z[..., :half], z[..., n - half:])
    return z.amax(dim=-1)


def conv_relu_bn_max_over_freq(x: torch.Tensor, conv: nn.Conv2d,
                                bn: nn.BatchNorm2d) -> torch.Tensor:
    """``bn(relu(conv(x))).amax(dim=3)`` for input ``x [B, 1, T', F']`` -> ``[B, C, T]``.

    In eval mode batch norm is a per-channel affine map ``a*v + b`` and ReLU is
    monotonic, so the maximum over frequency comes from ``max z`` where ``a >= 0``
    and from ``min z`` where ``a < 0`` (``z = conv(x)``): ReLU and batch norm are
    applied to ``[B, C, T]`` only, not to the full ``[B, C, T, F]`` map. The minimum
    is taken as ``-max(-z)``, with ``-z`` computed as the convolution with negated
    weights and bias; negation is exact in floating point, so one max pass replaces
    a min/max pass with bit-identical results. The flipped weights are derived on
    each call (well under 1 % of its time), so nothing goes stale when weights change.
    """
    if bn.training:
        return bn(F.relu(conv(x))).amax(dim=3)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias - bn.running_mean * scale
    sign = torch.where(scale >= 0, 1.0, -1.0).to(scale.dtype)
    z = F.conv2d(x, conv.weight * sign[:, None, None, None], conv.bias * sign)
    picked = max_over_last(z) * sign[:, None]
    return F.relu(picked) * scale[:, None] + shift[:, None]


class TimbralBlock(nn.Module):
    """Conv over (7 frames x k mels), ReLU, BN, max over frequency -> [B, C, T]."""

    def __init__(self, filters: int, mel_span: int):
        super().__init__()
        self.conv = nn.Conv2d(1, filters, kernel_size=(7, mel_span))
        self.bn = nn.BatchNorm2d(filters, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (0, 0, 3, 3))  # pad time only
        return conv_relu_bn_max_over_freq(x, self.conv, self.bn)


class TemporalBlock(nn.Module):
    """Conv over (k frames x 1 mel) with TF 'same' padding, ReLU, BN, max over frequency."""

    def __init__(self, filters: int, frames: int):
        super().__init__()
        self.conv = nn.Conv2d(1, filters, kernel_size=(frames, 1))
        self.bn = nn.BatchNorm2d(filters, eps=BN_EPS)
        self.pad = ((frames - 1) // 2, frames - 1 - (frames - 1) // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv_relu_bn_max_over_freq(F.pad(x, (0, 0) + self.pad), self.conv, self.bn)


class MidEndLayer(nn.Module):
    """1-D conv over time (kernel 7, 'same'), ReLU, BN."""

    def __init__(self, n_in: int, n_out: int = 64):
        super().__init__()
        self.conv = nn.Conv1d(n_in, n_out, kernel_size=7, padding=3)
        self.bn = _bn(n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(F.relu(self.conv(x)))


class Musicnn(nn.Module):
    """MSD_musicnn: front end, dense mid end, pooled back end with 50 tag logits.

    ``forward`` returns the tag logits ``[B, 50]``; :meth:`pooled` returns the
    ``[B, 1506]`` max/mean-pooled mid-end features used as the genre embedding.
    """

    def __init__(self, n_tags: int = 50):
        super().__init__()
        self.input_bn = nn.BatchNorm2d(1, eps=BN_EPS)
        self.timbral = nn.ModuleList([TimbralBlock(204, int(0.4 * N_MELS)),
                                      TimbralBlock(204, int(0.7 * N_MELS))])
        self.temporal = nn.ModuleList([TemporalBlock(51, k) for k in (128, 64, 32)])
        self.mid = nn.ModuleList([MidEndLayer(561), MidEndLayer(64), MidEndLayer(64)])
        self.pool_bn = _bn(POOLED_DIM)
        self.dense = nn.Linear(POOLED_DIM, 200)
        self.dense_bn = _bn(200)
        self.tags = nn.Linear(200, n_tags)

    def pooled(self, patches: torch.Tensor) -> torch.Tensor:
        """``[B, 187, 96]`` log-mel patches -> ``[B, 1506]`` pooled features."""
        x = self.input_bn(patches.unsqueeze(1))
        front = torch.cat([b(x) for b in self.timbral] + [b(x) for b in self.temporal], dim=1)
        return self._pool_mid_end(front)

    def _pool_mid_end(self, front: torch.Tensor) -> torch.Tensor:
        """Front-end features ``[B, 561, T]`` -> ``[B, 1506]`` (mid end, max and mean over time)."""
        m1 = self.mid[0](front)
        m2 = self.mid[1](m1) + m1
        m3 = self.mid[2](m2) + m2
        feats = torch.cat([front, m1, m2, m3], dim=1)  # [B, 753, T]
        return torch.stack([feats.amax(dim=2), feats.mean(dim=2)], dim=2).flatten(1)

    def pooled_plain(self, patches: torch.Tensor) -> torch.Tensor:
        """:meth:`pooled` computed as the network is defined, block by block.

        Convolution, ReLU, batch norm on the full ``[B, C, T, F]`` maps, then the max
        over frequency: slower, kept as the reference that tests and the benchmark
        compare the fast path with (equal up to float rounding).
        """
        x = self.input_bn(patches.unsqueeze(1))
        maps = [b.bn(F.relu(b.conv(F.pad(x, (0, 0, 3, 3))))) for b in self.timbral]
        maps += [b.bn(F.relu(b.conv(F.pad(x, (0, 0) + b.pad)))) for b in self.temporal]
        return self._pool_mid_end(torch.cat([m.amax(dim=3) for m in maps], dim=1))

    def tag_logits(self, pooled: torch.Tensor) -> torch.Tensor:
        """Original 50 MSD tag logits from pooled features (dropout is inactive in eval)."""
        h = self.dense_bn(F.relu(self.dense(self.pool_bn(pooled))))
        return self.tags(h)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return self.tag_logits(self.pooled(patches))
