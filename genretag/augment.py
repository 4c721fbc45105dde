"""Deterministic training augmentations: bandwidth, lossy coding, gain and EQ.

Every training clip is seen in each of :data:`AUGMENTATIONS` so that neither bandwidth,
codec, level nor tonal balance becomes a genre cue (GTZAN's classical clips are mostly
8-kHz files; Emotify's are Opus transcodes of MP3s). musicnn's front end,
``log10(1 + 10000 * mel)``, is not gain-invariant, hence the gain variants.

Each augmentation maps mono float32 audio at ``sample_rate`` to audio of the same length;
``seed`` only matters for ``rand`` (a seeded random chain, one draw per clip).
"""
from __future__ import annotations

import zlib

import numpy as np

#: Names in a fixed order; a cache row's variant index refers to this tuple.
AUGMENTATIONS = ("clean", "band8k", "band11k", "mp3_64k", "gain_m12", "gain_p6", "eq_dark",
                 "eq_bright", "rand")


def band_limit(audio: np.ndarray, sample_rate: int, via_rate: int) -> np.ndarray:
    """Audio as if it had been stored at ``via_rate`` Hz (resampled down and back up)."""
    from fractions import Fraction

    from scipy.signal import resample_poly

    ratio = Fraction(via_rate, sample_rate)
    down = resample_poly(audio, ratio.numerator, ratio.denominator)
    up = resample_poly(down, ratio.denominator, ratio.numerator)
    return np.resize(up.astype(np.float32), len(audio))


def shelf_db(freq: np.ndarray, corner_hz: float, gain_db: float, *, low: bool) -> np.ndarray:
    """Gain in dB of a smooth shelf at each of ``freq`` (Hz).

    A low shelf applies ``gain_db`` well below ``corner_hz`` and 0 dB well above it (half
    the gain at the corner, a logistic curve over octaves); a high shelf the reverse.
    """
    octaves = np.log2(np.maximum(freq, 1.0) / corner_hz)
    below = 1.0 / (1.0 + np.exp(2.0 * octaves))
    return gain_db * (below if low else 1.0 - below)


def equalise(audio: np.ndarray, sample_rate: int,
             shelves: tuple[tuple[float, float, bool], ...]) -> np.ndarray:
    """Zero-phase EQ of the whole signal by ``shelves`` ``(corner Hz, gain dB, low?)``."""
    n = len(audio)
    spectrum = np.fft.rfft(audio.astype(np.float64))
    freq = np.fft.rfftfreq(n, 1.0 / sample_rate)
    gain_db = sum(shelf_db(freq, c, g, low=low) for c, g, low in shelves)
    return np.fft.irfft(spectrum * 10.0 ** (gain_db / 20.0), n).astype(np.float32)


def _random_chain(audio: np.ndarray, sample_rate: int, seed: int) -> np.ndarray:
    """Random low/high shelves, 30 % band-limiting, gain -20..+4 dB, clipped to [-1, 1]."""
    rng = np.random.default_rng(seed)
    low_c, low_db = rng.uniform(80, 400), rng.uniform(-10, 8)
    high_c, high_db = rng.uniform(1500, 5000), rng.uniform(-12, 6)
    out = equalise(audio, sample_rate, ((low_c, low_db, True), (high_c, high_db, False)))
    if rng.random() < 0.3:
        out = band_limit(out, sample_rate, int(rng.choice([8000, 11025])))
    out = out * np.float32(10.0 ** (rng.uniform(-20, 4) / 20.0))
    return np.clip(out, -1.0, 1.0)


def clip_seed(collection: str, path: str, kind: str) -> int:
    """The seed of ``kind`` for one clip: CRC-32 of ``"<collection>/<path>/<kind>"``."""
    return zlib.crc32(f"{collection}/{path}/{kind}".encode())


def augment(audio: np.ndarray, sample_rate: int, kind: str, *, seed: int = 0) -> np.ndarray:
    """One of :data:`AUGMENTATIONS` applied to mono float32 ``audio`` (same length).

    ``band8k``/``band11k`` keep the bandwidth of an 8 000 / 11 025 Hz file (4 / 5.5 kHz);
    ``mp3_64k`` is an MP3 round trip at 64 kb/s; ``gain_m12`` is -12 dB; ``gain_p6`` is
    +6 dB hard-clipped as a loud master would be; ``eq_dark`` is +6 dB below 150 Hz and
    -9 dB above 3 kHz, ``eq_bright`` -9 dB below 200 Hz and +6 dB above 2.5 kHz; ``rand``
    is a random chain drawn from ``seed``.
    """
    from .encode import lossy_round_trip

    if kind == "clean":
        return audio
    if kind == "band8k":
        return band_limit(audio, sample_rate, 8000)
    if kind == "band11k":
        return band_limit(audio, sample_rate, 11025)
    if kind == "mp3_64k":
        return lossy_round_trip(audio, sample_rate, bit_rate=64000)
    if kind == "gain_m12":
        return audio * np.float32(10.0 ** (-12 / 20))
    if kind == "gain_p6":
        return np.clip(audio * np.float32(2.0), -1.0, 1.0)
    if kind == "eq_dark":
        return equalise(audio, sample_rate, ((150, 6, True), (3000, -9, False)))
    if kind == "eq_bright":
        return equalise(audio, sample_rate, ((200, -9, True), (2500, 6, False)))
    if kind == "rand":
        return _random_chain(audio, sample_rate, seed)
    raise ValueError(f"unknown augmentation {kind!r}; known: {', '.join(AUGMENTATIONS)}")


def kept_slices(n_slices: int, kind: str, stride: int) -> np.ndarray:
    """Which of a clip's ``n_slices`` slices are embedded in variant ``kind``.

    ``clean`` keeps all; an augmented variant keeps every ``stride``-th slice, offset by
    its index in :data:`AUGMENTATIONS` so that variants cover different slices (at least
    slice 0). Augmented slices cost as much as clean ones; this bounds the cost.
    """
    if kind == "clean" or stride <= 1:
        return np.arange(n_slices)
    v = AUGMENTATIONS.index(kind)
    keep = np.flatnonzero((np.arange(n_slices) + v) % stride == 0)
    return keep if len(keep) else np.zeros(1, dtype=int)
