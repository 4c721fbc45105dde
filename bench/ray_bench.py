"""Issue 13's benchmark: Ray Data (genretag.archive) against the plain CLI, in one run.

    python bench/ray_bench.py [--corpus DIR] [--n 24] [--small 6] [--rounds 3] [--chunk 2]

Measures, on the same files and interleaved round by round (the order rotates each round):

- ``cli -j 2``: ``genretag classify --json -j 2 --no-cache FILES`` (a fresh process, as a user
  runs it; without the embedding cache, which the Ray job does not use);
- ``ray 2 actors`` / ``ray 1 actor``: :func:`genretag.archive.run_job` on a Ray instance this
  script started once (the "existing cluster" case: ``--ray ADDRESS``), into a fresh ``DIR``;
- ``ray cold``: ``run_job`` in a fresh process that starts its own local Ray (``--ray`` alone).

Each variant runs on ``--n`` files and on the first ``--small`` of them: the difference gives
the cost per track, apart from fixed start-up costs. Per run: wall time, steady rate (first
to last result: the CLI's JSON lines as they arrive, the Ray job's part files' mtimes), CPU
seconds of every process of the variant (sampled from ``/proc``), and the machine's load.
Ratios are taken within a round, then the median over rounds is reported.

Corpus: ``bench/corpus/tracks`` (``bench/make_corpus.py``) when present, else ``--n`` files of
60 s generated with ``genretag.synthetic.synth_music`` into ``bench/out/ray_corpus`` (MP3, FLAC,
M4A, Opus). Writes ``bench/out/ray_results.json`` and ``bench/RAY_RESULTS.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
OUT = BENCH / "out"
FORMATS = (".mp3", ".flac", ".m4a", ".opus")


def busy_s() -> float:
    """CPU seconds all processes have spent busy since boot."""
    with open("/proc/stat", encoding="ascii") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def make_corpus(folder: Path, n: int, seconds: float = 60.0) -> list[Path]:
    from genretag.encode import write
    from genretag.synthetic import synth_music

    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(n):
        path = folder / f"track{i:03d}{FORMATS[i % len(FORMATS)]}"
        if not path.exists():
            tmp = path.with_name(f".tmp{path.suffix}")
            write(synth_music(seconds, 44100, seed=1000 + i, channels=2), 44100, tmp)
            os.replace(tmp, path)
        files.append(path)
    return files


def _proc_cpu() -> dict[int, tuple[int, float]]:
    """``pid -> (ppid, CPU seconds)`` of every process (``/proc/PID/stat``)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as fh:
                    fields = fh.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            out[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    return out


class TreeCpu:
    """CPU seconds used by this process and all its descendants (Ray's daemons and workers,
    the CLI's workers) while running, sampled every 0.5 s so processes that exit count."""

    def __init__(self):
        self.start = self._tree()
        self.last: dict[int, float] = dict(self.start)
        self.own0 = sum(os.times()[:2])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    @staticmethod
    def _tree() -> dict[int, float]:
        procs = _proc_cpu()
        children: dict[int, list[int]] = {}
        for pid, (ppid, _) in procs.items():
            children.setdefault(ppid, []).append(pid)
        todo, found = list(children.get(os.getpid(), [])), {}
        while todo:
            pid = todo.pop()
            found[pid] = procs[pid][1]
            todo += children.get(pid, [])
        return found

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            self.last.update(self._tree())
        self.sampler_cpu = time.thread_time()

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        self.last.update(self._tree())
        return (sum(os.times()[:2]) - self.own0 - self.sampler_cpu
                + sum(cpu - self.start.get(pid, 0.0) for pid, cpu in self.last.items()))


def measured(fn, n_files: int):
    """Run ``fn() -> (first, last, n)``; wall time, steady rate, CPU used, machine load."""
    busy0, t0 = busy_s(), time.monotonic()
    meter = TreeCpu()
    first, last, n_steady = fn()
    cpu = meter.stop()
    wall = time.monotonic() - t0
    cores_busy = (busy_s() - busy0) / wall
    steady = (n_steady - 1) / (last - first) if last > first else float("nan")
    return {"wall_s": round(wall, 2), "steady_tracks_per_s": round(steady, 3),
            "cpu_s": round(cpu, 1), "cpu_s_per_track": round(cpu / n_files, 3),
            "cores_ours": round(cpu / wall, 2),
            "cores_busy": round(cores_busy, 2), "loadavg_1min": os.getloadavg()[0]}


def cli_options() -> list[str]:
    """``--no-cache`` where the CLI has an embedding cache: each run must decode and analyse."""
    helptext = subprocess.run([sys.executable, "-m", "genretag.cli", "classify", "--help"],
                              capture_output=True, text=True).stdout
    return ["--no-cache"] if "--no-cache" in helptext else []


def run_cli(files: list[Path], options: list[str]):
    cmd = [sys.executable, "-m", "genretag.cli", "classify", "--json", "-j", "2", *options,
           *map(str, files)]
    times = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          text=True) as proc:
        for line in proc.stdout:
            json.loads(line)
            times.append(time.time())
    assert len(times) == len(files), "the CLI did not print one line per file"
    return times[0], times[-1], len(files)


