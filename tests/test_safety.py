"""Nothing lost: the beets plugin's side of the reliability matrix (issue 5).

Bad files in a library, a locked database, kills inside a tag write, the weights and
the network. Everything runs real ``beet`` processes on a temporary library of tagged
files; afterwards the files are checked with mutagen and the decoder, and the
database row by row. Library runs interrupted at random moments are in
test_kill_trials.py, the command line's side in test_bad_input.py, the weights' own
failure cases in test_model.py.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import mutagen
import numpy as np
import pytest
import yaml

from genretag.atomic import temp_path
from genretag.audio import decode
from genretag.encode import write
from genretag.synthetic import synth_music
from .plugin_support import (BAD_FILES, HANG_BOUND_S, Beets, add_tags, counts, damage,
                             file_state, make_track, read_genres, read_tags, summary,
                             temp_files, without_genre)
from .plugin_support import rows as library_rows

needs_posix = pytest.mark.skipif(not hasattr(os, "mkfifo") or sys.platform != "linux",
                                 reason="needs POSIX signals, FIFOs and /proc")


def set_options(beets: Beets, **options) -> None:
    """Set ``genretag`` options in the setup's config (``Beets.write_config``'s
    ``timeout`` is beets' database timeout, not the plugin's)."""
    path = beets.home / "config.yaml"
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    config["genretag"].update(options)
    path.write_text(yaml.safe_dump(config), encoding="utf-8")


def rows(beets: Beets) -> dict[int, dict]:
    """Every item's stored fields, by id."""
    return library_rows(beets.library())[0]


def make_immutable(path: Path) -> bool:
    """``chattr +i``: even root cannot change the file. False where that is unavailable."""
    if os.geteuid() != 0 or not shutil.which("chattr"):
        return False
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        return False
    try:
        with open(path, "ab"):
            pass
    except PermissionError:
        return True
    subprocess.run(["chattr", "-i", str(path)], capture_output=True)
    return False


# The plugin's side of the matrix.

def encode_tagged(path: Path, audio: np.ndarray, rate: int, *, title: str,
                  artist: str = "Test Artist") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write(audio, rate, path)
    add_tags(path, title=title, artist=artist, album="Matrix", track=1)
    return path


@pytest.fixture(scope="module")
def matrix_src(tmp_path_factory) -> Path:
    """One tagged file per case; the bad ones are damaged after the import."""
    src = tmp_path_factory.mktemp("matrix src")
    cases = [("good", "mp3"), *((t, ext) for t, (ext, _, _) in BAD_FILES.items()),
             ("immutable", "flac"), ("good m4a", "m4a")]
    for n, (case, ext) in enumerate(cases):
        make_track(src / f"{case}.{ext}", title=case, artist="Test Artist", album="Matrix",
                   track=1, seed=n, duration_s=4.0)
    encode_tagged(src / "silence.flac", np.zeros((1, 22050 * 4), np.float32), 22050,
                  title="silence")
    encode_tagged(src / "tiny.flac", synth_music(0.2, 22050, seed=20), 22050,
                  title="a 0.2 s clip")
    noise = np.clip(np.random.default_rng(21).standard_normal((2, 44100 * 4)) * 4, -1, 1)
    encode_tagged(src / "noise.flac", noise.astype(np.float32), 44100,
                  title="clipped full-scale noise")
    encode_tagged(src / "six.flac", synth_music(4.0, 48000, seed=22, channels=6), 48000,
                  title="six channels")
    encode_tagged(src / "hires.flac", synth_music(4.0, 96000, seed=23), 96000,
                  title="96 kHz")
    encode_tagged(src / "unicode.opus", synth_music(4.0, 48000, seed=24), 48000,
                  title="Jóga (ライブ)  two  spaces", artist="Björk Guðmundsdóttir")
    return src


#: Damaged after import: title -> the reason the one error line must give.
BAD_REASONS = {**{title: reason for title, (_, _, reason) in BAD_FILES.items()},
               "immutable": "cannot write genres to .*the file is read-only"}
ODD_BUT_VALID = ("good", "good m4a", "a 0.2 s clip", "clipped full-scale noise",
                 "six channels", "96 kHz", "Jóga (ライブ)  two  spaces")


