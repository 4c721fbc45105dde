"""Calibration of the ``lastfm`` vocabulary from labelled clips, and its model directory.

The backbone's tag logits carry MSD's tag priors: ``rock`` (MSD's most frequent tag)
outscores ``folk`` or ``hip-hop`` on music of either. Per genre tag ``t`` and slice
logit ``x``, the calibrated score is::

    score = sigmoid(slope * (x - mean[t]) + offset[t])

1. ``mean[t]``, the prior correction: the tag's mean logit over labelled music that
   is *not* that tag's (each collection genre weighing the same). It needs no
   positives, so every tag has one: it is the level the tag sits at on other music.
2. Offsets that make the top tag right: ``s * (x - mean) + b[t]`` with one shared
   slope ``s`` and ``b[t] = beta[group] + delta[t]``, fitted so that on each labelled
   slice the best of its positive tags beats the others (softmax loss against the
   best positive tag). Tags the labels cannot tell apart share a calibration group
   (``Genre.group``: the rock tags, the electronic tags, ...); ``beta`` is pulled
   towards 0 by :data:`GROUP_PENALTY`, ``delta`` towards 0 by :data:`TAG_PENALTY`.
   Groups without labelled positives keep ``b = 0``: the prior correction alone. Their
   tags are left out of this fit: with no positives, the labels only ever show them as
   wrong answers, and the fit would lift the fitted tags above them on any music.
   Their negatives bound them in step 5 instead.
3. One shared logistic map ``sigmoid(A * c + B)`` of those corrected logits ``c``,
   fitted over all labelled tags with positives and negatives weighing half each, so
   a score reads as a probability and the ranking of step 2 is kept (``A > 0``).
4. One threshold for every tag, :data:`GENRE_THRESHOLD`: scores are on one scale, so a
   track's genres are a prefix of its score ranking (its top tag first) and never hold a
   tag scoring below one left out.
5. Tags without labelled positives (folk, soul, ...) have no evidence for their level, so
   their offset is lowered (never raised) until at most :data:`UNLABELLED_RATE` of the
   labelled tracks of other genres score over the threshold.

Labels come from each clip's collection genre (:data:`LABELS`). Validation uses two
artist-disjoint folds (:func:`assign_folds`). The fit is numpy + scipy (no threads
in the arithmetic) and its outputs are rounded, so :func:`calibrate_tags` rewrites the
same files bit for bit from the same tag logits.
"""
from __future__ import annotations

import csv
import hashlib
import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from .errors import GenretagError
from .heads.lastfm import GENRES, MSD_TAGS, LastfmHead, tag_index

#: Version of the shipped ``lastfm`` model directory.
VERSION = "1.1.0"
MODEL_ID = "genretag-musicnn-msd-lastfm"
HEAD_FILE = "lastfm-tags-v1.1.0.safetensors"
#: Audio variants every clip is seen in (as for the genre head): bandwidth is no cue.
AUGMENTATIONS = ("clean", "band8k", "band11k", "mp3_64k")
#: Slices per clip embedded in each augmented copy (the clean copy keeps every slice).
AUGMENTED_SLICES = 5
#: L2 pull of each calibration group's offset towards 0 (the prior correction alone).
GROUP_PENALTY = 0.01
#: L2 pull of each tag's offset towards its group's.
TAG_PENALTY = 0.1
#: Labelled positive clips a tag needs for its own deviation and threshold.
MIN_POSITIVES = 5
#: The one threshold on calibrated track scores for every tag. Chosen on the two
#: artist-disjoint folds (held-out track scores, all augmentations): the cut that gives
#: most tracks one to three genres (0.82 of them; 0.03 get none, 0.15 four or more).
GENRE_THRESHOLD = 0.73
#: Share of labelled tracks of other genres a tag without labelled positives may reach
#: :data:`GENRE_THRESHOLD` on (in the fitting data).
UNLABELLED_RATE = 0.01

_ROCK = ("rock", "alternative", "indie", "alternative rock", "indie rock", "classic rock",
         "hard rock", "punk", "progressive rock")
_METAL = ("metal", "heavy metal")


class GenreLabel(NamedTuple):
    """What a collection's genre label says about the genre tags."""

    family: str | None
    """Family the clip's top tag must belong to (see ``Genre.families``); None: no such tag."""
    positive: tuple[str, ...]
    """Tags that fit such a clip."""
    ignored: tuple[str, ...] = ()
    """Tags the label cannot decide on (e.g. ``soul`` on blues): not used for them."""


#: Collection genre (GTZAN's ten, Emotify's four) -> its tag labels; other tags are negatives.
LABELS: dict[str, GenreLabel] = {
    "blues": GenreLabel("blues", ("blues",)),
    "classical": GenreLabel(None, ()),
    "country": GenreLabel("country", ("country",), ("folk",)),
    "disco": GenreLabel(None, ("dance",),
                        ("pop", "funk", "soul", "rnb", "electronic", "electro", "house")),
    "electronic": GenreLabel("electronic",
                             ("electronic", "electronica", "electro", "house", "dance",
                              "chillout")),
    "hiphop": GenreLabel("hip-hop", ("hip-hop", "rnb"), ("soul", "funk")),
    "jazz": GenreLabel("jazz", ("jazz",), ("easy listening",)),
    "metal": GenreLabel("rock", _METAL + _ROCK),
    "pop": GenreLabel("pop", ("pop", "indie pop", "dance"), ("rnb", "soul")),
    "reggae": GenreLabel(None, (), ("hip-hop", "rnb", "soul", "funk")),
    "rock": GenreLabel("rock", _ROCK, _METAL),
}


