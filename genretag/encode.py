"""Encode audio with PyAV: lossy round trips for augmentation, and test/benchmark files."""
from __future__ import annotations

import io
import os

import numpy as np

#: extension -> (container format, codec, sample rate the codec needs or None)
FORMATS = {
    ".mp3": ("mp3", "libmp3lame", None),
    ".flac": ("flac", "flac", None),
    ".m4a": ("ipod", "aac", None),
    ".opus": ("ogg", "libopus", 48000),
    ".ogg": ("ogg", "vorbis", None),  # written with soundfile: FFmpeg's encoder is experimental
    ".wav": ("wav", "pcm_s16le", None),
}


def encode(audio: np.ndarray, sample_rate: int, target, ext: str, *,
           bit_rate: int | None = None) -> None:
    """Write mono or ``[channels, n]`` float audio to ``target`` (path or binary file object)."""
    import av

    fmt, codec, codec_rate = FORMATS[ext]
    audio = np.atleast_2d(np.asarray(audio, dtype=np.float32))
    if ext == ".ogg":
        _write_vorbis(audio, sample_rate, target)
        return
    layout = {1: "mono", 2: "stereo", 6: "5.1"}[audio.shape[0]]
    rate = codec_rate or sample_rate
    with av.open(target, mode="w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate, layout=layout)
        if bit_rate:
            stream.bit_rate = bit_rate
        resampler = av.AudioResampler(format=stream.codec_context.format.name, layout=layout,
                                      rate=rate)
        block = 4096
        for i in range(0, audio.shape[1], block):
            part = np.ascontiguousarray(audio[:, i:i + block])
            frame = av.AudioFrame.from_ndarray(part, format="fltp", layout=layout)
            frame.sample_rate = sample_rate
            for out in resampler.resample(frame):
                container.mux(stream.encode(out))
        for out in resampler.resample(None):
            container.mux(stream.encode(out))
        container.mux(stream.encode(None))


def _write_vorbis(audio: np.ndarray, sample_rate: int, target) -> None:
    """OGG Vorbis via libsndfile, in blocks (one large write call can crash it)."""
    import soundfile as sf

    with sf.SoundFile(target, mode="w", samplerate=sample_rate, channels=audio.shape[0],
                      format="OGG", subtype="VORBIS") as fh:
        for i in range(0, audio.shape[1], 65536):
            fh.write(audio[:, i:i + 65536].T)


def write(audio: np.ndarray, sample_rate: int, path: str | os.PathLike, **kw) -> None:
    """Encode to ``path``; the format follows its extension."""
    encode(audio, sample_rate, os.fspath(path), os.path.splitext(os.fspath(path))[1].lower(), **kw)


def lossy_round_trip(audio: np.ndarray, sample_rate: int, *, bit_rate: int = 64000) -> np.ndarray:
    """``audio`` after MP3 encoding at ``bit_rate`` and decoding, same length and rate."""
    import av

    buf = io.BytesIO()
    encode(audio, sample_rate, buf, ".mp3", bit_rate=bit_rate)
    buf.seek(0)
    out = []
    with av.open(buf, format="mp3") as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        for frame in container.decode(audio=0):
            out.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
        out.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
    decoded = np.concatenate(out)
    result = np.zeros(len(audio), np.float32)
    n = min(len(audio), len(decoded))
    result[:n] = decoded[:n]
    return result
