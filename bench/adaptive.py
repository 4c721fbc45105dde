"""Issue 14's accuracy check of adaptive analysis: does stopping early change the answers?

    python bench/adaptive.py --gtzan ../shared/data/gtzan --emotify ../shared/data/emotify \
        [--cache DIR] [--skip-pipeline]

Two measurements, both on every clip of both collections:

1. **Held-out accuracy** (the validation protocol's part (c)): heads fitted on four of five
   artist-grouped folds with the shipped recipe score the fifth, per slice; a clip's answer
   is the mean over all its planned slices (fixed analysis) or over the slices an adaptive
   analysis reads before that same held-out head is settled (``GenreModel.settled``'s rule:
   the slices in :func:`genretag.audio.coarse_to_fine` order, checks after
   ``defaults.FIRST_CHECK`` slices, then every ``defaults.CHECK_EVERY``). Uses the training
   embedding cache (``genretag train --cache DIR``; made on first use, about 20 min).
2. **The real pipeline** (``genretag.classify.classify_file``, shipped model, decoding each
   file): fixed vs adaptive analysis, the same top genre on how many clips, and the slices
   and time each reads. (The shipped model was fitted on these clips, so this is agreement,
   not accuracy; accuracy is part 1.)

Writes bench/out/adaptive.json and prints markdown tables for bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent


def heldout_slice_probs(data_dirs: list[Path], cache_dir: Path):
    """``(prepared, {clean row: calibrated probabilities})`` from 5 artist-grouped folds."""
    from genretag.collections import group_folds
    from genretag.protocol import softmax
    from genretag.training import Recipe, fit_rows, prepare, slice_logits
    from genretag.model import load_model

    recipe = Recipe()
    p = prepare(data_dirs, cache_dir=cache_dir, backbone=None, recipe=recipe, log=print)
    temperature = load_model().head.temperature  # the shipped calibration
    fold = np.asarray(group_folds(p.emb.clips, 5))
    probs = {}
    for f in range(5):
        fitted = fit_rows(p.design, p.emb.rows(fold != f, recipe.augmentations), recipe)
        test = p.emb.rows(fold == f, ("clean",))
        z = slice_logits(fitted, p.design.x[test]) / temperature
        for row, pr in zip(test, softmax(z)[:, :len(recipe.classes)]):
            probs[int(row)] = pr
    return p, probs


def adaptive_stop(scores: np.ndarray, order: list[int]) -> int:
    """Slices an adaptive analysis reads, given every planned slice's scores ``[k, C]``
    (the library's schedule and rule: ``model.is_check`` and ``model.leads``)."""
    from genretag.model import is_check, leads

    return next((n for n in range(1, len(order))
                 if is_check(n) and leads(scores[order[:n]].mean(axis=0))), len(order))


def protocol_part(data_dirs: list[Path], cache_dir: Path) -> list[dict]:
    from genretag import defaults
    from genretag.audio import coarse_to_fine, spread_indices

    p, probs = heldout_slice_probs(data_dirs, cache_dir)
    rows_of: dict[int, list[tuple[int, int]]] = {}
    for row in probs:
        rows_of.setdefault(int(p.emb.clip[row]), []).append((int(p.emb.slice[row]), row))
    out = []
    for clip, rows in sorted(rows_of.items()):
        rows = [r for _, r in sorted(rows)]
        plan = [rows[i] for i in spread_indices(len(rows), defaults.MAX_SLICES)]
        scores = np.stack([probs[r] for r in plan])
        order = coarse_to_fine(len(plan))
        n = adaptive_stop(scores, order)
        out.append({"collection": p.clips[clip].collection, "label": int(p.labels[clip]),
                    "fixed": int(scores.mean(0).argmax()),
                    "adaptive": int(scores[order[:n]].mean(0).argmax()),
                    "planned": len(plan), "read": n})
    return out


def pipeline_part(data_dirs: list[Path]) -> list[dict]:
    import torch

    from genretag import load_model
    from genretag.classify import classify_file
    from genretag.collections import load_collection

    torch.set_num_threads(1)
    model = load_model()
    out = []
    for d in data_dirs:
        for clip in load_collection(d, genres=tuple(model.classes)):
            rec = {"collection": clip.collection, "path": clip.relpath}
            for mode, adaptive in (("fixed", False), ("adaptive", True)):
                t = time.perf_counter()
                r = classify_file(clip.path, model, adaptive=adaptive)
                rec[f"{mode}_s"] = time.perf_counter() - t
                rec[mode] = r.genre
                rec[f"{mode}_slices"] = len(r.timeline)
            out.append(rec)
        print(f"{d.name}: {sum(r['collection'] == clip.collection for r in out)} clips")
    return out


def report(protocol: list[dict] | None, pipeline: list[dict] | None) -> str:
    lines = []
    if protocol:
        lines += ["| collection | clips | slices read, fixed | adaptive | accuracy, fixed "
                  "| adaptive | same genre |", "|---|---|---|---|---|---|---|"]
        for name in sorted({r["collection"] for r in protocol}) + ["both"]:
            rs = [r for r in protocol if name in ("both", r["collection"])]
            acc = lambda k: np.mean([r[k] == r["label"] for r in rs])  # noqa: E731
            lines.append(f"| {name} | {len(rs)} | {np.mean([r['planned'] for r in rs]):.1f} | "
                         f"{np.mean([r['read'] for r in rs]):.1f} | {acc('fixed'):.3f} | "
                         f"{acc('adaptive'):.3f} | "
                         f"{np.mean([r['fixed'] == r['adaptive'] for r in rs]):.1%} |")
    if pipeline:
        lines += ["", "| collection | clips | same top genre | slices, fixed | adaptive "
                  "| s per clip, fixed | adaptive |", "|---|---|---|---|---|---|---|"]
        for name in sorted({r["collection"] for r in pipeline}) + ["both"]:
            rs = [r for r in pipeline if name in ("both", r["collection"])]
            same = sum(r["fixed"] == r["adaptive"] for r in rs)
            lines.append(
                f"| {name} | {len(rs)} | {same}/{len(rs)} ({same / len(rs):.1%}) | "
                f"{np.mean([r['fixed_slices'] for r in rs]):.1f} | "
                f"{np.mean([r['adaptive_slices'] for r in rs]):.1f} | "
                f"{np.median([r['fixed_s'] for r in rs]):.3f} | "
                f"{np.median([r['adaptive_s'] for r in rs]):.3f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gtzan", type=Path, required=True)
    ap.add_argument("--emotify", type=Path, required=True)
    ap.add_argument("--cache", type=Path, default=BENCH / "out" / "training-cache",
                    help="the training embedding cache (genretag train --cache)")
    ap.add_argument("--skip-pipeline", action="store_true")
    ap.add_argument("--skip-protocol", action="store_true")
    args = ap.parse_args()
    dirs = [args.gtzan, args.emotify]
    protocol = None if args.skip_protocol else protocol_part(dirs, args.cache)
    pipeline = None if args.skip_pipeline else pipeline_part(dirs)
    (BENCH / "out").mkdir(exist_ok=True)
    (BENCH / "out" / "adaptive.json").write_text(
        json.dumps({"protocol": protocol, "pipeline": pipeline}, indent=1) + "\n",
        encoding="utf-8")
    print(report(protocol, pipeline))


if __name__ == "__main__":
    main()