@dataclass(frozen=True)
class LabelledClip:
    """One clip of a calibration collection.

    ``group`` keeps an artist's clips together: the artist where the collection
    names it (Emotify), else the artist-disjoint split it belongs to (GTZAN).
    """

    path: Path
    collection: str
    genre: str
    group: str


def load_clips(gtzan_dir: str | Path | None = None,
               emotify_dir: str | Path | None = None) -> list[LabelledClip]:
    """Clips listed in each collection's ``index.csv`` (GTZAN: ``path, genre, split``;
    Emotify: ``path, genre, artist``). Raises :class:`GenretagError` naming the index
    when it is missing or lacks a column, or when a genre has no entry in :data:`LABELS`."""
    clips = []
    for collection, root, group_col in (("gtzan", gtzan_dir, "split"),
                                        ("emotify", emotify_dir, "artist")):
        if root is None:
            continue
        index = Path(root) / "index.csv"
        try:
            with open(index, newline="", encoding="utf-8") as fh:
                rows = list(csv.DictReader(fh))
        except OSError as exc:
            raise GenretagError(f"{index}: cannot read the clip index ({exc.strerror})") from None
        for row in rows:
            if not {"path", "genre", group_col} <= set(row):
                raise GenretagError(f"{index}: needs the columns path, genre and {group_col}")
            if row["genre"] not in LABELS:
                raise GenretagError(f"{index}: genre {row['genre']!r} has no tag labels "
                                    f"(known: {', '.join(sorted(LABELS))})")
            clips.append(LabelledClip(Path(root) / row["path"], collection, row["genre"],
                                      f"{collection}:{row[group_col]}"))
    return clips


def label_matrix(clips: list[LabelledClip], classes: list[str]) -> np.ndarray:
    """``np.ndarray [shape=(n_clips, n_classes), dtype=int8]``: 1 fits, 0 does not, -1 unknown."""
    y = np.zeros((len(clips), len(classes)), np.int8)
    for i, clip in enumerate(clips):
        label = LABELS[clip.genre]
        for t in label.positive:
            y[i, classes.index(t)] = 1
        for t in label.ignored:
            y[i, classes.index(t)] = -1
    return y


def assign_folds(clips: list[LabelledClip]) -> np.ndarray:
    """Two artist-disjoint folds, ``np.ndarray [n_clips]`` of 0/1.

    GTZAN's artist-filtered split already keeps artists apart: ``train`` is fold 0,
    ``valid`` fold 1 (GTZAN lists no artists, so no finer grouping can be defended).
    Other groups (artists) are dealt genre by genre, in crc32 order of their name, to
    the fold with fewer clips of that genre so far; an artist under two genres goes
    with the first.
    """
    folds = np.full(len(clips), -1)
    fold_of: dict[str, int] = {"gtzan:train": 0, "gtzan:valid": 1}
    for genre in sorted({c.genre for c in clips}):
        members = [c for c in clips if c.genre == genre]
        counts = [sum(1 for c in members if fold_of.get(c.group) == k) for k in (0, 1)]
        groups = sorted({c.group for c in members} - set(fold_of),
                        key=lambda g: (zlib.crc32(g.encode()), g))
        for g in groups:
            k = 0 if counts[0] <= counts[1] else 1
            fold_of[g] = k
            counts[k] += sum(1 for c in members if c.group == g)
    for i, clip in enumerate(clips):
        if clip.group not in fold_of:
            raise GenretagError(f"{clip.path}: group {clip.group!r} is neither an artist nor "
                                "a GTZAN split (train/valid)")
        folds[i] = fold_of[clip.group]
    return folds


@dataclass
class TagLogits:
    """The genre tags' logits of every slice of every clip in every augmentation.

    ``logits``: ``np.ndarray [shape=(n_slices, n_classes), dtype=float32]``, in the
    order of ``classes``; ``clip``/``aug``: ``[n_slices]`` indices into the clip list
    and :data:`AUGMENTATIONS`.
    """

    classes: list[str]
    logits: np.ndarray
    clip: np.ndarray
    aug: np.ndarray

    def rows(self, clip_mask: np.ndarray, augs: tuple[str, ...] = AUGMENTATIONS) -> np.ndarray:
        """Indices of the slices of clips in ``clip_mask`` seen in one of ``augs``."""
        return np.flatnonzero(clip_mask[self.clip]
                              & np.isin(self.aug, [AUGMENTATIONS.index(a) for a in augs]))


