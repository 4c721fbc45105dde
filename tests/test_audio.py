"""Decoding every format, slicing, padding and seeking."""
import numpy as np
import pytest

from genretag.audio import coarse_to_fine, decode, iter_slices, pad_slice, plan_slices
from genretag.errors import AudioError
from genretag.features import MUSICNN_FEATURES as P

from .conftest import FORMATS


@pytest.mark.parametrize("ext", FORMATS)
def test_every_format_decodes_to_mono_at_model_rate(audio_files, ext):
    audio = decode(str(audio_files[ext]), P.sample_rate)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) / P.sample_rate - 7.0) < 0.15
    assert 0.1 < np.abs(audio).max() <= 1.01


def test_formats_decode_to_the_same_signal(audio_files):
    ref = decode(str(audio_files[".wav"]), P.sample_rate)[: P.sample_rate * 6]
    flac = decode(str(audio_files[".flac"]), P.sample_rate)[: P.sample_rate * 6]
    assert np.abs(ref - flac).max() < 1e-3  # lossless


def test_slices_are_consecutive_and_full(audio_files):
    slices = list(iter_slices(str(audio_files[".flac"]), P.sample_rate, P.slice_samples))
    assert [round(s, 3) for s, _, _ in slices] == [0.0, round(P.slice_seconds, 3)]
    assert all(len(x) == P.slice_samples and not padded for _, x, padded in slices)


def test_short_clip_is_padded_and_flagged(tmp_path):
    from genretag.encode import write

    path = tmp_path / "short.flac"
    write(np.sin(np.arange(3200) / 5.0).astype(np.float32) * 0.5, 16000, path)
    (start, samples, padded), = list(iter_slices(str(path), P.sample_rate, P.slice_samples))
    assert padded and start == 0.0 and len(samples) == P.slice_samples
    assert np.allclose(samples[:3000], samples[3200:6200], atol=1e-3)  # repeat-padded


def test_plan_spreads_slices_over_long_tracks():
    assert plan_slices(30.0, 3.0, 10) is None  # few enough: stream them all
    starts = plan_slices(7200.0, 3.0, 10)
    assert len(starts) == 10 and starts[0] == 0.0 and starts[-1] == 7197.0
    assert plan_slices(None, 3.0, 10) is None


def test_adaptive_plan_reads_the_same_slices_coarse_to_fine():
    """An adaptive plan is the fixed plan reordered: ends and middle first, then the gaps."""
    fixed = plan_slices(7200.0, 3.0, 10)
    adaptive = plan_slices(7200.0, 3.0, 10, adaptive=True)
    assert sorted(adaptive) == fixed
    assert adaptive[:3] == [0.0, fixed[4], 7197.0]
    assert coarse_to_fine(10) == [0, 4, 9, 2, 6, 1, 3, 5, 7, 8]
    for k in range(1, 12):
        order = coarse_to_fine(k)
        assert sorted(order) == list(range(k))
        if k > 3:  # each next slice goes where the widest gap is
            gaps = [min(abs(i - j) for j in order[:m]) for m, i in enumerate(order) if m >= 3]
            assert gaps == sorted(gaps, reverse=True)
    # a short track is read by seeking too, so that it can stop early; one slice streams
    assert plan_slices(30.0, 3.0, 10, adaptive=True) == [0.0, 12.0, 27.0, 6.0, 18.0, 3.0,
                                                         9.0, 15.0, 21.0, 24.0]
    assert plan_slices(5.0, 3.0, 10, adaptive=True) is None


def test_seeking_reads_the_planned_slices(tmp_path):
    """A long file read by seeking gives the same audio as a full decode at those times."""
    from genretag.encode import write
    from genretag.synthetic import synth_music

    path = tmp_path / "long.flac"
    write(synth_music(40.0, 16000, seed=5)[0], 16000, path)
    full = decode(str(path), P.sample_rate)
    got = list(iter_slices(str(path), P.sample_rate, P.slice_samples, max_slices=3))
    assert [s for s, _, _ in got] == plan_slices(40.0, P.slice_seconds, 3)
    for start, samples, _ in got:
        i = int(round(start * P.sample_rate))
        assert np.abs(samples - full[i:i + P.slice_samples]).max() < 1e-3
    adaptive = list(iter_slices(str(path), P.sample_rate, P.slice_samples, max_slices=10,
                                adaptive=True))
    assert [s for s, _, _ in adaptive] == plan_slices(40.0, P.slice_seconds, 10, adaptive=True)
    for start, samples, _ in adaptive:
        i = int(round(start * P.sample_rate))
        assert np.abs(samples - full[i:i + P.slice_samples]).max() < 1e-3


def test_pad_slice_rejects_empty():
    with pytest.raises(ValueError):
        pad_slice(np.zeros(0, np.float32), 10)


def test_missing_file_names_it(tmp_path):
    missing = tmp_path / "nope.mp3"
    with pytest.raises(AudioError, match="nope.mp3: file not found"):
        list(iter_slices(str(missing), P.sample_rate, P.slice_samples))


def test_soundfile_fallback_reads_the_same_slices(audio_files):
    """The fallback decoder (used when PyAV cannot open a file) gives the same audio."""
    from genretag.audio import _soundfile_slices

    path = str(audio_files[".flac"])
    ours = list(_soundfile_slices(path, P.sample_rate, P.slice_samples, None))
    pyav = list(iter_slices(path, P.sample_rate, P.slice_samples))
    assert [s for s, _, _ in ours] == pytest.approx([s for s, _, _ in pyav])
    for (_, a, _), (_, b, _) in zip(ours, pyav):
        assert np.corrcoef(a, b)[0, 1] > 0.99  # different resamplers, same signal


def test_soundfile_fallback_names_unreadable_files(tmp_path):
    from genretag.audio import _soundfile_slices

    bad = tmp_path / "x.wav"
    bad.write_bytes(b"RIFF0000WAVEjunk" * 4)
    with pytest.raises(AudioError, match="x.wav: not a readable audio file"):
        list(_soundfile_slices(str(bad), P.sample_rate, P.slice_samples, None))
