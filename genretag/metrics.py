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
    """Human-readable block: headline numbers, per-class recall with counts, matrix."""
    lines = [f"{name}: accuracy {m['accuracy']:.3f}  balanced {m['balanced_accuracy']:.3f}  "
             f"(n={m['n']})", "  recall: " + ", ".join(
                 f"{c} {m['per_class_recall'][c]:.2f}/{m['support'][c]}" for c in classes
                 if m["support"][c])]
    width = max(len(c) for c in classes)
    lines.append("  " + " " * width + " " + " ".join(c[:4].rjust(4) for c in classes))
    for c, row in zip(classes, m["confusion"]):
        lines.append(f"  {c.rjust(width)} " + " ".join(str(v).rjust(4) for v in row))
    return "\n".join(lines)
