"""Decode audio files to mono float32 at a target rate, slice by slice.

PyAV (FFmpeg's libraries, bundled in its wheel) opens every common format,
including M4A/AAC and Opus, without a system ffmpeg; soundfile is the fallback.
Memory does not grow with the file's length: slices are streamed, or, when only a
few slices of a long file are wanted, read by seeking to them.
"""
from __future__ import annotations

import os
from typing import Iterator

import numpy as np

from .errors import AudioError

#: File name extensions the directory walker treats as audio.
AUDIO_EXTENSIONS = frozenset({
    ".mp3", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".mp4", ".aac", ".alac", ".wav",
    ".aif", ".aiff", ".wma", ".wv", ".ape", ".mka", ".webm",
})


def spread_indices(n: int, k: int) -> np.ndarray:
    """Indices of ``k`` evenly spread items out of ``n``, first and last included (all if ``n <= k``)."""
    if n <= k:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, k)).astype(int))


def coarse_to_fine(k: int) -> list[int]:
    """The order in which an adaptive analysis visits ``k`` planned slices.

    First three spread over the whole plan (start, middle, end), then each next one
    where the gap between visited slices is widest (ties: the earliest), so that any
    prefix of the order covers the track as evenly as it can.
    """
    order = [int(i) for i in spread_indices(k, 3)]
    while len(order) < k:
        rest = [i for i in range(k) if i not in order]
        gaps = [min(abs(i - j) for j in order) for i in rest]
        order.append(rest[int(np.argmax(gaps))])
    return order


