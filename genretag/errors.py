"""Exceptions for expected failures; messages name the file and the reason.

Two kinds, as in beets' replaygain: a :class:`PathError` concerns one file (logged,
the run goes on with the others); :class:`WeightsError` concerns the model (the run
cannot start).
"""
from __future__ import annotations


class GenretagError(Exception):
    """Base class of every error genretag reports to users."""


class PathError(GenretagError):
    """Something about one file; ``str(exc)`` is ``"<path>: <reason>"``."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class AudioError(PathError):
    """A file could not be decoded into usable audio."""


class FileWriteError(PathError):
    """The file cannot be replaced (read-only, no room for a copy, …); it is unchanged."""


class WeightsError(GenretagError):
    """Model files are missing, corrupted, tampered with or incompatible."""
