"""How fast is the musicnn backbone's forward, and is it still the same function?

Issue 14's measurement: per-slice time of ``Musicnn.pooled`` against the plain
definition (``Musicnn.pooled_plain``) and, optionally, against another version of
``genretag/musicnn.py`` (``--reference``), all in one process, interleaved
(A B A B ...), torch on one thread. Times are the CPU time of that thread
(``time.thread_time``), which other processes on a shared machine disturb less than
wall time; compare the paired ratios, not the milliseconds. Also: time per
front-end block, and the largest difference of the pooled features between variants.

Run from the repository root::

    mkdir -p bench/out && git show HEAD~1:genretag/musicnn.py > bench/out/musicnn_before.py
    python bench/backbone_speed.py --reference bench/out/musicnn_before.py

Writes ``bench/out/backbone_speed.json``.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "tests" / "fixtures" / "musicnn_reference.npz"


def load_reference_module(path: Path):
    """A ``musicnn.py`` of another version, imported under its own name."""
    spec = importlib.util.spec_from_file_location("musicnn_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build(cls, state: dict):
    net = cls()
    net.load_state_dict(state, strict=True)
    return net.eval()


def patches_for(batch: int, seed: int = 0):
    """The port's fixture patches (real music), repeated or cut to ``batch``."""
    import torch

    ref = np.load(FIXTURE)["patches"]
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(ref), size=batch)
    return torch.from_numpy(np.ascontiguousarray(ref[rows]))


def cpu_ms(fn, *args) -> float:
    t0 = time.thread_time()
    fn(*args)
    return (time.thread_time() - t0) * 1e3


def compare(variants: dict, batch: int, reps: int) -> dict:
    """Interleaved runs of every variant; ms per slice (median) and ratio to the first."""
    import torch

    x = patches_for(batch)
    names = list(variants)
    times = {n: [] for n in names}
    with torch.inference_mode():
        for fn in variants.values():
            fn(x)  # warm-up: oneDNN primitives, allocator
        for _ in range(reps):
            for n in names:
                times[n].append(cpu_ms(variants[n], x))
    base = np.asarray(times[names[0]])
    return {n: {"ms_per_slice": float(np.median(t)) / batch,
                f"ratio_to_{names[0]}": float(np.median(np.asarray(t) / base))}
            for n, t in times.items()}


def block_profile(net, batch: int, reps: int) -> dict:
    """CPU ms per slice of each front-end block and of the mid end + pooling."""
    import torch

    x = net.input_bn(patches_for(batch).unsqueeze(1))
    with torch.inference_mode():
        front = torch.cat([b(x) for b in net.timbral] + [b(x) for b in net.temporal], dim=1)
        parts = {f"timbral[{i}]": (b, x) for i, b in enumerate(net.timbral)}
        parts.update({f"temporal[{i}]": (b, x) for i, b in enumerate(net.temporal)})
        parts["mid end + pooling"] = (net._pool_mid_end, front)
        times = {k: [] for k in parts}
        for fn, arg in parts.values():
            fn(arg)
        for _ in range(reps):
            for k, (fn, arg) in parts.items():
                times[k].append(cpu_ms(fn, arg))
    return {k: float(np.median(t)) / batch for k, t in times.items()}


def max_differences(variants: dict, batch: int = 4) -> dict:
    """Largest |pooled difference| of each variant from the first, on the fixture patches."""
    import torch

    x = torch.from_numpy(np.load(FIXTURE)["patches"][:batch])
    with torch.inference_mode():
        outs = {n: fn(x) for n, fn in variants.items()}
    first = next(iter(outs.values()))
    return {n: float((o - first).abs().max()) for n, o in outs.items()}


def load_average() -> float:
    with open("/proc/loadavg", encoding="ascii") as fh:
        return float(fh.read().split()[0])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path,
                        help="another version of genretag/musicnn.py to compare with")
    parser.add_argument("--batches", default="1,2,4,8",
                        help="batch sizes, comma-separated (default 1,2,4,8)")
    parser.add_argument("--reps", type=int, default=15, help="interleaved runs per variant")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "backbone_speed.json")
    args = parser.parse_args(argv)

    import torch
    from safetensors.torch import load_file

    from genretag.backbone import BACKBONE_FILE
    from genretag.model import shipped_weights_dir
    from genretag.musicnn import Musicnn

    torch.set_num_threads(1)
    state = load_file(str(shipped_weights_dir() / BACKBONE_FILE))
    net = build(Musicnn, state)
    variants = {"current": net.pooled, "plain definition": net.pooled_plain}
    if args.reference:
        variants["reference"] = build(load_reference_module(args.reference).Musicnn, state).pooled

    load_before = load_average()
    result = {
        "torch": torch.__version__,
        "threads": 1,
        "reference": os.fspath(args.reference) if args.reference else None,
        "max_abs_diff_pooled": max_differences(variants),
        "speed": {b: compare(variants, b, args.reps) for b in map(int, args.batches.split(","))},
        "blocks_batch2": block_profile(net, 2, args.reps),
        "load_avg_1min": [load_before, load_average()],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")

    print(f"max |pooled - current|: {result['max_abs_diff_pooled']}")
    print("CPU ms per slice (time relative to current):")
    for b, rows in result["speed"].items():
        cells = (f"{n} {r['ms_per_slice']:.1f} (x{r['ratio_to_current']:.2f})"
                 for n, r in rows.items())
        print(f"  batch {b}: " + ", ".join(cells))
    print("blocks at batch 2 (ms/slice): " + ", ".join(
        f"{k} {v:.1f}" for k, v in result["blocks_batch2"].items()))
    print(f"load average (1 min) {load_before:.1f} -> {load_average():.1f}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
