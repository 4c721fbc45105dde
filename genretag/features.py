"""Log-mel features in torch: the one front end for training and inference.

The parameters are those of musicnn (Pons & Serra, 2019): 16 kHz audio, 512-point
FFT, hop 256, 96 Slaney-style mel bands, ``log10(1 + 10000 * mel)``.
Frames are computed without centring, so a slice of
``(n_frames - 1) * hop + n_fft`` samples gives exactly ``n_frames`` frames and a
slice's features depend on that slice's samples only.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class FeatureParams:
    """Everything that defines the model input; stored in the model card."""

    sample_rate: int = 16000
    n_fft: int = 512
    hop_length: int = 256
    n_mels: int = 96
    n_frames: int = 187
    fmin: float = 0.0
    fmax: float = 8000.0
    mel_scale: str = "slaney"
    compression: str = "log10(1+10000*x)"
    window: str = "hann"
    center: bool = False

    @property
    def slice_samples(self) -> int:
        """Samples in one slice (48 128 at 16 kHz: 3.008 s)."""
        return (self.n_frames - 1) * self.hop_length + self.n_fft

    @property
    def slice_seconds(self) -> float:
        return self.slice_samples / self.sample_rate

    def to_dict(self) -> dict:
        return asdict(self)


MUSICNN_FEATURES = FeatureParams()


def hz_to_mel(freq: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    freq = np.asarray(freq, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz, logstep = 1000.0, np.log(6.4) / 27.0
    mels = freq / f_sp
    log_part = min_log_hz / f_sp + np.log(np.maximum(freq, min_log_hz) / min_log_hz) / logstep
    return np.where(freq >= min_log_hz, log_part, mels)


def mel_to_hz(mels: np.ndarray) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    mels = np.asarray(mels, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz, logstep = 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    log_part = min_log_hz * np.exp(logstep * (mels - min_log_mel))
    return np.where(mels >= min_log_mel, log_part, f_sp * mels)


@lru_cache(maxsize=8)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int,
                   fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """Area-normalised triangular mel filters, ``np.ndarray [shape=(n_mels, 1 + n_fft // 2)]``."""
    fmax = sample_rate / 2 if fmax is None else fmax
    fft_freqs = np.linspace(0, sample_rate / 2, 1 + n_fft // 2)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.astype(np.float32)


def log_mel(audio, params: FeatureParams = MUSICNN_FEATURES):
    """Log-compressed mel spectrogram of mono audio.

    Parameters
    ----------
    audio : np.ndarray or torch.Tensor [shape=(..., n_samples)]
        Mono float audio at ``params.sample_rate``, at least ``n_fft`` samples.

    Returns
    -------
    torch.Tensor [shape=(..., n_frames, n_mels)]
        ``log10(1 + 10000 * mel_power)``; frame ``i`` covers samples
        ``[i * hop, i * hop + n_fft)``.
    """
    import torch

    x = torch.as_tensor(audio, dtype=torch.float32)
    if x.shape[-1] < params.n_fft:
        raise ValueError(f"need at least {params.n_fft} samples, got {x.shape[-1]}")
    lead = x.shape[:-1]
    spec = torch.stft(x.reshape(-1, x.shape[-1]), n_fft=params.n_fft, hop_length=params.hop_length,
                      window=torch.hann_window(params.n_fft, dtype=torch.float32),
                      center=params.center, return_complex=True)
    power = spec.real.square() + spec.imag.square()  # [N, freq, frames]
    fb = torch.from_numpy(mel_filterbank(params.sample_rate, params.n_fft, params.n_mels,
                                         params.fmin, params.fmax))
    mel = torch.matmul(fb, power).transpose(1, 2)  # [N, frames, mels]
    return torch.log10(1.0 + 10000.0 * mel).reshape(*lead, mel.shape[1], params.n_mels)
