"""Learn a personal genre head from tracks the user tagged themselves.

The CLI (``genretag learn``) and the beets plugin (``beet genretag --learn``) are thin
over the calls here::

    tracks -> prepare_examples -> embed_files -> cross_validate -> format_cv
           -> fit_personal_head -> write_personal_model -> load_model(weights=DIR)

Genre names are folded with :func:`fold_genre` so that spelling variants are one
genre. An item listing several genres counts once, as an example of the *first* of
its genres that has enough examples (see :func:`prepare_examples`). The head is a
linear softmax on standardised embedding views (:class:`genretag.heads.personal.PersonalHead`),
trained on each track's mean features with an L2 penalty, class-balanced weights and
every artist weighing as one track, and applied per slice like every head.
Everything here is deterministic: the same examples give the same head, byte for
byte, and so the same model id.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np

from . import defaults
from .atomic import fsync_path
from .errors import GenretagError
from .genre_names import GenreFolder, fold_genre, tidy_name

#: One item to learn from: ``(path, genres in the item's order, artist or None)``.
Track = tuple[str, Sequence[str], "str | None"]

#: The card's ``vocabulary`` for a learnt model.
VOCABULARY = "personal"
#: File name of the head's weights inside a personal model directory.
HEAD_FILE = "personal-head.safetensors"
#: Embedding views the personal head reads, in order (see :mod:`genretag.backbone`). The
#: backbone's own 200-d dense layer generalised across artists better than the 1506-d
#: pooled features: 0.97 vs 0.90 on four GTZAN genres, train/valid (artist-disjoint),
#: and as good on Emotify's four genres (measured for issue 11).
HEAD_VIEWS = ("penultimate",)
#: L2 penalty on the head's weights, relative to the mean cross-entropy over standardised
#: features. 1 was best or within a track of the best of 0.1-10 on both collections;
#: choosing it per library by inner cross-validation did no better and cost 15 times
#: the fits.
DEFAULT_L2 = 1.0


class NotEnoughExamples(GenretagError):
    """Fewer than two genres have enough examples to learn from (or to cross-validate)."""


# -- examples ------------------------------------------------------------------------

@dataclass(frozen=True)
class Examples:
    """What there is to learn from.

    ``paths``, ``artists`` and ``labels`` have one entry per example (an item); a
    label indexes ``classes`` (the display names, the user's most common spelling of
    each genre, sorted case-insensitively) and ``keys`` (their folded forms).
    ``left_out`` lists genres with fewer than ``min_examples`` examples, display name
    -> number of items that list them; ``unlabelled`` counts items with no usable
    genre, ``multi_genre`` items listing more than one genre.
    """

    paths: tuple[str, ...]
    labels: np.ndarray
    artists: tuple[str | None, ...]
    classes: tuple[str, ...]
    keys: tuple[str, ...]
    left_out: dict[str, int]
    unlabelled: int
    multi_genre: int
    min_examples: int

    @property
    def counts(self) -> dict[str, int]:
        """Examples per genre, display name -> count, in class order."""
        n = np.bincount(self.labels, minlength=len(self.classes))
        return {c: int(k) for c, k in zip(self.classes, n)}

    def __len__(self) -> int:
        return len(self.paths)


def prepare_examples(tracks: Sequence[Track], *, min_examples: int = 10,
                     genre_map: Mapping[str, str] | None = None) -> Examples:
    """Fold the genres of ``tracks`` and keep the genres with enough examples.

    Each item is one example, of the first of its genres that is kept: a genre is
    kept when at least ``min_examples`` items count for it. Genres are dropped one at
    a time, the one with fewest items first, and their items then count for their next
    listed genre (``["Shoegaze", "Rock"]`` is a Rock example when Shoegaze is too
    rare). Items listed twice (same path) have their genres merged in order. Items
    with no kept genre are left out.

    Raises :class:`NotEnoughExamples` when fewer than two genres are kept; its message
    lists what there was.
    """
    if min_examples < 1:
        raise ValueError(f"min_examples must be at least 1, got {min_examples}")
    folder = GenreFolder(genre_map)
    merged: dict[str, tuple[list[str], str | None]] = {}
    spellings: dict[str, Counter] = {}
    for path, genres, artist in tracks:
        path = os.fspath(path)
        keys, old_artist = merged.setdefault(path, ([], None))
        if isinstance(genres, str):
            genres = [genres]
        genres = genres or []
        for name in genres:
            key = folder(name)
            if key and key not in keys:
                keys.append(key)
            if key:
                spellings.setdefault(key, Counter())[folder.spelling(name)] += 1
        artist = tidy_name(artist) if artist and tidy_name(artist) else None
        merged[path] = (keys, old_artist or artist)

    candidates = {k for keys, _ in merged.values() for k in keys}
    while True:
        first = Counter(next((k for k in keys if k in candidates), None)
                        for keys, _ in merged.values())
        first.pop(None, None)
        short = [k for k in candidates if first[k] < min_examples]
        if not short:
            break
        candidates.discard(min(short, key=lambda k: (first[k], k)))

    display = {k: spellings[k].most_common(1)[0][0] for k in spellings}
    keys_sorted = sorted(candidates, key=lambda k: (display[k].casefold(), k))
    index = {k: i for i, k in enumerate(keys_sorted)}
    paths, labels, artists, unlabelled = [], [], [], 0
    for path, (keys, artist) in merged.items():
        kept = next((k for k in keys if k in index), None)
        if kept is None:
            unlabelled += 1
            continue
        paths.append(path)
        labels.append(index[kept])
        artists.append(artist)
    dropped = {k for keys, _ in merged.values() for k in keys} - candidates
    listed = Counter(k for keys, _ in merged.values() for k in keys)
    left_out = {display[k]: listed[k] for k in sorted(dropped, key=lambda k: (-listed[k], k))}
    examples = Examples(paths=tuple(paths), labels=np.asarray(labels, dtype=np.int64),
                        artists=tuple(artists), classes=tuple(display[k] for k in keys_sorted),
                        keys=tuple(keys_sorted), left_out=left_out, unlabelled=unlabelled,
                        multi_genre=sum(len(keys) > 1 for keys, _ in merged.values()),
                        min_examples=min_examples)
    if len(examples.classes) < 2:
        raise NotEnoughExamples(_not_enough(examples))
    return examples


def _not_enough(ex: Examples) -> str:
    have = ", ".join(f"{c} {n}" for c, n in ex.counts.items()) or "none"
    short = ", ".join(f"{c} {n}" for c, n in ex.left_out.items()) or "none"
    return (f"not enough to learn from: at least two genres need {ex.min_examples} examples "
            f"each; genres with enough: {have}; with too few: {short}")


# -- embeddings ----------------------------------------------------------------------

@dataclass(frozen=True)
class Embedded:
    """One file's slice embeddings ``[n, 1506]`` float32, or why there are none."""

    path: str
    embedding: np.ndarray | None
    error: str | None = None
    cached: bool = False


