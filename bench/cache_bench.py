"""The embedding cache's figures (issue 11): what a warm cache saves, what a cold one costs.

    python bench/cache_bench.py [--corpus bench/corpus/tracks] [--n-cached 10000]

1. First analysis of the corpus with ``genretag classify -j 2`` writing a fresh cache,
   against the same command with ``--no-cache``, interleaved (``--runs`` pairs): the
   cache's write cost as a ratio (target <= 1.05).
2. Re-tagging ``--n-cached`` cached tracks with another vocabulary: that many small files
   are created and their cache entries written with random embeddings of the real shape
   (a cache hit never reads the audio: each file is one byte, which no decoder could
   read, so a clean exit proves nothing was decoded), then
   ``genretag classify --vocabulary lastfm`` runs over them as a whole process, start-up
   and model load included (target <= 60 s for 10 000 tracks).
Results go to bench/out/cache.json and are printed.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent


def timed_run(cmd: list[str]) -> tuple[float, str]:
    """Wall time of ``cmd`` as a whole process, and its stdout."""
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return wall, proc.stdout


def first_analysis(corpus: Path, runs: int) -> dict:
    genretag = [sys.executable, "-m", "genretag.cli", "classify", "-j", "2"]
    plain, cached = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(runs):
            plain.append(timed_run(genretag + ["--no-cache", str(corpus)])[0])
            cached.append(timed_run(genretag + ["--cache", f"{tmp}/run{i}.sqlite",
                                                str(corpus)])[0])
            print(f"  pair {i + 1}: no cache {plain[-1]:.1f} s, fresh cache {cached[-1]:.1f} s",
                  flush=True)
    return {"no_cache_s": plain, "fresh_cache_s": cached,
            "ratio_of_medians": float(np.median(cached) / np.median(plain)),
            "tracks": len([p for p in corpus.iterdir() if p.is_file()])}


def warm_retag(n: int) -> dict:
    from genretag.cache import CacheRecord, EmbeddingCache
    from genretag.model import model_dir, read_card

    sha = read_card(model_dir())["backbone"]["sha256"]
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "library"
        folder.mkdir()
        cache_path = Path(tmp) / "cache.sqlite"
        records = []
        for i in range(n):
            path = folder / f"{i:06d}.mp3"
            path.write_bytes(b"x")
            emb = (rng.standard_normal((10, 1506)) * 2).astype(np.float32)
            records.append(CacheRecord(path, emb, np.arange(10) * 18.0, False, False))
        t = time.perf_counter()
        with EmbeddingCache(cache_path, backbone_sha256=sha) as cache:
            for i in range(0, n, 1000):
                cache.put_many(records[i:i + 1000], slices_key=10)
        write_s = time.perf_counter() - t
        cmd = [sys.executable, "-m", "genretag.cli", "classify", "--json", "--vocabulary",
               "lastfm", "--cache", str(cache_path), str(folder)]
        wall, out = timed_run(cmd)  # exit 0: every file classified (none could be decoded)
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == n and all("genres" in obj for obj in lines)
    return {"tracks": n, "cache_write_s": write_s, "retag_wall_s": wall,
            "tracks_per_s": n / wall}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default=str(BENCH / "corpus" / "tracks"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--n-cached", type=int, default=10000)
    ap.add_argument("--skip-first", action="store_true")
    args = ap.parse_args(argv)
    res: dict = {"loadavg_start": os.getloadavg()[0]}
    if not args.skip_first:
        print("first analysis, fresh cache vs no cache:", flush=True)
        res["first_analysis"] = first_analysis(Path(args.corpus), args.runs)
    print(f"re-tagging {args.n_cached} cached tracks:", flush=True)
    res["warm_retag"] = warm_retag(args.n_cached)
    res["loadavg_end"] = os.getloadavg()[0]
    out = BENCH / "out" / "cache.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
