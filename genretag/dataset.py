"""Labelled clips, bandwidth/lossy augmentation and per-slice training arrays."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .features import FeatureParams

GTZAN_GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop",
                "reggae", "rock")
#: Variants every training clip is seen in, so bandwidth is never a genre cue.
AUGMENTATIONS = ("clean", "band8k", "band11k", "mp3_64k")


@dataclass(frozen=True)
class Clip:
    path: Path
    genre: str
    split: str
    sample_rate: int


def load_index(data_dir: str | Path) -> list[Clip]:
    """Clips listed in ``index.csv`` (columns ``path, genre, split, sample_rate``)."""
    data_dir = Path(data_dir)
    with open(data_dir / "index.csv", newline="", encoding="utf-8") as fh:
        return [Clip(data_dir / row["path"], row["genre"], row["split"], int(row["sample_rate"]))
                for row in csv.DictReader(fh)]


def band_limit(audio: np.ndarray, sample_rate: int, via_rate: int) -> np.ndarray:
    """Audio as if it had been stored at ``via_rate`` (resampled down and back up)."""
    from fractions import Fraction

    from scipy.signal import resample_poly

    ratio = Fraction(via_rate, sample_rate)
    down = resample_poly(audio, ratio.numerator, ratio.denominator)
    up = resample_poly(down, ratio.denominator, ratio.numerator)
    return np.resize(up.astype(np.float32), len(audio))


def augment(audio: np.ndarray, sample_rate: int, kind: str) -> np.ndarray:
    """One of :data:`AUGMENTATIONS` applied to mono ``audio``."""
    from .encode import lossy_round_trip

    if kind == "clean":
        return audio
    if kind == "band8k":
        return band_limit(audio, sample_rate, 8000)
    if kind == "band11k":
        return band_limit(audio, sample_rate, 11025)
    if kind == "mp3_64k":
        return lossy_round_trip(audio, sample_rate, bit_rate=64000)
    raise ValueError(f"unknown augmentation {kind!r}")


def consecutive_slices(audio: np.ndarray, params: FeatureParams) -> np.ndarray:
    """Non-overlapping slices ``[n, slice_samples]`` (as inference streams them)."""
    from .audio import pad_slice

    n = len(audio) // params.slice_samples
    if n == 0:
        return pad_slice(audio, params.slice_samples)[None, :]
    return audio[: n * params.slice_samples].reshape(n, params.slice_samples)