def part_times(out: Path, n: int):
    import pyarrow.parquet as pq

    parts = sorted(out.glob("part-*.parquet"), key=lambda p: p.stat().st_mtime)
    rows = sum(pq.read_metadata(p).num_rows for p in parts)
    assert rows == n, f"{rows} rows for {n} files"
    first = parts[0].stat().st_mtime
    n_after_first = n - pq.read_metadata(parts[0]).num_rows + 1
    return first, parts[-1].stat().st_mtime, n_after_first


def run_ray(files: list[Path], jobs: int, chunk: int, scratch: Path):
    from genretag.archive import run_job

    out = scratch / f"ray{jobs}"
    shutil.rmtree(out, ignore_errors=True)
    status = run_job(list(map(str, files)), out_dir=out, jobs=jobs, chunk_size=chunk,
                     log=lambda _: None)
    assert status == 0, status
    return part_times(out, len(files))


def run_ray_cold(files: list[Path], chunk: int, scratch: Path):
    out = scratch / "raycold"
    shutil.rmtree(out, ignore_errors=True)
    manifest = scratch / "manifest.txt"
    manifest.write_text("\n".join(map(str, files)) + "\n", encoding="utf-8")
    code = ("import sys; from genretag.archive import run_job; "
            f"sys.exit(run_job([], manifest={str(manifest)!r}, out_dir={str(out)!r}, jobs=2, "
            f"chunk_size={chunk}, address='local'))")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        assert proc.wait() == 0, proc.returncode
    finally:  # whatever that driver's Ray left behind (it is its process group's leader)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    return part_times(out, len(files))


COLD = "ray cold (own local instance, 2 actors)"


