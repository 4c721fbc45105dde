"""The one path from a file to its genre.

::

    file --decode/slice--> slices --log-mel + backbone--> embedding [n, 1506]   (analyse_file)
         --head--> slice scores [n, C] --mean--> TrackPrediction                  (predict)

``classify_file`` does both for one file, ``classify_files`` for many with one
model. By default the analysis is adaptive: it stops reading slices once the model's
head is sure of the genre (:meth:`genretag.model.GenreModel.settled`). Training,
evaluation and the bench use :func:`aggregate` for the mean.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np

from . import defaults
from .audio import iter_slices, spread_indices
from .backbone import EMBEDDING_DIM
from .errors import AudioError, PathError
from .model import GenreModel, is_check, load_model
from .result import Failure, SliceResult, TrackPrediction


@dataclass(frozen=True)
class Analysis:
    """What the backbone heard in one file: an embedding per analysed slice.

    ``starts`` are the slices' start times in seconds ``[n]``; ``embedding`` is
    ``np.ndarray [shape=(n, 1506), dtype=float32]``. A ``silent`` file has slices
    but nothing to hear in them. ``stopped_early``: an adaptive analysis that did not
    read every planned slice.
    """

    path: str
    starts: np.ndarray
    embedding: np.ndarray
    padded: bool = False
    silent: bool = False
    stopped_early: bool = False


def analyse_file(path: str | os.PathLike, backbone, *,
                 max_slices: int | None = defaults.MAX_SLICES,
                 settled: Callable[[np.ndarray], bool] | None = None) -> Analysis:
    """Decode ``path`` and embed its slices with ``backbone`` (the expensive step).

    ``max_slices=None`` analyses every slice; otherwise at most that many slices
    spread over the track. With ``settled`` (a model's :meth:`~genretag.model.GenreModel.settled`)
    the analysis is adaptive: the planned slices are read coarse to fine and the
    analysis stops at the first check (after :data:`~genretag.defaults.FIRST_CHECK`
    slices, then every :data:`~genretag.defaults.CHECK_EVERY`) at which
    ``settled(embedding so far)`` is true. The result is in time order either way.
    Slices are embedded as they are decoded, a batch at a time, so memory does not
    grow with the track's length. Raises :class:`~genretag.errors.AudioError` naming
    the file when it cannot be decoded.
    """
    path = os.fspath(path)
    feats = backbone.features
    adaptive = settled is not None and max_slices is not None
    starts, batch, parts, padded, peak = [], [], [], False, 0.0
    stopped_early = False
    for start_s, samples, was_padded in iter_slices(path, feats.sample_rate, feats.slice_samples,
                                                    max_slices=max_slices, adaptive=adaptive):
        if not np.isfinite(samples).all():
            raise AudioError(path, "the audio holds invalid samples (NaN or infinite)")
        peak = max(peak, float(np.abs(samples).max()))
        starts.append(start_s)
        batch.append(samples)
        padded = padded or was_padded
        at_check = adaptive and is_check(len(starts))
        if len(batch) == defaults.BATCH_SIZE or at_check:
            parts.append(_rounded(backbone.embed(np.stack(batch))))
            batch = []
        if at_check and peak >= defaults.SILENCE_PEAK and settled(np.concatenate(parts)):
            stopped_early = True  # (a break ends the reading: the generator is closed)
            break
    if batch:
        parts.append(_rounded(backbone.embed(np.stack(batch))))
    embedding = np.concatenate(parts)
    starts = np.asarray(starts, dtype=np.float64)
    order = np.argsort(starts, kind="stable")
    return Analysis(path=path, starts=starts[order], embedding=embedding[order],
                    padded=padded, silent=peak < defaults.SILENCE_PEAK,
                    stopped_early=stopped_early)


def _rounded(embedding: np.ndarray) -> np.ndarray:
    """Rounded to float16 as the cache stores it, so that a result never depends on
    whether its embedding was cached (246/246 GTZAN clips keep their genre; 1.3e-3 is
    the largest change of a probability), nor an adaptive stop on it."""
    return embedding.astype(np.float16).astype(np.float32)


def slices_keys(max_slices: int | None, *, adaptive: bool) -> tuple[str, ...]:
    """The cache's ``slices_key`` values an analysis may be read from: a fixed analysis
    only from a fixed one; an adaptive one also from a fixed one of the same plan (a
    superset of what it would read). An adaptive analysis that stopped early is stored
    under the first; one that read every planned slice is a fixed one."""
    from .cache import normalize_slices_key

    fixed = normalize_slices_key(max_slices)
    return (f"auto:{fixed}", fixed) if adaptive and max_slices is not None else (fixed,)


def cached_analysis(path: str | os.PathLike, model: GenreModel, *,
                    max_slices: int | None = defaults.MAX_SLICES,
                    adaptive: bool = defaults.ADAPTIVE, cache=None) -> Analysis:
    """The analysis of ``path`` for ``model``: from ``cache`` (an
    :class:`~genretag.cache.EmbeddingCache`) when it holds this version of the file,
    else made by :func:`analyse_file` and stored.

    ``adaptive`` analyses stop early when ``model`` can (:meth:`GenreModel.can_settle`);
    a cached adaptive analysis made for another model is used only if this one is
    settled on it too. A cache hit decodes nothing and runs no network.
    """
    path = os.fspath(path)
    adaptive = adaptive and model.can_settle
    keys = slices_keys(max_slices, adaptive=adaptive)
    if cache is not None:
        hit = cache.get(path, slices_key=keys)
        if hit is not None and usable(hit, model):
            return from_cache(path, hit)
    try:
        stat = os.stat(path)  # before decoding: a file changed meanwhile is not cached
    except OSError:
        stat = None  # analyse_file names the problem
    analysis = analyse_file(path, model.backbone, max_slices=max_slices,
                            settled=model.settled if adaptive else None)
    if cache is not None and stat is not None:
        cache.put(path, None if analysis.silent else analysis.embedding, analysis.starts,
                  padded=analysis.padded, silent=analysis.silent,
                  slices_key=keys[0] if analysis.stopped_early else keys[-1], stat=stat)
    return analysis


def usable(hit, model: GenreModel) -> bool:
    """Whether a cache entry serves ``model``: any entry of a fixed plan does; one of an
    adaptive analysis that stopped early only if ``model`` is settled on those slices too
    (it may have stopped on another head's terms)."""
    if not hit.slices_key.startswith("auto:"):
        return True
    return model.can_settle and model.settled(hit.as_float32())


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
                  max_slices: int | None = defaults.MAX_SLICES,
                  adaptive: bool = defaults.ADAPTIVE, cache=None) -> TrackPrediction:
    """Genre of one file (see :func:`analyse_file` for ``max_slices``, and
    :func:`cached_analysis` for ``adaptive`` and ``cache``).

    Raises :class:`~genretag.errors.GenretagError` subclasses naming the file for
    expected failures (unreadable audio, bad weights).
    """
    model = model or load_model()
    return predict(cached_analysis(path, model, max_slices=max_slices, adaptive=adaptive,
                                   cache=cache), model)


def classify_files(paths: Iterable[str | os.PathLike], model: GenreModel | None = None, *,
                   max_slices: int | None = defaults.MAX_SLICES,
                   adaptive: bool = defaults.ADAPTIVE, cache=None
                   ) -> Iterator[TrackPrediction | Failure]:
    """Classify many files with one model; a result or a :class:`Failure` per file, in order.

    Expected failures (unreadable files) never stop the run.
    """
    model = model or load_model()
    for path in paths:
        try:
            yield classify_file(path, model, max_slices=max_slices, adaptive=adaptive,
                                cache=cache)
        except PathError as exc:
            yield Failure(path=os.fspath(path), error=exc.reason)
