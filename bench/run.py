"""Issue 4's benchmark: genretag against the decode floor, a librosa pipeline, and itself.

    python bench/make_corpus.py          # once: bench/corpus/ (git-ignored)
    python bench/run.py [--corpus bench/corpus] [--json bench/out/results.json]
    python bench/report.py               # bench/RESULTS.md from the JSON

Everything is measured in one run on the same files, with public tools only
(``time.perf_counter``; peak RSS as ``ru_maxrss`` of a command's processes, waited
for by a child subreaper; CPU use of other processes from ``/proc/stat``):

1. per track, in this process with one loaded model: decode-only time with the
   decoder genretag uses (``genretag.audio.decode``: PyAV to 16 kHz mono, whole
   file) = the floor; genretag's tagging time (``genretag.classify.classify_file``,
   default and all slices; torch on 1 thread, and on 2) -> median ratio;
2. the seed-style pipeline (``librosa.load`` at 16 kHz + ``librosa.feature.melspectrogram``
   with the same parameters + ``log10(1 + 10000 x)`` + the same network on every
   consecutive slice), after a warm-up call that absorbs librosa's one-time numba JIT;
3. ``beet version`` and ``beet ls`` (small library) with the plugin enabled / disabled;
4. peak RSS of ``genretag classify -j 1`` on the 2-hour file vs a 3-minute one;
5. tracks/s of ``genretag classify -j 1`` vs ``-j 2`` on the whole corpus;
and a profile of where the time goes (decode / mel / network, per slice).
Files are read once before each timed step so every step sees a warm page cache.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
REPRODUCE = "python bench/make_corpus.py && python bench/run.py && python bench/report.py"


# ---------------------------------------------------------------- load accounting

def _system_busy_s() -> float:
    """CPU seconds all processes have spent busy since boot (``/proc/stat``)."""
    with open("/proc/stat", encoding="ascii") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / CLK_TCK


def _own_cpu_s() -> float:
    import resource

    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        ru = resource.getrusage(who)
        total += ru.ru_utime + ru.ru_stime
    return total


class LoadMeter:
    """How many cores other processes kept busy while a phase ran."""

    def __enter__(self):
        self.t, self.busy, self.own = time.perf_counter(), _system_busy_s(), _own_cpu_s()
        self.loadavg_start = os.getloadavg()[0]
        return self

    def __exit__(self, *exc):
        wall = time.perf_counter() - self.t
        busy = _system_busy_s() - self.busy
        own = _own_cpu_s() - self.own
        self.result = {"wall_s": wall, "own_cpu_s": own,
                       "other_processes_cores": max(0.0, (busy - own) / wall) if wall else 0.0,
                       "loadavg_1min_start": self.loadavg_start,
                       "loadavg_1min_end": os.getloadavg()[0]}
        return False


# ---------------------------------------------------------------- helpers

def warm(path: Path) -> None:
    """Read the file so that timings see the page cache, not the disk."""
    with open(path, "rb") as fh:
        while fh.read(1 << 22):
            pass


def timed(fn, repeats: int = 1):
    """``(best wall time of repeats, last result)``."""
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


#: Runs a command and reports its resource use. The benchmark process is large (torch,
#: librosa, a model); a child exec'd straight from it inherits its RSS high-water mark
#: in ``ru_maxrss`` (Linux keeps the pre-exec mm's peak), so commands are started
#: from this small, fresh interpreter instead. It is a child subreaper: the command's
#: orphans (the workers' forkserver, which outlives the command by a moment) come to it
#: and are waited for, so CPU time and peak RSS cover every process of the command.
_LAUNCHER = """
import ctypes, json, os, resource, subprocess, sys, time
try:
    ctypes.CDLL(None).prctl(36, 1)  # PR_SET_CHILD_SUBREAPER (Linux)
except (OSError, AttributeError):
    pass
t0 = time.perf_counter()
proc = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL)
_, status, _ = os.wait4(proc.pid, 0)
wall = time.perf_counter() - t0
while True:
    try:
        os.wait()
    except ChildProcessError:
        break
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(sys.argv[1], "w") as fh:
    json.dump({"wall_s": wall, "rc": os.waitstatus_to_exitcode(status), "cpu_s": ru.ru_utime
               + ru.ru_stime, "maxrss_kb": ru.ru_maxrss}, fh)
