"""The plugin's configuration: every option, its default and its check, in one place.

:class:`Settings` is the validated ``genretag:`` section of beets' configuration.
Each option is one field declared with :func:`option` (default and check); the
defaults given to beets, the validation and the list of known keys all come from
these fields, so adding an option is one line.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from .policy import Distribution

DEFAULT_GENRE_MAP = {
    "blues": "Blues", "classical": "Classical", "country": "Country", "disco": "Disco",
    "electronic": "Electronic", "hiphop": "Hip-Hop", "jazz": "Jazz", "metal": "Metal",
    "pop": "Pop", "reggae": "Reggae", "rock": "Rock",
}
#: ``vocabulary:`` values; ``personal`` is the model ``beet genretag --learn`` writes.
VOCABULARIES = ("genres", "lastfm", "personal")

Check = Callable[[Any], Any]
"""Returns the option's value from the configured one, or raises ValueError saying why not."""


def option(default: Any, check: Check) -> Any:
    """A :class:`Settings` field: its default and the check a configured value must pass."""
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata={"check": check})
    return field(default=default, metadata={"check": check})


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be yes or no, not {value!r}")
    return value


def integer(minimum: int) -> Check:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be a whole number, not {value!r}")
        if value < minimum:
            raise ValueError(f"must be at least {minimum}, not {value}")
        return value
    return check


def number(*, low: float, high: float | None = None, open_low: bool = False) -> Check:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"must be a number, not {value!r}")
        if value < low or (open_low and value == low):
            raise ValueError(f"must be {'above' if open_low else 'at least'} {low:g}, "
                             f"not {value:g}")
        if high is not None and value > high:
            raise ValueError(f"must be in {low:g}..{high:g}, not {value:g}")
        return float(value)
    return check


def one_of(choices: tuple[str, ...]) -> Check:
    def check(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, not {value!r}")
        return value
    return check


def optional(check: Check) -> Check:
    """``check``, or ``None`` (the option left to the model) for an empty value."""
    def optional_check(value: Any) -> Any:
        return None if value is None or value == "" else check(value)
    return optional_check


def text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be text, not {value!r}")
    return value


def genre_names(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValueError(f"must map model classes to names, not {value!r}")
    out = {}
    for key, name in value.items():
        if name is not None and not isinstance(name, str):
            raise ValueError(f"{key}: the name must be text, not {name!r}")
        out[str(key)] = name or ""
    return out


@dataclass(frozen=True)
class Settings:
    """The validated ``genretag`` configuration; the defaults are the documented ones."""

    auto: bool = option(True, boolean)                   # tag during `beet import`
    vocabulary: str = option("genres", one_of(VOCABULARIES))  # which head names the genres
    personal_model: str = option("", text)               # its directory ("": beets config dir)
    canonical: bool = option(False, boolean)             # lastfm: tags -> their parent genre
    count: int = option(1, integer(1))                   # top-k classes put into `genres`
    # score a class needs to be put into `genres`; empty: the model card's calibrated cut
    min_confidence: float | None = option(None, optional(number(low=0.0, high=1.0)))
    overwrite: bool = option(False, boolean)             # replace genres genretag did not set
    force: bool = option(False, boolean)                 # lastgenre's name for `overwrite`
    album_consistent: bool = option(False, boolean)      # tracks get their album's genres
    max_slices: int = option(10, integer(1))             # 3-s slices analysed per track
    adaptive: bool = option(True, boolean)               # stop a track early once clear
    jobs: int = option(1, integer(1))                    # worker processes for `beet genretag`
    timeout: float = option(120.0, number(low=0.0, open_low=True))  # seconds per file
    min_examples: int = option(10, integer(1))           # --learn: examples a genre needs
    genre_map: dict = option(DEFAULT_GENRE_MAP, genre_names)  # class -> name in `genres`

    def pick(self, probs: Distribution) -> list[str]:
        """The genres these settings put into ``genres`` for the distribution ``probs``."""
        from .policy import pick_genres

        return pick_genres(probs, count=self.count, min_confidence=self.min_confidence or 0.0,
                           genre_map=self.genre_map)

    def for_model(self, card: dict) -> Settings:
        """These settings completed by the model's card: its calibrated cut when
        ``min_confidence`` is left empty, its display names (and, with ``canonical``,
        its parent genres) under the configured ``genre_map``."""
        from dataclasses import replace

        cut = self.min_confidence
        if cut is None:
            thresholds = card.get("thresholds") or {}
            cut = float(card.get("min_confidence", max(thresholds.values(), default=0.3)))
        names = dict(card.get("display_names") or {})
        if self.canonical:
            names.update(card.get("canonical") or {})
        return replace(self, min_confidence=cut, genre_map={**names, **self.genre_map})


def model_location(settings: Settings, config_dir: str) -> tuple[str | None, str | None]:
    """``(weights directory or None, vocabulary or None)`` for genretag's loaders."""
    if settings.vocabulary == "personal":
        import os

        return settings.personal_model or os.path.join(config_dir, "genretag-personal"), None
    return None, settings.vocabulary


def defaults() -> dict[str, Any]:
    """Every option with its default, as given to beets' ``config.add``."""
    return {f.name: getattr(Settings(), f.name) for f in fields(Settings)}


def read_settings(values: dict[str, Any]) -> tuple[Settings | None, list[str]]:
    """Check configured ``values`` (defaults included); the settings, or ``None`` and why.

    Problems are sentences naming the option, e.g.
    ``"genretag.count must be at least 1, not 0"``; ``genre_map`` entries are merged
    over the default map.
    """
    checked, problems = {}, []
    for f in fields(Settings):
        if f.name not in values:
            continue
        try:
            checked[f.name] = f.metadata["check"](values[f.name])
        except ValueError as exc:
            problems.append(f"genretag.{f.name} {exc}")
    if problems:
        return None, problems
    if "genre_map" in checked:
        checked["genre_map"] = {**DEFAULT_GENRE_MAP, **checked["genre_map"]}
    return Settings(**checked), []


def config_warnings(values: dict[str, Any], classes: list[str] | None) -> list[str]:
    """Things in the configuration that are accepted but probably not meant.

    Unknown option names (typos pass silently otherwise) and, when the model's
    ``classes`` are known, ``genre_map`` keys that are not among them.
    """
    known = {f.name for f in fields(Settings)}
    out = [f"genretag.{key} is not an option of this plugin; it is ignored (options: "
           f"{', '.join(sorted(known))})" for key in values if key not in known]
    genre_map = values.get("genre_map")
    if classes is not None and isinstance(genre_map, dict):
        for key in genre_map:
            if key not in classes and genre_map[key] != DEFAULT_GENRE_MAP.get(key):
                out.append(f"genretag.genre_map: {key!r} is not a class of the model; it is "
                           f"ignored (classes: {', '.join(classes)})")
    return out
