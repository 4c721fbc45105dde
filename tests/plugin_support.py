"""Tagged audio files and temporary beets setups for the beets plugin tests.

Files are synthesised with genretag's own test signal and encoder, then given the
tags a real collection has (title, artist, album, track number, cover art, a comment
and ReplayGain) with mutagen directly, so that what beets writes can be compared
with what was there before.

Two ways to drive beets: :class:`InProcess` (beets' own test helpers, a real
library on disk, commands run in this process: for everything that is not about
processes) and :class:`Beets` (``beet`` in child processes: for signals, kills,
locks, terminals and the network guard). One summary parser, one snapshot of the
database and one set of damaged files serve both.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import io
import logging
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from contextlib import redirect_stdout
from pathlib import Path
from typing import Callable

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


@functools.cache
def _encoded_dir() -> Path:
    """This process's untagged encodings (``SEED-DURATION.EXT``), removed at its end."""
    import atexit
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="genretag-clips-"))
    atexit.register(shutil.rmtree, path, True)
    return path


def make_track(path: Path, *, title: str, artist: str, album: str, track: int,
               seed: int = 0, duration_s: float = 6.0) -> Path:
    """Encode a synthetic music clip to ``path`` (format from the suffix) and tag it.

    A clip already encoded in this process (same seed, duration and format) is copied
    rather than synthesised and encoded again.
    """
    from genretag.encode import write
    from genretag.synthetic import synth_music

    path.parent.mkdir(parents=True, exist_ok=True)
    encoded = _encoded_dir() / f"{seed}-{duration_s}{path.suffix.lower()}"
    if encoded.exists():
        shutil.copyfile(encoded, path)
    else:
        write(synth_music(duration_s, 22050, seed=seed, channels=2), 22050, path)
        shutil.copyfile(path, encoded)
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
    return genres_in(read_tags(path))


def genres_in(tags: dict[str, list[str]]) -> list[str]:
    """The genre values among tags read by :func:`read_tags`."""
    return next((tags[k] for k in GENRE_KEYS if k in tags), [])


def file_state(path: Path) -> tuple[str, int]:
    """Content digest and modification time: equal states mean an untouched file."""
    return _digest(path.read_bytes()), path.stat().st_mtime_ns


def write_adts(path: Path, *, seed: int = 0, duration_s: float = 6.0) -> None:
    """Raw ADTS AAC: it decodes fine, but no tag format exists for it, so tags cannot be written."""
    import av
    import numpy as np

    from genretag.synthetic import synth_music

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


# What a run reports, and snapshots to compare before and after.

SUMMARY = re.compile(
    r"^genretag: (?P<tagged>\d+) (?:tagged|would be tagged), (?P<skipped>\d+) skipped, "
    r"(?P<failed>\d+) failed(?:, (?P<silent>\d+) silent)?(?:, (?P<albums>\d+) albums)?"
    r"(?:, (?P<singletons>\d+) singletons left out \(-a\))?"
    r"(?:, (?P<left>\d+) not done \(interrupted\))?$", re.M)


def temp_files(root: Path) -> list[Path]:
    """genretag's hidden temporary copies left under ``root`` (none, after any run)."""
    from genretag.atomic import TEMP_PREFIX

    return sorted(root.rglob(TEMP_PREFIX + "*"))


def summary(output: str) -> dict[str, int]:
    """The summary line's counts; only the parts the line has (``tagged``, ``skipped``,
    ``failed`` always; ``silent``, ``albums``, ``singletons``, ``left`` when shown)."""
    match = SUMMARY.search(output)
    assert match, f"no summary line in {output!r}"
    return {k: int(v) for k, v in match.groupdict().items() if v is not None}


def counts(tagged: int, skipped: int = 0, failed: int = 0, **more: int) -> dict[str, int]:
    """The summary :func:`summary` must return."""
    return {"tagged": tagged, "skipped": skipped, "failed": failed, **more}


def rows(lib) -> tuple[dict, dict]:
    """Every stored field of every item and album: equal snapshots mean an untouched DB."""
    return ({i.id: dict(i) for i in lib.items()}, {a.id: dict(a) for a in lib.albums()})


def states(folder: Path) -> dict[str, tuple[str, int]]:
    """:func:`file_state` of every file under ``folder``, by name."""
    return {p.name: file_state(p) for p in folder.rglob("*.*")}


# The bad files: tagged and imported like the others, then damaged in the library.

def _random_bytes(path: Path) -> None:
    path.write_bytes(os.urandom(path.stat().st_size))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)  # any reader blocks until a writer comes: a hung decoder


#: The per-file time bound (the plugin's ``timeout``) the tests of these files set.
HANG_BOUND_S = 4

