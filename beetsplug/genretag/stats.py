"""``beet genretag --stats``: what the predictions in a library look like.

Reads only the stored fields (no audio, no torch): the predicted-genre distribution,
a confidence histogram, the agreement between user-set genres and predictions, and
the doubtful items. The summarising, printing and drawing are
:func:`genretag.plots.library_overview`, ``format_overview`` and ``plot_overview``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .policy import SILENT, class_aliases, parse_probs, user_genres

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

    from beets.library import Item

    from genretag.plots import Overview, Row

    from .settings import Settings

#: A prediction at least this confident that disagrees with user-set genres is doubtful.
DOUBT_THRESHOLD = 0.7


def overview_rows(items: Iterable[Item], settings: Settings) -> tuple[list[Row], list[str]]:
    """One :data:`genretag.plots.Row` and one ``artist - title`` label per item.

    Items without a prediction (not tagged yet, silent) have genre and confidence
    ``None``; user-set genres are those genretag did not set (:func:`user_genres`); the
    genres a prediction lists are what ``settings`` pick from its stored distribution.
    """
    rows, labels = [], []
    for item in items:
        genre = item.get("genretag_genre")
        confidence = item.get("genretag_confidence")
        if not item.get("genretag_model") or genre == SILENT or confidence is None:
            genre = confidence = None
        listed = settings.pick(parse_probs(item.get("genretag_probs", ""))) if genre else []
        rows.append((genre, confidence, user_genres(item, settings), listed))
        labels.append(f"{item.artist} - {item.title}")
    return rows, labels


def library_stats(items: Iterable[Item], settings: Settings, classes: list[str] | None
                  ) -> tuple[Overview, list[str]]:
    """The overview of ``items`` and the labels of its rows."""
    from genretag.plots import library_overview

    rows, labels = overview_rows(items, settings)
    overview = library_overview(rows, classes=classes, threshold=DOUBT_THRESHOLD,
                                aliases=class_aliases(settings.genre_map))
    return overview, labels


def report(overview: Overview, labels: list[str]) -> str:
    """The overview as text for the terminal (doubtful items most confident first)."""
    from genretag.plots import format_overview

    return format_overview(overview, labels=labels)


def draw(overview: Overview, out: Path, title: str) -> Path:
    """The overview as a PNG at ``out`` (matplotlib, imported only here)."""
    from genretag.plots import plot_overview

    return plot_overview(overview, out, title=title)