@needs_posix
def test_bad_items_fail_one_line_each_and_the_rest_is_tagged(matrix_src, tmp_path, model):
    beets = Beets(tmp_path, auto=False)
    set_options(beets, timeout=HANG_BOUND_S, max_slices=2)
    beets.run("import", "-A", "-s", str(matrix_src))
    items = {item.title: item for item in beets.library().items()}
    assert set(items) == set(BAD_REASONS) | set(ODD_BUT_VALID) | {"silence"}
    unicode_path = items["Jóga (ライブ)  two  spaces"].filepath
    assert "Björk" in str(unicode_path) and "  two  " in unicode_path.name
    tags_before = {t: read_tags(i.filepath) for t, i in items.items()}
    items["good"].filepath.chmod(0o604)  # an unusual mode that must survive the rewrite
    damage(items, BAD_FILES)
    immutable = make_immutable(items["immutable"].filepath)
    if not immutable:
        items["immutable"].filepath.chmod(0o444)  # still a read-only file
    db_before = rows(beets)
    files_before = {t: file_state(i.filepath) for t, i in items.items()
                    if i.filepath.is_file()}
    try:
        started = time.monotonic()
        proc = beets.run("genretag", check=False)
        elapsed = time.monotonic() - started
        # A rerun retries the failures (the same lines again) and skips the rest.
        again = beets.run("genretag", check=False)
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(items["immutable"].filepath)], check=True)

    assert proc.returncode == 1, proc.stderr
    assert summary(proc.stdout) == counts(len(ODD_BUT_VALID), 0, len(BAD_REASONS), silent=1)
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[-1] == (
        f"error: {len(BAD_REASONS)} item(s) could not be tagged and were left unchanged "
        "(reasons above); the next run tries them again")
    assert elapsed < 100  # the FIFO cost its time bound, not forever
    db_after = rows(beets)
    for title, reason in BAD_REASONS.items():
        path = items[title].filepath
        lines = [line for line in proc.stderr.splitlines() if str(path) in line]
        assert len(lines) == 1, (title, proc.stderr)
        assert re.fullmatch(rf"genretag: (cannot classify {re.escape(str(path))}: )?"
                            rf"({reason}).*; item left unchanged", lines[0]), (title, lines[0])
        assert db_after[items[title].id] == db_before[items[title].id], title
        if title in files_before:
            assert file_state(path) == files_before[title], title
    assert not items["deleted"].filepath.exists()
    assert items["hangs"].filepath.is_fifo()
    for title in ODD_BUT_VALID:
        item = beets.library().get_item(items[title].id)
        assert item["genretag_model"] == model.model_id, title
        assert item.genres and read_genres(item.filepath) == item.genres, title
        assert without_genre(read_tags(item.filepath)) == without_genre(tags_before[title])
        assert item.mtime == int(item.filepath.stat().st_mtime)
    assert items["good"].filepath.stat().st_mode & 0o777 == 0o604
    # Silence is no failure: recorded once (issue 12 B10), the file left as it was.
    silent = beets.library().get_item(items["silence"].id)
    assert (silent["genretag_genre"], silent["genretag_model"]) == ("silence", model.model_id)
    assert silent.genres == [] and file_state(silent.filepath) == files_before["silence"]
    assert [line for line in proc.stderr.splitlines() if str(silent.filepath) in line] == [
        f"genretag: {silent.filepath}: the audio is silent; recorded as silent, no genre set"]
    assert temp_files(beets.music) == []

    assert again.returncode == 1
    assert summary(again.stdout) == counts(0, len(ODD_BUT_VALID) + 1, len(BAD_REASONS))
    assert [line for line in again.stderr.splitlines() if "item left unchanged" in line] == [
        line for line in proc.stderr.splitlines() if "item left unchanged" in line]
    assert rows(beets) == db_after


