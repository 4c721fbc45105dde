"""How genre names are compared: spelling variants folded to one key.

``"Hip Hop"``, ``"hip-hop"`` and ``"HipHop"`` are one genre; so are ``"R&B"`` and
``"rnb"``. Learning (:mod:`genretag.learning`), the library overview
(:func:`genretag.plots.library_overview`) and the beets plugin's agreement check all
compare names through :func:`fold_genre`. Pure Python: cheap to import.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Mapping

#: Folded spellings that name the same genre as another folded spelling.
_ALIASES = {
    "rnb": "randb",
    "rhythmandblues": "randb",
    "dnb": "drumandbass",
}


def _fold(name: str) -> str:
    text = unicodedata.normalize("NFKD", str(name))
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    text = text.replace("&", " and ")
    tokens = ["and" if t == "n" else t for t in re.findall(r"[^\W_]+", text)]
    key = "".join(tokens)
    return _ALIASES.get(key, key)


def tidy_name(name: str) -> str:
    """A name as the user wrote it, with outer and repeated whitespace removed."""
    return " ".join(str(name).split())


class GenreFolder:
    """:func:`fold_genre` with a ``genre_map`` prepared once; also gives display spellings.

    ``genre_map`` maps genre names (any spelling: its keys are folded too) to the name
    they stand for, e.g. ``{"Electronica": "Electronic", "Prog": "Progressive Rock"}``;
    it is applied once, not transitively.
    """

    def __init__(self, genre_map: Mapping[str, str] | None = None):
        self._map = {_fold(k): tidy_name(v) for k, v in (genre_map or {}).items()
                     if _fold(k) and _fold(v)}

    def spelling(self, name: str) -> str:
        """The spelling ``name`` stands for: the map's target, else ``name`` tidied."""
        return self._map.get(_fold(name), tidy_name(name))

    def __call__(self, name: str) -> str:
        return _fold(self.spelling(name))


def fold_genre(name: str, genre_map: Mapping[str, str] | None = None) -> str:
    """The key under which spellings of one genre meet (``""`` for a blank name).

    Case, accents, whitespace, punctuation and hyphens do not count; ``&`` and a lone
    ``n`` (``Drum'n'Bass``) read as ``and``; a few abbreviations are expanded (``RnB``,
    ``DnB``). So ``"Hip Hop"``, ``"hip-hop"`` and ``"HipHop"`` give ``"hiphop"``;
    ``"Drum & Bass"``, ``"drum and bass"`` and ``"DnB"`` give ``"drumandbass"``.
    ``genre_map`` (see :class:`GenreFolder`) is applied first.

    >>> fold_genre("Post-Rock"), fold_genre("R&B")
    ('postrock', 'randb')
    >>> fold_genre("Electronica", {"electronica": "Electronic"})
    'electronic'
    """
    return GenreFolder(genre_map)(name)
