"""Track-level classification metrics (pure functions on label indices)."""
from __future__ import annotations

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """``[n_classes, n_classes]`` counts; rows are true classes, columns predictions."""
    cm = np.zeros((n_classes, n_classes), dtype=int)
    np.add.at(cm, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return cm


def summarize(y_true, y_pred, classes: list[str]) -> dict:
    """Accuracy, balanced accuracy (mean recall over classes present), per-class recall, matrix."""
    cm = confusion_matrix(y_true, y_pred, len(classes))
    support = cm.sum(axis=1)
    present = support > 0
    recall = np.divide(np.diag(cm), support, out=np.zeros(len(classes)), where=present)
    return {
        "n": int(cm.sum()),
        "accuracy": float(np.trace(cm) / max(1, cm.sum())),
        "balanced_accuracy": float(recall[present].mean()) if present.any() else 0.0,
        "per_class_recall": {c: (round(float(r), 4) if s else None)
                             for c, r, s in zip(classes, recall, support)},
        "support": {c: int(s) for c, s in zip(classes, support)},
        "confusion": cm.tolist(),
    }


def format_report(name: str, m: dict, classes: list[str]) -> str:
    """Human-readable block: headline numbers, per-class recall with counts, and the
    confusion matrix restricted to the classes that occur (as truth or prediction)."""
    cm = np.asarray(m["confusion"])
    lines = [f"{name}: accuracy {m['accuracy']:.3f}  balanced {m['balanced_accuracy']:.3f}  "
             f"(n={m['n']})", "  recall: " + ", ".join(
                 f"{c} {cm[i, i] / m['support'][c]:.2f} ({int(cm[i, i])}/{m['support'][c]})"
                 for i, c in enumerate(classes)
                 if m["support"][c])]
    shown = [i for i in range(len(classes)) if cm[i].sum() or cm[:, i].sum()]
    width = max(len(classes[i]) for i in shown) if shown else 4
    lines.append("  " + " " * width + " " + " ".join(classes[i][:4].rjust(4) for i in shown))
    for i in shown:
        if cm[i].sum():
            lines.append(f"  {classes[i].rjust(width)} "
                         + " ".join(str(cm[i, j]).rjust(4) for j in shown))
    return "\n".join(lines)


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, *,
                               n_bins: int = 10) -> float:
    """ECE over ``n_bins`` equal-width confidence bins: the mean |accuracy - confidence| of
    a bin, weighted by its share of items. ``confidence [n]`` in 0..1, ``correct [n]`` bool."""
    confidence = np.asarray(confidence, float)
    correct = np.asarray(correct, float)
    if len(confidence) == 0:
        return 0.0
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        inside = bins == b
        if inside.any():
            total += inside.sum() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(total / len(confidence))


def precision_coverage(confidence: np.ndarray, correct: np.ndarray, *,
                       thresholds: np.ndarray | None = None) -> list[dict]:
    """For each threshold (default 0.00, 0.01, ..., 0.99): the share of items whose
    confidence reaches it (``coverage``), how many (``n``) and the accuracy among them
    (``precision``, ``None`` when none reach it)."""
    confidence = np.asarray(confidence, float)
    correct = np.asarray(correct, bool)
    if thresholds is None:
        thresholds = np.round(np.arange(0, 100) / 100, 2)
    rows = []
    for t in thresholds:
        kept = confidence >= t
        n = int(kept.sum())
        rows.append({"threshold": float(t), "n": n,
                     "coverage": round(n / max(1, len(confidence)), 4),
                     "precision": round(float(correct[kept].mean()), 4) if n else None})
    return rows