"""


def run_child(cmd: list[str], *, env: dict | None = None, cwd: Path | None = None) -> dict:
    """Run ``cmd`` from a fresh launcher: wall time, peak RSS (largest process in its tree,
    ``ru_maxrss`` from ``os.wait4``), CPU time, and the CPU other processes used meanwhile."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile(suffix=".json") as rep:
        busy0, t0 = _system_busy_s(), time.perf_counter()
        subprocess.run([sys.executable, "-I", "-c", _LAUNCHER, rep.name, *cmd], stdout=out,
                       stderr=err, stdin=subprocess.DEVNULL, env=env, cwd=cwd, check=True)
        outer_wall = time.perf_counter() - t0
        busy = _system_busy_s() - busy0
        r = json.loads(Path(rep.name).read_text())
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
    return {"cmd": cmd, "rc": r["rc"], "wall_s": r["wall_s"], "cpu_s": r["cpu_s"],
            "maxrss_mb": r["maxrss_kb"] / 1024, "stdout_lines": len(stdout.splitlines()),
            "other_processes_cores": max(0.0, (busy - r["cpu_s"]) / outer_wall),
            "stderr_tail": stderr[-600:]}


def console_script(name: str, module: str) -> list[str]:
    """The installed entry point next to this Python (skips pyenv-style shims)."""
    exe = Path(sys.executable).parent / name
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", module]


def median(xs):
    xs = [x for x in xs if x is not None]
    return float(statistics.median(xs)) if xs else None


# ---------------------------------------------------------------- in-process pipelines

def precision_of(model) -> str:
    """The precision genretag runs this model's network in (``fp32`` before that option)."""
    return getattr(model, "precision", "fp32")


def net_probs(model, patches, precision: str | None = None):
    """Head scores of log-mel patches through the backbone, in the precision genretag uses."""
    import dataclasses

    backbone = model.backbone
    if precision and precision != backbone.precision:
        backbone = dataclasses.replace(backbone, precision=precision)
    return model.scores(backbone.embed_patches(patches))


