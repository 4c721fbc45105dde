"""genretag: tag a music collection's genres from the audio.

The one path: decode -> slices -> log-mel -> backbone embedding -> head -> mean
-> TrackPrediction::

    from genretag import load_model, classify_files
    model = load_model()
    for result in classify_files(["song.mp3"], model):
        print(result.path, result.genre, result.confidence)

Importing this package is cheap; torch and PyAV load on first use.
"""
from __future__ import annotations

from .errors import AudioError, GenretagError, WeightsError
from .result import Failure, SliceResult, TrackPrediction

__version__ = "1.0.0"

__all__ = ["AudioError", "Failure", "GenretagError", "SliceResult", "TrackPrediction",
           "WeightsError", "classify_file", "classify_files", "load_model"]


def __getattr__(name: str):
    if name in ("classify_file", "classify_files"):
        from . import classify
        return getattr(classify, name)
    if name == "load_model":
        from .model import load_model
        return load_model
    raise AttributeError(f"module 'genretag' has no attribute {name!r}")