#: title -> (format, how the library file is damaged, the reason its one error line gives).
BAD_FILES: dict[str, tuple[str, Callable[[Path], None], str]] = {
    "random bytes": ("mp3", _random_bytes, "not a recognised audio file"),
    "truncated": ("flac", _truncate, "decoding failed|truncated"),
    "zero bytes": ("mp3", lambda p: p.write_bytes(b""), r"empty file \(0 bytes\)"),
    "a text file": ("mp3", lambda p: p.write_text("not audio, just notes\n" * 100),
                    "not a recognised audio file"),
    "deleted": ("ogg", Path.unlink, "file not found"),
    "read-only": ("m4a", lambda p: p.chmod(0o444), "cannot write genres to .*the file is "
                                                   "read-only"),
    "no tag format": ("m4a", lambda p: write_adts(p), "cannot write genres to "),
    "hangs": ("mp3", _fifo, f"gave up after {HANG_BOUND_S} s"),
}


def damage(items: dict, titles) -> None:
    """Damage the library files of ``items`` (by title) as :data:`BAD_FILES` says."""
    for title in titles:
        BAD_FILES[title][1](items[title].filepath)


# beets in this process.

def _in_process_base():
    from beets.test.helper import ImportHelper, PluginMixin

    class Base(PluginMixin, ImportHelper):
        plugin = "genretag"
        preload_plugin = False
        db_on_disk = True

    return Base


class Output:
    """What one in-process command printed: ``stdout`` and beets' log ``lines``."""

    def __init__(self, stdout: str, lines: list[str]):
        self.stdout = stdout
        self.lines = lines

    @property
    def log(self) -> str:
        return "\n".join(self.lines)


class _Lines(logging.Handler):
    def __init__(self) -> None:
        from beets.logging import LegacyFormatter

        super().__init__(logging.DEBUG)
        self.setFormatter(LegacyFormatter("%(legacy_prefix)s%(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


class InProcess:
    """A real beets library on disk, driven in this process through beets' test helpers.

    ``run("genretag", ...)`` goes through beets' command line (``_raw_main``) as
    ``beet genretag ...`` would, and returns an :class:`Output`; a ``UserError``
    (exit status 1) propagates, its output in ``last``. Log lines at info level
    and above are collected (``verbose`` 0, as a user runs it).
    """

    def __init__(self, **plugin_config):
        self.helper = _in_process_base()()
        self.helper.setup_beets()
        self.lib = self.helper.lib
        self.music = self.helper.lib_path
        self.home = self.helper.temp_path
        self.last = Output("", [])
        self.configure(**plugin_config)

    def configure(self, *, import_write: bool = True, **plugin_config) -> None:
        """(Re)load the plugin with these ``genretag`` options (min_confidence 0 unless
        given: every prediction sets genres) and ``import.write``."""
        config = self.helper.config
        config["verbose"] = 0
        config["import"]["write"] = import_write
        config["import"]["copy"] = True
        config["genretag"].set({"min_confidence": 0.0, **plugin_config})
        self.helper.unload_plugins()
        self.lines = _Lines()
        with self._capture() as out:
            self.helper.load_plugins()
        _forget_field_types()
        self.load_output = out

    def _capture(self):
        harness = self

        class Capture:
            def __enter__(self):
                self.buffer = io.StringIO()
                self.handler = _Lines()
                self.handler.setLevel(logging.INFO)
                logging.getLogger("beets").addHandler(self.handler)
                self.redirect = redirect_stdout(self.buffer)
                self.redirect.__enter__()
                self.output = Output("", self.handler.lines)
                return self.output

            def __exit__(self, *exc):
                self.redirect.__exit__(*exc)
                logging.getLogger("beets").removeHandler(self.handler)
                self.output.stdout = self.buffer.getvalue()
                harness.last = self.output
                return False

        return Capture()

    def run(self, *args: str) -> Output:
        """``beet ARGS`` in this process; beets' own handler for its log is muted."""
        beets_log = logging.getLogger("beets")
        muted = [h for h in beets_log.handlers if not isinstance(h, _Lines)]
        for handler in muted:
            beets_log.removeHandler(handler)
        try:
            with self._capture() as out:
                self.helper.run_command(*args, lib=self.lib)
        finally:
            for handler in muted:
                beets_log.addHandler(handler)
        return out

    def import_(self, *args: str) -> Output:
        """``beet import -q ARGS`` (copy mode, as-is unless ``-A`` is left out)."""
        return self.run("import", "-q", *args)

    def items(self) -> dict:
        """The library's items by title (fresh from the database)."""
        return {item.title: item for item in self.lib.items()}

    def close(self) -> None:
        self.helper.unload_plugins()
        self.helper.teardown_beets()
        _forget_field_types()


def _forget_field_types() -> None:
    """Have beets compute its models' field types again, from the plugins loaded now.

    beets caches ``Item._types`` in this process the first time it is read: read
    before the plugin is loaded (``Beets.library()`` does), it would lack the
    plugin's typed fields for good, and storing a list in ``genretag_genres`` fails.
    """
    from beets.util import cached_classproperty

    cached_classproperty.cache.clear()


def copy_tree(src: Path, dst: Path) -> Path:
    return Path(shutil.copytree(src, dst))