def embed_files(paths: Sequence[str], backbone, *, cache=None,
                max_slices: int | None = defaults.MAX_SLICES) -> Iterator[Embedded]:
    """The ``pooled`` slice embeddings of ``paths``, one :class:`Embedded` per path, in order.

    ``cache`` (a :class:`genretag.cache.EmbeddingCache` for ``backbone``, or ``None``) is
    read first and filled with what had to be analysed. A file that cannot be decoded,
    or is silent, gives an ``error`` (one line, no path) instead of an embedding.
    """
    from .classify import analyse_file, slices_keys
    from .errors import PathError

    # what classifying stores by default (an adaptive analysis: fewer slices, spread over
    # the whole track) serves as an example too
    keys = slices_keys(max_slices, adaptive=True)
    hits = cache.get_many(list(paths), slices_key=keys) if cache is not None else {}
    for path in paths:
        hit = hits.get(path)
        if hit is not None:
            if hit.silent:
                yield Embedded(path, None, "silent (peak below -80 dBFS)", cached=True)
            else:
                yield Embedded(path, hit.as_float32(), cached=True)
            continue
        try:
            stat = os.stat(path)
            analysis = analyse_file(path, backbone, max_slices=max_slices)
        except FileNotFoundError:
            yield Embedded(path, None, "file not found")
            continue
        except OSError as exc:
            yield Embedded(path, None, exc.strerror or str(exc))
            continue
        except PathError as exc:
            yield Embedded(path, None, exc.reason)
            continue
        if cache is not None:
            cache.put(path, None if analysis.silent else analysis.embedding, analysis.starts,
                      padded=analysis.padded, silent=analysis.silent, slices_key=max_slices,
                      stat=stat)
        if analysis.silent:
            yield Embedded(path, None, "silent (peak below -80 dBFS)")
        else:
            yield Embedded(path, analysis.embedding)


