"""Exceptions for expected failures; messages name the file and the reason."""
from __future__ import annotations


class GenretagError(Exception):
    """Base class of every error genretag reports to users."""


class AudioError(GenretagError):
    """A file could not be decoded into usable audio."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class WeightsError(GenretagError):
    """Model files are missing, corrupted, tampered with or incompatible."""
