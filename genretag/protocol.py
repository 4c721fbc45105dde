"""The cross-collection protocol, calibration and abstention, on cached embeddings.

Parts (each scored on held-out clips as they are, ``clean``, and band-limited, ``band8k``;
a track's scores are the mean of its slices' scores, as in :mod:`genretag.classify`):

(a) GTZAN ``train`` -> ``valid`` and ``valid`` -> ``train`` (the other collections are
    in the training data of both folds);
(b) one collection only -> another, on the genres they share (GTZAN -> Emotify
    classical/pop/rock and back); outputs of genres absent from the training data are
    masked. Also reported, outside the mean: the same held-out scores with every genre
    but the shared ones masked: "which of the shared genres?" (Emotify -> GTZAN, trained
    on four genres, nearly answers that anyway);
(c) five artist-grouped folds over all collections together
    (:func:`genretag.collections.group_folds`).

The model is chosen on the mean accuracy of (a), (b) and (c). The held-out slice logits
of (c) fit the temperature, measure calibration (ECE) and give the precision/coverage
curve from which ``min_confidence`` is chosen.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .metrics import expected_calibration_error, precision_coverage, summarize
from .training import Design, Embeddings, Recipe, fit_rows, slice_logits

EVAL_VARIANTS = ("clean", "band8k")
#: Precision ``min_confidence`` must give on held-out tracks.
TARGET_PRECISION = 0.90
#: Fewest held-out tracks above a threshold for its precision to count.
MIN_TRACKS = 20


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def track_scores(logits: np.ndarray, clip: np.ndarray, n_classes: int, *,
                 temperature: float = 1.0, absent: np.ndarray | None = None):
    """``(clip ids, scores [n_clips, n_classes])``: mean over each clip's slices of the genre
    columns of ``softmax(logits / temperature)``, outputs in ``absent`` (bool) masked."""
    z = logits / temperature
    if absent is not None and absent.any():
        z = np.where(absent[None, :len(z[0])], -np.inf, z)
    p = softmax(z)[:, :n_classes]
    ids = np.unique(clip)
    return ids, np.stack([p[clip == i].mean(axis=0) for i in ids]) if len(ids) else \
        np.zeros((0, n_classes))


@dataclass
class HeldOut:
    """Slice logits of held-out rows (``logits [N, outputs]``, ``clip [N]``)."""

    logits: np.ndarray
    clip: np.ndarray
    absent: np.ndarray


def _fit_score(emb: Embeddings, d: Design, recipe: Recipe, train_clips: np.ndarray,
               test_clips: np.ndarray, variants=EVAL_VARIANTS) -> dict[str, HeldOut]:
    rows = emb.rows(train_clips, recipe.augmentations)
    fitted = fit_rows(d, rows, recipe)
    n_out = fitted[2].out_features
    absent = np.ones(n_out, bool)
    absent[np.unique(d.labels[rows])] = False
    if n_out > d.reject:
        absent[d.reject] = False
    out = {}
    for v in variants:
        test = emb.rows(test_clips, (v,))
        out[v] = HeldOut(slice_logits(fitted, d.x[test]), emb.clip[test], absent)
    return out


def _metrics(held: HeldOut, labels: np.ndarray, classes, temperature: float = 1.0) -> dict:
    ids, p = track_scores(held.logits, held.clip, len(classes), temperature=temperature,
                          absent=held.absent)
    return summarize(labels[ids], p.argmax(axis=1), list(classes))


def run_protocol(emb: Embeddings, d: Design, recipe: Recipe, *, n_folds: int = 5,
                 log=print) -> dict:
    """Every part of the protocol for ``recipe``; see the module docstring.

    Returns ``{"parts": {name: metrics}, "a"|"b"|"c"|"mean": accuracy, "heldout_c":
    HeldOut of every clip in its held-out fold (clean)}``; metrics are
    :func:`genretag.metrics.summarize` dicts.
    """
    from .collections import group_folds

    classes = list(recipe.classes)
    labels = np.asarray([classes.index(c.genre) for c in emb.clips])
    coll = np.asarray([c.collection for c in emb.clips])
    split = np.asarray([c.split for c in emb.clips])
    parts: dict[str, dict] = {}
    score_a, score_b = [], []
    has_split = split != ""
    for fit_split, test_split in (("train", "valid"), ("valid", "train")):
        if not (has_split & (split == test_split)).any():
            continue
        train_mask = ~has_split | (split == fit_split)
        held = _fit_score(emb, d, recipe, train_mask, has_split & (split == test_split))
        for v, h in held.items():
            parts[f"a {fit_split}->{test_split} [{v}]"] = _metrics(h, labels, classes)
        score_a.append(parts[f"a {fit_split}->{test_split} [clean]"]["accuracy"])
        log(f"  (a) {fit_split}->{test_split}: {score_a[-1]:.3f}")
    names = list(dict.fromkeys(coll))
    for src in names:
        for dst in names:
            if src == dst:
                continue
            shared = set(labels[coll == src]) & set(labels[coll == dst])
            test = (coll == dst) & np.isin(labels, sorted(shared))
            if not test.any():
                continue
            held = _fit_score(emb, d, recipe, coll == src, test)
            for v, h in held.items():
                parts[f"b {src}->{dst} [{v}]"] = _metrics(h, labels, classes)
            clean = held["clean"]
            unshared = np.arange(len(clean.absent)) < len(classes)
            unshared[sorted(shared)] = False
            parts[f"b {src}->{dst}, shared genres only [clean]"] = _metrics(
                HeldOut(clean.logits, clean.clip, clean.absent | unshared), labels, classes)
            score_b.append(parts[f"b {src}->{dst} [clean]"]["accuracy"])
            log(f"  (b) {src}->{dst}: {score_b[-1]:.3f}")
    fold = np.asarray(group_folds(emb.clips, n_folds))
    pieces: dict[str, list[HeldOut]] = {v: [] for v in EVAL_VARIANTS}
    for f in range(n_folds):
        held = _fit_score(emb, d, recipe, fold != f, fold == f)
        for v, h in held.items():
            pieces[v].append(h)
        log(f"  (c) fold {f + 1}/{n_folds} done")
    heldout_c = {}
    for v, hs in pieces.items():
        ids, p = [], []
        for h in hs:
            i, s = track_scores(h.logits, h.clip, len(classes), absent=h.absent)
            ids.append(i)
            p.append(s)
        ids, p = np.concatenate(ids), np.concatenate(p)
        parts[f"c {n_folds}-fold [{v}]"] = summarize(labels[ids], p.argmax(1), classes)
        for name in names:
            k = coll[ids] == name
            parts[f"c {n_folds}-fold {name} [{v}]"] = summarize(labels[ids][k], p[k].argmax(1),
                                                                classes)
        heldout_c[v] = HeldOut(np.concatenate([h.logits for h in hs]),
                               np.concatenate([h.clip for h in hs]), hs[0].absent)
    out = {"parts": parts, "a": float(np.mean(score_a)) if score_a else None,
           "b": float(np.mean(score_b)) if score_b else None,
           "c": parts[f"c {n_folds}-fold [clean]"]["accuracy"], "heldout_c": heldout_c,
           "folds": fold}
    out["mean"] = float(np.mean([out[k] for k in "abc" if out[k] is not None]))
    log(f"  mean of (a), (b), (c): {out['mean']:.3f}")
    return out


def fit_temperature(held: HeldOut, labels: np.ndarray, n_classes: int) -> float:
    """The temperature (grid 0.1..10, 121 log-spaced values) that minimises the negative
    log-likelihood of held-out tracks' true genres under their mean slice scores."""
    ids = np.unique(held.clip)
    best, best_t = np.inf, 1.0
    for t in np.exp(np.linspace(np.log(0.1), np.log(10.0), 121)):
        _, p = track_scores(held.logits, held.clip, n_classes, temperature=t,
                            absent=held.absent)
        nll = -np.mean(np.log(np.clip(p[np.arange(len(ids)), labels[ids]], 1e-12, None)))
        if nll < best - 1e-12:
            best, best_t = nll, float(t)
    return round(best_t, 4)