def _corpus_name(corpus: Path) -> str:
    """How the results name the corpus: relative to the repository when inside it, else
    by its last two folders (no machine's paths in the repository)."""
    try:
        return str(corpus.resolve().relative_to(REPO))
    except ValueError:
        return "…/" + "/".join(corpus.resolve().parts[-2:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, help="folder of audio files")
    parser.add_argument("--n", type=int, default=24, help="files (generated, or the first N)")
    parser.add_argument("--small", type=int, default=6,
                        help="files of the small runs that separate fixed from per-track cost")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=2, help="paths per Ray task")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold-start Ray runs")
    args = parser.parse_args(argv)

    import ray

    from genretag.audio import AUDIO_EXTENSIONS

    corpus = args.corpus or (BENCH / "corpus" / "tracks")
    if corpus.is_dir():
        files = sorted(p for p in corpus.iterdir()
                       if p.suffix.lower() in AUDIO_EXTENSIONS)[:args.n]
    else:
        corpus = OUT / "ray_corpus"
        files = make_corpus(corpus, args.n)
    sizes = {"big": files, "small": files[:args.small]}
    scratch = OUT / "ray_scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    print(f"{len(files)} files from {corpus}", file=sys.stderr)

    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    t_start = time.monotonic()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
    options = cli_options()
    variants = {"cli -j 2": lambda fs: run_cli(fs, options),
                "ray 2 actors": lambda fs: run_ray(fs, 2, args.chunk, scratch),
                "ray 1 actor": lambda fs: run_ray(fs, 1, args.chunk, scratch)}
    if not args.no_cold:
        variants[COLD] = lambda fs: run_ray_cold(fs, args.chunk, scratch)
    names = list(variants)
    rounds = []
    try:
        for r in range(args.rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            res: dict = {name: {} for name in names}
            for name in order:
                for size in (("big", "small") if r % 2 == 0 else ("small", "big")):
                    fs = sizes[size]
                    res[name][size] = measured(lambda: variants[name](fs), len(fs))
                    print(f"round {r + 1} {name} {size}: {res[name][size]}", file=sys.stderr)
            rounds.append(res)
    finally:
        ray.shutdown()
    shutil.rmtree(scratch, ignore_errors=True)

    n_big, n_small = len(files), len(sizes["small"])

    def split(run: dict, key: str) -> tuple[float, float]:
        """(per track, fixed) from the big and the small run of one variant."""
        per = (run["big"][key] - run["small"][key]) / (n_big - n_small)
        return per, run["big"][key] - per * n_big

    def med(fn):
        return statistics.median(fn(x) for x in rounds)

    summary = {}
    for name in names:
        for key in ("cpu_s", "wall_s"):
            summary[f"{name}: {key} per track"] = med(lambda x: split(x[name], key)[0])
            summary[f"{name}: fixed {key}"] = med(lambda x: split(x[name], key)[1])
    summary.update({
        # On two free cores each actor has its own core: rate = actors / CPU per track.
        "speedup 2 vs 1 actor (CPU per track)": med(
            lambda x: 2 * split(x["ray 1 actor"], "cpu_s")[0]
            / split(x["ray 2 actors"], "cpu_s")[0]),
        "speedup 2 vs 1 actor (wall per track)": med(
            lambda x: split(x["ray 1 actor"], "wall_s")[0]
            / split(x["ray 2 actors"], "wall_s")[0]),
        "speedup 2 vs 1 actor (steady rate)": med(
            lambda x: x["ray 2 actors"]["big"]["steady_tracks_per_s"]
            / x["ray 1 actor"]["big"]["steady_tracks_per_s"]),
        "ray overhead vs cli (CPU per track)": med(
            lambda x: split(x["ray 2 actors"], "cpu_s")[0] / split(x["cli -j 2"], "cpu_s")[0]) - 1,
        "ray overhead vs cli (wall per track)": med(
            lambda x: split(x["ray 2 actors"], "wall_s")[0]
            / split(x["cli -j 2"], "wall_s")[0]) - 1,
        "ray overhead vs cli (steady rate)": med(
            lambda x: x["cli -j 2"]["big"]["steady_tracks_per_s"]
            / x["ray 2 actors"]["big"]["steady_tracks_per_s"]) - 1,
        "ray overhead vs cli (wall, whole run)": med(
            lambda x: x["ray 2 actors"]["big"]["wall_s"] / x["cli -j 2"]["big"]["wall_s"]) - 1,
    })
    result = {"started": started, "minutes": round((time.monotonic() - t_start) / 60, 1),
              "files": n_big, "small": n_small, "corpus": _corpus_name(corpus),
              "chunk": args.chunk, "ray": ray.__version__, "python": platform.python_version(),
              "cores": os.cpu_count(), "rounds": rounds,
              "summary": {k: round(v, 3) for k, v in summary.items()}}
    OUT.mkdir(exist_ok=True)
    (OUT / "ray_results.json").write_text(json.dumps(result, indent=1) + "\n")
    (BENCH / "RAY_RESULTS.md").write_text(report(result, names), encoding="utf-8")
    print(json.dumps(result["summary"], indent=1))
    return 0


def _pct(x: float) -> str:
    return f"{100 * x:+.1f} %"


def report(res: dict, names: list[str]) -> str:
    s = res["summary"]
    lines = [
        "# genretag on Ray Data: throughput and overhead (issue 13)", "",
        "Produced by `bench/ray_bench.py`. Every variant runs on the same files, interleaved "
        "round by round (the order rotates), each on a big and a small set of files, so that "
        "a variant's cost splits into a fixed part (start-up: processes, `import torch`, model "
        "loading, Ray's scheduling) and a part per track. Ratios are taken within a round, "
        "then the median over rounds is reported.", "",
        "## Reproduce", "", "```sh", "pip install -e '.[test]'",
        "python bench/ray_bench.py   # --corpus DIR, --n, --small, --rounds, --chunk", "```", "",
        f"Run started {res['started']}, took {res['minutes']} min; {res['files']} and "
        f"{res['small']} files from `{res['corpus']}` (`bench/out/ray_corpus`: 60-s "
        f"synthetic tracks; else the corpus given), {res['chunk']} paths per Ray task; "
        f"Ray {res['ray']}, Python "
        f"{res['python']}, {res['cores']} cores.", "",
        "## Figures", "",
        "| figure | per track, from CPU time | per track, from wall time | whole run, wall "
        "time | target |", "|---|---|---|---|---|",
        f"| 2 actors / 1 actor, throughput | {s['speedup 2 vs 1 actor (CPU per track)']:.2f}x "
        f"| {s['speedup 2 vs 1 actor (wall per track)']:.2f}x | "
        f"{s['speedup 2 vs 1 actor (steady rate)']:.2f}x (steady rate) | >= 1.7x |",
        f"| Ray (2 actors, running instance) vs `classify -j 2`, overhead | "
        f"{_pct(s['ray overhead vs cli (CPU per track)'])} | "
        f"{_pct(s['ray overhead vs cli (wall per track)'])} | "
        f"{_pct(s['ray overhead vs cli (wall, whole run)'])} "
        f"({_pct(s['ray overhead vs cli (steady rate)'])} steady rate) | <= 15 % |",
        "", "| variant | CPU s per track | fixed CPU s | wall s per track | fixed wall s |",
        "|---|---|---|---|---|"]
    for name in names:
        lines.append(f"| {name} | {s[f'{name}: cpu_s per track']:.3f} | "
                     f"{s[f'{name}: fixed cpu_s']:.1f} | {s[f'{name}: wall_s per track']:.3f} | "
                     f"{s[f'{name}: fixed wall_s']:.1f} |")
    lines += [
        "", "How to read them:", "",
        "- *Per track, from CPU time*: CPU seconds of every process of the variant (Ray's "
        "daemons, driver and actors; the CLI's parent and workers), sampled from `/proc`, big "
        "run minus small run, per extra track. The 2/1-actor figure is `2 x per-track CPU (1 "
        "actor) / per-track CPU (2 actors)`: the speed-up a second actor gives when each actor "
        "has a core of its own, which is what an archive job on a cluster gets.",
        "- *Per track, from wall time*: the same difference in elapsed time. On a machine "
        "shared with other sessions the kernel gives each session a fair share of the CPU "
        "(autogroup scheduling) whatever its number of processes, so when the machine is busy "
        "this shows that share, not what a second core gives: compare `cores used` with 2 "
        "below.",
        "- *Whole run*: start-up included; the steady rate counts from the first result to the "
        "last. Fixed costs (a few seconds per actor, more for starting Ray itself) matter for "
        "a few hundred files, not for an archive.", "",
        "## Every run", "",
        "| round | variant | files | wall s | steady tracks/s | CPU s | cores used (ours) | "
        "cores busy (all) | load avg |", "|---|---|---|---|---|---|---|---|---|"]
    for i, rnd in enumerate(res["rounds"], 1):
        for name in names:
            for size in ("big", "small"):
                m = rnd[name][size]
                n = res["files"] if size == "big" else res["small"]
                lines.append(f"| {i} | {name} | {n} | {m['wall_s']} | "
                             f"{m['steady_tracks_per_s']} | {m['cpu_s']} | {m['cores_ours']} | "
                             f"{m['cores_busy']} | {m['loadavg_1min']:.1f} |")
    lines += ["", "`cores used (ours)`: the variant's CPU seconds / wall seconds; `cores busy "
              "(all)`: every process on the machine (2 = both cores busy); a load average far "
              "above 2 means other sessions shared the cores.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
