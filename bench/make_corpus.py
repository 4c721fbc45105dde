"""Generate the benchmark corpus (never committed: bench/corpus/ is git-ignored).

    python bench/make_corpus.py [--out bench/corpus] [--n 40] [--seed 0] [--jobs 2]

Writes ``tracks/``: ``--n`` files of 3-4 minutes, 44.1 kHz stereo, spread evenly over
MP3 (192 kb/s), FLAC, M4A/AAC (160 kb/s) and Opus (128 kb/s); and ``long/``: one
2-hour MP3 (192 kb/s), encoded in a streaming loop so the generator never holds more
than one 30-s clip in memory.

Source audio: when the GTZAN clips exist beside the repository
(``../shared/data/gtzan/index.csv``, or ``--gtzan DIR``), each track is made of
clips of one genre (22.05 kHz clips only) placed end to end with a short
cross-fade, looped when the genre has too few clips, resampled to 44.1 kHz and
given a slightly decorrelated second channel; the 2-hour file walks through
clips of every genre, like a long mix. Otherwise (or with ``--synth``) the
music-like signal of :func:`genretag.synthetic.synth_music` is used.

Files already present are kept (delete the folder, or pass ``--force``, to rebuild);
each file is written under a temporary name and renamed when complete, and
``manifest.json`` records what every file is made of.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RATE = 44100
FORMATS = (".mp3", ".flac", ".m4a", ".opus")
BIT_RATES = {".mp3": 192_000, ".m4a": 160_000, ".opus": 128_000, ".flac": None}
LONG_SECONDS = 2 * 3600
CROSSFADE_S = 0.05


# ---------------------------------------------------------------- source audio

def default_gtzan() -> Path:
    return REPO.parent / "shared" / "data" / "gtzan"


def gtzan_clips(root: Path) -> dict[str, list[str]]:
    """Relative clip paths per genre, 22.05 kHz clips only, sorted."""
    by_genre: dict[str, list[str]] = {}
    with open(root / "index.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if int(float(row["sample_rate"])) == 22050 and (root / row["path"]).is_file():
                by_genre.setdefault(row["genre"], []).append(row["path"])
    return {g: sorted(v) for g, v in sorted(by_genre.items())}


def load_clip(path: Path) -> np.ndarray:
    """A GTZAN clip as stereo float32 at 44.1 kHz, ``[2, n]``, peak-normalised to 0.8."""
    import soundfile as sf
    from scipy.signal import resample_poly

    mono, rate = sf.read(str(path), dtype="float32", always_2d=True)
    mono = mono.mean(axis=1)
    g = np.gcd(rate, RATE)
    mono = resample_poly(mono, RATE // g, rate // g).astype(np.float32)
    mono *= 0.8 / max(1e-6, float(np.abs(mono).max()))
    delay = 17  # ~0.4 ms: the channels differ, as in a real stereo mix
    right = np.concatenate([np.zeros(delay, np.float32), mono[:-delay]]) * 0.9
    return np.stack([mono, right])


def crossfade_concat(parts: list[np.ndarray], n_total: int) -> np.ndarray:
    """Place ``[2, n]`` parts end to end with a linear cross-fade, cut to ``n_total``."""
    fade = int(CROSSFADE_S * RATE)
    ramp = np.linspace(0, 1, fade, dtype=np.float32)
    out = np.zeros((2, n_total), np.float32)
    pos = 0
    for part in parts:
        if pos >= n_total:
            break
        n = min(part.shape[1], n_total - pos)
        head = part[:, :n].copy()
        if pos > 0:
            m = min(fade, n)
            head[:, :m] *= ramp[:m]
            out[:, pos:pos + m] *= ramp[::-1][:m]
        out[:, pos:pos + n] += head
        pos += n - fade
    return out


def track_audio(spec: dict, gtzan: Path | None) -> np.ndarray:
    """The stereo 44.1 kHz signal of one corpus track described by ``spec``."""
    n_total = int(round(spec["duration_s"] * RATE))
    if spec["source"] == "synth":
        from genretag.synthetic import synth_music
        return synth_music(spec["duration_s"], RATE, seed=spec["synth_seed"], channels=2)
    parts, have = [], 0
    for rel in _cycle(spec["clips"]):
        clip = load_clip(gtzan / rel)
        parts.append(clip)
        have += clip.shape[1] - int(CROSSFADE_S * RATE)
        if have >= n_total:
            break
    return crossfade_concat(parts, n_total)


def _cycle(items):
    while True:
        yield from items


# ---------------------------------------------------------------- writing

def write_track(spec: dict, out_dir: str, gtzan: str | None) -> dict:
    from genretag.encode import write

    path = Path(out_dir) / spec["file"]
    t0 = time.perf_counter()
    audio = track_audio(spec, Path(gtzan) if gtzan else None)
    tmp = path.with_name(".tmp-" + path.name)
    write(audio, RATE, tmp, bit_rate=BIT_RATES[path.suffix])
    os.replace(tmp, path)
    return {**spec, "bytes": path.stat().st_size, "seconds_to_make": time.perf_counter() - t0}


def write_long(spec: dict, out_dir: str, gtzan: str | None) -> dict:
    """Encode the 2-hour file block by block with PyAV (memory: one clip at a time)."""
    import av

    from genretag.encode import FORMATS as CODECS

    path = Path(out_dir) / spec["file"]
    tmp = path.with_name(".tmp-" + path.name)
    fmt, codec, _ = CODECS[path.suffix]
    n_total = int(round(spec["duration_s"] * RATE))
    t0 = time.perf_counter()
    written = 0
    with av.open(str(tmp), mode="w", format=fmt) as container:
        stream = container.add_stream(codec, rate=RATE, layout="stereo")
        stream.bit_rate = BIT_RATES[path.suffix]
        resampler = av.AudioResampler(format=stream.codec_context.format.name, layout="stereo",
                                      rate=RATE)

        def feed(block: np.ndarray) -> None:
            for i in range(0, block.shape[1], 4096):
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block[:, i:i + 4096]),
                                                   format="fltp", layout="stereo")
                frame.sample_rate = RATE
                for out in resampler.resample(frame):
                    container.mux(stream.encode(out))

        for k, block in enumerate(_long_blocks(spec, Path(gtzan) if gtzan else None)):
            block = block[:, :n_total - written]
            feed(block)
            written += block.shape[1]
            if written >= n_total:
                break
        for out in resampler.resample(None):
            container.mux(stream.encode(out))
        container.mux(stream.encode(None))
    os.replace(tmp, path)
    return {**spec, "bytes": path.stat().st_size, "seconds_to_make": time.perf_counter() - t0}


def _long_blocks(spec: dict, gtzan: Path | None):
    """30-s stereo blocks for the long file, cross-faded one into the next."""
    fade = int(CROSSFADE_S * RATE)
    ramp = np.linspace(0, 1, fade, dtype=np.float32)
    tail = None
    k = 0
    while True:
        if spec["source"] == "synth":
            from genretag.synthetic import synth_music
            block = synth_music(30.0, RATE, seed=spec["synth_seed"] + k, channels=2)
        else:
            block = load_clip(gtzan / spec["clips"][k % len(spec["clips"])])
        k += 1
        if tail is not None:
            block[:, :fade] = block[:, :fade] * ramp + tail * ramp[::-1]
        tail = block[:, -fade:].copy()
        yield block[:, :-fade]


# ---------------------------------------------------------------- plan

def plan(n: int, seed: int, gtzan: Path | None) -> tuple[list[dict], dict]:
    """What every file is made of; deterministic for a given ``n``, ``seed`` and source."""
    rng = np.random.default_rng(seed)
    clips = gtzan_clips(gtzan) if gtzan else {}
    genres = list(clips)
    tracks = []
    for i in range(n):
        # every genre in every format, formats evenly spread
        ext = FORMATS[(i + i // max(1, len(genres))) % len(FORMATS)]
        duration = float(np.round(rng.uniform(180.0, 240.0), 2))
        spec = {"file": f"track{i:03d}{ext}", "duration_s": duration, "format": ext[1:]}
        if genres:
            genre = genres[i % len(genres)]
            pool = list(clips[genre])
            rng.shuffle(pool)
            spec.update(source="gtzan", genre=genre, clips=pool[:8])
        else:
            spec.update(source="synth", synth_seed=int(seed * 100_000 + i))
        tracks.append(spec)
    long = {"file": "long_2h.mp3", "duration_s": float(LONG_SECONDS), "format": "mp3"}
    if genres:
        everything = [c for g in genres for c in clips[g]]
        np.random.default_rng([seed, 1]).shuffle(everything)  # independent of --n
        long.update(source="gtzan", genre="mixed", clips=everything)
    else:
        long.update(source="synth", synth_seed=int(seed * 100_000 + 50_000))
    return tracks, long


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(BENCH / "corpus"))
    p.add_argument("--n", type=int, default=40, help="3-4 minute tracks (default 40)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gtzan", default=None, help="GTZAN folder (default ../shared/data/gtzan)")
    p.add_argument("--synth", action="store_true", help="use synthetic music even if GTZAN exists")
    p.add_argument("--no-long", action="store_true", help="skip the 2-hour file")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--force", action="store_true", help="rewrite files that exist")
    args = p.parse_args(argv)
    if args.n < 1:
        p.error("--n must be at least 1")

    gtzan = None if args.synth else Path(args.gtzan) if args.gtzan else default_gtzan()
    if gtzan is not None and not (gtzan / "index.csv").is_file():
        if args.gtzan:
            p.error(f"{gtzan}: no index.csv")
        gtzan = None
    tracks, long = plan(args.n, args.seed, gtzan)
    out = Path(args.out)
    (out / "tracks").mkdir(parents=True, exist_ok=True)
    (out / "long").mkdir(parents=True, exist_ok=True)
    for stale in list((out / "tracks").glob("*")) + list((out / "long").glob("*")):
        if stale.name.startswith(".tmp-") or (stale.parent.name == "tracks" and stale.name
                                             not in {t["file"] for t in tracks}):
            stale.unlink()  # an interrupted run, or a bigger --n before

    manifest_path = out / "manifest.json"
    old = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    old_files = {f["file"]: f for f in old.get("tracks", []) + old.get("long", [])}

    def up_to_date(spec: dict, folder: Path) -> bool:
        before = old_files.get(spec["file"], {})
        return (folder / spec["file"]).is_file() and all(before.get(k) == v
                                                         for k, v in spec.items())

    jobs = [(write_long, long, str(out / "long"))] if not args.no_long else []
    jobs += [(write_track, t, str(out / "tracks")) for t in tracks]
    todo = [j for j in jobs if args.force or not up_to_date(j[1], Path(j[2]))]
    source = f"GTZAN clips from {gtzan}" if gtzan else "genretag.synthetic.synth_music"
    print(f"corpus in {out}: {len(tracks)} tracks + {0 if args.no_long else 1} long file from "
          f"{source}; {len(jobs) - len(todo)} already there, writing {len(todo)}", flush=True)
    t0 = time.perf_counter()
    made = {}
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [(j[1]["file"], pool.submit(j[0], j[1], j[2], str(gtzan) if gtzan else None))
                   for j in todo]
        for name, fut in futures:
            made[name] = fut.result()
            print(f"  {name}: {made[name]['bytes'] / 1e6:.1f} MB in "
                  f"{made[name]['seconds_to_make']:.1f} s", flush=True)

    entries = [made.get(s["file"]) or old_files.get(s["file"]) or s for s in tracks]
    long_entries = [] if args.no_long else [made.get(long["file"]) or old_files.get(long["file"])
                                            or long]
    manifest = {"seed": args.seed, "n": args.n, "source": "gtzan" if gtzan else "synth",
                "sample_rate": RATE, "channels": 2,
                "bit_rates": {k[1:]: v for k, v in BIT_RATES.items()},
                "tracks": entries, "long": long_entries}
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    print(f"done in {time.perf_counter() - t0:.0f} s; manifest: {manifest_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