def seed_pipeline(path: str, model, *, batch: int = 16, parts: dict | None = None) -> np.ndarray:
    """The seed-style track distribution: librosa load + librosa mel + the same network
    (in the same precision as genretag runs it, so that only the pipelines differ).

    ``parts``, if given, receives the time of each stage (load, mel, network).
    """
    import librosa
    import torch

    from genretag.classify import aggregate

    f = model.features
    t0 = time.perf_counter()
    with warnings.catch_warnings():  # audioread fallback deprecation notes
        warnings.simplefilter("ignore")
        y, _ = librosa.load(path, sr=f.sample_rate, mono=True)
    t1 = time.perf_counter()
    mel = librosa.feature.melspectrogram(y=y, sr=f.sample_rate, n_fft=f.n_fft,
                                         hop_length=f.hop_length, n_mels=f.n_mels, fmin=f.fmin,
                                         fmax=f.fmax, center=False, power=2.0)
    logmel = np.log10(1.0 + 10000.0 * mel).T.astype(np.float32)  # [frames, mels]
    n = max(1, len(logmel) // f.n_frames)
    patches = logmel[:n * f.n_frames].reshape(n, f.n_frames, f.n_mels)
    t2 = time.perf_counter()
    out = []
    with torch.inference_mode():
        for i in range(0, n, batch):
            out.append(net_probs(model, torch.from_numpy(patches[i:i + batch])))
    if parts is not None:
        parts.update(load_s=t1 - t0, mel_s=t2 - t1, net_s=time.perf_counter() - t2, slices=n)
    return aggregate(np.concatenate(out))


def torch_mel_all(audio: np.ndarray, model, batch: int = 16) -> int:
    """genretag's log-mel on every consecutive slice of decoded audio; the slice count."""
    import torch

    from genretag.features import log_mel

    f = model.features
    n = len(audio) // f.slice_samples
    slices = audio[:n * f.slice_samples].reshape(n, f.slice_samples)
    with torch.inference_mode():
        for i in range(0, n, batch):
            log_mel(slices[i:i + batch], f)
    return n


def per_track(tracks: list[Path], model, args) -> tuple[list[dict], dict]:
    import torch

    from genretag.audio import decode, iter_slices
    from genretag.classify import classify_file
    from genretag.defaults import MAX_SLICES as DEFAULT_MAX_SLICES

    f = model.features
    torch.set_num_threads(1)
    fp32_model = None
    if precision_of(model) != "fp32":  # also time the float32 network, for comparison
        from genretag.model import load_model
        fp32_model = load_model(precision="fp32")
        classify_file(str(tracks[0]), fp32_model)
    # warm-up: lazy imports, PyAV and torch first-call costs, librosa's numba JIT
    warm_t = {}
    warm_t["genretag_first_call_s"], _ = timed(lambda: classify_file(str(tracks[0]), model))
    if not args.skip_seed:
        __import__("librosa")  # its import time is not part of the timings
        first = next((t for t in tracks if t.suffix in (".flac", ".mp3")), tracks[0])
        warm_t["librosa_first_call_s"], _ = timed(lambda: seed_pipeline(str(first), model))
        warm_t["librosa_second_call_s"], _ = timed(lambda: seed_pipeline(str(first), model))
    rows = []
    for i, path in enumerate(tracks):
        p = str(path)
        warm(path)
        rec = {"file": path.name, "format": path.suffix[1:], "bytes": path.stat().st_size}
        torch.set_num_threads(1)
        rec["decode_s"], audio = timed(lambda: decode(p, f.sample_rate), args.repeats)
        rec["duration_s"] = len(audio) / f.sample_rate
        rec["mel_all_s"], _ = timed(lambda: torch_mel_all(audio, model), args.repeats)
        audio = None  # free it before the next steps
        rec["decode_planned_s"], sl = timed(
            lambda: [s for s, _, _ in iter_slices(p, f.sample_rate, f.slice_samples,
                                                  max_slices=DEFAULT_MAX_SLICES)], args.repeats)
        rec["n_slices_default"] = len(sl)
        rec["tag_s"], pred = timed(lambda: classify_file(p, model), args.repeats)
        rec["n_slices_read"] = len(pred.timeline)  # adaptive (the default) may stop early
        rec["tag_fixed_s"], pred_fixed = timed(lambda: classify_file(p, model, adaptive=False),
                                               args.repeats)
        rec["genre_fixed"] = pred_fixed.genre
        rec["tag_all_s"], pred_all = timed(lambda: classify_file(p, model, max_slices=None),
                                           args.repeats)
        rec["n_slices_all"] = len(pred_all.timeline)
        rec["genre_default"], rec["genre_all"] = pred.genre, pred_all.genre
        rec["probs_l1_default_vs_all"] = float(sum(abs(pred.probs[c] - pred_all.probs[c])
                                                   for c in pred.probs))
        torch.set_num_threads(2)
        rec["tag_2threads_s"], _ = timed(lambda: classify_file(p, model), args.repeats)
        torch.set_num_threads(1)
        if fp32_model is not None:
            rec["tag_fp32_s"], pred32 = timed(lambda: classify_file(p, fp32_model), args.repeats)
            rec["genre_fp32"] = pred32.genre
        torch.set_num_threads(1)
        if not args.skip_seed:
            try:
                parts: dict = {}
                rec["seed_s"], seed_probs = timed(lambda: seed_pipeline(p, model, parts=parts),
                                                  args.repeats)
                rec["seed_parts"] = parts
                rec["genre_seed"] = model.classes[int(np.argmax(seed_probs))]
            except Exception as exc:  # librosa cannot read some formats (M4A): record it
                rec["seed_s"], rec["seed_error"] = None, f"{type(exc).__name__}: {exc}"[:200]
        print(f"  [{i + 1}/{len(tracks)}] {path.name}: decode {rec['decode_s']:.2f} s, "
              f"tag {rec['tag_s']:.2f} s ({rec['n_slices_read']} of "
              f"{rec['n_slices_default']} slices), fixed {rec['tag_fixed_s']:.2f} s, "
              f"all slices {rec['tag_all_s']:.2f} s, 2 threads {rec['tag_2threads_s']:.2f} s"
              + (f", seed {rec['seed_s']:.2f} s" if rec.get("seed_s") else
                 ", seed failed" if "seed_error" in rec else ""), flush=True)
        rows.append(rec)
    return rows, warm_t


def profile(tracks: list[Path], model, *, repeats: int = 2) -> dict:
    """Decode / mel / network time per slice for one track of each format (1 thread)."""
    import torch

    from genretag.audio import iter_slices
    from genretag.features import log_mel
    from genretag.defaults import BATCH_SIZE, MAX_SLICES as DEFAULT_MAX_SLICES

    f = model.features
    torch.set_num_threads(1)
    picked = {}
    for t in tracks:
        picked.setdefault(t.suffix, t)
    out = []
    for path in picked.values():
        warm(path)
        for mode, max_slices in (("default", DEFAULT_MAX_SLICES), ("all", None)):
            t_dec, slices = timed(lambda: np.stack(
                [s for _, s, _ in iter_slices(str(path), f.sample_rate, f.slice_samples,
                                              max_slices=max_slices)]), repeats)
            batches = [slices[i:i + BATCH_SIZE] for i in range(0, len(slices), BATCH_SIZE)]
            with torch.inference_mode():
                t_mel, mels = timed(lambda: [log_mel(b, f) for b in batches], repeats)
                t_net, _ = timed(lambda: [net_probs(model, m) for m in mels], repeats)
            n = len(slices)
            out.append({"file": path.name, "format": path.suffix[1:], "mode": mode, "slices": n,
                        "decode_s": t_dec, "mel_s": t_mel, "net_s": t_net,
                        "decode_ms_per_slice": 1000 * t_dec / n, "mel_ms_per_slice": 1000 * t_mel / n,
                        "net_ms_per_slice": 1000 * t_net / n})
    return {"tracks": out, "network": network_profile(model)}


def network_profile(model, repeats: int = 3) -> dict:
    """Per-slice network time by batch size in float32 and bfloat16, and by backbone block
    (float32, batch 16), on 1 thread with random input."""
    import torch

    torch.manual_seed(0)
    res: dict = {"batch_ms_per_slice": {}, "stage_ms_per_slice_batch16": {}}
    with torch.inference_mode():
        for precision in ("fp32", "bf16"):
            for bs in (1, 2, 4, 16):
                x = torch.rand(bs, 187, 96) * 3
                net_probs(model, x, precision)
                t, _ = timed(lambda: net_probs(model, x, precision), repeats)
                res["batch_ms_per_slice"][f"{precision} batch {bs}"] = 1000 * t / bs
        bb = model.backbone.net
        if bb is not None and hasattr(bb, "timbral"):
            x = torch.rand(16, 187, 96) * 3
            xi = bb.input_bn(x.unsqueeze(1))
            total, _ = timed(lambda: net_probs(model, x, "fp32"), repeats)
            stages = {}
            for name, blocks in (("timbral", bb.timbral), ("temporal", bb.temporal)):
                for k, b in enumerate(blocks):
                    t, _ = timed(lambda: b(xi), repeats)
                    stages[f"{name}[{k}]"] = 1000 * t / 16
            res["stage_ms_per_slice_batch16"] = stages
            res["total_ms_per_slice_batch16"] = 1000 * total / 16
    return res


# ---------------------------------------------------------------- subprocess measurements

def memory(genretag_cmd: list[str], three_min: Path, long: Path, args) -> dict:
    res = {"three_min_file": three_min.name, "long_file": long.name}
    plans = [("three_min_default", three_min, []), ("long_default", long, [])]
    if not args.skip_long_full:
        plans += [("three_min_all_slices", three_min, ["--all-slices"]),
                  ("long_all_slices", long, ["--all-slices"])]
    for key, path, extra in plans:
        warm(path)
        r = run_child(genretag_cmd + ["classify", "-j", "1", "--timeout", "100000", "--no-cache",
                                      *extra, str(path)])
        print(f"  {key}: peak RSS {r['maxrss_mb']:.0f} MB, {r['wall_s']:.1f} s (rc {r['rc']})",
              flush=True)
        res[key] = r
    return res


#: Tracks of the small runs that split a whole-process time into start-up and steady rate.
SMALL_RUN = 4


def throughput(genretag_cmd: list[str], tracks_dir: Path, n_tracks: int, runs: int,
               baseline: Path | None = None) -> dict:
    """Whole-process runs of ``classify -j 1`` and ``-j 2``, interleaved; with ``baseline``
    (a checkout of earlier code) also that code's ``-j 2`` on the same files, in turn.

    ``-j 2`` also runs on the first :data:`SMALL_RUN` tracks: the difference of the medians
    gives the steady rate, ``(n - SMALL_RUN) / (wall(n) - wall(SMALL_RUN))``, what a library
    of thousands of tracks sees once the workers have started."""
    small = Path(tempfile.mkdtemp(prefix="genretag-bench-small-"))
    for f in sorted(tracks_dir.iterdir())[:SMALL_RUN]:
        os.symlink(f.resolve(), small / f.name)
    variants = [("1", genretag_cmd, None, None, tracks_dir),
                ("2", genretag_cmd, None, None, tracks_dir),
                ("2_small", genretag_cmd, None, None, small)]
    res: dict = {"tracks": n_tracks, "small_tracks": SMALL_RUN}
    if baseline is not None:
        # its own folder first on sys.path (``-m`` puts the working directory there)
        env = {**os.environ, "PYTHONPATH": str(baseline.resolve())}
        res["baseline"] = {"dir": str(baseline), "commit": _git_commit(baseline)}
        base = [sys.executable, "-m", "genretag.cli"]
        variants += [("2_baseline", base, env, baseline, tracks_dir),
                     ("2_small_baseline", base, env, baseline, small)]
    res["runs"] = {v[0]: [] for v in variants}
    for f in sorted(tracks_dir.iterdir()):
        warm(f)
    for _ in range(runs):
        for jobs, cmd, env, cwd, folder in variants:
            r = run_child(cmd + ["classify", "-j", jobs[0], "--no-cache", str(folder)],
                          env=env, cwd=cwd)
            r["tracks_per_s"] = (SMALL_RUN if "small" in jobs else n_tracks) / r["wall_s"]
            print(f"  -j {jobs}: {r['wall_s']:.1f} s, {r['tracks_per_s']:.2f} tracks/s, "
                  f"CPU {r['cpu_s']:.0f} s, other processes {r['other_processes_cores']:.2f} "
                  f"cores (rc {r['rc']}, {r['stdout_lines']} lines)", flush=True)
            res["runs"][jobs].append(r)
    for jobs in res["runs"]:
        best = min(r["wall_s"] for r in res["runs"][jobs])
        res[f"best_wall_s_j{jobs}"] = best
        res[f"tracks_per_s_j{jobs}"] = (SMALL_RUN if "small" in jobs else n_tracks) / best
    for suffix in ("", "_baseline"):
        if f"2_small{suffix}" in res["runs"]:
            big = median(r["wall_s"] for r in res["runs"][f"2{suffix}"])
            little = median(r["wall_s"] for r in res["runs"][f"2_small{suffix}"])
            res[f"steady_tracks_per_s_j2{suffix}"] = (n_tracks - SMALL_RUN) / (big - little)
            res[f"startup_s_j2{suffix}"] = little - SMALL_RUN * (big - little) / (
                n_tracks - SMALL_RUN)
    shutil.rmtree(small, ignore_errors=True)
    return res


def vocabularies(genretag_cmd: list[str], tracks_dir: Path, n_tracks: int, runs: int) -> dict:
    """Whole-process ``classify -j 2`` with each vocabulary, in turn: the ``lastfm`` tags
    come from the same backbone pass as the genre head's scores, so with the same slices
    (``--fixed-slices``) the two cost the same; the adaptive default reads fewer."""
    variants = {"genres (--fixed-slices)": ["--fixed-slices"],
                "lastfm": ["--vocabulary", "lastfm"],
                "genres (adaptive, the default)": []}
    res: dict = {"tracks": n_tracks, "runs": {k: [] for k in variants}}
    for f in sorted(tracks_dir.iterdir()):
        warm(f)
    for _ in range(runs):
        for name, extra in variants.items():
            r = run_child(genretag_cmd + ["classify", "-j", "2", "--no-cache", *extra,
                                          str(tracks_dir)])
            print(f"  {name}: {r['wall_s']:.1f} s, CPU {r['cpu_s']:.0f} s (rc {r['rc']})",
                  flush=True)
            res["runs"][name].append(r)
    res["median_wall_s"] = {k: median(r["wall_s"] for r in v) for k, v in res["runs"].items()}
    res["median_cpu_s"] = {k: median(r["cpu_s"] for r in v) for k, v in res["runs"].items()}
    return res


_NOOP_PLUGIN = """from beets.plugins import BeetsPlugin


class BenchNoop(BeetsPlugin):
    pass
"""


def _plugin_import_ms() -> float:
    """Milliseconds to import the plugin module in a fresh interpreter that has beets loaded."""
    code = ("import time, beets.ui, beets.library, beets.plugins\n"
            "t = time.perf_counter()\nimport beetsplug.genretag\n"
            "print((time.perf_counter() - t) * 1000)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def beets_startup(tracks: list[Path], runs: int) -> dict:
    """``beet version`` / ``beet ls`` with no plugin, genretag, and an empty plugin.

    The empty plugin (``noop``) separates what beets itself pays for loading any
    plugin from what genretag's module costs.
    """
    beet = console_script("beet", "beets")
    tmp = Path(tempfile.mkdtemp(prefix="genretag-bench-beets-"))
    try:
        (tmp / "plugins").mkdir()
        (tmp / "plugins" / "benchnoop.py").write_text(_NOOP_PLUGIN, encoding="utf-8")
        plugins = {"off": "plugins: []\n",
                   "on": "plugins: [genretag]\ngenretag:\n  auto: no\n",
                   "noop": f"pluginpath: [{tmp / 'plugins'}]\nplugins: [benchnoop]\n"}
        dirs = {}
        for state, plugin_conf in plugins.items():
            d = tmp / state
            (d / "music").mkdir(parents=True)
            base = (f"directory: {d / 'music'}\nlibrary: {d / 'library.db'}\n"
                    "create_backup_before_migrations: no\n"
                    "import:\n  copy: no\n  move: no\n  write: no\n  resume: no\n")
            (d / "config.yaml").write_text(base + "plugins: []\n", encoding="utf-8")
            env = {**os.environ, "BEETSDIR": str(d)}
            imp = run_child(beet + ["import", "-A", "-q", *map(str, tracks)], env=env)
            if imp["rc"] != 0:
                raise RuntimeError(f"beet import failed: {imp['stderr_tail']}")
            (d / "config.yaml").write_text(base + plugin_conf, encoding="utf-8")
            dirs[state] = env
        res: dict = {"runs": runs, "library_items": len(tracks), "command": beet}
        for sub in (["version"], ["ls"]):
            key = " ".join(sub)
            times: dict = {state: [] for state in dirs}
            for state in dirs:  # warm-up, and a check that the configuration works
                r = run_child(beet + sub, env=dirs[state])
                if r["rc"] != 0:
                    raise RuntimeError(f"beet {key} failed ({state}): {r['stderr_tail']}")
            for _ in range(runs):
                for state in dirs:
                    times[state].append(run_child(beet + sub, env=dirs[state])["wall_s"])
            res[key] = {f"{state}_s": v for state, v in times.items()}
            res[key].update({f"median_{state}_s": median(v) for state, v in times.items()})
            res[key]["ratio"] = res[key]["median_on_s"] / res[key]["median_off_s"]
            res[key]["ratio_noop"] = res[key]["median_noop_s"] / res[key]["median_off_s"]
            res[key]["ratio_of_minima"] = min(times["on"]) / min(times["off"])
            print(f"  beet {key}: {res[key]['median_off_s'] * 1000:.0f} ms off, "
                  f"{res[key]['median_on_s'] * 1000:.0f} ms genretag, "
                  f"{res[key]['median_noop_s'] * 1000:.0f} ms empty plugin "
                  f"-> {res[key]['ratio']:.3f}", flush=True)
        out = subprocess.run(beet + ["version"], env=dirs["on"], capture_output=True, text=True)
        res["plugin_listed_in_version"] = "genretag" in out.stdout
        res["plugin_import_ms"] = [_plugin_import_ms() for _ in range(runs)]
        res["median_plugin_import_ms"] = median(res["plugin_import_ms"])
        print(f"  importing beetsplug.genretag after beets: {res['median_plugin_import_ms']:.1f} ms",
              flush=True)
        return res
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- machine

def _as_list(updated) -> list:
    """Earlier ``--update`` records of a results file (one dict in older files)."""
    return updated if isinstance(updated, list) else [updated] if updated else []


def _git_commit(folder: Path) -> str | None:
    git = subprocess.run(["git", "-C", str(folder), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True)
    return git.stdout.strip() or None


def machine() -> dict:
    import av
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__,
            "av": av.__version__, "numpy": np.__version__, "platform": platform.platform(),
            "cpus": os.cpu_count(), "torch_threads_default": torch.get_num_threads()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in lscpu.splitlines():
            k, _, v = line.partition(":")
            if k.strip() in ("Model name", "Core(s) per socket", "Thread(s) per core",
                             "Hypervisor vendor", "L2 cache", "L3 cache"):
                info[k.strip()] = v.strip()
    except OSError:
        pass
    for mod in ("librosa", "beets", "soundfile"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # optional
            pass
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            info["mem_total_gb"] = round(int(fh.readline().split()[1]) / 1024 ** 2, 1)
    except OSError:
        pass
    try:
        info["ffmpeg_libavcodec"] = ".".join(map(str, av.library_versions["libavcodec"]))
    except Exception:
        pass
    git = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True)
    info["git_commit"] = git.stdout.strip() or None
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "genretag"],
                           capture_output=True, text=True)
    info["genretag_tree_dirty"] = bool(dirty.stdout.strip())
    return info


# ---------------------------------------------------------------- figures

def _per_track_figures(rows: list[dict]) -> dict:
    fig: dict = {"n_tracks": len(rows)}
    fig["median_decode_s"] = median(r["decode_s"] for r in rows)
    fig["median_decode_planned_s"] = median(r["decode_planned_s"] for r in rows)
    fig["median_tag_s"] = median(r["tag_s"] for r in rows)
    fig["median_tag_all_s"] = median(r["tag_all_s"] for r in rows)
    if all("tag_fixed_s" in r for r in rows):
        fig["median_tag_fixed_s"] = median(r["tag_fixed_s"] for r in rows)
        fig["ratio_tag_fixed_to_decode"] = median(r["tag_fixed_s"] / r["decode_s"] for r in rows)
        fig["mean_slices_read"] = float(np.mean([r["n_slices_read"] for r in rows]))
        fig["agreement_adaptive_vs_fixed"] = sum(r["genre_fixed"] == r["genre_default"]
                                                 for r in rows) / len(rows)
    fig["median_tag_2threads_s"] = median(r["tag_2threads_s"] for r in rows)
    fig["ratio_tag_to_decode"] = median(r["tag_s"] / r["decode_s"] for r in rows)
    fig["ratio_tag_2threads_to_decode"] = median(r["tag_2threads_s"] / r["decode_s"] for r in rows)
    fig["ratio_tag_all_to_decode"] = median(r["tag_all_s"] / r["decode_s"] for r in rows)
    if all("tag_fp32_s" in r for r in rows):
        fig["median_tag_fp32_s"] = median(r["tag_fp32_s"] for r in rows)
        fig["ratio_tag_fp32_to_decode"] = median(r["tag_fp32_s"] / r["decode_s"] for r in rows)
        fig["agreement_bf16_vs_fp32"] = sum(r["genre_fp32"] == r["genre_default"]
                                            for r in rows) / len(rows)
    fig["ratio_tag_to_decode_by_format"] = {
        fmt: median(r["tag_s"] / r["decode_s"] for r in rows if r["format"] == fmt)
        for fmt in sorted({r["format"] for r in rows})}
    fig["agreement_default_vs_all"] = sum(r["genre_default"] == r["genre_all"] for r in rows) \
        / len(rows)
    fig["median_probs_l1_default_vs_all"] = median(r["probs_l1_default_vs_all"] for r in rows)
    seeded = [r for r in rows if r.get("seed_s")]
    if seeded:
        fig["seed_tracks"] = len(seeded)
        fig["seed_failed"] = sorted({r["format"] for r in rows if r.get("seed_error")})
        fig["seed_failed_count"] = sum(1 for r in rows if r.get("seed_error"))
        fig["median_seed_s"] = median(r["seed_s"] for r in seeded)
        fig["ratio_seed_to_tag"] = median(r["seed_s"] / r["tag_s"] for r in seeded)
        fig["ratio_seed_to_tag_all"] = median(r["seed_s"] / r["tag_all_s"] for r in seeded)
        fig["ratio_seed_frontend_to_floor"] = median(
            (r["seed_parts"]["load_s"] + r["seed_parts"]["mel_s"]) / (r["decode_s"] + r["mel_all_s"])
            for r in seeded if "seed_parts" in r and "mel_all_s" in r)
        fig["ratio_librosa_load_to_decode"] = median(
            r["seed_parts"]["load_s"] / r["decode_s"] for r in seeded if "seed_parts" in r)
        fig["agreement_seed_vs_all"] = sum(r["genre_seed"] == r["genre_all"] for r in seeded) \
            / len(seeded)
    return fig


def summarize(res: dict) -> dict:
    """The figures of the table (ratios and the absolute numbers behind them)."""
    rows = res.get("per_track", [])
    fig = _per_track_figures(rows) if rows else {}
    b = res.get("beets")
    if b:
        fig["beet_version_ratio"] = b["version"]["ratio"]
        fig["beet_ls_ratio"] = b["ls"]["ratio"]
    m = res.get("memory")
    if m:
        fig["rss_ratio"] = m["long_default"]["maxrss_mb"] / m["three_min_default"]["maxrss_mb"]
        if "long_all_slices" in m:
            fig["rss_ratio_all_slices"] = (m["long_all_slices"]["maxrss_mb"]
                                           / m["three_min_all_slices"]["maxrss_mb"])
    t = res.get("throughput")
    if t:
        fig["throughput_ratio"] = t["tracks_per_s_j2"] / t["tracks_per_s_j1"]
        fig["tracks_per_s_j2"] = t["tracks_per_s_j2"]
        if "steady_tracks_per_s_j2" in t:
            fig["steady_tracks_per_s_j2"] = t["steady_tracks_per_s_j2"]
        if "tracks_per_s_j2_baseline" in t:
            fig["speedup_vs_baseline"] = t["tracks_per_s_j2"] / t["tracks_per_s_j2_baseline"]
        if "steady_tracks_per_s_j2_baseline" in t:
            fig["steady_speedup_vs_baseline"] = (t["steady_tracks_per_s_j2"]
                                                 / t["steady_tracks_per_s_j2_baseline"])
    v = res.get("vocabularies")
    if v:
        fixed, lastfm = v["median_wall_s"]["genres (--fixed-slices)"], v["median_wall_s"]["lastfm"]
        fig["lastfm_to_genres_fixed"] = lastfm / fixed
    return fig


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", default=str(BENCH / "corpus"))
    p.add_argument("--json", default=str(BENCH / "out" / "results.json"))
    p.add_argument("--limit", type=int, default=None, help="use only the first N tracks")
    p.add_argument("--repeats", type=int, default=1, help="timed repeats per step (best is kept)")
    p.add_argument("--beet-runs", type=int, default=21,
                   help="alternating runs per state (at least 7)")
    p.add_argument("--throughput-runs", type=int, default=3)
    p.add_argument("--update", action="store_true",
                   help="keep the other phases' results already in --json (with --only)")
    p.add_argument("--baseline", default=None, metavar="DIR",
                   help="a checkout of earlier genretag code (e.g. `git worktree add DIR REV`): "
                        "its `classify -j 2` runs in turn with this code's, for the speed-up")
    p.add_argument("--skip-seed", action="store_true")
    p.add_argument("--skip-long-full", action="store_true",
                   help="skip --all-slices on the 2-hour file (a few minutes)")
    p.add_argument("--only", default="all",
                   help="comma list of: tracks,memory,throughput,vocabularies,beets,profile "
                        "(default all)")
    args = p.parse_args(argv)

    corpus = Path(args.corpus)
    tracks = sorted(f for f in (corpus / "tracks").iterdir() if not f.name.startswith("."))
    longs = sorted(f for f in (corpus / "long").iterdir() if not f.name.startswith("."))
    if not tracks:
        p.error(f"no tracks in {corpus / 'tracks'}: run bench/make_corpus.py first")
    if args.limit:
        tracks = tracks[:args.limit]
    only = set(args.only.split(",")) if args.only != "all" else \
        {"tracks", "memory", "throughput", "vocabularies", "beets", "profile"}

    from genretag.model import load_model

    t_start = time.time()
    model = load_model()
    res: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "reproduce": REPRODUCE,
                 "argv": sys.argv[1:], "machine": machine(), "model": model.model_id,
                 "precision": precision_of(model),
                 "weights_env": os.environ.get("GENRETAG_WEIGHTS"), "corpus": str(corpus),
                 "loads": {}}
    manifest = corpus / "manifest.json"
    if manifest.is_file():
        man = json.loads(manifest.read_text())
        res["corpus_source"] = man.get("source")
        res["corpus_bit_rates"] = man.get("bit_rates")
    genretag_cmd = console_script("genretag", "genretag.cli")
    print(f"genretag bench: {len(tracks)} tracks, model {model.model_id}, "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)

    if "tracks" in only:
        print("per-track timings (in process, one model):", flush=True)
        with LoadMeter() as lm:
            res["per_track"], res["warmup"] = per_track(tracks, model, args)
        res["loads"]["per_track"] = lm.result
    if "profile" in only:
        print("profile:", flush=True)
        with LoadMeter() as lm:
            res["profile"] = profile(tracks, model)
        res["loads"]["profile"] = lm.result
    if "memory" in only and longs:
        print("peak memory (genretag classify -j 1):", flush=True)
        mp3s = [t for t in tracks if t.suffix == ".mp3"] or tracks
        durations = {r["file"]: r["duration_s"] for r in res.get("per_track", [])}
        three = min(mp3s, key=lambda t: abs(durations.get(t.name, 180.0) - 180.0))
        with LoadMeter() as lm:
            res["memory"] = memory(genretag_cmd, three, longs[0], args)
        res["loads"]["memory"] = lm.result
    if "throughput" in only:
        print("throughput (genretag classify on the corpus):", flush=True)
        tdir = corpus / "tracks"
        if args.limit:  # a folder with just the chosen tracks
            tdir = Path(tempfile.mkdtemp(prefix="genretag-bench-tracks-"))
            for t in tracks:
                os.symlink(t.resolve(), tdir / t.name)
        with LoadMeter() as lm:
            res["throughput"] = throughput(genretag_cmd, tdir, len(tracks), args.throughput_runs,
                                           Path(args.baseline) if args.baseline else None)
        res["loads"]["throughput"] = lm.result
    if "vocabularies" in only:
        print("vocabularies (genretag classify -j 2, each vocabulary):", flush=True)
        with LoadMeter() as lm:
            res["vocabularies"] = vocabularies(genretag_cmd, corpus / "tracks", len(tracks),
                                               args.throughput_runs)
        res["loads"]["vocabularies"] = lm.result
    if "beets" in only:
        print("beets start-up (plugin off / on):", flush=True)
        with LoadMeter() as lm:
            res["beets"] = beets_startup(tracks[:8], max(7, args.beet_runs))
        res["loads"]["beets"] = lm.result
    res["total_s"] = time.time() - t_start
    out = Path(args.json)
    if args.update and out.is_file():  # the earlier run's phases, with this run's on top
        old = json.loads(out.read_text(encoding="utf-8"))
        old.setdefault("loads", {}).update(res.pop("loads"))
        res = {**old, **{k: v for k, v in res.items()
                         if k in only | {"per_track", "warmup", "profile"} and k in res},
               "updated": [*_as_list(old.get("updated")),
                           {"started": res["started"], "phases": sorted(only),
                            "commit": _git_commit(REPO)}]}
    res["figures"] = summarize(res)

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    sys.path.insert(0, str(BENCH))
    from report import text_table

    print()
    print(text_table(res))
    print(f"\nwrote {out} in {res['total_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
