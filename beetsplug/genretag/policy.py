"""What the plugin decides, as pure functions: no beets I/O, no torch.

Which genres a prediction gives, whether they may replace the genres an item has,
how a prediction is stored in flexible attributes, and the summary line. The
plugin class in ``__init__.py`` only orchestrates these.
"""
from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from genretag.genre_names import fold_genre

if TYPE_CHECKING:
    from beets.library import Album, Item

    from .settings import Settings

Distribution = dict[str, float]
"""Probability of each model class (lower-case class name), in the model's class order."""

Group = tuple["Album | None", "list[Item]"]
"""Items classified together; with an album, it also gets their mean distribution."""

#: ``genretag_genre`` of an item whose audio is silent: analysed, no genre to hear.
SILENT = "silence"


def format_probs(probs: Distribution) -> str:
    """``"blues:0.12 classical:0.01 …"``: the distribution as one queryable string."""
    return " ".join(f"{genre}:{p:.2f}" for genre, p in probs.items())


#: One ``class:probability`` entry of :func:`format_probs`; a class name may hold spaces
#: (the ``lastfm`` tags: ``indie rock:0.81``), never a colon.
_PROB_ENTRY = re.compile(r"\s*([^:\s][^:]*?):(\d+(?:\.\d+)?)(?=\s|$)")


def parse_probs(text: str) -> Distribution:
    """Inverse of :func:`format_probs`; ``{}`` for empty or malformed text."""
    probs, pos, text = {}, 0, text.rstrip()
    while pos < len(text):
        entry = _PROB_ENTRY.match(text, pos)
        if entry is None:
            return {}
        probs[entry.group(1)] = float(entry.group(2))
        pos = entry.end()
    return probs


def pick_genres(probs: Distribution, *, count: int, min_confidence: float,
                genre_map: dict[str, str]) -> list[str]:
    """Display names of the ``count`` most probable classes that reach ``min_confidence``.

    A class mapped to an empty name is left out; names mapped together appear once;
    a class missing from ``genre_map`` keeps its own name.
    """
    best = sorted(probs.items(), key=lambda kv: -kv[1])[:count]
    names = [genre_map.get(genre, genre) for genre, p in best if p >= min_confidence]
    return list(dict.fromkeys(name for name in names if name))


def new_genres(current: list[str], pick: list[str], *, ours: list[str] | None,
               overwrite: bool) -> tuple[list[str], bool]:
    """The genres an object gets, and whether they are genretag's (``pick``) or ``current``.

    ``ours`` is what genretag set in ``genres`` last time (``None`` if it never set
    them). Genres genretag set follow the current prediction and settings, even when
    that removes them (``pick`` empty); empty genres take ``pick``; anyone else's
    genres are kept, unless ``overwrite`` and there is something to put instead.
    """
    if not current or (ours is not None and current == ours):
        return pick, True
    if overwrite and pick:
        return pick, True
    return current, False


def result_fields(probs: Distribution, model_id: str, genres_set: list[str] | None
                  ) -> dict[str, Any]:
    """The ``genretag_*`` flexible attributes describing one prediction.

    ``genres_set`` is what genretag put into ``genres`` (``None``: it left them
    alone), recorded so that a later run can tell its own genres from the user's.
    """
    genre, confidence = max(probs.items(), key=lambda kv: kv[1])
    return {"genretag_genre": genre, "genretag_confidence": round(confidence, 4),
            "genretag_model": model_id, "genretag_probs": format_probs(probs),
            "genretag_genres": list(genres_set or [])}


def silent_fields(model_id: str) -> dict[str, Any]:
    """The flexible attributes of an item analysed and found silent (no distribution)."""
    return {"genretag_genre": SILENT, "genretag_model": model_id}


def is_silent(result: Any) -> bool:
    """Whether a classification result means "analysed, the audio is silent": a
    ``TrackPrediction`` with ``silent`` set (a ``Failure`` never is)."""
    return bool(getattr(result, "silent", False))


def genretag_set(obj: Item | Album, settings: Settings) -> list[str] | None:
    """What genretag last put into ``obj.genres``, or ``None`` if it never did.

    Read from ``genretag_genres``; for objects tagged before that field existed,
    the pick of the stored distribution under the current settings.
    """
    if "genretag_genres" in obj:
        stored = list(obj["genretag_genres"])
        return stored or None
    probs = parse_probs(obj.get("genretag_probs", ""))
    return settings.pick(probs) or None if probs else None


def class_aliases(genre_map: dict[str, str]) -> dict[str, str]:
    """Folded display name -> model class, so that a stored display name counts as its
    class (``genre_map: {hiphop: Rap}``: ``Rap`` is ``hiphop``)."""
    return {fold_genre(name): cls for cls, name in genre_map.items() if name}


