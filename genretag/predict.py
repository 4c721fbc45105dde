"""The one path from audio to a genre: slices -> log-mel -> network -> mean.

``classify_file`` works on one file, ``classify_files`` on many with one model
load; both return :class:`~genretag.prediction.TrackPrediction`.
"""
from __future__ import annotations

import os
from typing import Iterable, Iterator

import numpy as np

from .audio import iter_slices
from .errors import AudioError, GenretagError
from .features import log_mel
from .model import GenreModel, load_model
from .prediction import Failure, SliceResult, TrackPrediction

#: Peak level (linear) below which a track counts as silent: -80 dBFS.
SILENCE_PEAK = 1e-4
#: Slices analysed per track by default: 10 slices (~30 s) spread over the track.
DEFAULT_MAX_SLICES = 10
#: Slices per network call. Small batches keep each slice's activations in the CPU cache:
#: 2 was 1.6x faster than 16 per slice here (bench/RESULTS.md), same results.
BATCH_SIZE = 2


def slice_probabilities(model: GenreModel, slices: np.ndarray) -> np.ndarray:
    """Class probabilities per slice.

    Parameters
    ----------
    slices : np.ndarray [shape=(n, slice_samples)]
        Mono audio slices at ``model.features.sample_rate``.

    Returns
    -------
    np.ndarray [shape=(n, n_classes)]
    """
    import torch

    out = []
    bf16 = torch.autocast("cpu", dtype=torch.bfloat16, enabled=model.precision == "bf16")
    with torch.inference_mode():
        for i in range(0, len(slices), BATCH_SIZE):
            patches = log_mel(slices[i:i + BATCH_SIZE], model.features)
            with bf16:
                logits = model.net(patches)
            out.append(torch.softmax(logits.float(), dim=1).numpy())
    return np.concatenate(out).astype(np.float64)


def aggregate(path: str, model: GenreModel, starts: list[float], probs: np.ndarray,
              *, padded: bool = False) -> TrackPrediction:
    """Track prediction from per-slice probabilities ``[n, n_classes]`` (their mean)."""
    mean = probs.mean(axis=0)
    best = int(mean.argmax())
    slice_s = model.features.slice_seconds
    timeline = tuple(
        SliceResult(start_s=s, end_s=s + slice_s, genre=model.classes[int(p.argmax())],
                    confidence=float(p.max()), probs=tuple(float(x) for x in p))
        for s, p in zip(starts, probs))
    return TrackPrediction(path=path, genre=model.classes[best], confidence=float(mean[best]),
                           probs={c: float(p) for c, p in zip(model.classes, mean)},
                           model=model.model_id, timeline=timeline, padded=padded)


def classify_file(path: str | os.PathLike, model: GenreModel | None = None, *,
                  max_slices: int | None = DEFAULT_MAX_SLICES) -> TrackPrediction:
    """Genre of one file.

    ``max_slices=None`` analyses every slice (full timeline); otherwise at most that
    many slices spread over the track. Raises :class:`GenretagError` subclasses
    naming the file for expected failures (unreadable audio, bad weights).
    """
    model = model or load_model()
    path = os.fspath(path)
    feats = model.features
    starts, chunks, probs, padded, peak = [], [], [], False, 0.0
    for start_s, samples, was_padded in iter_slices(path, feats.sample_rate, feats.slice_samples,
                                                    max_slices=max_slices):
        peak = max(peak, float(np.abs(samples).max()))
        starts.append(start_s)
        chunks.append(samples)
        padded = padded or was_padded
        if len(chunks) == BATCH_SIZE:
            probs.append(slice_probabilities(model, np.stack(chunks)))
            chunks = []
    if peak < SILENCE_PEAK:
        raise AudioError(path, "the audio is silent (peak below -80 dBFS); no genre to hear")
    if chunks:
        probs.append(slice_probabilities(model, np.stack(chunks)))
    all_probs = np.concatenate(probs)
    if not np.isfinite(all_probs).all():
        raise AudioError(path, "the audio holds invalid samples (NaN or infinite)")
    return aggregate(path, model, starts, all_probs, padded=padded)


def classify_files(paths: Iterable[str | os.PathLike], model: GenreModel | None = None, *,
                   max_slices: int | None = DEFAULT_MAX_SLICES
                   ) -> Iterator[TrackPrediction | Failure]:
    """Classify many files with one model; yields a result or a :class:`Failure` per file, in order.

    Expected failures (unreadable files) never stop the run.
    """
    model = model or load_model()
    for path in paths:
        try:
            yield classify_file(path, model, max_slices=max_slices)
        except GenretagError as exc:
            yield Failure(path=os.fspath(path), error=getattr(exc, "reason", str(exc)))
