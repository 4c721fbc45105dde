"""The result type every consumer of genretag (CLI, beets plugin, evaluation) reads."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SliceResult:
    """One analysed slice: where it lies in the track and what the model heard there."""

    start_s: float
    end_s: float
    genre: str
    confidence: float
    probs: tuple[float, ...]


@dataclass(frozen=True)
class TrackPrediction:
    """A track's genre: the mean of its slices' class probabilities.

    ``probs`` maps every class (model order) to its probability; ``genre`` is the
    most probable class and ``confidence`` its probability. ``padded`` is true when
    the track was shorter than one slice and was repeat-padded.
    """

    path: str
    genre: str
    confidence: float
    probs: dict[str, float]
    model: str
    timeline: tuple[SliceResult, ...] = field(default=(), repr=False)
    padded: bool = False

    def top(self, k: int = 1) -> list[tuple[str, float]]:
        """The ``k`` most probable ``(genre, probability)`` pairs, best first."""
        return sorted(self.probs.items(), key=lambda kv: -kv[1])[:k]

    def to_dict(self, *, timeline: bool = False) -> dict:
        out = {"path": self.path, "genre": self.genre, "confidence": round(self.confidence, 4),
               "probs": {g: round(p, 4) for g, p in self.probs.items()}, "model": self.model}
        if self.padded:
            out["padded"] = True
        if timeline:
            out["timeline"] = [{"start": round(s.start_s, 3), "end": round(s.end_s, 3),
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
