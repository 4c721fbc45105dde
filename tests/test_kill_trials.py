"""Nothing lost: `beet genretag` on a 100-file library, interrupted at random moments.

Twelve seeded SIGINT and twelve seeded SIGKILL interruptions of real ``beet``
processes (issue 5); after each, the files are checked with mutagen and the decoder,
and the database row by row, and the next run continues. The other cases of the
reliability matrix are in test_safety.py.
"""
from __future__ import annotations

import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import suppress
from pathlib import Path

import mutagen
import pytest

from genretag.audio import decode
from .plugin_support import (FORMATS, SUMMARY, Beets, counts, file_state, genres_in, make_track,
                             read_tags, summary, temp_files, without_genre)

DONE_LINE = re.compile(r"^genretag: .* → .* \((.* )?[01]\.\d\d(; .*)?\)$")  # one item stored

N_TRACKS = 100
TRIALS = 12
START_LINE = re.compile(r"^genretag: \d+ items to classify", re.M)  # SIGINT handler in place


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """100 tagged 3.5-s tracks (10 albums, all formats; ten different clips) imported
    with ``auto: no``.

    The setup (database and files) is copied to a template once; every series of
    trials restores it in place, so the database's absolute paths stay valid.
    """
    root = tmp_path_factory.mktemp("corpus")
    src = root / "src"
    for i in range(N_TRACKS):
        make_track(src / f"Album {i // 10}" / f"{i % 10 + 1:02d} track.{FORMATS[i % 5]}",
                   title=f"Song {i}", artist=f"Artist {i // 10}", album=f"Album {i // 10}",
                   track=i % 10 + 1, seed=i % 10, duration_s=3.5)  # ten clips, retagged
    beets = Beets(root / "work", auto=False, max_slices=1)
    beets.run("import", "-A", "-q", str(src))
    originals = {item.id: (dict(item), without_genre(read_tags(item.filepath)))
                 for item in beets.library().items()}
    assert len(originals) == N_TRACKS
    template = root / "template"
    shutil.copytree(beets.root, template)
    return beets, template, originals


class Run:
    """``beet -v genretag ARGS`` in its own process group, its output read as it comes."""

    def __init__(self, beets: Beets, *args: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "beets", "-v", "genretag", *args], env=beets.env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, encoding="utf-8", start_new_session=True)
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.done = 0  # items stored so far, from the debug lines
        self._changed = threading.Condition()
        self._readers = [threading.Thread(target=self._read, args=(stream, lines), daemon=True)
                         for stream, lines in ((self.proc.stdout, self.stdout),
                                               (self.proc.stderr, self.stderr))]
        for reader in self._readers:
            reader.start()

    def _read(self, stream, lines: list[str]) -> None:
        for line in stream:
            with self._changed:
                lines.append(line.rstrip("\n"))
                self.done += bool(DONE_LINE.match(line))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_until_exec(self, timeout: float) -> None:
        """Until the child runs ``beet``. Before its exec, the child is a copy of this
        process whose inherited signal handler would swallow a SIGINT unseen."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                cmdline = Path(f"/proc/{self.proc.pid}/cmdline").read_bytes()
            except OSError:  # already gone
                return
            if b"\0-m\0beets\0" in cmdline:
                return
            time.sleep(0.002)

    def wait_until_started(self, timeout: float) -> None:
        with self._changed:
            self._changed.wait_for(lambda: any(START_LINE.match(line) for line in self.stderr)
                                   or self.proc.poll() is not None, timeout=timeout)

    def wait_until_done(self, count: int, timeout: float) -> None:
        with self._changed:
            self._changed.wait_for(lambda: self.done >= count or self.proc.poll() is not None,
                                   timeout=timeout)

    def finish(self, timeout: float) -> int:
        code = self.proc.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=10)
        return code

    def members(self) -> list[int]:
        """Live (not zombie) processes of the run's process group: beet and its workers."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            state, _, pgrp = stat.rsplit(")", 1)[1].split()[:3]
            if int(pgrp) == self.proc.pid and state != "Z":
                found.append(int(entry.name))
        return found

    def kill_all(self) -> None:
        with suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.wait(timeout=30)


#: What a file's bytes say, by their digest: ``(opens with mutagen, decoded samples at
#: 16 kHz, tags)``. The same bytes read and decode the same, so a file no run changed
#: since an earlier check is not decoded again (the trials' checks cost 40 % of their CPU).
_READ_BY_CONTENT: dict[str, tuple[bool, int, dict]] = {}


def read_file(path: Path) -> tuple[bool, int, dict]:
    """``(mutagen opens it, samples decoded at 16 kHz, its tags)`` for ``path``'s bytes."""
    key = file_state(path)[0]  # the content digest
    if key not in _READ_BY_CONTENT:
        opens = mutagen.File(path) is not None
        _READ_BY_CONTENT[key] = (opens, len(decode(str(path), 16000)),
                                 read_tags(path) if opens else {})
    return _READ_BY_CONTENT[key]


