"""genretag: tag music files' genres from their audio.

Exit status: 0 when every file worked, 1 when some failed, 2 on usage errors.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from . import defaults


def walk(paths: list[str]) -> list[str]:
    """Files named on the command line, plus the audio files under named directories.

    Hidden files and directories (``.name``, macOS ``._name``, genretag's own
    ``.genretag-tmp.*``) are skipped in a walk, as beets skips them on import.
    """
    from .audio import AUDIO_EXTENSIONS

    out = []
    for p in paths:
        if os.path.isdir(p):
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                out += [os.path.join(root, f) for f in sorted(files)
                        if not f.startswith(".")
                        and os.path.splitext(f)[1].lower() in AUDIO_EXTENSIONS]
        else:
            out.append(p)
    return out


def format_row(pred, top: int, width: int = 10) -> str:
    """``genre confidence path [runners-up]``, columns aligned for genres up to ``width``."""
    if pred.silent:
        return f"{'(silent)':<{width}} {'':>5}  {pred.path}"
    others = "  ".join(f"{g} {p:.2f}" for g, p in pred.top(top)[1:])
    note = "  (shorter than one slice: padded)" if pred.padded else ""
    if pred.multi_label:
        note += f"  genres: {', '.join(pred.genres) or '(none above threshold)'}"
    return (f"{pred.genre:<{width}} {pred.confidence:5.2f}  {pred.path}"
            + (f"  [{others}]" if others else "") + note)


def format_timeline(pred) -> str:
    if pred.silent:
        return f"{pred.path}: (silent)"
    lines = [f"{pred.path}: {pred.genre} {pred.confidence:.2f}"]
    width = max((len(s.genre) for s in pred.timeline), default=10)
    for s in pred.timeline:
        bar = "#" * int(round(s.confidence * 20))
        lines.append(f"  {_clock(s.start_s)}-{_clock(s.end_s)}  {s.genre:<{width}} "
                     f"{s.confidence:4.2f} {bar}")
    return "\n".join(lines)


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


def cmd_classify(args) -> int:
    from .errors import GenretagError
    from .model import read_card, model_dir
    from .workers import classify_parallel

    if args.ray is not None or args.out or args.manifest:
        return _classify_on_ray(args)
    if not args.paths:
        print("genretag classify: give at least one PATH", file=sys.stderr)
        return 2
    files = walk(args.paths)
    if not files:
        print("genretag: no audio files found", file=sys.stderr)
        return 1
    try:
        classes = read_card(model_dir(args.weights, vocabulary=args.vocabulary))["classes"]
        max_slices = None if (args.timeline or args.all_slices) else args.max_slices
        results = classify_parallel(files, jobs=args.jobs or os.cpu_count() or 1,
                                    weights_dir=args.weights,
                                    vocabulary=args.vocabulary, max_slices=max_slices,
                                    adaptive=not args.fixed_slices, timeout_s=args.timeout,
                                    precision=args.precision,
                                    cache_path=_cache_path(args))
        plots = None
        if args.plot:
            from .plots import plot_paths

            plots = plot_paths(args.plot, files)
        return _print_results(results, args, width=max(map(len, classes)), plots=plots)
    except GenretagError as exc:
        print(f"genretag: {exc}", file=sys.stderr)
        return 1


def _classify_on_ray(args) -> int:
    """``--ray``: the same classification as a Ray Data job into a Parquet dataset."""
    if args.ray is not None and args.ray not in ("local", "auto") and ":" not in args.ray:
        args.paths.insert(0, args.ray)  # `--ray /music`: a path, not an address
        args.ray = "local"
    if args.ray is None or not args.out:
        print("genretag classify: --out and --manifest go with --ray, and --ray needs --out DIR",
              file=sys.stderr)
        return 2
    if not args.paths and not args.manifest:
        print("genretag classify: give PATHs or --manifest FILE", file=sys.stderr)
        return 2
    if args.json or args.timeline or args.top != 1 or args.plot:
        print("genretag classify: --ray writes its results to --out; --json, --timeline, "
              "--plot and --top do not apply", file=sys.stderr)
        return 2
    from .archive import run_job

    return run_job(args.paths, manifest=args.manifest, out_dir=args.out,
                   address=None if args.ray == "local" else args.ray, jobs=args.jobs,
                   weights_dir=args.weights, vocabulary=args.vocabulary,
                   precision=args.precision,
                   max_slices=None if args.all_slices else args.max_slices,
                   adaptive=not args.fixed_slices, log=_log)


def _cache_path(args) -> str | None:
    """The embedding cache to use: ``--cache``, ``$GENRETAG_CACHE``, the user cache dir."""
    if args.no_cache:
        return None
    if args.cache:
        return args.cache
    from .cache import default_cache_path

    return os.environ.get("GENRETAG_CACHE") or str(default_cache_path())


def _print_results(results, args, *, width: int, plots=None) -> int:
    from .result import Failure

    failed = 0
    for i, result in enumerate(results):
        if isinstance(result, Failure):
            failed += 1
            print(f"genretag: {result.path}: {result.error}", file=sys.stderr)
            if args.json:
                print(json.dumps(result.to_dict(), ensure_ascii=False), flush=True)
            continue
        if result.silent:
            print(f"genretag: {result.path}: silent (peak below -80 dBFS): no genre",
                  file=sys.stderr)
        if args.json:
            print(json.dumps(result.to_dict(timeline=args.timeline), ensure_ascii=False),
                  flush=True)
        elif args.timeline:
            print(format_timeline(result), flush=True)
        else:
            print(format_row(result, args.top, width), flush=True)
        if plots and not result.silent:
            from .plots import plot_timeline

            plot_timeline(result, plots[i])
            print(f"genretag: {result.path}: timeline drawn in {plots[i]}", file=sys.stderr)
    return 1 if failed else 0


def cmd_evaluate(args) -> int:
    from .collections import GENRES
    from .metrics import format_report
    from .training import Recipe, evaluate_recipe

    result = evaluate_recipe([Path(d) for d in args.data], cache_dir=_training_cache(args),
                             backbone=args.backbone, recipe=Recipe(), log=_log)
    for name, m in result["protocol"]["parts"].items():
        print(format_report(name, m, list(GENRES)))
    calib = result["calibration"]
    print(f"mean of (a), (b), (c): {result['protocol']['mean']:.3f}  "
          f"[a {result['protocol']['a']:.3f}, b {result['protocol']['b']:.3f}, "
          f"c {result['protocol']['c']:.3f}]")
    print(f"temperature {calib['temperature']}: ECE {calib['ece_uncalibrated']:.3f} -> "
          f"{calib['ece_calibrated']:.3f}; min_confidence {calib['min_confidence']} keeps "
          f"{calib['coverage_at_min_confidence']:.0%} of held-out tracks at precision "
          f"{calib['precision_at_min_confidence']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0


def cmd_train(args) -> int:
    from .training import Recipe, train

    reference = json.loads(Path(args.reference_metrics).read_text(encoding="utf-8")) \
        if args.reference_metrics else None
    command = ("genretag train " + " ".join(f"--data {Path(d).name.upper()}_DIR"
                                            for d in args.data)
               + f" --version {args.version} --out DIR"
               + (" --reference-metrics FILE" if reference else "")
               + (" --no-evaluate" if args.no_evaluate else ""))
    card = train([Path(d) for d in args.data], Path(args.out), cache_dir=_training_cache(args),
                 backbone=args.backbone, recipe=Recipe(), version=args.version,
                 evaluate=not args.no_evaluate, reference_metrics=reference, command=command,
                 log=_log)
    print(f"wrote {args.out}: {card['model_id']}/{card['version']} "
          f"({card['files'][0]['path']} sha256 {card['files'][0]['sha256']})")
    return 0


def cmd_learn(args) -> int:
    from .learning import learn_from_csv

    return learn_from_csv(args.labels, args.out, min_examples=args.min_examples,
                          folds=args.folds, jobs=args.jobs or os.cpu_count() or 1,
                          cache=_cache_path(args), max_slices=args.max_slices)


def cmd_calibrate_tags(args) -> int:
    from .tag_calibration import calibrate_tags

    card = calibrate_tags(args.out, gtzan_dir=args.gtzan, emotify_dir=args.emotify,
                          cache_dir=args.cache, log=_log)
    print(f"wrote {args.out}: {card['model_id']}/{card['version']}")
    return 0


def _training_cache(args) -> Path:
    if args.cache:
        return Path(args.cache).expanduser()
    from .cache import default_cache_path
    return default_cache_path().parent / "training"


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .model import VOCABULARIES

    parser = argparse.ArgumentParser(prog="genretag", description=__doc__.splitlines()[0],
                                     epilog=__doc__.splitlines()[2])
    parser.add_argument("--version", action="version", version=f"genretag {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    c = sub.add_parser("classify", help="print the genre of audio files")
    c.add_argument("paths", nargs="*", metavar="PATH", help="audio files or directories")
    c.add_argument("--json", action="store_true", help="one JSON object per line per file")
    c.add_argument("--top", type=_positive, default=1, metavar="K",
                   help="also show the K most probable genres (default 1)")
    c.add_argument("--timeline", action="store_true",
                   help="analyse every slice and show the genre over time")
    c.add_argument("--plot", metavar="OUT.png",
                   help="draw each track's genre over time (with --timeline: every slice) into "
                        "OUT.png; with several files OUT-<file name>.png each, beside OUT "
                        "(needs matplotlib: pip install 'genretag[plots]')")
    _add_analysis_options(c, max_slices="slices analysed per track at most, spread over it "
                          f"(default {defaults.MAX_SLICES}); the analysis stops early once the "
                          "genre is clear (see --fixed-slices)",
                          cache="embedding cache: a file analysed once is classified again, "
                          "with any vocabulary, without decoding (default: $GENRETAG_CACHE, "
                          "else genretag/embeddings.sqlite in the user cache directory)",
                          no_cache="neither read nor write the cache")
    c.add_argument("--fixed-slices", action="store_true",
                   help="always analyse all --max-slices slices, even when the first ones "
                        "already decide the genre (slower; multi-label vocabularies always do)")
    c.add_argument("--all-slices", action="store_true", help="analyse every slice of every track")
    c.add_argument("--vocabulary", choices=sorted(VOCABULARIES), default=None,
                   help="genres: the trained genre head (default); lastfm: the backbone's "
                        "Last.fm genre tags, several per track")
    c.add_argument("--weights", metavar="DIR",
                   help="a model directory instead of a shipped vocabulary (e.g. one made by "
                        "genretag learn); $GENRETAG_WEIGHTS moves the shipped weights")
    c.add_argument("--precision", choices=defaults.PRECISIONS, default=defaults.PRECISION,
                   help=f"network arithmetic (default {defaults.PRECISION}); auto = bfloat16 on "
                        "CPUs that have it natively, same genre on >99%% of clips")
    c.add_argument("-j", "--jobs", type=_positive, default=None, metavar="N",
                   help="worker processes, one core each (default: all cores; with --ray, "
                        "every CPU of the Ray instance)")
    c.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="run as a Ray Data job writing Parquet to --out: on a local Ray "
                        "instance, or on the cluster at ADDRESS ('auto', HOST:PORT); needs "
                        "pip install 'genretag[ray]' (docs/scale.md)")
    c.add_argument("--out", metavar="DIR",
                   help="with --ray: the Parquet dataset to write; a rerun skips the paths "
                        "already in it")
    c.add_argument("--manifest", metavar="FILE",
                   help="with --ray: also classify the paths in FILE, one per line ('-': "
                        "standard input)")
    c.add_argument("--timeout", type=_positive_seconds, default=defaults.TIMEOUT_S, metavar="S",
                   help="give up on a file after S seconds of work "
                        f"(default {defaults.TIMEOUT_S:g})")
    c.set_defaults(func=cmd_classify)

    le = sub.add_parser("learn", help="learn a personal genre model from labelled files")
    le.add_argument("--labels", required=True, metavar="LABELS.csv",
                    help="CSV with the header path,genre (optionally artist, which groups the "
                         "cross-validation folds); paths relative to its folder or absolute; "
                         "several genres in one cell separated by ';'")
    le.add_argument("--out", required=True, metavar="DIR",
                    help="model directory to write (a previous model there is replaced "
                         "atomically); tag with it: genretag classify --weights DIR")
    le.add_argument("--min-examples", type=_positive, default=10, metavar="N",
                    help="genres with fewer examples are left out (default 10)")
    le.add_argument("--folds", type=_at_least_two, default=5, metavar="K",
                    help="cross-validation folds (default 5)")
    _add_analysis_options(le, max_slices=f"slices analysed per track (default "
                          f"{defaults.MAX_SLICES})",
                          cache="embedding cache (default as for classify): files analysed "
                          "before are not decoded again",
                          no_cache="analyse every file afresh")
    le.add_argument("-j", "--jobs", type=_positive, default=None, metavar="N",
                    help="threads for the analysis (default: all cores)")
    le.set_defaults(func=cmd_learn)

    for name, func, help_ in (
            ("evaluate", cmd_evaluate, "cross-collection protocol and calibration of the "
                                       "training recipe on labelled collections"),
            ("train", cmd_train, "train the genre head and write a model directory")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--data", required=True, action="append", metavar="DIR",
                       help="a labelled collection (folder with index.csv: path, genre and "
                            "artist or split); repeat for each collection")
        p.add_argument("--cache", metavar="DIR",
                       help="slice-embedding cache (default: genretag/training in the user "
                            "cache directory)")
        p.add_argument("--backbone", metavar="FILE",
                       help="converted backbone .safetensors (default: the shipped one)")
        p.set_defaults(func=func)
    sub.choices["evaluate"].add_argument("--json", metavar="FILE", help="write all metrics here")
    tr = sub.choices["train"]
    tr.add_argument("--out", required=True, metavar="DIR", help="model directory to write")
    tr.add_argument("--version", default="2.0.0")
    tr.add_argument("--reference-metrics", metavar="FILE",
                    help="JSON put in the card as it is (e.g. the previous model on the "
                         "same protocol)")
    tr.add_argument("--no-evaluate", action="store_true",
                    help="skip the protocol, calibration and abstention (temperature 1, "
                         "min_confidence 0)")
    ct = sub.add_parser("calibrate-tags",
                        help="fit the lastfm vocabulary's calibration on labelled collections")
    ct.add_argument("--gtzan", metavar="DIR", help="GTZAN clips (folder with index.csv)")
    ct.add_argument("--emotify", metavar="DIR", help="Emotify clips (folder with index.csv)")
    ct.add_argument("--out", required=True, metavar="DIR", help="model directory to write")
    ct.add_argument("--cache", metavar="DIR", help="keep the clips' tag logits here for reruns")
    ct.set_defaults(func=cmd_calibrate_tags)
    return parser


def _add_analysis_options(parser: argparse.ArgumentParser, *, max_slices: str, cache: str,
                          no_cache: str) -> None:
    """``--max-slices``, ``--cache`` and ``--no-cache``: how a command analyses files."""
    parser.add_argument("--max-slices", type=_positive, default=defaults.MAX_SLICES,
                        metavar="N", help=max_slices)
    parser.add_argument("--cache", metavar="FILE", help=cache)
    parser.add_argument("--no-cache", action="store_true", help=no_cache)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _at_least_two(text: str) -> int:
    value = _positive(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"must be at least 2, got {value}")
    return value


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 some files failed, 2 usage)."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:
        # The reader went away (``genretag classify ... | head -1``): stop quietly, and
        # point stdout at /dev/null so Python's own flush at exit does not complain.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