def user_genres(obj: Item | Album, settings: Settings) -> list[str]:
    """The genres of ``obj`` that someone else set (the user, the files, another plugin).

    ``[]`` when ``genres`` is empty or holds what genretag set itself.
    """
    current = list(obj.genres)
    ours = genretag_set(obj, settings)
    return [] if ours is not None and current == ours else current


def agrees(users: list[str], genre: str, aliases: dict[str, str],
           listed: list[str] = ()) -> bool | None:
    """Whether one of the user-set genres ``users`` is the predicted class ``genre`` or
    one of the genres the prediction ``listed`` (what genretag would store: several
    tags for ``lastfm``, their parents with ``canonical``).

    Names are mapped through ``aliases`` and compared folded (:func:`fold_genre`:
    ``Hip Hop`` is ``hiphop``, ``classical`` is a personal model's ``Classical``);
    ``None`` when there are no user-set genres to agree or disagree.
    """
    keys = {fold_genre(aliases.get(fold_genre(u), u)) for u in users if fold_genre(u)}
    predicted = {fold_genre(g) for g in (genre, *listed)}
    return bool(keys & predicted) if keys else None


def change_line(obj: Item | Album, old: list[str], new: list[str], confidence: float, *,
                predicted: str = "", why: str = "") -> str:
    """``artist - title: old genres → new genres (confidence)``; for an album, its artist.

    When the prediction is not among the new genres, ``predicted`` (its display name)
    and ``why`` say so: ``Pop → Pop (Rock 0.49; your genres kept)``.
    """
    from beets.library import Album, Item

    name = (f"{obj.albumartist} - {obj.album}" if isinstance(obj, Album)
            else f"{obj.artist} - {obj.title}")
    if not name.replace(" - ", "").strip() and isinstance(obj, Item):
        name = os.path.basename(obj.filepath)  # an untagged file: its name tells it apart
    before, after = ", ".join(old) or "(none)", ", ".join(new) or "(none)"
    note = f"{confidence:.2f}"
    if predicted and fold_genre(predicted) not in {fold_genre(g) for g in new}:
        note = f"{predicted} {note}" + (f"; {why}" if why else "")
    return f"{name}: {before} → {after} ({note})"


pretend_line = change_line


def stored_probs(obj: Item | Album, model_id: str) -> Distribution:
    """The distribution stored by this model version, or ``{}``."""
    if obj.get("genretag_model") != model_id:
        return {}
    return parse_probs(obj.get("genretag_probs", ""))


def needs_tagging(obj: Item | Album, model_id: str, *, force: bool) -> bool:
    """Whether ``obj`` still lacks a prediction from this model version."""
    return force or obj.get("genretag_model") != model_id


def album_distribution(items: list[Item], found: dict[int, Distribution],
                       model_id: str) -> Distribution | None:
    """Class-wise mean of the tracks' distributions, new (``found`` by id) or stored earlier."""
    dists = [d for d in (found.get(i.id) or stored_probs(i, model_id) for i in items) if d]
    if not dists:
        return None
    return {genre: sum(d.get(genre, 0.0) for d in dists) / len(dists) for genre in dists[0]}


def summary_line(counts: Counter[str], *, album: bool, pretend: bool,
                 interrupted: bool) -> str:
    """The one line a run ends with.

    ``genretag: 120 tagged, 4000 skipped, 1 failed`` then, when they apply,
    ``, 2 silent``, ``, 3 albums`` (with ``-a``), ``, 4 singletons left out (-a)``
    and ``, 50 not done (interrupted)``. ``counts`` keys: ``tagged``, ``skipped``,
    ``failed``, ``silent``, ``albums``, ``singletons``, ``todo`` (items this run
    set out to classify).
    """
    verb = "would be tagged" if pretend else "tagged"
    line = (f"genretag: {counts['tagged']} {verb}, {counts['skipped']} skipped, "
            f"{counts['failed']} failed")
    if counts["silent"]:
        line += f", {counts['silent']} silent"
    if album:
        line += f", {counts['albums']} albums"
    if counts["singletons"]:
        line += f", {counts['singletons']} singletons left out (-a)"
    if interrupted:
        left = counts["todo"] - counts["tagged"] - counts["failed"] - counts["silent"]
        line += f", {left} not done (interrupted)"
    return line


@dataclass(frozen=True)
class Options:
    """What one run does: the validated settings and the command-line choices."""

    settings: Settings
    write: bool
    pretend: bool = False
    force: bool = False

    @property
    def overwrite(self) -> bool:
        """Replace genres genretag did not set: ``overwrite``/``force`` option or ``--force``."""
        return self.force or self.settings.overwrite or self.settings.force

    def genres(self, probs: Distribution | None) -> list[str]:
        """The genres the settings pick from ``probs`` (``[]`` for none)."""
        return self.settings.pick(probs) if probs else []