def view_features(embeddings: Sequence[np.ndarray], backbone=None,
                  views: Sequence[str] = HEAD_VIEWS) -> list[np.ndarray]:
    """Per track, its slices' ``views`` concatenated: ``[n_i, n_in]`` float64 each.

    ``embeddings`` are ``pooled`` views ``[n_i, 1506]``; the other views are computed
    with ``backbone`` (default: the shipped one), a few thousand slices at a time.
    """
    views = tuple(views)
    if views == ("pooled",):
        return [np.asarray(e, dtype=np.float64) for e in embeddings]
    if backbone is None:
        from .model import load_model
        backbone = load_model().backbone
    out: list[np.ndarray] = []
    start = 0
    while start < len(embeddings):
        stop, rows = start, 0
        while stop < len(embeddings) and (rows < 4096 or stop == start):
            rows += len(embeddings[stop])
            stop += 1
        part = embeddings[start:stop]
        v = backbone.views(np.concatenate(part).astype(np.float32), views)
        x = np.concatenate([v[name].numpy() for name in views], axis=1).astype(np.float64)
        out += np.split(x, np.cumsum([len(e) for e in part])[:-1])
        start = stop
    return out


# -- the linear softmax ----------------------------------------------------------------

@dataclass
class LinearFit:
    """A fitted linear softmax on standardised features (float64 numpy arrays).

    ``mean``/``std`` ``[n_in]`` standardise, ``weight`` ``[n_classes, n_in]`` and
    ``bias`` ``[n_classes]`` score; ``l2`` is the penalty it was fitted with. A class
    absent from the training rows gets a bias so low that it is never predicted.
    """

    mean: np.ndarray
    std: np.ndarray
    weight: np.ndarray
    bias: np.ndarray
    l2: float

    def track_probs(self, tracks: Sequence[np.ndarray]) -> np.ndarray:
        """Per track the mean of its slices' probabilities, ``[n_tracks, n_classes]``.

        ``tracks`` are slice features ``[n_i, n_in]``; the same arithmetic as the head.
        """
        import torch

        sizes = [len(t) for t in tracks]
        x = torch.from_numpy(np.concatenate(tracks).astype(np.float64))
        z = ((x - torch.from_numpy(self.mean)) / torch.from_numpy(self.std)) \
            @ torch.from_numpy(self.weight).T + torch.from_numpy(self.bias)
        p = torch.softmax(z, dim=1).numpy()
        return np.stack([part.mean(axis=0) for part in np.split(p, np.cumsum(sizes)[:-1])])


_ABSENT_BIAS = -1e4


def artist_weights(groups: Sequence) -> np.ndarray:
    """Per track ``1 / (its artist's number of tracks)``, ``[n]`` float64: every artist
    weighs as one track; a track without an artist (``None``) weighs 1.

    Artists are compared without regard to case, as in :func:`assign_folds`.
    """
    keys = [str(g).casefold() if g is not None else None for g in groups]
    counts: dict[str, int] = {}
    for key in keys:
        if key is not None:
            counts[key] = counts.get(key, 0) + 1
    return np.array([1.0 / counts[key] if key is not None else 1.0 for key in keys])


def _fit_linear(tracks: Sequence[np.ndarray], labels: np.ndarray, n_classes: int,
                l2: float, balanced: bool = True,
                weights: np.ndarray | None = None) -> LinearFit:
    """Multinomial logistic regression on track features (the mean of each track's slices).

    Minimises the mean cross-entropy plus ``l2 / 2 * ||weight||^2`` over standardised
    features with L-BFGS (float64, torch for the algebra, so it obeys torch's thread
    setting). ``weights`` ``[n]`` weigh the tracks in the standardisation and the loss
    (e.g. :func:`artist_weights`); none: all the same. With ``balanced``, each class
    weighs the same in the loss whatever its number of tracks (an imbalanced library's
    small genres are otherwise never predicted). Deterministic for the same input.
    """
    import torch
    from scipy.optimize import minimize

    x = np.stack([t.mean(axis=0) for t in tracks]).astype(np.float64)
    n, d = x.shape
    if weights is None:
        weights = np.ones(n)
    weights = np.asarray(weights, dtype=np.float64) * (n / np.sum(weights))
    mean = np.average(x, axis=0, weights=weights)
    std = np.sqrt(np.average((x - mean) ** 2, axis=0, weights=weights)) + 1e-6
    z = torch.from_numpy((x - mean) / std)
    present = np.unique(labels)
    y = torch.from_numpy(np.searchsorted(present, labels))
    k = len(present)
    # The penalised solution lies in the span of the rows: with fewer rows than
    # features, optimise in that basis (exactly the same minimum, smaller problem).
    basis = None
    if n < d:
        u, s, basis = torch.linalg.svd(z, full_matrices=False)
        z = u * s
    p = z.shape[1]
    target = torch.nn.functional.one_hot(y, k).double() * torch.from_numpy(weights)[:, None]
    if balanced:  # every class weighs as much as the others in the loss
        target = target * (n / (k * target.sum(dim=0)))

    def loss(theta):
        t = torch.from_numpy(theta)
        w, b = t[:-k].view(p, k), t[-k:]
        logits = z @ w + b
        log_p = torch.log_softmax(logits, dim=1)
        value = -(log_p * target).sum() / n + 0.5 * l2 * (w * w).sum()
        g = (log_p.exp() * target.sum(dim=1, keepdim=True) - target) / n
        grad = torch.cat([(z.T @ g + l2 * w).reshape(-1), g.sum(dim=0)])
        return float(value), grad.numpy()

    res = minimize(loss, np.zeros(p * k + k), jac=True, method="L-BFGS-B",
                   options={"maxiter": 1000, "gtol": 1e-6, "ftol": 1e-12})
    w = torch.from_numpy(res.x[:-k].reshape(p, k))
    if basis is not None:
        w = basis.T @ w
    weight = np.zeros((n_classes, d))
    bias = np.full(n_classes, _ABSENT_BIAS)
    weight[present] = w.T.numpy()
    bias[present] = res.x[-k:]
    return LinearFit(mean=mean, std=std, weight=weight, bias=bias, l2=float(l2))


