"""The torch log-mel front end equals librosa's on the same signal."""
import numpy as np
import pytest

from genretag.features import MUSICNN_FEATURES as P
from genretag.features import log_mel, mel_filterbank


def _signal(n: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    t = np.arange(n) / P.sample_rate
    return (0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 3001 * t)
            + 0.05 * rng.standard_normal(n)).astype(np.float32)


def test_filterbank_matches_librosa():
    librosa = pytest.importorskip("librosa")
    ref = librosa.filters.mel(sr=P.sample_rate, n_fft=P.n_fft, n_mels=P.n_mels, fmin=P.fmin,
                              fmax=P.fmax)
    ours = mel_filterbank(P.sample_rate, P.n_fft, P.n_mels, P.fmin, P.fmax)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() < 1e-7


def test_log_mel_matches_librosa_in_db():
    librosa = pytest.importorskip("librosa")
    y = _signal(P.slice_samples * 2)
    ours = log_mel(y).numpy()
    mel = librosa.feature.melspectrogram(y=y, sr=P.sample_rate, n_fft=P.n_fft,
                                         hop_length=P.hop_length, n_mels=P.n_mels,
                                         center=False).T
    assert ours.shape == mel.shape
    ours_db = 10 * np.log10(np.maximum((10 ** ours - 1) / 10000, 1e-10))
    ref_db = 10 * np.log10(np.maximum(mel, 1e-10))
    loud = ref_db > ref_db.max() - 80
    assert np.abs(ours_db - ref_db)[loud].max() < 1e-3


def test_one_slice_gives_exactly_n_frames():
    assert log_mel(_signal(P.slice_samples)).shape == (P.n_frames, P.n_mels)


def test_batched_equals_single():
    y = _signal(P.slice_samples * 2).reshape(2, -1)
    batched = log_mel(y).numpy()
    assert np.allclose(batched[1], log_mel(y[1]).numpy(), atol=1e-5)


def test_too_short_input_is_rejected():
    with pytest.raises(ValueError, match="at least 512 samples"):
        log_mel(np.zeros(100, np.float32))
