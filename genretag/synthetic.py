"""Synthetic music-like audio for tests, benchmarks and the bundled example clip.

Not a genre oracle: the signals only need to look like music to a decoder and a
spectrogram (drums, bass, chords), with a seed for reproducibility.
"""
from __future__ import annotations

import numpy as np


def synth_music(duration_s: float, sample_rate: int = 22050, *, seed: int = 0,
                tempo_bpm: float | None = None, channels: int = 1) -> np.ndarray:
    """A drum/bass/chord pattern, ``np.ndarray [shape=(channels, n)] float32`` in [-1, 1]."""
    rng = np.random.default_rng(seed)
    n = int(round(duration_s * sample_rate))
    t = np.arange(n) / sample_rate
    tempo = tempo_bpm or rng.uniform(80, 150)
    beat = 60.0 / tempo
    phase = (t % beat) / beat
    kick = np.sin(2 * np.pi * 55 * t * (1 + 2 * np.exp(-phase * 30))) * np.exp(-phase * 12)
    hat_phase = (t % (beat / 2)) / (beat / 2)
    hat = rng.standard_normal(n) * np.exp(-hat_phase * 60) * 0.15
    root = 110 * 2 ** (rng.choice([0, 3, 5, 7, 10], size=max(1, int(duration_s / (4 * beat)) + 1))
                       / 12)
    bar = np.minimum((t // (4 * beat)).astype(int), len(root) - 1)
    f0 = root[bar]
    bass = 0.4 * np.sin(2 * np.pi * f0 * t)
    chord = sum(0.12 * np.sin(2 * np.pi * f0 * 2 * r * t + rng.uniform(0, 6)) for r in
                (1.0, 1.26, 1.5))
    mix = 0.5 * kick + hat + bass + chord
    mix = (0.8 * mix / max(1e-9, np.abs(mix).max())).astype(np.float32)
    if channels == 1:
        return mix[None, :]
    pans = np.linspace(0.7, 1.0, channels)[:, None]
    return (mix[None, :] * pans).astype(np.float32)
