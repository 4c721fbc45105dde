"""Training: cached per-slice inputs, the genre head, the from-scratch baseline, the card.

Every clip is decoded once, seen in each of :data:`~genretag.dataset.AUGMENTATIONS`,
cut into the same non-overlapping slices inference uses, and cached as log-mel
patches plus frozen-backbone features. Training then runs on the cache.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .dataset import AUGMENTATIONS, Clip, augment, consecutive_slices
from .features import MUSICNN_FEATURES, log_mel
from .model import sha256_file

BACKBONE_FILE = "musicnn_msd_backbone.safetensors"


@dataclass
class SliceSet:
    """Per-slice arrays for a list of clips (row ``i`` belongs to ``clips[clip[i]]``)."""

    clips: list[Clip]
    patches: np.ndarray  # [N, 187, 96] float16 log-mel
    pooled: np.ndarray   # [N, 1506] float32 backbone features
    clip: np.ndarray     # [N] clip index
    aug: np.ndarray      # [N] index into AUGMENTATIONS

    def rows(self, clip_mask: np.ndarray, augs: tuple[str, ...] = AUGMENTATIONS) -> np.ndarray:
        aug_ok = np.isin(self.aug, [AUGMENTATIONS.index(a) for a in augs])
        return np.flatnonzero(clip_mask[self.clip] & aug_ok)


def load_backbone(weights_dir: Path):
    """The converted musicnn backbone (frozen, eval mode) from ``weights_dir``."""
    from safetensors.torch import load_file

    from .musicnn import Musicnn

    net = Musicnn()
    net.load_state_dict(load_file(str(weights_dir / BACKBONE_FILE)))
    return net.eval()


def build_slice_set(clips: list[Clip], weights_dir: Path, cache_dir: Path | None = None,
                    *, log=print) -> SliceSet:
    """Decode, augment, slice and embed ``clips``; reuse ``cache_dir`` when it matches."""
    import torch

    from .audio import decode

    key = hashlib.sha256(json.dumps([
        [str(c.path.name) for c in clips], AUGMENTATIONS, MUSICNN_FEATURES.to_dict(),
        sha256_file(weights_dir / BACKBONE_FILE)]).encode()).hexdigest()[:16]
    cache = cache_dir / f"slices-{key}.npz" if cache_dir else None
    if cache and cache.is_file():
        z = np.load(cache)
        return SliceSet(clips, z["patches"], z["pooled"], z["clip"], z["aug"])
    backbone = load_backbone(weights_dir)
    params = MUSICNN_FEATURES
    patches, pooled, clip_idx, aug_idx = [], [], [], []
    for i, clip in enumerate(clips):
        audio = decode(str(clip.path), params.sample_rate)
        for a, kind in enumerate(AUGMENTATIONS):
            mel = log_mel(consecutive_slices(augment(audio, params.sample_rate, kind), params))
            with torch.inference_mode():
                pooled.append(backbone.pooled(mel).numpy())
            patches.append(mel.numpy().astype(np.float16))
            clip_idx += [i] * len(mel)
            aug_idx += [a] * len(mel)
        if (i + 1) % 20 == 0 or i + 1 == len(clips):
            log(f"  prepared {i + 1}/{len(clips)} clips")
    out = SliceSet(clips, np.concatenate(patches), np.concatenate(pooled),
                   np.asarray(clip_idx), np.asarray(aug_idx))
    if cache:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, patches=out.patches, pooled=out.pooled, clip=out.clip, aug=out.aug)
    return out


def class_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Inverse-frequency weights (mean 1 over present classes); absent classes get 0."""
    counts = np.bincount(labels, minlength=n_classes).astype(float)
    w = np.divide(1.0, counts, out=np.zeros(n_classes), where=counts > 0)
    return w / w[counts > 0].mean()


def balanced_training(net, labels: np.ndarray, n_classes: int, *, lr: float,
                      weight_decay: float):
    """``(loss, optimiser)``: class-balanced cross-entropy and AdamW over ``net``'s parameters."""
    import torch

    loss_fn = torch.nn.CrossEntropyLoss(
        weight=torch.from_numpy(class_weights(labels, n_classes)).float())
    return loss_fn, torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)


@dataclass(frozen=True)
class HeadConfig:
    """Chosen by the two-fold protocol among linear/MLP heads (see the model card)."""

    hidden: int = 0
    dropout: float = 0.2
    epochs: int = 20
    lr: float = 1e-3
    weight_decay: float = 0.1
    batch_size: int = 128


def fit_head(pooled: np.ndarray, labels: np.ndarray, n_classes: int, *,
             config: HeadConfig = HeadConfig(), seed: int = 0):
    """Train a :class:`~genretag.nets.GenreHead` on backbone features with balanced loss."""
    import torch

    from .nets import GenreHead

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    head = GenreHead(n_classes, hidden=config.hidden, dropout=config.dropout)
    x = torch.from_numpy(pooled.astype(np.float32))
    head.feat_mean.copy_(x.mean(0))
    head.feat_std.copy_(x.std(0).clamp_min(1e-3))
    y = torch.from_numpy(labels).long()
    loss_fn, opt = balanced_training(head, labels, n_classes, lr=config.lr,
                                     weight_decay=config.weight_decay)
    head.train()
    for _ in range(config.epochs):
        order = rng.permutation(len(x))
        for i in range(0, len(order), config.batch_size):
            idx = torch.from_numpy(order[i:i + config.batch_size])
            opt.zero_grad()
            loss_fn(head(x[idx]), y[idx]).backward()
            opt.step()
    return head.eval()