@needs_posix
def test_import_hook_reports_silence_and_tags_odd_files(matrix_src, tmp_path, model):
    """The same odd files through ``beet import`` with ``auto: yes``: one line for the
    silent file (recorded as silent), the import goes on and everything else is tagged
    and written."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("silence.flac", "tiny.flac", "noise.flac", "six.flac", "hires.flac",
                 "unicode.opus", "good.mp3"):
        shutil.copy2(matrix_src / name, src / name)
    beets = Beets(tmp_path)
    set_options(beets, max_slices=2)
    proc = beets.run("import", "-A", "-s", str(src))
    items = {item.title: item for item in beets.library().items()}
    assert len(items) == 7
    silent = items["silence"]
    assert [line for line in proc.stderr.splitlines() if line.startswith("genretag")] == [
        f"genretag: {silent.filepath}: the audio is silent; recorded as silent, no genre set"]
    assert silent["genretag_genre"] == "silence" and not silent.genres
    assert read_genres(silent.filepath) == []
    for title, item in items.items():
        assert item["genretag_model"] == model.model_id, title
        if title != "silence":
            assert read_genres(item.filepath) == item.genres != [], title
        assert (without_genre(read_tags(item.filepath))
                == without_genre(read_tags(_source(src, item))))
    assert temp_files(beets.music) == []


def _source(src: Path, item) -> Path:
    """The source file an imported singleton came from (same format and title)."""
    names = {"silence": "silence.flac", "a 0.2 s clip": "tiny.flac",
             "clipped full-scale noise": "noise.flac", "six channels": "six.flac",
             "96 kHz": "hires.flac", "Jóga (ライブ)  two  spaces": "unicode.opus",
             "good": "good.mp3"}
    return src / names[item.title]


def test_locked_database_changes_no_file_and_no_row(matrix_src, tmp_path):
    """Writing on: the database's write lock is taken before a file is touched."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("good.mp3", "good m4a.m4a", "unicode.opus"):
        shutil.copy2(matrix_src / name, src / name)
    beets = Beets(tmp_path, auto=False, timeout=0.5)
    beets.run("import", "-A", "-s", str(src))
    db = rows(beets)
    files = {p: file_state(p) for p in beets.music.rglob("*.*")}
    lock = sqlite3.connect(beets.home / "library.db", isolation_level=None)
    try:
        lock.execute("BEGIN IMMEDIATE")  # another beets process writing
        proc = beets.run("genretag", "-w", check=False)
    finally:
        lock.rollback()
        lock.close()
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "error: library database: database is locked;")
    assert rows(beets) == db
    assert {p: file_state(p) for p in beets.music.rglob("*.*")} == files
    # Once the other process is done, a rerun tags everything.
    assert summary(beets.run("genretag", "-w").stdout) == counts(3)


# Kills inside a tag write.

#: Run ``beet genretag`` with one function replaced so that the process SIGKILLs
#: itself at a chosen point of writing the first file.
KILL_AT = """
import os, signal, sys
import genretag.atomic as atomic
where = sys.argv[1]
def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
if where == "fsync":          # the temporary copy is written, not yet on disk
    atomic.fsync_path = die
elif where == "replace":      # the copy is complete, the original not yet replaced
    real_replace = os.replace
    def replace(src, dst, *a, **kw):
        if os.path.basename(src).startswith(atomic.TEMP_PREFIX):
            die()
        return real_replace(src, dst, *a, **kw)
    os.replace = replace
elif where == "store":        # the file is replaced, the database not yet committed
    from beets.library import Item
    Item.store = die
import beets.ui
beets.ui.main(["genretag", "-w"])
"""