def fit_linear(tracks: Sequence[np.ndarray], labels, n_classes: int, *,
               l2: float = DEFAULT_L2, balanced: bool = True,
               groups: Sequence | None = None) -> LinearFit:
    """Fit the personal head's linear softmax (see :func:`_fit_linear`).

    ``tracks`` are per-track slice features ``[n_i, n_in]`` (see :func:`view_features`),
    ``labels`` ``[n_tracks]`` class indices in ``0..n_classes-1``, ``groups`` each
    track's artist or ``None``: every artist weighs as one track (:func:`artist_weights`),
    so that an artist with many tracks does not define a genre's sound.
    """
    weights = artist_weights(groups) if groups is not None else None
    return _fit_linear(tracks, np.asarray(labels), n_classes, l2, balanced, weights)


# -- cross-validation ------------------------------------------------------------------

def assign_folds(labels: np.ndarray, groups: Sequence,
                 folds: int) -> tuple[np.ndarray, bool, int]:
    """A fold per item, ``[n]`` int in ``0..k-1``: every group in one fold, classes spread.

    ``groups`` holds each item's artist (compared without regard to case) or ``None``;
    an item without an artist is a group of its own. Greedy and deterministic: groups
    are placed largest first (ties by name) in the fold whose class counts they bring
    closest to an even share.
    Returns ``(fold_of, grouped, n_groups)``, ``grouped`` true when any artist is
    known; ``k = min(folds, n_groups)`` (fewer than 2 means no cross-validation).
    """
    labels = np.asarray(labels)
    n_classes = int(labels.max()) + 1 if len(labels) else 0
    members: dict[tuple, list[int]] = {}
    for i, g in enumerate(groups):
        key = ("artist", str(g).casefold()) if g is not None else ("item", f"{i:09d}")
        members.setdefault(key, []).append(i)
    grouped = any(g is not None for g in groups)
    k = min(folds, len(members))
    fold_of = np.zeros(len(labels), dtype=np.int64)
    if k < 2:
        return fold_of, grouped, len(members)
    target = np.bincount(labels, minlength=n_classes) / k
    counts = np.zeros((k, n_classes))
    order = sorted(members.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    for _, items in order:
        add = np.bincount(labels[items], minlength=n_classes)
        cost = ((counts + add - target) ** 2).sum(axis=1) - ((counts - target) ** 2).sum(axis=1)
        sizes = counts.sum(axis=1)
        f = min(range(k), key=lambda j: (round(cost[j], 9), sizes[j], j))
        counts[f] += add
        fold_of[items] = f
    return fold_of, grouped, len(members)


@dataclass(frozen=True)
class CVReport:
    """Cross-validated quality of a personal head, per track.

    ``support[i]``/``correct[i]`` are the examples of class ``i`` and how many were
    predicted right; ``confusion[i][j]`` counts class-``i`` tracks predicted ``j``.
    ``baseline_accuracy`` is what always guessing ``baseline_genre`` (the commonest)
    scores. ``grouped`` says whether folds were grouped by artist.
    """

    classes: tuple[str, ...]
    support: tuple[int, ...]
    correct: tuple[int, ...]
    confusion: tuple[tuple[int, ...], ...]
    folds: int
    grouped: bool
    n_groups: int
    fold_accuracy: tuple[float, ...]
    l2: float = DEFAULT_L2

    @property
    def n(self) -> int:
        return sum(self.support)

    @property
    def accuracy(self) -> float:
        return sum(self.correct) / max(1, self.n)

    @property
    def recall(self) -> tuple[float, ...]:
        return tuple(c / s if s else 0.0 for c, s in zip(self.correct, self.support))

    @property
    def balanced_accuracy(self) -> float:
        present = [r for r, s in zip(self.recall, self.support) if s]
        return float(np.mean(present)) if present else 0.0

    @property
    def baseline_genre(self) -> str:
        return self.classes[int(np.argmax(self.support))]

    @property
    def baseline_accuracy(self) -> float:
        return max(self.support) / max(1, self.n)

    @property
    def strategy(self) -> str:
        """How the folds were made, in words."""
        if self.grouped:
            return (f"{self.folds} folds grouped by artist ({self.n_groups} groups; no artist "
                    f"is in two folds; tracks without an artist are groups of their own)")
        return (f"{self.folds} stratified folds (no artists given: one artist's tracks may be "
                f"on both sides, so these figures are optimistic)")

    def to_dict(self) -> dict:
        """The figures as stored in the model card."""
        return {"strategy": self.strategy, "folds": self.folds, "grouped": self.grouped,
                "groups": self.n_groups, "tracks": self.n,
                "accuracy": round(self.accuracy, 4),
                "balanced_accuracy": round(self.balanced_accuracy, 4),
                "baseline": {"genre": self.baseline_genre,
                             "accuracy": round(self.baseline_accuracy, 4)},
                "per_class": {c: {"recall": round(r, 4), "correct": k, "support": s}
                              for c, r, k, s in zip(self.classes, self.recall, self.correct,
                                                    self.support)},
                "confusion": [list(row) for row in self.confusion],
                "fold_accuracy": [round(a, 4) for a in self.fold_accuracy],
                "l2": self.l2}


def cross_validate(embeddings: Sequence[np.ndarray], labels, groups: Sequence, *,
                   folds: int = 5, classes: Sequence[str] | None = None, backbone=None,
                   l2: float = DEFAULT_L2) -> CVReport:
    """K-fold cross-validation of the personal head on ``embeddings``.

    ``embeddings`` are per-track ``pooled`` slice embeddings ``[n_i, 1506]`` (the head's
    views are computed with ``backbone``, default the shipped one), ``labels``
    ``[n_tracks]`` class indices, ``groups`` each track's artist or ``None``. Folds
    are grouped by artist when any is known, else stratified (see :func:`assign_folds`).
    Each fold's head is fitted exactly as the final one (:func:`fit_linear`) and
    predicts a track as the mean of its slices' probabilities. Raises
    :class:`NotEnoughExamples` when there are fewer than two groups.
    """
    if folds < 2:
        raise GenretagError(f"cross-validation needs at least 2 folds, not {folds}")
    labels = np.asarray(labels, dtype=np.int64)
    n_classes = len(classes) if classes is not None else int(labels.max()) + 1
    classes = tuple(classes) if classes is not None else tuple(str(i) for i in range(n_classes))
    tracks = view_features(embeddings, backbone)
    groups = list(groups)
    fold_of, grouped, n_groups = assign_folds(labels, groups, folds)
    k = int(fold_of.max()) + 1
    if k < 2:
        raise NotEnoughExamples("cross-validation needs tracks by at least two artists")
    predicted = np.zeros(len(labels), dtype=np.int64)
    fold_acc = []
    for f in range(k):
        train, test = fold_of != f, fold_of == f
        fit = fit_linear([t for t, m in zip(tracks, train) if m], labels[train], n_classes,
                         l2=l2, groups=[g for g, m in zip(groups, train) if m])
        predicted[test] = fit.track_probs([t for t, m in zip(tracks, test) if m]).argmax(axis=1)
        fold_acc.append(float(np.mean(predicted[test] == labels[test])))
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    return CVReport(classes=classes, support=tuple(int(s) for s in confusion.sum(axis=1)),
                    correct=tuple(int(c) for c in np.diag(confusion)),
                    confusion=tuple(tuple(int(v) for v in row) for row in confusion),
                    folds=k, grouped=grouped, n_groups=n_groups,
                    fold_accuracy=tuple(fold_acc), l2=float(l2))


def format_cv(report: CVReport) -> str:
    """The table printed before a personal model is saved.

    ::

        Cross-validation: 5 folds grouped by artist (70 groups; ...), 200 tracks
          genre        recall  right/total
          Classical      0.96    48/50
          ...
          accuracy 0.82 (164/200), balanced accuracy 0.82
          always guessing the commonest genre (Rock): 0.25
    """
    width = max(len("genre"), *(len(c) for c in report.classes))
    lines = [f"Cross-validation: {report.strategy}, {report.n} tracks",
             f"  {'genre':<{width}}  recall  right/total"]
    for c, r, k, s in zip(report.classes, report.recall, report.correct, report.support):
        lines.append(f"  {c:<{width}}  {r:6.2f}  {k:>5}/{s}")
    lines.append(f"  accuracy {report.accuracy:.2f} ({sum(report.correct)}/{report.n}), "
                 f"balanced accuracy {report.balanced_accuracy:.2f}")
    lines.append(f"  always guessing the commonest genre ({report.baseline_genre}): "
                 f"{report.baseline_accuracy:.2f}")
    return "\n".join(lines)


# -- the head and its model directory --------------------------------------------------

def fit_personal_head(embeddings: Sequence[np.ndarray], labels, *, n_classes: int,
                      backbone=None, l2: float = DEFAULT_L2, groups: Sequence | None = None):
    """The personal head fitted on all examples (see :func:`fit_linear`).

    ``embeddings`` are per-track ``pooled`` slice embeddings ``[n_i, 1506]``, ``groups``
    their artists (or ``None`` each, or no ``groups``: every track weighs the same);
    ``backbone`` computes the views the head reads (default: the shipped backbone). Returns a
    :class:`~genretag.heads.personal.PersonalHead` in eval mode; its ``l2`` attribute is
    the penalty used.
    """
    import torch

    from .heads.personal import PersonalHead

    fit = fit_linear(view_features(embeddings, backbone), labels, n_classes, l2=l2,
                     groups=groups)
    head = PersonalHead(n_classes, views=HEAD_VIEWS, n_in=fit.weight.shape[1])
    head.load_state_dict({name: torch.tensor(value, dtype=torch.float32) for name, value in
                          (("feat_mean", fit.mean), ("feat_std", fit.std),
                           ("weight", fit.weight), ("bias", fit.bias))})
    head.eval()
    head.l2 = fit.l2
    return head


def check_out_dir(out_dir: str | os.PathLike) -> Path:
    """``out_dir`` as a Path if a model may be written there (missing, empty or a model).

    Raises :class:`GenretagError` for a file, or a directory holding anything but a model,
    so that nothing of the user's is replaced.
    """
    from .model import CARD_NAME

    out = Path(out_dir)
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise GenretagError(f"{out}: exists and is not a directory")
        if any(out.iterdir()) and not (out / CARD_NAME).is_file():
            raise GenretagError(f"{out}: exists and is not a genretag model directory; "
                                "choose another output directory")
    return out


def write_personal_model(out_dir: str | os.PathLike, head, classes: Sequence[str],
                         cv: CVReport | None, n_examples: int, backbone_sha256: str, *,
                         keys: Sequence[str] | None = None, training: dict | None = None,
                         max_slices: int | None = defaults.MAX_SLICES) -> dict:
    """Write a personal model directory and return its card.

    The directory holds :data:`HEAD_FILE` (the head's buffers, with the class names in
    the file's metadata, so the file's sha256 covers them) and ``model_card.json``
    (format 2: classes, folded ``class_keys``, head type and views, the backbone by
    name and sha256, feature parameters, the head file's sha256, ``n_examples``,
    ``cv`` figures, creation date). The model id is ``genretag-personal-`` and the
    first 10 hex digits of the head file's sha256: other weights, another id.

    Written in a hidden temporary directory beside ``out_dir`` and renamed into
    place, so ``out_dir`` is never half-written; a previous model there is replaced
    (see :func:`check_out_dir` for what is refused).
    """
    from safetensors.torch import save_file

    from .backbone import BACKBONE_FILE
    from .features import MUSICNN_FEATURES
    from .model import CARD_FORMAT, CARD_NAME, sha256_file

    out = check_out_dir(out_dir)
    classes = [str(c) for c in classes]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        tensors = {k: v.detach().float().contiguous() for k, v in head.state_dict().items()}
        save_file(tensors, str(tmp / HEAD_FILE),
                  metadata={"classes": json.dumps(classes, ensure_ascii=False)})
        os.chmod(tmp / HEAD_FILE, 0o644)  # readable like the card (safetensors writes 0600)
        sha = sha256_file(tmp / HEAD_FILE)
        card = {
            "format": CARD_FORMAT,
            "model_id": f"genretag-personal-{sha[:10]}",
            "version": "1",
            "vocabulary": VOCABULARY,
            "classes": classes,
            "class_keys": list(keys) if keys is not None else [fold_genre(c) for c in classes],
            "head": {"arch": head.arch, "params": {"views": list(head.reads),
                                                   "n_in": int(head.feat_mean.numel())}},
            "backbone": {"path": BACKBONE_FILE, "sha256": backbone_sha256},
            "features": MUSICNN_FEATURES.to_dict(),
            "files": [{"path": HEAD_FILE, "sha256": sha}],
            "max_slices": max_slices,
            "n_examples": int(n_examples),
            "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "training": {"l2": getattr(head, "l2", None), **(training or {})},
            "cv": cv.to_dict() if cv is not None else None,
        }
        (tmp / CARD_NAME).write_text(json.dumps(card, indent=1, ensure_ascii=False) + "\n",
                                     encoding="utf-8")
        for name in (HEAD_FILE, CARD_NAME):
            fsync_path(tmp / name)
        os.chmod(tmp, 0o755)
        _swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return card


def _swap_in(tmp: Path, out: Path) -> None:
    """Rename the finished ``tmp`` to ``out``, moving a previous ``out`` aside first."""
    if not (out.exists() or out.is_symlink()):
        os.rename(tmp, out)
    else:
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.rename(out, old / out.name)
        try:
            os.rename(tmp, out)
        except OSError:
            os.rename(old / out.name, out)
            raise
        shutil.rmtree(old, ignore_errors=True)
    try:
        fsync_path(out.parent)
    except OSError:
        pass  # not every file system can sync a directory


# -- genretag learn --------------------------------------------------------------------

def read_labels_csv(labels_csv: str | os.PathLike) -> list[Track]:
    """The tracks of a labels file: header ``path,genre`` and optionally ``artist``.

    Paths are relative to the file's folder, or absolute. A genre cell may list several
    genres separated by ``;`` and a path may have several rows: its genres are taken in
    order. Column names are matched without regard to case or surrounding spaces.
    Raises :class:`GenretagError` naming the file when it cannot be read or lacks a column.
    """
    labels_csv = Path(labels_csv)
    base = labels_csv.resolve().parent
    try:
        with open(labels_csv, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = [h.strip().casefold() for h in next(reader, [])]
            missing = [c for c in ("path", "genre") if c not in header]
            if missing:
                raise GenretagError(f"{labels_csv}: the header must name the columns 'path' and "
                                    f"'genre' (and optionally 'artist'); found {header or 'none'}")
            col = {name: header.index(name) for name in ("path", "genre", "artist")
                   if name in header}
            tracks = []
            for row in reader:
                cell = {name: row[i].strip() if i < len(row) else "" for name, i in col.items()}
                if not cell["path"]:
                    continue
                path = cell["path"] if os.path.isabs(cell["path"]) else str(base / cell["path"])
                genres = [g.strip() for g in cell["genre"].split(";") if g.strip()]
                tracks.append((path, genres, cell.get("artist") or None))
    except FileNotFoundError:
        raise GenretagError(f"{labels_csv}: labels file not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise GenretagError(f"{labels_csv}: cannot read the labels file ({exc})") from None
    return tracks


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def learn_from_csv(labels_csv: str | os.PathLike, out_dir: str | os.PathLike, *,
                   min_examples: int = 10, folds: int = 5, jobs: int = 1,
                   cache: str | os.PathLike | None = None,
                   max_slices: int | None = defaults.MAX_SLICES,
                   genre_map: Mapping[str, str] | None = None,
                   log: Callable[[str], None] = _stderr,
                   out: Callable[[str], None] = print) -> int:
    """``genretag learn``: :func:`learn_personal_model` on a labels file; the exit status.

    Reads ``labels_csv`` (:func:`read_labels_csv`) and learns from it with ``jobs``
    torch threads; the cross-validation table and the summary go through ``out``,
    progress and problems through ``log``. Returns 0 when the model was written, 1
    when there was not enough to learn from (fewer than two genres with
    ``min_examples`` examples) or another expected error, explained in one line.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, jobs))
    try:
        tracks = read_labels_csv(labels_csv)
        card = learn_personal_model(tracks, out_dir, min_examples=min_examples, folds=folds,
                                    cache=cache, max_slices=max_slices, genre_map=genre_map,
                                    source=Path(labels_csv).name, log=log, out=out)
    except NotEnoughExamples as exc:
        log(f"genretag: {exc} (--min-examples sets how many)")
        return 1
    except GenretagError as exc:
        log(f"genretag: {exc}")
        return 1
    finally:
        torch.set_num_threads(threads)
    out(f"wrote {out_dir}: model {card['model_id']}/{card['version']}, "
        f"{len(card['classes'])} genres from {card['n_examples']} tracks")
    return 0


def learn_personal_model(tracks: Sequence[Track], out_dir: str | os.PathLike, *,
                         min_examples: int = 10, folds: int = 5,
                         cache: str | os.PathLike | None = None,
                         max_slices: int | None = defaults.MAX_SLICES,
                         genre_map: Mapping[str, str] | None = None, source: str = "",
                         backbone=None,
                         progress: Callable[[Embedded], None] | None = None,
                         log: Callable[[str], None] = _stderr,
                         out: Callable[[str], None] = print) -> dict:
    """Learn a personal model from ``tracks`` and write it to ``out_dir``; returns its card.

    The whole procedure, for the CLI and the beets plugin alike: fold and count the
    examples (:func:`prepare_examples`), analyse their files (:func:`embed_files`,
    through the SQLite embedding ``cache`` file when given; ``progress`` is called with
    each file's :class:`Embedded`, e.g. to drive a progress bar), count again without
    the files that failed (each one line through ``log``), print the left-out genres and
    the cross-validation table through ``out``, fit the head on every example and write
    the model directory. ``backbone`` defaults to the shipped one. Raises
    :class:`NotEnoughExamples` or another :class:`GenretagError` (naming the problem)
    before anything is written.
    """
    if folds < 2:
        raise GenretagError(f"cross-validation needs at least 2 folds, not {folds}")
    check_out_dir(out_dir)
    first = prepare_examples(tracks, min_examples=min_examples, genre_map=genre_map)
    if backbone is None:
        from .model import load_model
        backbone = load_model().backbone
    store = None
    if cache is not None:
        from .cache import EmbeddingCache
        store = EmbeddingCache(cache, backbone_sha256=backbone.sha256)
    embedded, n_cached = {}, 0
    try:
        for i, item in enumerate(embed_files(first.paths, backbone, cache=store,
                                             max_slices=max_slices), 1):
            if progress is not None:
                progress(item)
            if item.error:
                log(f"genretag: {item.path}: {item.error}")
            else:  # float16, as the cache keeps them: half the memory, same head
                embedded[item.path] = item.embedding.astype(np.float16)
                n_cached += item.cached
            if progress is None and i % 100 == 0:
                log(f"analysed {i}/{len(first)} files")
    finally:
        if store is not None:
            store.close()
    failed = len(first) - len(embedded)
    log(f"analysed {len(first)} files ({n_cached} from the cache, {failed} left out)")
    try:
        examples = prepare_examples([t for t in tracks if os.fspath(t[0]) in embedded],
                                    min_examples=min_examples, genre_map=genre_map)
    except NotEnoughExamples as exc:
        raise NotEnoughExamples(f"{exc} (after leaving out {failed} files that could not be "
                                f"analysed)") from None
    left_out = {k: v for k, v in {**first.left_out, **examples.left_out}.items()
                if k not in examples.classes}
    if left_out:
        out(f"left out (fewer than {min_examples} examples): "
            + ", ".join(f"{c} {n}" for c, n in left_out.items()))
    if examples.multi_genre:
        out(f"{examples.multi_genre} items list several genres: each counts for the first "
            f"of them that has enough examples")
    embeddings = [embedded[p] for p in examples.paths]
    report = cross_validate(embeddings, examples.labels, examples.artists, folds=folds,
                            classes=examples.classes, backbone=backbone)
    out(format_cv(report))
    head = fit_personal_head(embeddings, examples.labels, n_classes=len(examples.classes),
                             backbone=backbone, groups=examples.artists)
    training = {"source": source, "examples_per_class": examples.counts,
                "left_out": left_out, "unlabelled": examples.unlabelled,
                "multi_genre": examples.multi_genre, "min_examples": min_examples,
                "multi_genre_rule": "an item counts for the first of its genres with enough "
                                    "examples", "class_balanced": True,
                "artist_balanced": any(a is not None for a in examples.artists)}
    card = write_personal_model(out_dir, head, examples.classes, report, len(examples),
                                backbone.sha256, keys=examples.keys, training=training,
                                max_slices=max_slices)
    return card