def check_library(beets: Beets, originals: dict) -> dict[str, int]:
    """What must hold after any interruption; returns the state the library was left in.

    Every file opens with mutagen and decodes whole; every tag but the genre has its
    original value; an item marked done (``genretag_model``) has its file's genres and
    mtime; any other row is exactly as imported; the database passes SQLite's check.
    (A file's reading is reused while its bytes are unchanged: :func:`read_file`.)
    """
    items = list(beets.library().items())
    con = sqlite3.connect(beets.home / "library.db")
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()
    assert len(items) == len(originals)
    state = {"done": 0, "written_not_done": 0}
    for item in items:
        path = item.filepath
        row, tags = originals[item.id]
        opens, samples, file_tags = read_file(path)
        assert opens, path
        assert samples >= 16000 * 3, path
        assert without_genre(file_tags) == tags, path
        genres = genres_in(file_tags)
        if item.get("genretag_model"):
            state["done"] += 1
            assert genres == item.genres != [], path
            assert item.mtime == int(path.stat().st_mtime), path
        else:
            assert dict(item) == row, path
            state["written_not_done"] += bool(genres)
    state["temp_files"] = len(temp_files(beets.music))
    return state


@pytest.mark.skipif(sys.platform != "linux", reason="needs POSIX signals and /proc")
@pytest.mark.parametrize("signame", ["SIGINT", "SIGKILL"])
def test_interrupted_library_runs_lose_nothing(corpus, signame, model, capsys):
    """Twelve seeded interruptions of `beet genretag` on 100 files, each followed by the
    checks above; the next run continues, and a last one finishes the library.

    SIGINT goes to the whole process group, as Ctrl-C on a terminal does (twice in
    some trials); SIGKILL to the whole group or to beet alone (its workers must then
    exit by themselves). Kills land during start-up or after a random number of items
    plus a random fraction of the next one.
    """
    beets, template, originals = corpus
    shutil.rmtree(beets.root)
    shutil.copytree(template, beets.root)
    rng = random.Random(f"genretag safety {signame}")
    jobs = "1" if signame == "SIGINT" else "2"
    report = []
    for trial in range(TRIALS):
        done_before = check_library(beets, originals)["done"]
        remaining = N_TRACKS - done_before
        run = Run(beets, "-j", jobs)
        try:
            phase = rng.random() if remaining > 20 else 1.0
            if phase < 0.15:  # beets starting, plugins loading, the query
                run.wait_until_exec(timeout=30)
                delay = rng.uniform(0.0, 1.5)
                time.sleep(delay)
                moment = f"{delay:.2f} s after start"
            elif phase < 0.3:  # workers starting, the model loading, the first items
                run.wait_until_started(timeout=120)
                delay = rng.uniform(0.0, 1.5)
                time.sleep(delay)
                moment = f"{delay:.2f} s after the command began"
            else:  # in the middle of an item: classifying, writing or storing it
                share = 3 * remaining // (2 * (TRIALS - trial + 1))  # some left at the end
                k = rng.randint(1, max(1, min(remaining - 3, share)))
                run.wait_until_done(k, timeout=120)
                delay = rng.uniform(0.0, 0.15)
                time.sleep(delay)
                moment = f"{delay:.2f} s after item {k}"
            assert run.proc.poll() is None, "the run ended before the interruption"
            stored_at_signal = run.done
            sent = time.monotonic()
            if signame == "SIGINT":
                twice = rng.random() < 0.3
                os.killpg(run.proc.pid, signal.SIGINT)
                if twice:
                    time.sleep(rng.uniform(0.0, 0.3))
                    with suppress(ProcessLookupError):
                        os.killpg(run.proc.pid, signal.SIGINT)
                target = "group, twice" if twice else "group"
            else:
                target = rng.choice(["group", "beet only"])
                if target == "group":
                    os.killpg(run.proc.pid, signal.SIGKILL)
                else:
                    run.proc.send_signal(signal.SIGKILL)
            code = run.finish(timeout=60)
            latency = time.monotonic() - sent
            deadline = time.monotonic() + 15
            while run.members() and time.monotonic() < deadline:
                time.sleep(0.2)
            leftovers = run.members()
        finally:
            run.kill_all()
        assert leftovers == [], "worker processes outlived the run"

        state = check_library(beets, originals)
        out, err = "\n".join(run.stdout), "\n".join(run.stderr)
        if signame == "SIGINT":
            started = bool(START_LINE.search(err))
            graceful = SUMMARY.search(out) is not None
            assert graceful or not started, err  # once the run started, it stops cleanly
            if graceful:
                assert code == 1 and "Traceback" not in err, err
                assert err.splitlines()[-1].startswith("error: interrupted"), err
                got = summary(out)
                tagged = got["tagged"]
                assert got == counts(tagged, got["skipped"], 0, left=remaining - tagged)
                assert got["skipped"] <= done_before
                assert state["done"] == done_before + tagged >= done_before + stored_at_signal
            else:  # before the plugin's command began: beets' own ^C, nothing changed
                assert state["done"] == done_before
            assert state["temp_files"] == state["written_not_done"] == 0
            assert latency < 20
        else:
            assert code == -signal.SIGKILL
            assert state["done"] >= done_before + stored_at_signal
        report.append({"trial": trial, "signal": signame, "target": target, "when": moment,
                       "exit": code, "exited_after_s": round(latency, 2),
                       "done_before": done_before, **state})

    # A plain run finishes what is left, and clears what the kills left behind.
    left = N_TRACKS - report[-1]["done"]
    proc = beets.run("genretag", "-j", jobs)
    assert summary(proc.stdout) == counts(left, N_TRACKS - left)
    final = check_library(beets, originals)
    assert final["done"] == N_TRACKS and final["temp_files"] == 0
    with capsys.disabled():
        print(f"\n{signame} trials:")
        for row in report:
            print("  " + ", ".join(f"{k}={v}" for k, v in row.items()))