def calibration_report(held: HeldOut, labels: np.ndarray, n_classes: int,
                       temperature: float) -> dict:
    """ECE before/after ``temperature``, the precision/coverage curve after it and the
    ``min_confidence`` reaching :data:`TARGET_PRECISION` on held-out tracks."""
    out = {"temperature": temperature}
    for name, t in (("uncalibrated", 1.0), ("calibrated", temperature)):
        ids, p = track_scores(held.logits, held.clip, n_classes, temperature=t,
                              absent=held.absent)
        conf, right = p.max(1), p.argmax(1) == labels[ids]
        out[f"ece_{name}"] = round(expected_calibration_error(conf, right), 4)
        if name == "calibrated":
            curve = precision_coverage(conf, right)
            out["precision_coverage"] = curve
            ok = [row for row in curve if row["precision"] is not None
                  and row["n"] >= MIN_TRACKS and row["precision"] >= TARGET_PRECISION]
            # the lowest threshold from which precision stays at the target (thresholds
            # kept by fewer than MIN_TRACKS tracks are too noisy to count)
            chosen = None
            for row in reversed(curve):
                if row["precision"] is None or row["n"] < MIN_TRACKS:
                    continue
                if row["precision"] < TARGET_PRECISION:
                    break
                chosen = row
            out["min_confidence"] = chosen["threshold"] if chosen else 1.0
            out["coverage_at_min_confidence"] = chosen["coverage"] if chosen else 0.0
            out["precision_at_min_confidence"] = chosen["precision"] if chosen else None
            out["any_threshold_reaching_target"] = bool(ok)
    return out
