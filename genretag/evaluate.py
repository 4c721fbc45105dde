"""The evaluation protocol: two artist-disjoint folds, track-level metrics, both models.

Fold A trains on ``train`` and scores ``valid``; fold B trains on ``valid`` and
scores ``train``. A track's genre is the mean of its slice probabilities, exactly
as in :mod:`genretag.predict`. Held-out clips are scored as they are (clean), and
again band-limited to 8 kHz to show that bandwidth is not used as a cue.
"""
from __future__ import annotations

import numpy as np

from .audio import spread_indices
from .dataset import GTZAN_GENRES
from .metrics import summarize
from .train import BaselineConfig, HeadConfig, SliceSet, fit_baseline, fit_head

ARCHS = ("musicnn-head", "cnn-baseline")
FOLDS = (("train", "valid"), ("valid", "train"))


def fit(arch: str, data: SliceSet, rows: np.ndarray, labels: np.ndarray, *, seed: int,
        head_config: HeadConfig = HeadConfig(), baseline_config: BaselineConfig = BaselineConfig(),
        log=print):
    """A trained network for ``arch`` on the given slice rows."""
    n = len(GTZAN_GENRES)
    if arch == "musicnn-head":
        return fit_head(data.pooled[rows], labels, n, config=head_config, seed=seed)
    if arch == "cnn-baseline":
        return fit_baseline(data.patches[rows], labels, n, config=baseline_config, seed=seed,
                            log=log)
    raise ValueError(f"unknown architecture {arch!r}")


def predict_rows(arch: str, net, data: SliceSet, rows: np.ndarray) -> np.ndarray:
    """Slice probabilities ``[len(rows), n_classes]``."""
    import torch

    out = []
    with torch.inference_mode():
        for i in range(0, len(rows), 256):
            r = rows[i:i + 256]
            x = (torch.from_numpy(data.pooled[r]) if arch == "musicnn-head"
                 else torch.from_numpy(data.patches[r].astype(np.float32)))
            out.append(torch.softmax(net(x), dim=1).numpy())
    return np.concatenate(out)


def track_predictions(data: SliceSet, rows: np.ndarray, probs: np.ndarray,
                      max_slices: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(clip indices, predicted class)`` from mean slice probabilities per clip.

    With ``max_slices``, only that many evenly spread slices per clip are used,
    the same choice :func:`genretag.audio.plan_slices` makes for long files.
    """
    clips = np.unique(data.clip[rows])
    preds = []
    for c in clips:
        p = probs[data.clip[rows] == c]
        if max_slices:
            p = p[spread_indices(len(p), max_slices)]
        preds.append(int(p.mean(0).argmax()))
    return clips, np.asarray(preds)


def run_fold(arch: str, data: SliceSet, fit_split: str, score_split: str, *, seed: int = 0,
             reduced: tuple[int, ...] = (1, 3, 5), log=print, **configs) -> dict:
    """Train on ``fit_split`` and score ``score_split``: clean, 8 kHz, and reduced-slice metrics."""
    classes = list(GTZAN_GENRES)
    label = np.asarray([classes.index(c.genre) for c in data.clips])
    split = np.asarray([c.split for c in data.clips])
    train_rows = data.rows(split == fit_split)
    net = fit(arch, data, train_rows, label[data.clip[train_rows]], seed=seed, log=log, **configs)
    result = {"fit": fit_split, "scored": score_split}
    for variant in ("clean", "band8k"):
        rows = data.rows(split == score_split, (variant,))
        probs = predict_rows(arch, net, data, rows)
        clips, pred = track_predictions(data, rows, probs)
        key = "metrics" if variant == "clean" else "metrics_band8k"
        result[key] = summarize(label[clips], pred, classes)
        if variant == "clean":
            result["reduced_slices"] = {
                str(k): summarize(label[clips], track_predictions(data, rows, probs, k)[1],
                                  classes)["accuracy"] for k in reduced}
    return result


def run_protocol(arch: str, data: SliceSet, *, seed: int = 0, log=print, **configs) -> dict:
    """Both folds and their mean accuracy / balanced accuracy for one architecture."""
    folds = [run_fold(arch, data, a, b, seed=seed, log=log, **configs) for a, b in FOLDS]
    mean = {k: float(np.mean([f["metrics"][k] for f in folds]))
            for k in ("accuracy", "balanced_accuracy")}
    mean_8k = {k: float(np.mean([f["metrics_band8k"][k] for f in folds]))
               for k in ("accuracy", "balanced_accuracy")}
    return {"arch": arch, "seed": seed, "folds": folds, "mean": mean, "mean_band8k": mean_8k}
