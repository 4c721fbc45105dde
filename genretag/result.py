"""The result types every consumer of genretag (CLI, beets plugin, evaluation) reads."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SliceResult:
    """One analysed slice: where it lies in the track (seconds) and what the head scored there."""

    start_s: float
    end_s: float
    genre: str
    confidence: float
    probs: tuple[float, ...]


@dataclass(frozen=True)
class TrackPrediction:
    """A track's genre: the mean of its slices' scores.

    ``probs`` maps every class of the vocabulary (model order) to its score;
    ``genre`` is the best class and ``confidence`` its score. ``genres`` are the
    classes whose score reaches the model's threshold for them, best first (for a
    multi-label vocabulary, every genre the track has; for the trained head, its
    genre if confident enough, else nothing). ``padded`` is true when the track was
    shorter than one slice and was repeat-padded. A ``silent`` track was analysed
    but holds nothing to hear: no genre, empty ``probs``.
    """

    path: str
    genre: str | None
    confidence: float
    probs: dict[str, float]
    model: str
    timeline: tuple[SliceResult, ...] = field(default=(), repr=False)
    padded: bool = False
    genres: tuple[str, ...] = ()
    multi_label: bool = False
    silent: bool = False

    def top(self, k: int = 1) -> list[tuple[str, float]]:
        """The ``k`` best ``(genre, score)`` pairs, best first."""
        return sorted(self.probs.items(), key=lambda kv: -kv[1])[:k]

    def to_dict(self, *, timeline: bool = False) -> dict:
        """The JSON object ``genretag classify --json`` prints for this track."""
        out = {"path": self.path, "genre": self.genre, "confidence": round(self.confidence, 4)}
        if self.multi_label:
            out["genres"] = list(self.genres)
        out["probs"] = {g: round(p, 4) for g, p in self.probs.items()}
        out["model"] = self.model
        if self.padded:
            out["padded"] = True
        if self.silent:
            out["silent"] = True
        if timeline:
            out["timeline"] = [{"start_s": round(s.start_s, 3), "end_s": round(s.end_s, 3),
                                "genre": s.genre, "confidence": round(s.confidence, 4)}
                               for s in self.timeline]
        return out


@dataclass(frozen=True)
class Failure:
    """A file that could not be classified, with a one-line reason."""

    path: str
    error: str

    def to_dict(self) -> dict:
        return {"path": self.path, "error": self.error}
