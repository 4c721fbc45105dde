"""The one path from a file to its genre.

::

    file --decode/slice--> slices --log-mel + backbone--> embedding [n, 1506]   (analyse_file)
         --head--> slice scores [n, C] --mean--> TrackPrediction                  (predict)

``classify_file`` does both for one file, ``classify_files`` for many with one
model. Training, evaluation and the bench use :func:`aggregate` for the mean.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from . import defaults
from .audio import iter_slices, spread_indices
from .backbone import EMBEDDING_DIM
from .errors import AudioError, PathError
from .model import GenreModel, load_model
from .result import Failure, SliceResult, TrackPrediction


@dataclass(frozen=True)
class Analysis:
    """What the backbone heard in one file: an embedding per analysed slice.

    ``starts`` are the slices' start times in seconds ``[n]``; ``embedding`` is
    ``np.ndarray [shape=(n, 1506), dtype=float32]``. A ``silent`` file has slices
    but nothing to hear in them.
    """

    path: str
    starts: np.ndarray
    embedding: np.ndarray
    padded: bool = False
    silent: bool = False


def analyse_file(path: str | os.PathLike, backbone, *,
                 max_slices: int | None = defaults.MAX_SLICES) -> Analysis:
    """Decode ``path`` and embed its slices with ``backbone`` (the expensive step).

    ``max_slices=None`` analyses every slice; otherwise at most that many slices
    spread over the track. Slices are embedded as they are decoded, a batch at a
    time, so memory does not grow with the track's length. Raises
    :class:`~genretag.errors.AudioError` naming the file when it cannot be decoded.
    """
    path = os.fspath(path)
    feats = backbone.features
    starts, batch, parts, padded, peak = [], [], [], False, 0.0
    for start_s, samples, was_padded in iter_slices(path, feats.sample_rate, feats.slice_samples,
                                                    max_slices=max_slices):
        if not np.isfinite(samples).all():
            raise AudioError(path, "the audio holds invalid samples (NaN or infinite)")
        peak = max(peak, float(np.abs(samples).max()))
        starts.append(start_s)
        batch.append(samples)
        padded = padded or was_padded
        if len(batch) == defaults.BATCH_SIZE:
            parts.append(backbone.embed(np.stack(batch)))
            batch = []
    if batch:
        parts.append(backbone.embed(np.stack(batch)))
    # Rounded to float16 as the cache stores it, so that a result never depends on
    # whether its embedding was cached (246/246 GTZAN clips keep their genre; 1.3e-3
    # is the largest change of a probability).
    embedding = np.concatenate(parts).astype(np.float16).astype(np.float32)
    return Analysis(path=path, starts=np.asarray(starts, dtype=np.float64), embedding=embedding,
                    padded=padded, silent=peak < defaults.SILENCE_PEAK)


def cached_analysis(path: str | os.PathLike, backbone, *,
                    max_slices: int | None = defaults.MAX_SLICES, cache=None) -> Analysis:
    """The analysis of ``path``: from ``cache`` (an :class:`~genretag.cache.EmbeddingCache`)
    when it holds this version of the file, else made by :func:`analyse_file` and stored.

    A cache hit decodes nothing and runs no network.
    """
    path = os.fspath(path)
    if cache is not None:
        hit = cache.get(path, slices_key=max_slices)
        if hit is not None:
            return from_cache(path, hit)
    try:
        stat = os.stat(path)  # before decoding: a file changed meanwhile is not cached
    except OSError:
        stat = None  # analyse_file names the problem
    analysis = analyse_file(path, backbone, max_slices=max_slices)
    if cache is not None and stat is not None:
        cache.put(path, None if analysis.silent else analysis.embedding, analysis.starts,
                  padded=analysis.padded, silent=analysis.silent, slices_key=max_slices,
                  stat=stat)
    return analysis


def from_cache(path: str, hit) -> Analysis:
    """The :class:`Analysis` a cache entry (:class:`~genretag.cache.CachedEmbedding`) holds."""
    embedding = (np.zeros((hit.n_slices, EMBEDDING_DIM), np.float32) if hit.silent
                 else hit.as_float32())
    return Analysis(path=path, starts=hit.starts, embedding=embedding, padded=hit.padded,
                    silent=hit.silent)


def aggregate(slice_scores: np.ndarray, *, max_slices: int | None = None) -> np.ndarray:
    """A track's scores: the mean of its slices' scores ``[n, C]`` -> ``[C]``.

    With ``max_slices``, only that many evenly spread slices are averaged (the same
    choice :func:`genretag.audio.plan_slices` makes when reading a long file).
    """
    if max_slices:
        slice_scores = slice_scores[spread_indices(len(slice_scores), max_slices)]
    return slice_scores.mean(axis=0)


def predict(analysis: Analysis, model: GenreModel) -> TrackPrediction:
    """Score an analysed file with ``model``'s head and average the slices."""
    if analysis.silent:
        return TrackPrediction(path=analysis.path, genre=None, confidence=0.0, probs={},
                               model=model.model_id, padded=analysis.padded,
                               multi_label=model.multi_label, silent=True)
    scores = model.scores(analysis.embedding)
    if not np.isfinite(scores).all():
        raise AudioError(analysis.path, "the audio gave invalid network outputs")
    mean = aggregate(scores)
    best = int(mean.argmax())
    order = np.argsort(-mean, kind="stable")
    if not model.multi_label:  # one distribution: the best class, if it is sure enough
        order = order[:1]
    cut = model.thresholds  # built from the card on each access: once per track
    genres = tuple(model.classes[i] for i in order if mean[i] >= cut[i])
    slice_s = model.features.slice_seconds
    timeline = tuple(
        SliceResult(start_s=float(s), end_s=float(s) + slice_s,
                    genre=model.classes[int(p.argmax())], confidence=float(p.max()),
                    probs=tuple(float(x) for x in p))
        for s, p in zip(analysis.starts, scores))
    return TrackPrediction(path=analysis.path, genre=model.classes[best],
                           confidence=float(mean[best]),
                           probs={c: float(p) for c, p in zip(model.classes, mean)},
                           model=model.model_id, timeline=timeline, padded=analysis.padded,
                           genres=genres, multi_label=model.multi_label)


def classify_file(path: str | os.PathLike, model: GenreModel | None = None, *,
                  max_slices: int | None = defaults.MAX_SLICES, cache=None) -> TrackPrediction:
    """Genre of one file (see :func:`analyse_file` for ``max_slices``, and
    :func:`cached_analysis` for ``cache``).

    Raises :class:`~genretag.errors.GenretagError` subclasses naming the file for
    expected failures (unreadable audio, bad weights).
    """
    model = model or load_model()
    return predict(cached_analysis(path, model.backbone, max_slices=max_slices, cache=cache),
                   model)


def classify_files(paths: Iterable[str | os.PathLike], model: GenreModel | None = None, *,
                   max_slices: int | None = defaults.MAX_SLICES, cache=None
                   ) -> Iterator[TrackPrediction | Failure]:
    """Classify many files with one model; a result or a :class:`Failure` per file, in order.

    Expected failures (unreadable files) never stop the run.
    """
    model = model or load_model()
    for path in paths:
        try:
            yield classify_file(path, model, max_slices=max_slices, cache=cache)
        except PathError as exc:
            yield Failure(path=os.fspath(path), error=exc.reason)