@dataclass(frozen=True)
class BaselineConfig:
    """Sized to train on 2 CPU cores in minutes; each epoch sees a random quarter of the rows."""

    width: int = 8
    epochs: int = 20
    epoch_fraction: float = 0.25
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 32


def fit_baseline(patches: np.ndarray, labels: np.ndarray, n_classes: int, *,
                 config: BaselineConfig = BaselineConfig(), seed: int = 0, log=print):
    """Train the from-scratch :class:`~genretag.nets.BaselineCNN` on log-mel patches."""
    import torch

    from .nets import BaselineCNN

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = BaselineCNN(n_classes, width=config.width)
    y = torch.from_numpy(labels).long()
    loss_fn, opt = balanced_training(net, labels, n_classes, lr=config.lr,
                                     weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs)
    for epoch in range(config.epochs):
        net.train()
        order = rng.permutation(len(patches))[: int(len(patches) * config.epoch_fraction)]
        total = 0.0
        for i in range(0, len(order), config.batch_size):
            idx = order[i:i + config.batch_size]
            x = torch.from_numpy(patches[idx].astype(np.float32))
            opt.zero_grad()
            loss = loss_fn(net(x), y[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        sched.step()
        log(f"  baseline epoch {epoch + 1}/{config.epochs}: loss {total / len(order):.3f}")
    return net.eval()


MODEL_IDS = {"musicnn-head": "genretag-musicnn-msd", "cnn-baseline": "genretag-cnn-baseline"}

MUSICNN_PROVENANCE = {
    "name": "MSD_musicnn",
    "source": "musicnn 0.1.0 wheel on PyPI (Music Technology Group, Universitat Pompeu Fabra; "
              "Jordi Pons)",
    "paper": "Pons & Serra, 'musicnn: pre-trained convolutional neural networks for music "
             "audio tagging', ISMIR 2019 LBD",
    "trained_on": "Million Song Dataset audio, 50 Last.fm tags",
    "conversion": "tools/convert_musicnn.py (TF-1 checkpoint -> safetensors), "
                  "port verified by tests/test_port.py",
    "licence": "ISC",
    "licence_text": "Copyright (c) Music Technology Group, Universitat Pompeu Fabra 2019. Code "
                    "developed by Jordi Pons (www.jordipons.me). Permission to use, copy, modify, "
                    "and/or distribute this software for any purpose with or without fee is "
                    "hereby granted, provided that the above copyright notice and this "
                    "permission notice appear in all copies. THE SOFTWARE IS PROVIDED \"AS IS\" "
                    "AND THE AUTHOR DISCLAIMS ALL WARRANTIES WITH REGARD TO THIS SOFTWARE "
                    "INCLUDING ALL IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS. IN NO EVENT "
                    "SHALL THE AUTHOR BE LIABLE FOR ANY SPECIAL, DIRECT, INDIRECT, OR "
                    "CONSEQUENTIAL DAMAGES OR ANY DAMAGES WHATSOEVER RESULTING FROM LOSS OF USE, "
                    "DATA OR PROFITS, WHETHER IN AN ACTION OF CONTRACT, NEGLIGENCE OR OTHER "
                    "TORTIOUS ACTION, ARISING OUT OF OR IN CONNECTION WITH THE USE OR "
                    "PERFORMANCE OF THIS SOFTWARE.",
}


def write_model(net, arch: str, out_dir: Path, *, version: str, classes: list[str],
                backbone_dir: Path, training: dict, metrics: dict | None = None,
                arch_params: dict | None = None) -> dict:
    """Write the weights and ``model_card.json`` of a trained model to ``out_dir``."""
    import shutil

    from .model import CARD_NAME, save_tensors

    out_dir.mkdir(parents=True, exist_ok=True)
    model_id = MODEL_IDS[arch]
    files = []
    if arch == "musicnn-head":
        if (out_dir / BACKBONE_FILE).resolve() != (backbone_dir / BACKBONE_FILE).resolve():
            shutil.copyfile(backbone_dir / BACKBONE_FILE, out_dir / BACKBONE_FILE)
        files.append({"path": BACKBONE_FILE, "sha256": sha256_file(out_dir / BACKBONE_FILE),
                      "prefix": "backbone."})
        head_file = out_dir / f"{model_id}-head-v{version}.safetensors"
        files.append({**save_tensors(net.state_dict(), head_file), "prefix": "head."})
    else:
        files.append({**save_tensors(net.state_dict(), out_dir / f"{model_id}-v{version}"
                                     ".safetensors"), "prefix": ""})
    card = {
        "model_id": model_id, "version": version, "architecture": arch,
        "arch_params": arch_params or {}, "classes": classes,
        "features": MUSICNN_FEATURES.to_dict(), "files": files, "training": training,
        "metrics": metrics or {},
        "provenance": [MUSICNN_PROVENANCE] if arch == "musicnn-head" else [],
    }
    (out_dir / CARD_NAME).write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
    return card
