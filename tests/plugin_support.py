"""Tagged audio files and a temporary beets setup for the beets plugin tests.

Files are synthesised with genretag's own test signal and encoder, then given the
tags a real collection has (title, artist, album, track number, cover art, a comment
and ReplayGain) with mutagen directly, so that what beets writes can be compared
with what was there before.
"""
from __future__ import annotations

import base64
import hashlib
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import mutagen
from mutagen.flac import FLAC, Picture
from mutagen.id3 import APIC, COMM, ID3, TALB, TIT2, TPE1, TRCK, TXXX
from mutagen.mp4 import MP4, MP4Cover, MP4FreeForm

FORMATS = ("mp3", "flac", "m4a", "ogg", "opus")

#: Where each container keeps the genre; everything else must survive tagging.
GENRE_KEYS = {"TCON", "genre", "\xa9gen"}

REPLAYGAIN = "-6.50 dB"


def tiny_png() -> bytes:
    """A valid 1×1 red PNG."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels)
            + chunk(b"IEND", b""))


COVER = tiny_png()


def make_track(path: Path, *, title: str, artist: str, album: str, track: int,
               seed: int = 0, duration_s: float = 6.0) -> Path:
    """Encode a synthetic music clip to ``path`` (format from the suffix) and tag it."""
    from genretag.encode import write
    from genretag.testing import synth_music

    path.parent.mkdir(parents=True, exist_ok=True)
    write(synth_music(duration_s, 22050, seed=seed, channels=2), 22050, path)
    add_tags(path, title=title, artist=artist, album=album, track=track)
    return path


def add_tags(path: Path, *, title: str, artist: str, album: str, track: int) -> None:
    """Write the usual tags, embedded cover art, a comment and ReplayGain."""
    ext = path.suffix.lower()
    if ext == ".mp3":
        tags = ID3()
        tags.add(TIT2(encoding=3, text=title))
        tags.add(TPE1(encoding=3, text=artist))
        tags.add(TALB(encoding=3, text=album))
        tags.add(TRCK(encoding=3, text=str(track)))
        tags.add(COMM(encoding=3, lang="eng", desc="", text="ripped for tests"))
        tags.add(TXXX(encoding=3, desc="REPLAYGAIN_TRACK_GAIN", text=REPLAYGAIN))
        tags.add(APIC(encoding=3, mime="image/png", type=3, desc="", data=COVER))
        tags.save(path)
    elif ext == ".m4a":
        audio = MP4(path)
        audio["\xa9nam"] = [title]
        audio["\xa9ART"] = [artist]
        audio["\xa9alb"] = [album]
        audio["trkn"] = [(track, 0)]
        audio["\xa9cmt"] = ["ripped for tests"]
        audio["----:com.apple.iTunes:replaygain_track_gain"] = [
            MP4FreeForm(REPLAYGAIN.encode())]
        audio["covr"] = [MP4Cover(COVER, imageformat=MP4Cover.FORMAT_PNG)]
        audio.save()
    else:  # Vorbis comments: FLAC, Ogg Vorbis, Opus
        audio = mutagen.File(path)
        audio["title"] = [title]
        audio["artist"] = [artist]
        audio["album"] = [album]
        audio["tracknumber"] = [str(track)]
        audio["comment"] = ["ripped for tests"]
        audio["replaygain_track_gain"] = [REPLAYGAIN]
        picture = Picture()
        picture.type, picture.mime, picture.width, picture.height = 3, "image/png", 1, 1
        picture.depth, picture.data = 24, COVER
        if isinstance(audio, FLAC):
            audio.add_picture(picture)
        else:
            audio["metadata_block_picture"] = [base64.b64encode(picture.write()).decode()]
        audio.save()


def _digest(data: bytes) -> str:
    return "sha1:" + hashlib.sha1(data).hexdigest()


def read_tags(path: Path) -> dict[str, list[str]]:
    """Every tag of ``path`` as ``{key: [values as text]}``; binary data as a digest."""
    audio = mutagen.File(path)
    out: dict[str, list[str]] = {}
    if isinstance(audio.tags, ID3):
        for frame in audio.tags.values():
            if isinstance(frame, APIC):
                value = [frame.mime, str(frame.type), frame.desc, _digest(frame.data)]
            elif hasattr(frame, "text"):
                value = [str(t) for t in frame.text]
            else:
                value = [frame._pprint()]
            out[frame.HashKey] = value
    elif isinstance(audio, MP4):
        for key, values in audio.tags.items():
            values = values if isinstance(values, list) else [values]
            out[key] = [_digest(bytes(v)) if isinstance(v, bytes) else str(v) for v in values]
    else:
        for key, value in audio.tags:
            out.setdefault(key.lower(), []).append(value)
        if isinstance(audio, FLAC):
            out["flac:pictures"] = [f"{p.type} {p.mime} {_digest(p.data)}" for p in audio.pictures]
    return out


def read_genres(path: Path) -> list[str]:
    """The genre values of ``path`` as separate strings (a real multi-value)."""
    tags = read_tags(path)
    return next((tags[k] for k in GENRE_KEYS if k in tags), [])


def file_state(path: Path) -> tuple[str, int]:
    """Content digest and modification time: equal states mean an untouched file."""
    return _digest(path.read_bytes()), path.stat().st_mtime_ns


def write_adts(path: Path, *, seed: int = 0, duration_s: float = 6.0) -> None:
    """Raw ADTS AAC: it decodes fine, but no tag format exists for it, so tags cannot be written."""
    import av
    import numpy as np

    from genretag.testing import synth_music

    audio = synth_music(duration_s, 22050, seed=seed)
    with av.open(str(path), mode="w", format="adts") as container:
        stream = container.add_stream("aac", rate=22050, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio), format="fltp",
                                           layout="mono")
        frame.sample_rate = 22050
        resampler = av.AudioResampler(format=stream.codec_context.format.name, layout="mono",
                                      rate=22050)
        for out in [*resampler.resample(frame), *resampler.resample(None)]:
            container.mux(stream.encode(out))
        container.mux(stream.encode(None))


def without_genre(tags: dict[str, list[str]]) -> dict[str, list[str]]:
    return {k: v for k, v in tags.items() if k not in GENRE_KEYS}


class Beets:
    """A throw-away beets home (config + library + music directory) driven via ``beet``."""

    def __init__(self, root: Path, **plugin_config):
        self.root = root
        self.home = root / "beetsdir"
        self.music = root / "library"
        self.home.mkdir(parents=True)
        self.write_config(**plugin_config)

    def write_config(self, *, import_write: bool = True, timeout: float = 5.0,
                     **plugin_config) -> None:
        """beets' config.yaml: copy imports, ``import.write`` and ``genretag`` options."""
        import yaml

        config = {
            "directory": str(self.music),
            "library": str(self.home / "library.db"),
            "plugins": ["genretag"],
            "timeout": timeout,
            "create_backup_before_migrations": False,
            "ui": {"color": False},
            "import": {"copy": True, "write": import_write, "quiet_fallback": "asis",
                       "resume": False},
            # min_confidence 0: every prediction sets genres, unless a test says otherwise
            "genretag": {"min_confidence": 0.0, **plugin_config},
        }
        (self.home / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")

    def run(self, *args: str, stdin: str | None = None, check: bool = True
            ) -> subprocess.CompletedProcess:
        """``beet ARGS`` in a child process; stdout and stderr captured as text."""
        proc = subprocess.run([sys.executable, "-m", "beets", *args], env=self.env, text=True,
                              input=stdin if stdin is not None else "", capture_output=True,
                              timeout=300)
        if check and proc.returncode != 0:
            raise AssertionError(f"beet {' '.join(args)} exited {proc.returncode}\n"
                                 f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
        return proc

    def run_on_terminal(self, *args: str) -> str:
        """``beet ARGS`` on a pseudo-terminal (100 columns); everything it printed."""
        import fcntl
        import pty
        import termios

        main, child = pty.openpty()
        fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
        proc = subprocess.Popen([sys.executable, "-m", "beets", *args], env=self.env,
                                stdin=child, stdout=child, stderr=child)
        os.close(child)
        chunks = []
        while True:
            try:
                data = os.read(main, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        os.close(main)
        assert proc.wait(timeout=300) == 0
        return b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "BEETSDIR": str(self.home), "PYTHONIOENCODING": "utf-8"}

    def lines(self, *query: str, fmt: str, album: bool = False) -> list[str]:
        """``beet ls [-a] -f FMT QUERY`` output lines."""
        out = self.run("ls", *(["-a"] if album else []), "-f", fmt, *query).stdout
        return [line for line in out.splitlines() if line]

    def library(self):
        """An open :class:`beets.library.Library` on this setup's database (read access)."""
        from beets.library import Library

        return Library(str(self.home / "library.db"), str(self.music))
