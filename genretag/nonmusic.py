"""Generated audio that is not music in the vocabulary: training negatives and abstention tests.

Each kind is a deterministic function of ``(kind, seed)``. :data:`NON_MUSIC` kinds (noise,
tones, sweeps, clicks, hum, speech-like formant-filtered pulse trains) train the genre
head's *not music* class; :data:`OUT_OF_VOCABULARY` kinds are music none of the
vocabulary's genres describes and are only ever used to test that the model abstains.
"""
from __future__ import annotations

import zlib
from typing import Callable

import numpy as np

SAMPLE_RATE = 16000


def _colored(n: int, rng: np.random.Generator, exponent: float) -> np.ndarray:
    """Gaussian noise whose power falls as ``1 / f**exponent`` (0 white, 1 pink, 2 brown)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    freq = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    freq[0] = freq[1]
    return np.fft.irfft(spec / freq ** (exponent / 2), n)


def _speech_like(n: int, rng: np.random.Generator) -> np.ndarray:
    """A gliding glottal pulse train through three vowel formants that change every
    0.12-0.3 s, with syllable envelopes and pauses: the rhythm and spectrum of speech."""
    from scipy.signal import lfilter

    vowels = [(730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480),
              (640, 1190, 2390), (490, 1350, 1690)]
    f0_base = rng.uniform(90, 220)
    out = np.zeros(n)
    pos = 0
    while pos < n:
        length = int(rng.uniform(0.12, 0.3) * SAMPLE_RATE)
        if rng.random() < 0.15:
            pos += int(rng.uniform(0.1, 0.5) * SAMPLE_RATE)
            continue
        f0 = f0_base * (1 + 0.15 * rng.standard_normal()) * np.linspace(1.05, 0.92, length)
        phase = np.cumsum(f0 / SAMPLE_RATE)
        source = np.zeros(length)
        source[np.flatnonzero(np.diff(np.floor(phase)) > 0)] = 1.0
        source += 0.02 * rng.standard_normal(length)
        voiced = np.zeros(length)
        for fc, bw in zip(vowels[rng.integers(len(vowels))], (80, 100, 120)):
            r = np.exp(-np.pi * bw / SAMPLE_RATE)
            theta = 2 * np.pi * fc / SAMPLE_RATE
            voiced += lfilter([1 - r], [1, -2 * r * np.cos(theta), r * r], source)
        voiced *= np.hanning(length)
        m = min(length, n - pos)
        out[pos:pos + m] += voiced[:m]
        pos += length
    return out


def _metallophone(n: int, rng: np.random.Generator) -> np.ndarray:
    """Inharmonic metallophone strikes on a five-tone equal scale with a low gong every
    16 strikes (gamelan-like): music, but of no genre in the vocabulary."""
    t = np.arange(n) / SAMPLE_RATE
    scale = 220 * 2 ** (np.array([0, 240, 480, 720, 960, 1200]) / 1200)
    step = rng.uniform(0.2, 0.4)
    out = np.zeros(n)
    k = 0
    while k * step * SAMPLE_RATE < n:
        start = int(k * step * SAMPLE_RATE)
        f = rng.choice(scale) * rng.choice([1, 2])
        length = min(n - start, int(2.5 * SAMPLE_RATE))
        tt = t[:length]
        tone = sum(a * np.sin(2 * np.pi * f * p * tt)
                   for p, a in ((1, 1), (2.76, .5), (5.4, .25), (8.9, .12)))
        out[start:start + length] += tone * np.exp(-tt * rng.uniform(1.5, 3))
        k += 1
    for start in range(0, n, int(16 * step * SAMPLE_RATE)):
        length = min(n - start, 4 * SAMPLE_RATE)
        tt = t[:length]
        out[start:start + length] += 1.5 * np.sin(2 * np.pi * 65 * tt) * np.exp(-tt * 0.8)
    return out


def _hum(n: int, rng: np.random.Generator) -> np.ndarray:
    mains = rng.choice([50, 60])
    t = np.arange(n) / SAMPLE_RATE
    hum = sum(a * np.sin(2 * np.pi * mains * h * t) for h, a in ((1, 1), (2, .4), (3, .3)))
    return 0.01 * hum + 1e-4 * rng.standard_normal(n)


_T = Callable[[int, np.random.Generator], np.ndarray]
#: Non-music kinds: they train the head's *not music* class.
NON_MUSIC: dict[str, _T] = {
    "white_noise": lambda n, rng: rng.standard_normal(n),
    "pink_noise": lambda n, rng: _colored(n, rng, 1),
    "brown_noise": lambda n, rng: _colored(n, rng, 2),
    "sine_tone": lambda n, rng: np.sin(2 * np.pi * rng.choice([100, 440, 1000, 3000])
                                       * np.arange(n) / SAMPLE_RATE),
    "sine_sweep": lambda n, rng: np.sin(2 * np.pi * 50 * (160 ** (np.arange(n) / n) - 1)
                                        * n / SAMPLE_RATE / np.log(160)),
    "tone_beeps": lambda n, rng: (np.sin(2 * np.pi * rng.uniform(300, 2000) * np.arange(n)
                                         / SAMPLE_RATE)
                                  * ((np.arange(n) // int(0.25 * SAMPLE_RATE)) % 2)),
    "speech_like": _speech_like,
    "clicks": lambda n, rng: (np.where(rng.random(n) < 3 / SAMPLE_RATE,
                                       rng.choice([-1.0, 1.0], n), 0.0)
                              + 1e-4 * rng.standard_normal(n)),
    "click_train": lambda n, rng: (np.arange(n) % int(SAMPLE_RATE * rng.uniform(0.05, 0.5))
                                   == 0).astype(float),
    "hum_silence": _hum,
}
#: Music outside the vocabulary: never trained on, only tested.
OUT_OF_VOCABULARY: dict[str, _T] = {"gamelan_oov": _metallophone}
KINDS = {**NON_MUSIC, **OUT_OF_VOCABULARY}


def generate(kind: str, seed: int, seconds: float = 15.0) -> np.ndarray:
    """``np.ndarray [shape=(seconds * 16000,), dtype=float32]`` of ``kind``, mono at 16 kHz.

    Peak level is drawn from 0.3-0.9 (hum: 0.03, quiet but above the silence floor).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; known: {', '.join(KINDS)}")
    rng = np.random.default_rng([zlib.crc32(kind.encode()), seed])
    x = np.asarray(KINDS[kind](int(seconds * SAMPLE_RATE), rng), dtype=float)
    peak = 0.03 if kind == "hum_silence" else rng.uniform(0.3, 0.9)
    return (peak * x / max(1e-9, np.abs(x).max())).astype(np.float32)