def embed_clips(clips: list[LabelledClip], backbone, *, cache_dir: Path | None = None,
                log: Callable[[str], None] = print) -> TagLogits:
    """Decode, augment, slice (consecutive 3-s slices) and run ``backbone`` on every clip.

    ``backbone`` is a :class:`genretag.backbone.Backbone`. The result is cached in
    ``cache_dir`` under a key of the clip list, augmentations, features and backbone sha256.
    """
    from .audio import decode
    from .audio import consecutive_slices
    from .augment import augment

    classes = list(GENRES)
    feats = backbone.features
    key = hashlib.sha256(json.dumps([[str(c.path) for c in clips], AUGMENTATIONS,
                                     AUGMENTED_SLICES, feats.to_dict(),
                                     backbone.sha256]).encode()).hexdigest()[:16]
    cache = Path(cache_dir) / f"tag-logits-{key}.npz" if cache_dir else None
    if cache and cache.is_file():
        z = np.load(cache)
        return TagLogits(classes, z["logits"], z["clip"], z["aug"])
    columns = [tag_index(t) for t in classes]
    logits, clip_idx, aug_idx = [], [], []
    for i, clip in enumerate(clips):
        audio = decode(str(clip.path), feats.sample_rate)
        for a, kind in enumerate(AUGMENTATIONS):
            slices = consecutive_slices(augment(audio, feats.sample_rate, kind), feats.slice_samples)
            pooled = backbone.embed(slices[augmented_slices(len(slices), a)])
            tags = backbone.views(pooled, ["tag_logits"])["tag_logits"].numpy()
            logits.append(tags[:, columns].astype(np.float32))
            clip_idx += [i] * len(pooled)
            aug_idx += [a] * len(pooled)
        if (i + 1) % 25 == 0 or i + 1 == len(clips):
            log(f"  embedded {i + 1}/{len(clips)} clips")
    out = TagLogits(classes, np.concatenate(logits), np.asarray(clip_idx, np.int32),
                    np.asarray(aug_idx, np.int8))
    if cache:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, logits=out.logits, clip=out.clip, aug=out.aug)
        tmp.replace(cache)
    return out


