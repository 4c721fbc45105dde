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
3. Learning a personal model from ``--n-learn`` cached tracks: cache entries as in 2, of
   ten genres by ``--n-learn / 20`` artists (at least 30), the embedding of each track
   drawn around its genre's and its artist's own points (so the fit has something to
   find), then
   ``genretag learn --labels LABELS.csv`` over them as a whole process: the analysis
   (all cache hits), the 5-fold cross-validation and the final fit, start-up and model
   load included (target <= 30 s for 2 000 tracks on 2 cores).
Results go to bench/out/cache.json and bench/CACHE_RESULTS.md, and are printed.
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

from run import _git_commit  # bench/ is this script's folder, first on sys.path

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


def cached_library(tmp: str, embeddings) -> tuple[Path, Path, float]:
    """One-byte files in ``tmp/library`` (no decoder could read them), one per embedding
    ``[10, 1506]`` of the iterable, and a cache in ``tmp`` holding those embeddings
    (10 slices 18 s apart). Returns (folder, cache file, seconds spent writing the cache)."""
    from genretag.cache import CacheRecord, EmbeddingCache
    from genretag.model import model_dir, read_card

    sha = read_card(model_dir())["backbone"]["sha256"]
    folder = Path(tmp) / "library"
    folder.mkdir()
    cache_path = Path(tmp) / "cache.sqlite"
    records = []
    for i, emb in enumerate(embeddings):
        path = folder / f"{i:06d}.mp3"
        path.write_bytes(b"x")
        records.append(CacheRecord(path, emb, np.arange(10) * 18.0, False, False))
    t = time.perf_counter()
    with EmbeddingCache(cache_path, backbone_sha256=sha) as cache:
        for i in range(0, len(records), 1000):
            cache.put_many(records[i:i + 1000], slices_key=10)
    return folder, cache_path, time.perf_counter() - t


def warm_retag(n: int) -> dict:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        folder, cache_path, write_s = cached_library(
            tmp, ((rng.standard_normal((10, 1506)) * 2).astype(np.float32) for _ in range(n)))
        cmd = [sys.executable, "-m", "genretag.cli", "classify", "--json", "--vocabulary",
               "lastfm", "--cache", str(cache_path), str(folder)]
        wall, out = timed_run(cmd)  # exit 0: every file classified (none could be decoded)
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == n and all("genres" in obj for obj in lines)
    return {"tracks": n, "cache_write_s": write_s, "retag_wall_s": wall,
            "tracks_per_s": n / wall}


def learn_cached(n: int, genres: int = 10) -> dict:
    rng = np.random.default_rng(1)
    n_artists = max(3 * genres, n // 20)
    genre_point = rng.standard_normal((genres, 1506))
    artist_point = rng.standard_normal((n_artists, 1506))
    artist_genre = np.arange(n_artists) % genres
    artist_of = rng.integers(0, n_artists, n)

    def embeddings():
        for a in artist_of:
            centre = genre_point[artist_genre[a]] + artist_point[a]
            yield (centre + 2 * rng.standard_normal((10, 1506))).astype(np.float32)

    with tempfile.TemporaryDirectory() as tmp:
        folder, cache_path, _ = cached_library(tmp, embeddings())
        labels = Path(tmp) / "labels.csv"
        labels.write_text("path,genre,artist\n" + "".join(
            f"library/{i:06d}.mp3,genre {artist_genre[a]},artist {a}\n"
            for i, a in enumerate(artist_of)))
        cmd = [sys.executable, "-m", "genretag.cli", "learn", "--labels", str(labels),
               "--out", f"{tmp}/model", "--cache", str(cache_path)]
        wall, out = timed_run(cmd)  # exit 0: learnt from cache hits (no file is audio)
    assert f"{genres} genres from {n} tracks" in out, out
    accuracy = [line.split()[1] for line in out.splitlines() if "accuracy" in line][0]
    return {"tracks": n, "genres": genres, "artists": n_artists, "learn_wall_s": wall,
            "cv_accuracy": float(accuracy)}


def results_markdown(res: dict) -> str:
    """bench/CACHE_RESULTS.md from the figures of one run."""
    rows = []
    if "first_analysis" in res:
        fa = res["first_analysis"]
        rows.append(("first analysis of the corpus with a fresh cache / without a cache, "
                     "`classify -j 2`, whole process, medians of interleaved pairs",
                     f"{fa['ratio_of_medians']:.2f}", "<= 1.05",
                     fa["ratio_of_medians"] <= 1.05,
                     f"{np.median(fa['fresh_cache_s']):.1f} s / "
                     f"{np.median(fa['no_cache_s']):.1f} s, {fa['tracks']} tracks"))
    wr = res["warm_retag"]
    rows.append((f"re-tagging {wr['tracks']} cached tracks with another vocabulary "
                 "(`classify --vocabulary lastfm`), whole process, s",
                 f"{wr['retag_wall_s']:.1f}", f"<= {60 * wr['tracks'] / 10000:g}",
                 wr["retag_wall_s"] <= 60 * wr["tracks"] / 10000,
                 f"{wr['tracks_per_s']:.0f} tracks/s; nothing decoded"))
    if "learn" in res:
        ln = res["learn"]
        rows.append((f"learning from {ln['tracks']} cached tracks (`genretag learn`: "
                     "5-fold CV + fit), whole process, s",
                     f"{ln['learn_wall_s']:.1f}", f"<= {30 * ln['tracks'] / 2000:g}",
                     ln["learn_wall_s"] <= 30 * ln["tracks"] / 2000,
                     f"{ln['genres']} genres, {ln['artists']} artists; CV accuracy "
                     f"{ln['cv_accuracy']:.2f} on the generated embeddings"))
    lines = ["# genretag embedding cache and personal models: benchmark results", "",
             "Produced by `python bench/cache_bench.py` (issue 11); targets from the issue.",
             "", f"Run started {res['started']} UTC, genretag commit {res['commit']}, "
             f"load average (1 min) {res['loadavg_start']:.2f} -> {res['loadavg_end']:.2f}.",
             "", "| figure | value | target |  | absolute numbers |", "|---|---|---|---|---|"]
    for figure, value, target, ok, detail in rows:
        lines.append(f"| {figure} | {value} | {target} | {'PASS' if ok else 'FAIL'} "
                     f"| {detail} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default=str(BENCH / "corpus" / "tracks"))
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--n-cached", type=int, default=10000)
    ap.add_argument("--n-learn", type=int, default=2000)
    ap.add_argument("--skip-first", action="store_true")
    args = ap.parse_args(argv)
    commit = _git_commit(BENCH.parent) or "unknown"
    res: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
                 "commit": commit, "loadavg_start": os.getloadavg()[0]}
    if not args.skip_first:
        print("first analysis, fresh cache vs no cache:", flush=True)
        res["first_analysis"] = first_analysis(Path(args.corpus), args.runs)
    print(f"re-tagging {args.n_cached} cached tracks:", flush=True)
    res["warm_retag"] = warm_retag(args.n_cached)
    print(f"learning from {args.n_learn} cached tracks:", flush=True)
    res["learn"] = learn_cached(args.n_learn)
    res["loadavg_end"] = os.getloadavg()[0]
    out = BENCH / "out" / "cache.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    (BENCH / "CACHE_RESULTS.md").write_text(results_markdown(res))
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
