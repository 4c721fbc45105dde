"""Render bench/RESULTS.md from bench/run.py's JSON (and bench/accuracy.json if present).

    python bench/report.py [--json bench/out/results.json] [--accuracy bench/accuracy.json]
                           [--out bench/RESULTS.md]

The accuracy section reads ``bench/accuracy.json``, else ``bench/out/accuracy.json``:
the output of ``bench/accuracy.py`` (float32 / bfloat16, k slices, through the real
inference path) or of ``genretag evaluate --json FILE`` (the validation protocol:
full-track accuracy and accuracy with k evenly spread slices per clip); any other
JSON object is shown as a flat list of its numbers.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent

#: (figure key, label, comparison, target, headline?)
TARGETS = {
    "ratio_tag_to_decode": ("<=", 1.5),
    "ratio_seed_to_tag": (">=", 3.0),
    "beet_version_ratio": ("<=", 1.10),
    "rss_ratio": ("<=", 1.25),
    "throughput_ratio": (">=", 1.6),
    "tracks_per_s_j2": (">=", 8.3),
    "lastfm_to_genres_fixed": ("<=", 1.05),
}


def _ok(value, cmp: str, target: float):
    if value is None:
        return None
    return value <= target if cmp == "<=" else value >= target


def figure_rows(res: dict) -> list[dict]:
    """The table: one row per figure, headline rows carry a target and pass/fail."""
    fig = res.get("figures", {})
    rows = []

    def add(no, key, label, absolute, target_key=None, headline=True):
        value = fig.get(key)
        if value is None:
            return
        cmp, target = TARGETS.get(target_key or key, (None, None))
        rows.append({"no": no, "key": key, "label": label, "value": value,
                     "target": f"{cmp} {target:g}" if cmp else "",
                     "pass": _ok(value, cmp, target) if cmp else None,
                     "headline": headline, "absolute": absolute})

    ms = lambda s: f"{1000 * s:.0f} ms" if s is not None else "n/a"  # noqa: E731
    add("1", "ratio_tag_to_decode",
        "tagging / decode floor, median per track (default 10 slices, torch 1 thread)",
        f"decode {ms(fig.get('median_decode_s'))}, tag {ms(fig.get('median_tag_s'))} "
        f"(median of {fig.get('n_tracks')} tracks)")
    add("1a", "ratio_tag_fixed_to_decode",
        "same, fixed analysis (`--fixed-slices`: every planned slice, no early stop)",
        f"tag {ms(fig.get('median_tag_fixed_s'))}; the default (adaptive) read "
        f"{fig.get('mean_slices_read') or 0:.1f} slices per track on average and gave the same "
        f"top genre on {100 * (fig.get('agreement_adaptive_vs_fixed') or 0):.0f} % of tracks",
        "ratio_tag_to_decode", False)
    add("1b", "ratio_tag_2threads_to_decode", "same, torch on 2 threads",
        f"tag {ms(fig.get('median_tag_2threads_s'))}", "ratio_tag_to_decode", False)
    add("1c", "ratio_tag_all_to_decode", "same, every slice of the track (--all-slices)",
        f"tag {ms(fig.get('median_tag_all_s'))}", "ratio_tag_to_decode", False)
    add("1d", "ratio_tag_fp32_to_decode", "same, float32 network (`--precision fp32`)",
        f"tag {ms(fig.get('median_tag_fp32_s'))}; same top genre as the default precision on "
        f"{100 * (fig.get('agreement_bf16_vs_fp32') or 0):.0f} % of tracks",
        "ratio_tag_to_decode", False)
    add("2", "ratio_seed_to_tag",
        "librosa seed pipeline / genretag, median per track (default slices)",
        f"seed {ms(fig.get('median_seed_s'))} on {fig.get('seed_tracks')} tracks"
        + (f"; librosa cannot read {fig.get('seed_failed_count')} "
           f"({', '.join(fig.get('seed_failed', []))})" if fig.get("seed_failed") else ""))
    add("2b", "ratio_seed_to_tag_all", "same, genretag on every slice (like for like)",
        "", "ratio_seed_to_tag", False)
    add("2c", "ratio_seed_frontend_to_floor",
        "front end only: librosa load + mel / PyAV decode + torch mel (whole track)",
        f"librosa.load alone / PyAV decode: {fig.get('ratio_librosa_load_to_decode') or 0:.2f}",
        None, False)
    b = res.get("beets", {})
    if b:
        add("3", "beet_version_ratio", "`beet version` plugin enabled / disabled (median)",
            f"{ms(b['version']['median_on_s'])} / {ms(b['version']['median_off_s'])}, "
            f"{b['runs']} alternating runs each"
            + (f"; an empty plugin {ms(b['version']['median_noop_s'])}"
               if "median_noop_s" in b["version"] else "")
            + (f"; ratio of the fastest runs {b['version']['ratio_of_minima']:.2f}"
               if "ratio_of_minima" in b["version"] else "")
            + (f"; importing the plugin module {b['median_plugin_import_ms']:.0f} ms"
               if "median_plugin_import_ms" in b else ""))
        add("3b", "beet_ls_ratio", f"`beet ls` ({b['library_items']}-item library) on / off",
            f"{ms(b['ls']['median_on_s'])} / {ms(b['ls']['median_off_s'])}"
            + (f"; an empty plugin {ms(b['ls']['median_noop_s'])}"
               if "median_noop_s" in b["ls"] else "")
            + (f"; fastest runs {b['ls']['ratio_of_minima']:.2f}"
               if "ratio_of_minima" in b["ls"] else ""),
            "beet_version_ratio", False)
    m = res.get("memory", {})
    if m:
        add("4", "rss_ratio", "peak RSS, `classify -j 1` on the 2-hour file / a 3-minute file",
            f"{m['long_default']['maxrss_mb']:.0f} MB / {m['three_min_default']['maxrss_mb']:.0f} MB"
            f" (wall {m['long_default']['wall_s']:.1f} s / {m['three_min_default']['wall_s']:.1f} s)")
        if "long_all_slices" in m:
            add("4b", "rss_ratio_all_slices", "same with --all-slices (streams the whole file)",
                f"{m['long_all_slices']['maxrss_mb']:.0f} MB / "
                f"{m['three_min_all_slices']['maxrss_mb']:.0f} MB (wall "
                f"{m['long_all_slices']['wall_s']:.0f} s / {m['three_min_all_slices']['wall_s']:.1f} s)",
                "rss_ratio", False)
    t = res.get("throughput", {})
    if t:
        add("5", "throughput_ratio", "throughput `classify -j 2` / `-j 1` (whole process)",
            f"{t['tracks_per_s_j2']:.2f} / {t['tracks_per_s_j1']:.2f} tracks/s "
            f"(best of {len(t['runs']['1'])} runs, {t['tracks']} tracks)")
        add("5b", "tracks_per_s_j2", "tracks/s, `classify -j 2` on the corpus (whole process, "
            "start-up included)", f"{t['tracks']} tracks in {t['best_wall_s_j2']:.1f} s")
        if "steady_tracks_per_s_j2" in t:
            add("5c", "steady_tracks_per_s_j2",
                f"tracks/s, `classify -j 2`, steady rate: (n - {t['small_tracks']}) / (wall of n "
                f"tracks - wall of the first {t['small_tracks']}), medians",
                f"start-up about {t['startup_s_j2']:.1f} s; 10 000 tracks would take about "
                f"{(t['startup_s_j2'] + 10000 / t['steady_tracks_per_s_j2']) / 60:.0f} min "
                "(extrapolated)", "tracks_per_s_j2", False)
        if "steady_tracks_per_s_j2_baseline" in t:
            add("5d", "steady_speedup_vs_baseline",
                f"steady rate / the same with the code of {t['baseline']['commit']}",
                f"{t['steady_tracks_per_s_j2']:.2f} / {t['steady_tracks_per_s_j2_baseline']:.2f} "
                "tracks/s", None, False)
        if "tracks_per_s_j2_baseline" in t:
            add("5e", "speedup_vs_baseline",
                f"`-j 2` tracks/s / the same with the code of {t['baseline']['commit']} "
                "(checked out beside it, runs in turn)",
                f"{t['tracks_per_s_j2']:.2f} / {t['tracks_per_s_j2_baseline']:.2f} tracks/s",
                None, False)
    v = res.get("vocabularies")
    if v:
        w = v["median_wall_s"]
        add("6", "lastfm_to_genres_fixed",
            "`classify -j 2 --vocabulary lastfm` / `--fixed-slices` (genres), same slices, "
            "whole process, median", ", ".join(f"{k} {x:.1f} s" for k, x in w.items())
            + f" ({v['tracks']} tracks, {len(next(iter(v['runs'].values())))} runs each, in turn)")
    return rows


def _fmt(v) -> str:
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def _verdict(p) -> str:
    return "" if p is None else ("PASS" if p else "FAIL")


def text_table(res: dict) -> str:
    lines = [f"{'#':<3} {'figure':<78} {'value':>6} {'target':>7} {'':>4}  absolute"]
    for r in figure_rows(res):
        lines.append(f"{r['no']:<3} {r['label'][:78]:<78} {_fmt(r['value']):>6} {r['target']:>7} "
                     f"{_verdict(r['pass']):>4}  {r['absolute']}")
    return "\n".join(lines)


def _md_table(header: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return out


def accuracy_section(acc: dict | None, path: Path) -> list[str]:
    out = ["## Accuracy: full-track vs reduced analysis", ""]
    if acc is None and (BENCH / "out" / "adaptive.json").is_file():
        return []  # the adaptive section below has it
    if acc is None:
        return out + [
            "*Not filled in.* The model's accuracy under the cross-collection protocol is in "
            "`weights/MODEL_CARD.md` (`genretag evaluate --data GTZAN_DIR --data EMOTIFY_DIR`); "
            "the agreement of reduced and adaptive slice counts with full analysis is measured "
            "by `bench/backbone_speed.py`.", ""]
    lines = []
    archs = {k: v for k, v in acc.items() if isinstance(v, dict) and "folds" in v}
    if isinstance(acc.get("folds"), list) and "ks" in acc:  # bench/accuracy.py
        ks = acc["ks"]
        precisions = [p for p in ("fp32", "bf16") if f"{p}_k{ks[0]}" in acc["folds"][0]]
        header = ["fold (fit -> scored)", "clips", "precision"] + [
            f"{k} slices (whole clip)" if k >= 10 else f"{k} slices" for k in ks]
        rows = []
        for f in acc["folds"] + [{"label": "mean of folds", **acc.get("mean", {})}]:
            for p in precisions:
                rows.append([f.get("label") or f"{f['fit']} -> {f['scored']}", f.get("n", ""), p]
                            + [f"{f[f'{p}_k{k}']['accuracy']:.3f} "
                               f"({f[f'{p}_k{k}']['balanced_accuracy']:.3f})"
                               if f"{p}_k{k}" in f else "" for k in ks])
        lines += _md_table(header, rows)
        same = [f["same_genre_fp32_bf16"] for f in acc["folds"] if "same_genre_fp32_bf16" in f]
        lines += ["", "Accuracy (balanced accuracy) of held-out clips classified through "
                      "`genretag.classify.classify_file`, from `bench/accuracy.py` (validation "
                      "protocol, both folds). GTZAN clips are 30 s, i.e. 9 slices, so 10 "
                      "slices is the whole clip; k slices are chosen as `plan_slices` chooses "
                      "them on long tracks."
                  + (f" Same genre in float32 and bfloat16: {', '.join(same)} clips per fold."
                     if same else "")]
    elif archs:
        ks = sorted({k for v in archs.values() for f in v["folds"]
                     for k in f.get("reduced_slices", {})}, key=int)
        header = ["model", "fold (fit -> scored)", "full track"] + [f"{k} slices" for k in ks]
        rows = []
        for arch, v in archs.items():
            for f in v["folds"]:
                rows.append([arch, f"{f['fit']} -> {f['scored']}",
                             f"{f['metrics']['accuracy']:.3f}"]
                            + [f"{f['reduced_slices'][k]:.3f}" if k in f.get("reduced_slices", {})
                               else "" for k in ks])
            rows.append([arch, "mean of folds", f"{v['mean']['accuracy']:.3f}"]
                        + [f"{sum(f['reduced_slices'][k] for f in v['folds']) / len(v['folds']):.3f}"
                           if all(k in f.get("reduced_slices", {}) for f in v["folds"]) else ""
                           for k in ks])
        lines += _md_table(header, rows)
        lines += ["", "Accuracy on the validation protocol (`genretag evaluate`). GTZAN clips "
                      "are 30 s (9 slices), so `full track` there equals the default of "
                      "10 slices; the k-slice columns show what fewer slices cost."]
    else:
        flat = []

        def walk(prefix, obj):
            if isinstance(obj, dict):
                for k, v in obj.items():
                    walk(f"{prefix}.{k}" if prefix else str(k), v)
            elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
                flat.append([prefix, f"{obj:.4g}"])
            elif isinstance(obj, str):
                flat.append([prefix, obj])
        walk("", acc)
        lines += _md_table(["key", "value"], flat)
    return out + lines + [""]


def render(res: dict, acc: dict | None, acc_path: Path) -> str:
    m = res["machine"]
    fig = res.get("figures", {})
    out = ["# genretag benchmark results", "",
           "Produced by `bench/run.py` and `bench/report.py` (issue 4). Every ratio comes from "
           "one run on the same files.", "",
           "## Reproduce", "", "```sh", "pip install -e '.[test]'", res["reproduce"], "```", "",
           "`bench/make_corpus.py` writes the corpus to `bench/corpus/` (git-ignored): "
           "40 tracks of 3-4 min, 44.1 kHz stereo, 10 of each of MP3 192 kb/s, FLAC, "
           "M4A/AAC 160 kb/s and Opus 128 kb/s, plus a 2-hour MP3. "
           + ("Source audio: GTZAN clips of one genre per track, looped and re-encoded "
              "(`../shared/data/gtzan`); without GTZAN the script falls back to "
              "`genretag.synthetic.synth_music`." if res.get("corpus_source") == "gtzan" else
              "Source audio: `genretag.synthetic.synth_music` (GTZAN was not found)."), "",
           "## Machine", ""]
    out += _md_table(["item", "value"], [
        ["CPU", m.get("Model name", "?")],
        ["cores (os.cpu_count)", m.get("cpus")],
        ["virtualised", m.get("Hypervisor vendor", "no")],
        ["memory", f"{m.get('mem_total_gb', '?')} GB"],
        ["Python / torch / PyAV (libavcodec)",
         f"{m['python']} / {m['torch']} / {m['av']} ({m.get('ffmpeg_libavcodec', '?')})"],
        ["numpy / librosa / beets", f"{m['numpy']} / {m.get('librosa', '-')} / "
                                    f"{m.get('beets', '-')}"],
        ["genretag commit", f"{m.get('git_commit') or 'uncommitted'}"
                            + (" (genretag/ has local changes)" if m.get("genretag_tree_dirty")
                               else "")],
        ["model", res["model"] + (f" (GENRETAG_WEIGHTS={res['weights_env']})"
                                  if res.get("weights_env") else "")
         + (f", network in {res['precision']} (`--precision auto`)" if res.get("precision")
            else "")],
        ["run started", res["started"]],
        ["run took", f"{res.get('total_s', 0) / 60:.1f} min"],
    ] + [["phases rerun (`--update`)",
           f"{', '.join(u['phases'])}: {u['started']}, commit {u['commit']}"]
         for u in (res.get("updated") if isinstance(res.get("updated"), list)
                   else [res["updated"]] if isinstance(res.get("updated"), dict) else [])])
    out += ["", "## Figures", ""]
    rows = figure_rows(res)
    out += _md_table(["#", "figure", "value", "target", "", "absolute numbers"],
                     [[r["no"], r["label"], f"{r['value']:.2f}", r["target"],
                       f"**{_verdict(r['pass'])}**" if r["headline"] else _verdict(r["pass"]),
                       r["absolute"]] for r in rows])
    if (BENCH / "LIBRARY_RUN.md").is_file():
        out += ["", "A whole-library run of 10 000 tracks, measured separately: "
                    "[LIBRARY_RUN.md](LIBRARY_RUN.md)."]
    out += ["", "Rows with a number only (1-6) are the issues' figures; the lettered "
                "rows are the same measurement under another setting, checked against the same "
                "target for information.", ""]
    if fig.get("ratio_tag_to_decode_by_format"):
        out += ["Tagging / decode floor by format (median): " + ", ".join(
            f"{k} {v:.2f}" for k, v in fig["ratio_tag_to_decode_by_format"].items()) + ".", ""]
    if "agreement_default_vs_all" in fig:
        out += [f"Default (adaptive, up to 10 slices) and full-track analysis give the same top genre on "
                f"{100 * fig['agreement_default_vs_all']:.0f} % of the corpus tracks (median L1 "
                f"distance between the two distributions {fig['median_probs_l1_default_vs_all']:.3f})"
                + (f"; the seed pipeline agrees with genretag's full-track answer on "
                   f"{100 * fig['agreement_seed_vs_all']:.0f} % of the tracks it can read"
                   if "agreement_seed_vs_all" in fig else "") + ". "
                "This is agreement, not accuracy (the corpus has no trustworthy labels): "
                "accuracy is below.", ""]
    out += ["### How each figure is measured", "",
            "1. In one process with one loaded model, per track: `genretag.audio.decode` "
            "(PyAV to 16 kHz mono, the whole file; genretag's own decoder) is the floor, "
            "`genretag.classify.classify_file` is tagging. Median over tracks of the per-track "
            "ratio. The default analyses 10 slices spread over the track, reached by seeking, so "
            "it decodes about 30 s of audio, not the whole file.",
            "2. The seed-style pipeline: `librosa.load(sr=16000)` + "
            "`librosa.feature.melspectrogram` (n_fft 512, hop 256, 96 mels, center=False) + "
            "`log10(1+10000x)` + the same network on every consecutive 187-frame slice. "
            "librosa's one-time numba JIT / import cost is excluded by a warm-up call "
            + (f"(first call {res['warmup'].get('librosa_first_call_s', 0):.1f} s, second "
               f"{res['warmup'].get('librosa_second_call_s', 0):.1f} s). " if res.get("warmup")
               else ". ")
            + "Tracks librosa cannot read are left out of this ratio (M4A: no audioread backend). "
            "2c compares the front ends alone on the whole track: `librosa.load` + librosa mel "
            "vs `genretag.audio.decode` + genretag's torch log-mel on every slice.",
            "3. Fresh `beet` processes (the console script itself, no shim) with a temporary "
            "BEETSDIR: no plugin, genretag, and an empty plugin (what beets pays for loading "
            "any plugin), alternating, median. Process start-up on a loaded machine varies by "
            "tens of ms, so the fastest runs and the plugin module's own import time "
            "(in a fresh interpreter with beets imported) are shown too.",
            "4. `ru_maxrss` of `genretag classify -j 1 FILE` and every process it started, "
            "waited for by a child subreaper: the largest process of the command (the worker "
            "that holds torch and the model).",
            "5. Wall time of the whole `genretag classify -j N bench/corpus/tracks` process, "
            "start-up and model load included; best of the runs. 5c: the same command on the "
            "first 4 tracks, in turn with the others; the difference of the median times gives "
            "the rate once the workers run (what a library of thousands of tracks sees) and "
            "the start-up. 5d/5e: the code of an earlier commit (`--baseline DIR`, a checkout "
            "beside this one, run with its own folder first on `sys.path`) on the same files, "
            "in turn.",
            "6. `classify -j 2 --no-cache` with `--fixed-slices` (genre head) and with "
            "`--vocabulary lastfm` (which always reads every planned slice), whole process, "
            "in turn, median: the tag layer costs nothing over the genre head, because both "
            "read the same backbone pass.", ""]
    loads = res.get("loads", {})
    if loads:
        out += ["### Load from other processes during the run", "",
                "The machine was shared with other jobs. `other cores` is the CPU time other "
                "processes used during the phase divided by its wall time (from `/proc/stat`, "
                "minus the benchmark's own CPU time); 2.0 would mean both cores fully taken.", ""]
        out += _md_table(["phase", "wall", "other cores", "load avg (1 min) start -> end"],
                         [[k, f"{v['wall_s']:.0f} s", f"{v['other_processes_cores']:.2f}",
                           f"{v['loadavg_1min_start']:.2f} -> {v['loadavg_1min_end']:.2f}"]
                          for k, v in loads.items()])
        t = res.get("throughput")
        if t:
            out += ["", "Throughput runs (wall, CPU seconds of the genretag process tree, other "
                        "processes' cores): " + "; ".join(
                f"-j {j}: " + ", ".join(f"{r['wall_s']:.1f} s / {r['cpu_s']:.0f} CPU s / "
                                        f"{r['other_processes_cores']:.2f}" for r in t["runs"][j])
                for j in t["runs"]) + "."]
            j1, j2 = t["runs"]["1"], t["runs"]["2"]
            idle = min(r["wall_s"] for r in j1) / (min(r["cpu_s"] for r in j2) / 2)
            out += ["", "`-j 2` needs both cores; whatever other processes take comes straight "
                        "out of its speed-up, while `-j 1` (one core) hardly notices. The work "
                        "itself barely grows with two workers (compare the CPU seconds). "
                        f"Estimate, not a measurement: had both cores been free, `-j 2` would "
                        f"take about its CPU seconds / 2, a ratio near {idle:.2f}."]
        out += [""]
    prof = res.get("profile")
    if prof:
        out += ["## Profile: where the time goes (torch 1 thread, per slice of 3.008 s)", "",
                f"Network in {res.get('precision', 'fp32')}, as genretag runs it; "
                "decode is `genretag.audio.iter_slices` (seeking for `default`, streaming "
                "for `all`), mel is `genretag.features.log_mel` in batches of "
                "`genretag.defaults.BATCH_SIZE`.", ""]
        out += _md_table(["track", "analysis", "slices", "decode ms/slice", "mel ms/slice",
                          "network ms/slice", "network share"],
                         [[p["file"], p["mode"], p["slices"], f"{p['decode_ms_per_slice']:.1f}",
                           f"{p['mel_ms_per_slice']:.2f}", f"{p['net_ms_per_slice']:.1f}",
                           f"{100 * p['net_s'] / (p['decode_s'] + p['mel_s'] + p['net_s']):.0f} %"]
                          for p in prof["tracks"]])
        net = prof.get("network", {})
        if net:
            out += ["", "Network alone (random input, 1 thread), ms per slice: "
                        + ", ".join(f"{k}: {v:.1f}" for k, v in net["batch_ms_per_slice"].items())
                        + "."]
            if net.get("stage_ms_per_slice_batch16"):
                out += ["", "Backbone front-end blocks at batch 16, each timed alone (ms per slice): "
                        + ", ".join(f"{k} {v:.1f}"
                                    for k, v in net["stage_ms_per_slice_batch16"].items())
                        + (f"; whole network {net['total_ms_per_slice_batch16']:.1f}"
                           if "total_ms_per_slice_batch16" in net else "") + "."]
        out += [""]
    out += accuracy_section(acc, acc_path)
    out += adaptive_section(BENCH / "out" / "adaptive.json")
    return "\n".join(out).rstrip() + "\n"


def adaptive_section(path: Path) -> list[str]:
    """bench/adaptive.py's tables: fixed vs adaptive analysis on GTZAN and Emotify."""
    if not path.is_file():
        return []
    from adaptive import report  # bench/adaptive.py, beside this script

    data = json.loads(path.read_text(encoding="utf-8"))
    return ["## Adaptive analysis: accuracy and agreement (`bench/adaptive.py`)", "",
            "Fixed analysis reads every planned slice (10 spread over the track, or all of a "
            "shorter clip: GTZAN clips have 9); adaptive analysis (the default) reads them "
            "coarse to fine and stops once the best genre leads the second by "
            "`defaults.SETTLED_MARGIN` (checked after 3, 5, 7 and 9 slices). First table: "
            "held-out accuracy under 5 artist-grouped folds over both collections (part (c) of "
            "the validation protocol), the stop decided by the held-out head itself. Second: "
            "the shipped model through `classify_file` on every clip, decoding the files "
            "(agreement, not accuracy: the shipped model was fitted on these clips); "
            "its times per clip come from whatever load the machine had then: read them as a "
            "ratio.", "",
            report(data.get("protocol"), data.get("pipeline")), ""]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", default=str(BENCH / "out" / "results.json"))
    p.add_argument("--accuracy", default=None,
                   help="default: bench/accuracy.json, else bench/out/accuracy.json")
    p.add_argument("--out", default=str(BENCH / "RESULTS.md"))
    args = p.parse_args(argv)
    res = json.loads(Path(args.json).read_text(encoding="utf-8"))
    acc_path = Path(args.accuracy) if args.accuracy else next(
        (q for q in (BENCH / "accuracy.json", BENCH / "out" / "accuracy.json") if q.is_file()),
        BENCH / "accuracy.json")
    acc = json.loads(acc_path.read_text(encoding="utf-8")) if acc_path.is_file() else None
    Path(args.out).write_text(render(res, acc, acc_path), encoding="utf-8")
    print(text_table(res))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