@pytest.mark.parametrize("where", ["fsync", "replace", "store"])
def test_kill_inside_a_write_leaves_a_whole_file(matrix_src, tmp_path, model, where):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy2(matrix_src / "good.mp3", src / "good.mp3")
    beets = Beets(tmp_path, auto=False)
    beets.run("import", "-A", "-s", str(src))
    (item,) = beets.library().items()
    path = item.filepath
    before, tags = file_state(path), read_tags(path)
    row = dict(item)
    proc = subprocess.run([sys.executable, "-c", KILL_AT, where], env=beets.env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert rows(beets)[item.id] == row  # not marked done
    assert mutagen.File(path) is not None and len(decode(str(path), 16000)) > 0
    assert without_genre(read_tags(path)) == without_genre(tags)
    if where == "store":  # the new file is complete; the item is redone next time
        assert read_genres(path) != [] and temp_files(beets.music) == []
    else:  # the old file is untouched; a hidden temporary copy may be left
        assert file_state(path) == before
        assert temp_files(beets.music) == [Path(temp_path(str(path)))]
        # beets' default `ignore: .*` keeps such a file out of any import.
        more = tmp_path / "more"
        more.mkdir()
        shutil.copy2(temp_files(beets.music)[0], more)
        shutil.copy2(matrix_src / "unicode.opus", more)
        beets.run("import", "-A", "-s", str(more))
        assert sorted(i.title for i in beets.library().items()) == [
            "Jóga (ライブ)  two  spaces", "good"]
    # The next run finishes the item and removes the leftover.
    assert summary(beets.run("genretag", "-w", "title:good").stdout) == counts(1)
    done = beets.library().get_item(item.id)
    assert done["genretag_model"] == model.model_id
    assert read_genres(path) == done.genres
    assert without_genre(read_tags(path)) == without_genre(tags)
    assert temp_files(beets.music) == []


def test_temp_path_is_hidden_next_to_the_file_with_its_extension():
    assert temp_path("/m/a/01 Song.flac") == "/m/a/.genretag-tmp.01 Song.flac"
    long = "/m/" + "x" * 250 + ".opus"
    tmp = temp_path(long)
    assert tmp.startswith("/m/.genretag-tmp.") and tmp.endswith(".opus")
    assert len(os.path.basename(tmp)) <= 255 and temp_path(long) == tmp


# Weights and the network (the weights' own failure cases are in test_model.py).

def test_pickled_code_in_place_of_weights_is_never_run(matrix_src, tmp_path):
    """A pickle payload with a valid hash in the card is refused, not unpickled, and
    ``beet genretag`` stops with one error naming the file, changing nothing."""
    import json
    import pickle

    from genretag.errors import WeightsError
    from genretag.model import CARD_NAME, default_weights_dir, load_model, sha256_file

    weights = Path(shutil.copytree(default_weights_dir(), tmp_path / "weights"))
    card = json.loads((weights / CARD_NAME).read_text())
    head = weights / card["files"][-1]["path"]
    marker = tmp_path / "payload ran"

    class Payload:
        def __reduce__(self):
            return open, (str(marker), "w")

    head.write_bytes(pickle.dumps(Payload()))
    card["files"][-1]["sha256"] = sha256_file(head)
    (weights / CARD_NAME).write_text(json.dumps(card))
    with pytest.raises(WeightsError, match=re.escape(str(head)) + ": not a valid safetensors"):
        load_model(weights)
    assert not marker.exists()

    src = tmp_path / "src"
    src.mkdir()
    shutil.copy2(matrix_src / "good.mp3", src)
    beets = Beets(tmp_path / "beets", auto=False)
    beets.run("import", "-A", "-s", str(src))
    db, files = rows(beets), {p: file_state(p) for p in beets.music.rglob("*.*")}
    proc = subprocess.run([sys.executable, "-m", "beets", "genretag"], capture_output=True,
                          text=True, timeout=300,
                          env={**beets.env, "GENRETAG_WEIGHTS": str(weights)})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"error: {head}: not a valid safetensors file")
    assert not marker.exists()
    assert rows(beets) == db
    assert {p: file_state(p) for p in beets.music.rglob("*.*")} == files


#: Loaded by every Python process (beet, its workers, genretag) through PYTHONPATH:
#: any attempt to reach the network is logged and refused.
NO_NETWORK = """
import os, socket

def _refuse(*args, **kwargs):
    with open(os.environ["GENRETAG_NET_LOG"], "a") as log:
        log.write(f"{os.getpid()} {args!r}\\n")
    raise OSError("network access blocked by the test")

_connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex

def connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _refuse(address)
    return _connect(self, address)

def connect_ex(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _refuse(address)
    return _connect_ex(self, address)

socket.socket.connect, socket.socket.connect_ex = connect, connect_ex
socket.getaddrinfo = socket.create_connection = _refuse
"""


def test_nothing_is_fetched_from_the_network(matrix_src, tmp_path, model):
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(NO_NETWORK)
    log = tmp_path / "network.log"
    beets = Beets(tmp_path / "beets")
    env = {**beets.env, "GENRETAG_NET_LOG": str(log),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(guard),
                                                       os.environ.get("PYTHONPATH")]))}

    def run(*args: str) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, *args], env=env, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        return proc

    probe = subprocess.run([sys.executable, "-c", "import socket; socket.create_connection("
                            "('192.0.2.1', 80), timeout=1)"], env=env, capture_output=True)
    assert probe.returncode != 0 and log.exists()  # the guard works
    log.unlink()
    src = tmp_path / "src"
    src.mkdir()
    for name in ("good.mp3", "unicode.opus"):
        shutil.copy2(matrix_src / name, src)
    run("-m", "beets", "import", "-A", "-s", str(src))  # auto: yes, in-process model
    assert summary(run("-m", "beets", "genretag", "-f", "-j", "2").stdout) == counts(2)
    out = run("-m", "genretag.cli", "classify", "--json", str(src)).stdout
    assert len(out.splitlines()) == 2
    assert all(i["genretag_model"] == model.model_id for i in beets.library().items())
    assert not log.exists(), log.read_text()
