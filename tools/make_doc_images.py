"""Make the documentation's pictures from real clips with the shipped model.

    python tools/make_doc_images.py --gtzan DIR --emotify DIR [--out docs/img]

``DIR`` are the GTZAN and Emotify collections, each with an ``index.csv`` whose ``path`` and
``genre`` columns name a clip (relative to the directory) and its genre. Writes:

* ``timeline.png``: the full timeline (every 3-s slice) of one Emotify clip;
* ``timeline-gtzan.png``: the same for one GTZAN clip;
* ``overview.png``: the library overview of 40 clips (five per Emotify genre, two per GTZAN
  genre, drawn with a fixed seed), classified as ``beet genretag`` does (at most ten spread
  slices), with each collection's label standing in for the user-set genre.

Note that the shipped genre head was trained on these clips (both collections), so the
agreement it shows is optimistic.
"""
from __future__ import annotations

import argparse
import csv
import json
import random
from pathlib import Path

from genretag import classify_file, load_model
from genretag.plots import format_overview, library_overview, plot_overview, plot_timeline

REPO = Path(__file__).resolve().parent.parent


def read_index(directory: Path) -> list[tuple[Path, str]]:
    """``(clip path, genre)`` for every row of ``directory/index.csv``, in file order."""
    with open(directory / "index.csv", newline="", encoding="utf-8") as f:
        return [(directory / row["path"], row["genre"]) for row in csv.DictReader(f)]


def pick(clips: list[tuple[Path, str]], per_genre: int, rng: random.Random
         ) -> list[tuple[Path, str]]:
    """``per_genre`` clips of every genre, drawn with ``rng``, in genre order."""
    out = []
    for genre in sorted({g for _, g in clips}):
        out += rng.sample([c for c in clips if c[1] == genre], per_genre)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gtzan", type=Path, required=True)
    parser.add_argument("--emotify", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img")
    parser.add_argument("--timeline-emotify", default="rock/1.opus",
                        help="clip for timeline.png, relative to --emotify")
    parser.add_argument("--timeline-gtzan", default="jazz/jazz.00003.flac",
                        help="clip for timeline-gtzan.png, relative to --gtzan")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--cache", type=Path,
                        help="JSON file keeping the overview clips' (genre, confidence) "
                             "between runs, to redraw without classifying again")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    model = load_model()

    for clip, name in ((args.emotify / args.timeline_emotify, "timeline.png"),
                       (args.gtzan / args.timeline_gtzan, "timeline-gtzan.png")):
        pred = classify_file(clip, model, max_slices=None)
        out = plot_timeline(pred, args.out / name, title=f"{clip.parent.name}/{clip.name}")
        print(f"{out}: {pred.genre} {pred.confidence:.2f}, {len(pred.timeline)} slices")

    rng = random.Random(args.seed)
    clips = (pick(read_index(args.emotify), 5, rng) + pick(read_index(args.gtzan), 2, rng))
    cache = json.loads(args.cache.read_text()) if args.cache and args.cache.exists() else {}
    for path, _ in clips:
        if str(path) not in cache:
            pred = classify_file(path, model)
            cache[str(path)] = [pred.genre, pred.confidence]
    if args.cache:
        args.cache.write_text(json.dumps(cache, indent=1))
    overview = library_overview(
        [(*cache[str(path)], [label]) for path, label in clips], classes=model.classes)
    labels = [f"{path.parent.parent.name}/{path.parent.name}/{path.name}" for path, _ in clips]
    print(format_overview(overview, labels=labels))
    out = plot_overview(overview, args.out / "overview.png",
                        title=f"Library overview: {len(clips)} clips (Emotify and GTZAN; "
                              f"their labels as the user-set genres)")
    print(out)


if __name__ == "__main__":
    main()