def plan_slices(duration_s: float | None, slice_s: float,
                max_slices: int | None, *, adaptive: bool = False) -> list[float] | None:
    """Start times (s) of the slices to analyse, in the order to read them, or ``None``
    to stream them all in time order.

    All non-overlapping slices are used when there are at most ``max_slices``;
    otherwise ``max_slices`` evenly spread slices of that grid, first and last
    included. ``adaptive`` orders them :func:`coarse_to_fine` (and so reads even a
    short file by seeking, when it has more than one slice). ``None`` also when the
    duration is unknown.
    """
    if duration_s is None or max_slices is None:
        return None
    n_total = max(1, int(duration_s // slice_s))
    if n_total <= max_slices and not (adaptive and n_total > 1):
        return None
    grid = spread_indices(n_total, max_slices)
    order = coarse_to_fine(len(grid)) if adaptive else range(len(grid))
    return [float(grid[i] * slice_s) for i in order]


def pad_slice(samples: np.ndarray, length: int) -> np.ndarray:
    """Repeat a short signal until it fills ``length`` samples (musicnn's repeat-pad)."""
    if len(samples) == 0:
        raise ValueError("cannot pad an empty signal")
    reps = -(-length // len(samples))
    return np.tile(samples, reps)[:length]


def consecutive_slices(audio: np.ndarray, slice_samples: int) -> np.ndarray:
    """Non-overlapping slices ``[n, slice_samples]`` of decoded audio, as inference streams
    them (a signal shorter than one slice is repeat-padded to one)."""
    n = len(audio) // slice_samples
    if n == 0:
        return pad_slice(audio, slice_samples)[None, :]
    return audio[: n * slice_samples].reshape(n, slice_samples)


def iter_slices(path: str, sample_rate: int, slice_samples: int, *,
                max_slices: int | None = None, adaptive: bool = False
                ) -> Iterator[tuple[float, np.ndarray, bool]]:
    """Yield ``(start_s, samples, padded)`` for each analysed slice of ``path``.

    Slices come in time order, or with ``adaptive`` in the order of :func:`plan_slices`
    (coarse to fine), so that a caller may stop early and still have heard the whole track.

    ``samples`` is ``np.ndarray [shape=(slice_samples,), dtype=float32]``, mono at
    ``sample_rate``. A file shorter than one slice yields one repeat-padded slice
    with ``padded=True``. Raises :class:`AudioError` naming the file when it
    cannot be decoded or holds no audio.
    """
    try:
        yield from _pyav_slices(path, sample_rate, slice_samples, max_slices, adaptive)
    except _NotForPyAV:
        yield from _soundfile_slices(path, sample_rate, slice_samples, max_slices, adaptive)


def decode(path: str, sample_rate: int) -> np.ndarray:
    """The whole of ``path`` as mono float32 at ``sample_rate``."""
    chunks = list(_pyav_stream(path, sample_rate))
    return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)


class _NotForPyAV(Exception):
    """PyAV cannot open the file at all; soundfile may."""


def _open(path: str):
    import av

    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        raise AudioError(path, "file not found") from None
    except OSError as exc:
        raise AudioError(path, f"cannot access the file ({exc.strerror})") from None
    if size == 0 and os.path.isfile(path):
        raise AudioError(path, "empty file (0 bytes)")
    try:
        container = av.open(path, metadata_errors="ignore")
    except PermissionError:
        raise AudioError(path, "permission denied") from None
    except IsADirectoryError:
        raise AudioError(path, "is a directory") from None
    except av.InvalidDataError:
        raise AudioError(path, "not a recognised audio file (invalid or corrupt data)") from None
    except av.EOFError:
        raise AudioError(path, "truncated: the file ends before its audio starts") from None
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise _NotForPyAV(str(exc)) from exc
    if not container.streams.audio:
        container.close()
        raise AudioError(path, "no audio stream")
    return container


def _duration(container) -> float | None:
    stream = container.streams.audio[0]
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return None


def _resampler(sample_rate: int):
    import av

    return av.AudioResampler(format="flt", layout="mono", rate=sample_rate)


def _decoded(container, path: str, sample_rate: int) -> Iterator[tuple[float | None, np.ndarray]]:
    """``(time_s of first sample or None, mono float32 chunk)`` from the current position."""
    import av

    stream = container.streams.audio[0]
    resampler = _resampler(sample_rate)
    time_base = float(stream.time_base) if stream.time_base is not None else 0.0
    try:
        for frame in container.decode(stream):
            t = None if frame.pts is None else frame.pts * time_base
            for out in resampler.resample(frame):
                yield t, _samples(out)
                t = None
        for out in resampler.resample(None):
            yield None, _samples(out)
    except av.FFmpegError as exc:
        raise AudioError(path, f"decoding failed: {exc}") from None


def _samples(frame) -> np.ndarray:
    """A resampled frame's mono float32 samples, read from its buffer (what
    ``frame.to_ndarray()`` returns, without its per-frame overhead: decoding calls this
    about 40 times per second of audio)."""
    return np.frombuffer(frame.planes[0], dtype=np.float32, count=frame.samples)


def _pyav_stream(path: str, sample_rate: int) -> Iterator[np.ndarray]:
    container = _open(path)
    with container:
        for _, chunk in _decoded(container, path, sample_rate):
            yield chunk


def _pyav_slices(path, sample_rate, slice_samples, max_slices, adaptive=False):
    container = _open(path)
    with container:
        duration = _duration(container)
        starts = plan_slices(duration, slice_samples / sample_rate, max_slices, adaptive=adaptive)
        if starts is not None:
            yield from _seek_slices(container, path, sample_rate, slice_samples, starts)
            return
        yield from _stream_slices(_decoded(container, path, sample_rate), path, slice_samples,
                                  sample_rate)


def _stream_slices(chunks, path, slice_samples, sample_rate):
    """Cut a chunk stream into consecutive slices, keeping at most one slice in memory."""
    pending: list[np.ndarray] = []
    n_pending = 0
    start = 0
    for _, chunk in chunks:
        pending.append(chunk)
        n_pending += len(chunk)
        while n_pending >= slice_samples:
            buf = np.concatenate(pending)
            yield start / sample_rate, buf[:slice_samples], False
            start += slice_samples
            pending, n_pending = [buf[slice_samples:]], len(buf) - slice_samples
    if start == 0:
        head = np.concatenate(pending) if pending else np.zeros(0, np.float32)
        if len(head) == 0:
            raise AudioError(path, "no audio samples could be decoded")
        yield 0.0, pad_slice(head, slice_samples), True


def _seek_slices(container, path, sample_rate, slice_samples, starts):
    stream = container.streams.audio[0]
    for start_s in starts:
        container.seek(int(start_s / stream.time_base), stream=stream, backward=True)
        got: list[np.ndarray] = []
        n_got = 0
        skip = None
        for t, chunk in _decoded(container, path, sample_rate):
            if skip is None:
                skip = 0 if t is None else max(0, int(round((start_s - t) * sample_rate)))
            if skip >= len(chunk):
                skip -= len(chunk)
                continue
            chunk = chunk[skip:]
            skip = 0
            got.append(chunk)
            n_got += len(chunk)
            if n_got >= slice_samples:
                break
        if n_got == 0:
            raise AudioError(path, f"no audio could be decoded at {start_s:.1f} s")
        samples = np.concatenate(got)
        if n_got < slice_samples:  # the container over-stated the duration
            samples = pad_slice(samples, slice_samples)
        yield start_s, samples[:slice_samples], False


def _soundfile_slices(path, sample_rate, slice_samples, max_slices, adaptive=False):
    import soundfile as sf
    from scipy.signal import resample_poly

    try:
        info = sf.info(path)
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise AudioError(path, f"not a readable audio file ({exc})") from None
    if info.frames <= 0:
        raise AudioError(path, "no audio samples")
    duration = info.frames / info.samplerate
    slice_s = slice_samples / sample_rate
    starts = plan_slices(duration, slice_s, max_slices, adaptive=adaptive)
    if starts is None:
        starts = [i * slice_s for i in range(max(1, int(duration // slice_s)))]
    g = np.gcd(sample_rate, info.samplerate)
    with sf.SoundFile(path) as fh:
        for start_s in starts:
            fh.seek(int(start_s * info.samplerate))
            block = fh.read(int(np.ceil(slice_s * info.samplerate)) + 1, dtype="float32",
                            always_2d=True).mean(axis=1)
            mono = resample_poly(block, sample_rate // g, info.samplerate // g).astype(np.float32)
            padded = len(mono) < slice_samples
            yield start_s, (pad_slice(mono, slice_samples) if padded else mono[:slice_samples]), padded
