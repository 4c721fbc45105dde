"""Labelled collections: clips with their genre, collection and artist group.

A collection is a directory with an ``index.csv``. Two layouts are read:

- GTZAN (artist-filtered split): ``path, genre, split, ...`` with ``split`` in
  ``train``/``valid``. GTZAN carries no artist column; the split itself is
  artist-disjoint (Kereliuk, Sturm & Larsen 2015), so a clip's group is
  ``(genre, split)``: two clips of one artist always share a group.
- Emotify (Magnatune): ``path, genre, artist, ...``; the group is the artist
  (an artist filed under two genres is still one group).

Genre keys are lower case. The collection's name is its directory name, lower-cased.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from .errors import GenretagError

#: The genre vocabulary of the cross-collection model (lower-case keys, sorted).
GENRES = ("blues", "classical", "country", "disco", "electronic", "hiphop", "jazz", "metal",
          "pop", "reggae", "rock")


class CollectionError(GenretagError):
    """A labelled collection cannot be read; the message names the file and the reason."""


@dataclass(frozen=True)
class Clip:
    """One labelled clip of a collection."""

    path: Path        #: audio file
    relpath: str      #: path as listed in the index (relative to the collection)
    genre: str
    collection: str
    group: str        #: artist group: clips sharing it never go to different folds
    split: str = ""   #: GTZAN's split, "" elsewhere
    artist: str = ""  #: the artist where the index gives one


def load_collection(data_dir: str | Path, *, genres: tuple[str, ...] = GENRES) -> list[Clip]:
    """Clips of the collection in ``data_dir`` whose genre is in ``genres``, in index order.

    Raises :class:`CollectionError` when ``index.csv`` is missing or lacks ``path`` and
    ``genre``, or has neither ``artist`` nor ``split`` to group clips by.
    """
    data_dir = Path(data_dir)
    index = data_dir / "index.csv"
    name = data_dir.resolve().name.lower()
    try:
        with open(index, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise CollectionError(f"{index}: cannot read the collection index ({exc.strerror})") \
            from None
    columns = set(rows[0]) if rows else set()
    if not {"path", "genre"} <= columns or not columns & {"artist", "split"}:
        raise CollectionError(f"{index}: needs columns path, genre and artist or split "
                              f"(has {', '.join(sorted(columns)) or 'none'})")
    clips = []
    for row in rows:
        genre = row["genre"].strip().lower()
        if genre not in genres:
            continue
        artist = (row.get("artist") or "").strip()
        split = (row.get("split") or "").strip()
        group = f"{name}:artist:{artist}" if artist else f"{name}:{genre}:{split}"
        clips.append(Clip(path=data_dir / row["path"], relpath=row["path"], genre=genre,
                          collection=name, group=group, split=split, artist=artist))
    if not clips:
        raise CollectionError(f"{index}: no clip of the genres {', '.join(genres)}")
    return clips


def group_folds(clips: list[Clip], n_folds: int = 5) -> list[int]:
    """A fold number per clip such that no group is split between folds.

    Deterministic greedy balancing: groups in decreasing size (ties by name) each go to
    the fold holding the fewest clips of the group's most frequent genre (ties: the
    fewest clips overall, then the lowest fold number).
    """
    by_group: dict[str, list[int]] = {}
    for i, c in enumerate(clips):
        by_group.setdefault(c.group, []).append(i)
    genres = sorted({c.genre for c in clips})
    counts = [[0] * len(genres) for _ in range(n_folds)]
    fold = [0] * len(clips)
    for group in sorted(by_group, key=lambda g: (-len(by_group[g]), g)):
        members = by_group[group]
        per_genre = [sum(clips[i].genre == g for i in members) for g in genres]
        main = max(range(len(genres)), key=lambda k: (per_genre[k], -k))
        f = min(range(n_folds), key=lambda f: (counts[f][main], sum(counts[f]), f))
        for k, n in enumerate(per_genre):
            counts[f][k] += n
        for i in members:
            fold[i] = f
    return fold
