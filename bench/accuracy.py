"""Accuracy through the real inference path: float32 vs bfloat16, all slices vs k slices.

For each fold of the validation protocol (train -> valid, valid -> train) a head is
trained exactly as ``genretag evaluate`` does, put on the shipped backbone, and every
held-out clip is classified with ``genretag.classify.classify_file`` (decode, slices,
log-mel, network, mean) in both precisions. Reduced analysis uses the slice choice of
``genretag.audio.plan_slices`` (k evenly spread slices) on the same slice outputs.

    python bench/accuracy.py --data ../shared/data/gtzan [--out bench/out/accuracy.json]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    from genretag.audio import spread_indices
    from genretag.dataset import GTZAN_GENRES, load_index
    from genretag.evaluate import FOLDS, fit
    from genretag.metrics import summarize
    from genretag.model import GenreModel, default_weights_dir, load_model
    from genretag.predict import classify_file
    from genretag.train import build_slice_set

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--cache", default=str(Path.home() / ".cache" / "genretag"))
    ap.add_argument("--out", default=str(Path(__file__).parent / "out" / "accuracy.json"))
    ap.add_argument("--ks", default="10,5,3,1", help="slice counts to compare")
    args = ap.parse_args()

    classes = list(GTZAN_GENRES)
    clips = load_index(args.data)
    data = build_slice_set(clips, default_weights_dir(), Path(args.cache))
    label = np.asarray([classes.index(c.genre) for c in clips])
    split = np.asarray([c.split for c in clips])
    shipped = load_model(precision="fp32")
    ks = [int(k) for k in args.ks.split(",")]
    results = {"folds": [], "ks": ks}
    for fit_split, score_split in FOLDS:
        rows = data.rows(split == fit_split)
        head = fit("musicnn-head", data, rows, label[data.clip[rows]], seed=0)
        net = type(shipped.net)(len(classes))
        net.backbone.load_state_dict(shipped.net.backbone.state_dict())
        net.head = head
        net.eval()
        held_out = np.flatnonzero(split == score_split)
        fold = {"fit": fit_split, "scored": score_split, "n": int(len(held_out))}
        for precision in ("fp32", "bf16"):
            model = GenreModel(net=net, classes=classes, features=shipped.features,
                               model_id="fold", card={}, precision=precision)
            t0 = time.perf_counter()
            slice_probs = [np.array([s.probs for s in classify_file(
                clips[i].path, model, max_slices=None).timeline]) for i in held_out]
            seconds = time.perf_counter() - t0
            for k in ks:
                pred = [int(p[spread_indices(len(p), k)].mean(0).argmax()) for p in slice_probs]
                m = summarize(label[held_out], np.asarray(pred), classes)
                fold[f"{precision}_k{k}"] = {"accuracy": m["accuracy"],
                                            "balanced_accuracy": m["balanced_accuracy"]}
            fold[f"{precision}_seconds"] = round(seconds, 1)
            fold[f"{precision}_slice_probs"] = [p.tolist() for p in slice_probs]
        same = [int(np.argmax(a.mean(0)) == np.argmax(b.mean(0))) for a, b in zip(
            map(np.array, fold["fp32_slice_probs"]), map(np.array, fold["bf16_slice_probs"]))]
        fold["same_genre_fp32_bf16"] = f"{sum(same)}/{len(same)}"
        del fold["fp32_slice_probs"], fold["bf16_slice_probs"]
        results["folds"].append(fold)
        print(json.dumps({k: v for k, v in fold.items()}, indent=None))
    for key in [f"{p}_k{k}" for p in ("fp32", "bf16") for k in ks]:
        results.setdefault("mean", {})[key] = {
            m: float(np.mean([f[key][m] for f in results["folds"]]))
            for m in ("accuracy", "balanced_accuracy")}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results["mean"], indent=1))


if __name__ == "__main__":
    main()