def augmented_slices(n: int, aug: int) -> np.ndarray:
    """Which of a clip's ``n`` slices are embedded in augmentation ``aug`` (0 = clean: all).

    Augmented copies keep about :data:`AUGMENTED_SLICES` slices: every ``stride``-th,
    ``stride = ceil(n / AUGMENTED_SLICES)``, starting at a different slice per
    augmentation (at least one slice), which halves the cost of calibration.
    """
    if aug == 0:
        return np.arange(n)
    stride = max(1, -(-n // AUGMENTED_SLICES))
    keep = np.flatnonzero((np.arange(n) + aug) % stride == 0)
    return keep if len(keep) else np.arange(min(n, 1))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def track_means(scores: np.ndarray, clip: np.ndarray, aug: np.ndarray):
    """Mean over slices per (clip, augmentation): ``(clip [K], aug [K], means [K, C])``."""
    key = clip.astype(np.int64) * 64 + aug
    keys, inverse = np.unique(key, return_inverse=True)
    sums = np.zeros((len(keys), scores.shape[1]))
    np.add.at(sums, inverse, scores)
    return keys // 64, keys % 64, sums / np.bincount(inverse)[:, None]


def slice_weights(clip: np.ndarray, aug: np.ndarray, strata: np.ndarray) -> np.ndarray:
    """Weight per slice ``[n]``: each (clip, augmentation) weighs 1 in all, split over its
    slices, and each stratum (collection genre, ``strata[clip]``) weighs the same in all."""
    key = clip.astype(np.int64) * 64 + aug
    keys, first, inverse, counts = np.unique(key, return_index=True, return_inverse=True,
                                             return_counts=True)
    _, stratum_of_key = np.unique(strata[clip[first]], return_inverse=True)
    per_stratum = np.bincount(stratum_of_key)
    return 1.0 / counts[inverse] / per_stratum[stratum_of_key[inverse]]


@dataclass
class Calibration:
    """Per genre tag (``[C]`` arrays, in ``classes`` order): the fitted map and thresholds.

    ``score = sigmoid(slope * (logit - mean) + offset)``; the head stores it as
    ``sigmoid(scale * logit + shift)``.
    """

    classes: list[str]
    mean: np.ndarray
    slope: np.ndarray
    offset: np.ndarray
    fitted: np.ndarray   # bool: the tag had labelled positives of its own
    thresholds: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def scale(self) -> np.ndarray:
        return self.slope

    @property
    def shift(self) -> np.ndarray:
        return self.offset - self.slope * self.mean

    def scores(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated slice scores ``[n, C]`` from tag logits ``[n, C]`` (as the head computes)."""
        return _sigmoid(self.slope * (logits - self.mean) + self.offset)


def _logsumexp(c: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise log-sum-exp of ``c`` over ``mask`` and the softmax over it (0 off the mask)."""
    top = np.where(mask, c, -np.inf).max(1, keepdims=True)
    e = np.where(mask, np.exp(c - top), 0.0)
    total = e.sum(1, keepdims=True)
    return (np.log(total) + top)[:, 0], e / total


def _fit_offsets(x: np.ndarray, w: np.ndarray, y: np.ndarray, group: np.ndarray,
                 fitted: np.ndarray, *, group_penalty: float,
                 tag_penalty: float) -> tuple[float, np.ndarray]:
    """Shared slope ``s`` and per-tag offsets ``b [C]`` that put, on each labelled slice,
    one of its positive tags on top of ``s * x + b``.

    ``x [n, C]``: prior-corrected logits; ``w [n]``: slice weights; ``y [n, C]``: 1 / 0 /
    -1 (left out of that slice's softmax); slices without a positive tag are not used.
    Tags that are not ``fitted`` are left out of every softmax: with no positives, the
    labels only ever show such a tag as a wrong answer, and would push the fitted tags
    above it on any music. ``b[t] = beta[group[t]] + delta[t]``: ``beta`` is fitted for
    groups with a ``fitted`` tag, ``delta`` for ``fitted`` tags (0 elsewhere), pulled
    towards 0 by the penalties. The loss per slice is ``logsumexp(c) - c[best positive
    tag]``.
    """
    from scipy.optimize import minimize

    y = np.where(fitted, y, -1)
    some = (y == 1).any(1)
    x, w, y = x[some], w[some] / w[some].sum(), y[some]
    known, pos = y >= 0, y == 1
    n_groups = int(group.max()) + 1
    free = np.zeros(n_groups, bool)
    free[group[fitted]] = True
    n_free = max(int(free.sum()), 1)
    rows = np.arange(len(x))
    n_tags = x.shape[1]

    def split(params):
        return (np.exp(params[0]), params[1:1 + n_groups] * free,
                params[1 + n_groups:] * fitted)

    def loss_and_grad(params):
        s, beta, delta = split(params)
        c = s * x + beta[group] + delta
        lse_all, p_all = _logsumexp(c, known)
        best = np.where(pos, c, -np.inf).argmax(1)
        p_all[rows, best] -= 1.0
        loss = ((w * (lse_all - c[rows, best])).sum()
                + group_penalty * (beta ** 2).sum() / n_free
                + tag_penalty * (delta ** 2).sum() / n_free)
        dc = w[:, None] * p_all
        d_tag = dc.sum(0)
        d_beta = np.bincount(group, weights=d_tag, minlength=n_groups)
        grad = np.concatenate([[(dc * x).sum() * s],
                               (d_beta + 2 * group_penalty * beta / n_free) * free,
                               (d_tag + 2 * tag_penalty * delta / n_free) * fitted])
        return loss, grad

    result = minimize(loss_and_grad, np.zeros(1 + n_groups + n_tags), jac=True,
                      method="L-BFGS-B", options={"maxiter": 2000, "gtol": 1e-9, "ftol": 1e-13})
    s, beta, delta = split(result.x)
    return float(s), beta[group] + delta


def _fit_platt(c: np.ndarray, w: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Shared ``A, B`` of ``sigmoid(A * c + B)`` by logistic regression over all tags of
    ``y`` (1 / 0, -1 left out), positives and negatives of each tag weighing half."""
    from scipy.optimize import minimize

    pos, neg = y == 1, y == 0
    weight = np.zeros_like(c)
    for mask in (pos, neg):
        totals = (mask * w[:, None]).sum(0)
        weight += mask * w[:, None] * np.divide(0.5, totals, out=np.zeros_like(totals),
                                                where=totals > 0)
    weight /= max(weight.sum(), 1e-12)
    target = pos.astype(np.float64)

    def loss_and_grad(params):
        z = params[0] * c + params[1]
        nll = np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z))) - target * z
        d = weight * (_sigmoid(z) - target)
        return (weight * nll).sum(), np.array([(d * c).sum(), d.sum()])

    result = minimize(loss_and_grad, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B",
                      options={"maxiter": 500, "gtol": 1e-10, "ftol": 1e-14})
    return float(result.x[0]), float(result.x[1])


def fit_calibration(logits: np.ndarray, clip: np.ndarray, aug: np.ndarray, labels: np.ndarray,
                    strata: np.ndarray, classes: list[str], *,
                    group_penalty: float = GROUP_PENALTY, tag_penalty: float = TAG_PENALTY,
                    min_positives: int = MIN_POSITIVES) -> Calibration:
    """Fit the map of the module docstring on slices; every tag's threshold is
    :data:`GENRE_THRESHOLD`.

    Parameters
    ----------
    logits : np.ndarray [shape=(n, C)]
        Tag logits of ``n`` slices.
    clip, aug : np.ndarray [shape=(n,)]
        Clip and augmentation index of each slice.
    labels : np.ndarray [shape=(n_clips, C), dtype=int8]
        From :func:`label_matrix`: 1, 0 or -1 (unknown) per clip and tag.
    strata : np.ndarray [shape=(n_clips,)]
        The clip's collection genre; each weighs the same.
    """
    x = logits.astype(np.float64)
    w = slice_weights(clip, aug, strata)
    y = labels[clip]
    negative = w[:, None] * (y == 0)
    mean = np.round((negative * x).sum(0) / negative.sum(0), 4)
    fitted = (labels[np.unique(clip)] == 1).sum(0) >= min_positives
    group = np.unique([GENRES[t].group for t in classes], return_inverse=True)[1]
    s, b = _fit_offsets(x - mean, w, y, group, fitted,
                        group_penalty=group_penalty, tag_penalty=tag_penalty)
    c = s * (x - mean) + b
    a_shared, b_shared = _fit_platt(c[:, fitted], w, y[:, fitted])
    slope = np.full(len(classes), np.round(a_shared * s, 4))
    offset = np.round(a_shared * b + b_shared, 4)
    cal = Calibration(list(classes), mean, slope, offset, fitted)
    cal.offset = limit_unlabelled(cal, logits, clip, aug, labels)
    cal.thresholds = np.full(len(classes), GENRE_THRESHOLD)
    return cal


def limit_unlabelled(cal: Calibration, logits: np.ndarray, clip: np.ndarray, aug: np.ndarray,
                     labels: np.ndarray, *, threshold: float = GENRE_THRESHOLD,
                     rate: float = UNLABELLED_RATE) -> np.ndarray:
    """Offsets ``[C]`` with those of the tags that were not ``fitted`` lowered, each just
    enough that at most ``rate`` of its negative tracks (clip x augmentation, label 0)
    score ``threshold`` or more; an offset is never raised. Bisection, rounded down to
    4 decimals."""
    offset = cal.offset.copy()
    t_clip, _, _ = track_means(np.zeros((len(clip), 1)), clip, aug)
    for k in np.flatnonzero(~cal.fitted):
        x = cal.slope[k] * (logits[:, k].astype(np.float64) - cal.mean[k])
        negative = labels[t_clip, k] == 0
        if not negative.any():
            continue

        def too_many(b):
            tracks = track_means(_sigmoid(x + b)[:, None], clip, aug)[2][:, 0]
            return (tracks[negative] >= threshold).mean() > rate

        if not too_many(offset[k]):
            continue
        lo, hi = offset[k] - 40.0, offset[k]
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (lo, mid) if too_many(mid) else (mid, hi)
        offset[k] = np.floor(lo * 1e4) / 1e4
    return offset


def _family_hits(scores: np.ndarray, families: list[str | None], classes: list[str]) -> np.ndarray:
    """Whether each row's top tag belongs to the row's family ``[K]`` bool."""
    top = scores.argmax(1)
    return np.array([fam in GENRES[classes[t]].families for t, fam in zip(top, families)])


def _rate(hits: np.ndarray) -> dict:
    return {"n": int(hits.size), "correct": int(hits.sum()),
            "accuracy": round(float(hits.mean()), 4) if hits.size else None}


def cross_validate(data: TagLogits, clips: list[LabelledClip], *,
                   log: Callable[[str], None] = print, **fit_options) -> dict:
    """Fit on one fold of :func:`assign_folds`, score the other, both ways.

    Returns a JSON-ready dict: the top tag's family accuracy of raw scores (the
    tag layer's sigmoid) and calibrated scores per augmentation and collection genre,
    per-tag precision/recall (counts included) of the genres over the threshold on the
    clean held-out clips and on all augmentations, how many genres tracks get (shares of
    0, 1, 2, 3, 4+), the share of listed genres that fit the clip's label, and how often
    each tag without labelled positives is listed on tracks of other genres.
    """
    classes = data.classes
    labels = label_matrix(clips, classes)
    folds = assign_folds(clips)
    strata = np.array([f"{c.collection}/{c.genre}" for c in clips])
    parts = []
    for k in (0, 1):
        fit_rows, held_rows = data.rows(folds != k), data.rows(folds == k)
        cal = fit_calibration(data.logits[fit_rows], data.clip[fit_rows], data.aug[fit_rows],
                              labels, strata, classes, **fit_options)
        rows = held_rows
        t_clip, t_aug, cal_scores = track_means(cal.scores(data.logits[rows]), data.clip[rows],
                                                data.aug[rows])
        _, _, raw_scores = track_means(_sigmoid(data.logits[rows].astype(np.float64)),
                                       data.clip[rows], data.aug[rows])
        parts.append((t_clip, t_aug, cal_scores, raw_scores,
                      np.tile(cal.thresholds, (len(t_clip), 1))))
        log(f"  fold {k}: fitted on {int((folds != k).sum())} clips, "
            f"scored {int((folds == k).sum())}")
    t_clip, t_aug, cal_scores, raw_scores, thresholds = (np.concatenate(p) for p in zip(*parts))
    families = [LABELS[clips[i].genre].family for i in t_clip]
    has_family = np.array([f is not None for f in families])
    stratum = strata[t_clip]
    family_accuracy: dict = {}
    for name, scores in (("raw", raw_scores), ("calibrated", cal_scores)):
        hits = _family_hits(scores, families, classes)
        per_aug = {}
        for a, aug in enumerate(AUGMENTATIONS):
            m = has_family & (t_aug == a)
            per_aug[aug] = {"all": _rate(hits[m]),
                            **{s: _rate(hits[m & (stratum == s)])
                               for s in sorted(set(stratum[has_family]))}}
        family_accuracy[name] = per_aug
    above = cal_scores >= thresholds
    tag_metrics = {}
    for subset, m in (("clean", t_aug == 0), ("all_augmentations", np.ones(len(t_aug), bool))):
        table = {}
        for k, tag in enumerate(classes):
            y = labels[t_clip[m], k]
            known = y >= 0
            truth, pred = y[known] == 1, above[m][known, k]
            tp = int((truth & pred).sum())
            fp, fn = int((~truth & pred).sum()), int((truth & ~pred).sum())
            table[tag] = {"positives": int(truth.sum()), "negatives": int((~truth).sum()),
                          "tp": tp, "fp": fp, "fn": fn,
                          "precision": round(tp / (tp + fp), 4) if tp + fp else None,
                          "recall": round(tp / (tp + fn), 4) if tp + fn else None}
        tag_metrics[subset] = table
    n_genres = above.sum(1)
    clean = t_aug == 0

    def count_shares(m):
        return {str(n): round(float((np.minimum(n_genres[m], 4) == n).mean()), 4)
                for n in range(5)}

    genre_counts = {"clean": count_shares(clean),
                    "all_augmentations": count_shares(np.ones(len(t_aug), bool)),
                    "clean_mean": round(float(n_genres[clean].mean()), 2),
                    "clean_by_genre": {s: round(float(n_genres[clean & (stratum == s)].mean()),
                                                2) for s in sorted(set(stratum))}}
    y = labels[t_clip]
    listed_right, listed_wrong = int((above & (y == 1)).sum()), int((above & (y == 0)).sum())
    unlabelled = [k for k in range(len(classes)) if (labels[:, k] == 1).sum() < MIN_POSITIVES]
    firing = {}
    for subset, m in (("clean", clean), ("all_augmentations", np.ones(len(t_aug), bool))):
        other = m[:, None] & (y == 0)
        firing[subset] = {classes[k]: round(float(above[other[:, k], k].mean()), 4)
                          for k in unlabelled}
        every = m & (y[:, unlabelled] == 0).all(1)
        firing[subset]["any"] = round(float(above[every][:, unlabelled].any(1).mean()), 4)
    top_tags = {}
    for st in sorted(set(stratum)):
        tops = [classes[i] for i in cal_scores[clean & (stratum == st)].argmax(1)]
        ranked = sorted(set(tops), key=lambda t: (-tops.count(t), t))
        top_tags[st] = {t: tops.count(t) for t in ranked}
    return {"folds": "2 artist-disjoint folds (GTZAN train/valid; Emotify artists)",
            "family_accuracy": family_accuracy, "tags": tag_metrics,
            "genre_threshold": GENRE_THRESHOLD,
            "genres_per_track": genre_counts,
            "listed_genres_right": round(listed_right / max(listed_right + listed_wrong, 1), 4),
            "unlabelled_tags_on_other_genres": firing,
            "top_tag_counts_clean": top_tags}


LIMITATIONS = [
    "The vocabulary is the genre half of MSD's 50 most frequent Last.fm tags: no classical, "
    "reggae, latin, world, soundtrack, ska, gospel or any genre outside that list. Such a "
    "track still gets a top tag, a near miss (classical: mostly 'jazz' or 'dance').",
    "Tags are what Last.fm users wrote about whole artists around 2011, learnt from 30-s MSD "
    "previews: 'indie', 'alternative' and 'indie rock' overlap, and a tag says what such "
    "music was called then, not a musicological fact.",
    "Labelled calibration data cover the families rock (incl. metal), pop, electronic, "
    "hip-hop, blues, jazz and country only. folk, experimental, ambient, soul, funk and "
    "easy listening had no labelled positives: they were left out of the fit that sets the "
    "other tags' levels, and their score is the prior correction (their level on other "
    "music) under the shared map, lowered until they reach the threshold on "
    f"at most {UNLABELLED_RATE:.0%} of the labelled tracks of other genres. Nothing checked "
    "that they fire on their own music: expect them to be listed rarely, perhaps too rarely.",
    "Inside a family the labels cannot tell tags apart (a rock clip counts as a positive "
    "for 'indie rock' and 'classic rock' alike). The fit favours the tag of each family that "
    "wins most often: 'indie rock' tops most rock, 'dance' much electronic and pop music; "
    "the order among sibling tags is otherwise the backbone's own. As the list is a prefix "
    "of the ranking, 'rock', 'alternative' and 'progressive rock' are rarely listed.",
    "Magnatune pop and rock sound alike to the tag layer: pop clips often get 'indie rock'. "
    "Precision of a tag is measured against its family. Sibling tags score alike, so a "
    "family with many tags gives long lists: electronic music often gets Dance, Electronic, "
    "Electronica, House and Electro together; the plugin's count cuts them.",
    "'dance' is the top tag of much music outside its families (many classical clips, most "
    "GTZAN country) and often the second genre listed: the fit lifts it for disco, pop and "
    "electronic alike.",
    "Scores are calibrated on GTZAN (commercial recordings up to 2002) and 200 Magnatune "
    "clips; other eras and production styles may shift them.",
]


def _head_tensors(cal: Calibration) -> dict:
    import torch

    return {"tag_index": torch.tensor([tag_index(t) for t in cal.classes], dtype=torch.long),
            "scale": torch.tensor(cal.scale, dtype=torch.float32),
            "shift": torch.tensor(cal.shift, dtype=torch.float32)}


def write_model_dir(out_dir: str | Path, cal: Calibration, *, backbone_sha256: str,
                    training: dict, metrics: dict) -> dict:
    """Write ``model_card.json`` and the head's safetensors (a few KB) to ``out_dir``.

    The card names the backbone by file name and sha256 (found next to the card, else
    among the shipped weights); the backbone itself is not copied.
    """
    from .backbone import BACKBONE_FILE, MUSICNN_PROVENANCE
    from .features import MUSICNN_FEATURES
    from .model import CARD_FORMAT, CARD_NAME, save_tensors

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    entry = save_tensors(_head_tensors(cal), out_dir / HEAD_FILE)
    per_tag = {t: {"mean": float(cal.mean[k]), "slope": float(cal.slope[k]),
                   "offset": float(cal.offset[k]),
                   "own_labels": bool(cal.fitted[k])}
               for k, t in enumerate(cal.classes)}
    card = {
        "format": CARD_FORMAT,
        "model_id": MODEL_ID,
        "version": VERSION,
        "vocabulary": "lastfm",
        "classes": list(cal.classes),
        "display_names": {t: GENRES[t].display for t in cal.classes},
        "canonical": {t: GENRES[t].parent for t in cal.classes},
        "families": {t: list(GENRES[t].families) for t in cal.classes},
        "excluded_tags": [t for t in MSD_TAGS if t.lower() not in GENRES],
        "head": {"arch": LastfmHead.arch, "params": {}},
        "backbone": {"path": BACKBONE_FILE, "sha256": backbone_sha256},
        "features": MUSICNN_FEATURES.to_dict(),
        "files": [entry],
        "thresholds": {t: float(cal.thresholds[k]) for k, t in enumerate(cal.classes)},
        "calibration": {
            "score": "sigmoid(slope * (logit - mean) + offset) per slice; the track score "
                     "is the mean over slices",
            "mean": "the tag's mean slice logit over labelled clips of other genres (each "
                    "collection genre weighing the same): its level on music that is not it",
            "offset": "softmax fit (best positive tag against the rest) of one slope and "
                      "offsets shared per calibration group plus per-tag deviations "
                      f"(L2 {GROUP_PENALTY} / {TAG_PENALTY}), then one shared logistic map "
                      "(positives and negatives of each tag weighing half); groups without "
                      f"labelled positives (fewer than {MIN_POSITIVES} clips) are left out of "
                      "the softmax fit and keep the prior correction alone, lowered until "
                      "at most "
                      f"{UNLABELLED_RATE} of the labelled tracks of other genres reach the "
                      "threshold",
            "thresholds": f"one threshold, {GENRE_THRESHOLD}, for every tag (scores share one "
                          "scale): a track's genres are a prefix of its score ranking. Chosen "
                          "on the artist-disjoint folds as the cut giving most held-out tracks "
                          "one to three genres",
            "groups": {t: GENRES[t].group for t in cal.classes},
            "labels": {g: {"family": lab.family, "positive": list(lab.positive),
                           "ignored": list(lab.ignored)} for g, lab in LABELS.items()},
            "per_tag": per_tag,
        },
        "training": training,
        "metrics": metrics,
        "limitations": LIMITATIONS,
        "provenance": [MUSICNN_PROVENANCE],
        "licence": "The tag layer and the backbone are part of the MSD_musicnn weights (ISC "
                   "licence, see provenance); the calibration is genretag's.",
    }
    (out_dir / CARD_NAME).write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
    (out_dir / "MODEL_CARD.md").write_text(card_markdown(card), encoding="utf-8")
    return card


def _num(v) -> str:
    return "–" if v is None else f"{v:.2f}"


def card_markdown(card: dict) -> str:
    """The short human-readable page written next to ``model_card.json``."""
    lines = [f"# {card['model_id']} {card['version']}: the `lastfm` vocabulary", "",
             "The genre tags of MSD_musicnn's own Last.fm tag layer (read from the same "
             "backbone pass as the trained genre head), with a calibration fitted by genretag. "
             "Scores per slice, averaged over the track; a track's genres are the tags scoring "
             f"{GENRE_THRESHOLD} or more, best first (one threshold for every tag, so the list "
             "starts with the top tag and never skips a better-scoring one).", "",
             "| tag | shown as | canonical | threshold | own labels |", "|---|---|---|---|---|"]
    per_tag = card["calibration"]["per_tag"]
    for t in card["classes"]:
        own = "yes" if per_tag[t]["own_labels"] else "no"
        lines.append(f"| {t} | {card['display_names'][t]} | {card['canonical'][t]} | "
                     f"{card['thresholds'][t]:.2f} | {own} |")
    lines += ["", f"Left out (not genres): {', '.join(card['excluded_tags'])}.", ""]
    metrics = card.get("metrics") or {}
    if metrics.get("family_accuracy"):
        lines += ["## Validation", "", f"{metrics['folds']}. Top tag's family right "
                  "(families: `families` in the card), held-out clips, raw tag-layer "
                  "scores vs calibrated:", "", "| audio | clips | raw | calibrated |",
                  "|---|---|---|---|"]
        fam = metrics["family_accuracy"]
        for aug, row in fam["calibrated"].items():
            if row["all"]["n"]:
                raw = _num(fam["raw"][aug]["all"]["accuracy"])
                lines.append(f"| {aug} | {row['all']['n']} | {raw} | "
                             f"{_num(row['all']['accuracy'])} |")
        lines += ["", "Per collection genre (clean audio):", "",
                  "| collection/genre | clips | raw | calibrated |", "|---|---|---|---|"]
        for stratum, row in fam["calibrated"]["clean"].items():
            if stratum != "all" and row["n"]:
                lines.append(f"| {stratum} | {row['n']} | "
                             f"{_num(fam['raw']['clean'][stratum]['accuracy'])} | "
                             f"{_num(row['accuracy'])} |")
        counts = metrics["genres_per_track"]
        lines += ["", f"Genres per track over the threshold ({metrics['genre_threshold']}), "
                  "held-out tracks (share of tracks):", "",
                  "| audio | 0 | 1 | 2 | 3 | 4+ |", "|---|---|---|---|---|---|"]
        for subset in ("clean", "all_augmentations"):
            lines.append(f"| {subset.replace('_', ' ')} | "
                         + " | ".join(_num(counts[subset][str(n)]) for n in range(5)) + " |")
        lines += ["", f"Listed genres that fit the clip's label: "
                  f"{_num(metrics['listed_genres_right'])} (inside a family every sibling "
                  "tag counts as right).", "",
                  "Tags without labelled positives, share of held-out tracks of other "
                  "labelled genres they are listed on:", "",
                  "| tag | clean | all audio |", "|---|---|---|"]
        firing = metrics["unlabelled_tags_on_other_genres"]
        for t in firing["clean"]:
            lines.append(f"| {t} | {firing['clean'][t]:.3f} | "
                         f"{firing['all_augmentations'][t]:.3f} |")
        lines += ["", "Per tag over the threshold (clean held-out clips; a positive is a clip "
                  "of the tag's family, see `calibration.labels`):", "",
                  "| tag | positives | negatives | precision | recall |", "|---|---|---|---|---|"]
        for t, r in metrics["tags"]["clean"].items():
            lines.append(f"| {t} | {r['positives']} | {r['negatives']} | "
                         f"{_num(r['precision'])} | {_num(r['recall'])} |")
    lines += ["", "## What it cannot know", ""] + [f"- {x}" for x in card["limitations"]]
    lines += ["", "## Licence", "", card["licence"], "",
              "## Reproduce", "", f"`{card['training'].get('command', '')}`", ""]
    return "\n".join(lines)


def calibrate_tags(out_dir: str | Path, *, gtzan_dir: str | Path | None = None,
                   emotify_dir: str | Path | None = None, weights_dir: str | Path | None = None,
                   cache_dir: str | Path | None = None,
                   log: Callable[[str], None] = print) -> dict:
    """Fit the ``lastfm`` calibration on the labelled collections and write its directory.

    Embeds every clip in every augmentation (about 25 000 slices for GTZAN + Emotify:
    minutes; ``cache_dir`` keeps the logits for a rerun), cross-validates, fits on all
    clips and writes ``out_dir`` (see :func:`write_model_dir`). Returns the card.
    """
    from .backbone import BACKBONE_FILE, load_backbone
    from .model import sha256_file, shipped_weights_dir

    clips = load_clips(gtzan_dir, emotify_dir)
    if not clips:
        raise GenretagError("calibrate-tags needs at least one collection (GTZAN or Emotify)")
    backbone_path = Path(weights_dir or shipped_weights_dir()) / BACKBONE_FILE
    if not backbone_path.is_file():
        raise GenretagError(f"{backbone_path}: backbone weights not found")
    sha = sha256_file(backbone_path)
    backbone = load_backbone(backbone_path, sha)
    log(f"embedding {len(clips)} clips x {len(AUGMENTATIONS)} augmentations")
    data = embed_clips(clips, backbone, cache_dir=Path(cache_dir) if cache_dir else None, log=log)
    log("cross-validating")
    metrics = cross_validate(data, clips, log=log)
    labels = label_matrix(clips, data.classes)
    strata = np.array([f"{c.collection}/{c.genre}" for c in clips])
    cal = fit_calibration(data.logits, data.clip, data.aug, labels, strata, data.classes)
    collections = sorted({c.collection for c in clips})
    training = {
        "data": {"gtzan": "GTZAN, fault-filtered artist-disjoint train + valid clips "
                          "(Kereliuk, Sturm & Larsen 2015)",
                 "emotify": "Emotify (Aljanaki, Wiering & Veltkamp 2016): Magnatune clips "
                            "with artists"},
        "collections": {c: {g: sum(1 for x in clips if x.collection == c and x.genre == g)
                            for g in sorted({x.genre for x in clips if x.collection == c})}
                        for c in collections},
        "clips": len(clips),
        "slices": int(len(data.clip)),
        "augmentations": list(AUGMENTATIONS),
        "command": "genretag calibrate-tags"
                   + (" --gtzan GTZAN_DIR" if gtzan_dir else "")
                   + (" --emotify EMOTIFY_DIR" if emotify_dir else "") + " --out weights/lastfm",
    }
    return write_model_dir(out_dir, cal, backbone_sha256=sha, training=training, metrics=metrics)
