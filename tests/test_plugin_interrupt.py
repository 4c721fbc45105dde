"""Ctrl-C during ``beet genretag``: what is counted, what the exit status is, and how an
interrupted ``--force`` run continues (issue 12 B1, B2 and C).

The interruptions are real SIGINTs sent by the process to itself at exact points
(inside a file write, just after the summary), so the outcome does not depend on
timing. Random interruptions under load are in test_safety.py.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from beets import ui

import beetsplug.genretag as plugin
from .plugin_support import (FORMATS, Beets, InProcess, counts, file_state, make_track,
                             read_genres, rows, summary)

needs_signals = pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX signals")


@pytest.fixture(scope="module")
def album(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("interrupt src") / "Artist - Album"
    for n, ext in enumerate(FORMATS, start=1):
        make_track(src / f"{n:02d} track.{ext}", title=f"Song {n}", artist="Artist",
                   album="Album", track=n, seed=n, duration_s=3.5)
    return src


@pytest.fixture
def lib(album, tmp_path):
    """A library with the album imported untagged; SIGINT's handler restored afterwards
    (an interrupted run leaves SIGINT ignored, its process being about to exit)."""
    previous = signal.getsignal(signal.SIGINT)
    setup = InProcess(auto=False)
    setup.import_("-A", str(shutil.copytree(album, tmp_path / "src")))
    yield setup
    setup.close()
    signal.signal(signal.SIGINT, previous)


def ctrl_c_in_writes(monkeypatch, at: dict[int, int]) -> list[str]:
    """From now on, the n-th file write (1-based) gets ``at[n]`` Ctrl-C just before it
    starts; returns the titles written."""
    real = plugin.write_genres
    written: list[str] = []

    def write_genres(item, genres):
        for _ in range(at.get(len(written) + 1, 0)):
            os.kill(os.getpid(), signal.SIGINT)
        written.append(item.title)
        real(item, genres)

    monkeypatch.setattr(plugin, "write_genres", write_genres)
    return written


@needs_signals
def test_a_second_ctrl_c_during_a_write_still_counts_that_item(lib, monkeypatch):
    """B1: the item whose file was being written is committed and counted as tagged."""
    db, files = rows(lib.lib), {p.name: file_state(p) for p in lib.music.rglob("*.*")}
    written = ctrl_c_in_writes(monkeypatch, {1: 2})
    with pytest.raises(ui.UserError, match="^interrupted; what was tagged is saved"):
        lib.run("genretag", "-w")
    assert summary(lib.last.stdout) == counts(1, left=len(FORMATS) - 1)
    (title,) = written
    for item in lib.lib.items():
        if item.title == title:
            assert item["genretag_model"] and read_genres(item.filepath) == item.genres != []
        else:
            assert dict(item) == db[0][item.id]
            assert file_state(item.filepath) == files[item.filepath.name]


@needs_signals
def test_an_interrupted_forced_run_continues_where_it_stopped(lib, monkeypatch):
    """C: "run again to continue" holds for --force too; a finished forced run starts over."""
    lib.run("genretag", "-W")
    ctrl_c_in_writes(monkeypatch, {2: 1})
    with pytest.raises(ui.UserError, match="^interrupted; what was tagged is saved") as stop:
        lib.run("genretag", "-f", "-w")
    assert summary(lib.last.stdout) == counts(2, left=len(FORMATS) - 2)
    out = lib.run("genretag", "-f", "-w")
    assert summary(out.stdout) == counts(len(FORMATS) - 2, 2)
    assert str(stop.value).endswith("run the same command again to continue")
    assert any(line.startswith("genretag: continuing the --force run interrupted earlier")
               for line in out.lines)
    assert summary(lib.run("genretag", "-f", "-w").stdout) == counts(len(FORMATS))


#: ``beet genretag -w`` with a Ctrl-C during the first file write, and another one
#: just after the summary is printed.
CTRL_C_AFTER_SUMMARY = """
import os, signal
import beets.ui
from beets import ui
import beetsplug.genretag as plugin

real_write, real_print = plugin.write_genres, ui.print_

def write_genres(item, genres):
    os.kill(os.getpid(), signal.SIGINT)
    real_write(item, genres)

def print_(*args, **kwargs):
    real_print(*args, **kwargs)
    if args and "not done (interrupted)" in args[0]:
        os.kill(os.getpid(), signal.SIGINT)

plugin.write_genres, ui.print_ = write_genres, print_
beets.ui.main(["genretag", "-w"])
"""


@needs_signals
def test_ctrl_c_after_the_summary_still_exits_1(album, tmp_path):
    """B2: no traceback, exit status 1 (not -2 or 0) and the error line."""
    beets = Beets(tmp_path, auto=False)
    beets.run("import", "-A", str(album))
    proc = subprocess.run([sys.executable, "-c", CTRL_C_AFTER_SUMMARY], env=beets.env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert summary(proc.stdout) == counts(1, left=len(FORMATS) - 1)
    assert proc.stderr.splitlines()[-1] == ("error: interrupted; what was tagged is saved, "
                                            "run the same command again to continue")


@needs_signals
def test_a_second_ctrl_c_while_the_workers_stop_is_no_traceback(lib, monkeypatch,
                                                                ctrl_c_in_queue_finalizer):
    """The worker pool's teardown after a first Ctrl-C: a second one landing in one of
    its queues' finalizers must neither be lost as "Exception ignored" nor print a
    traceback (it came 0–0.3 s after the first in the kill trials)."""
    finalizers, ignored = ctrl_c_in_queue_finalizer
    ctrl_c_in_writes(monkeypatch, {1: 1})
    with pytest.raises(ui.UserError, match="^interrupted; what was tagged is saved"):
        lib.run("genretag", "-w", "-j", "1")
    assert finalizers, "no worker queue was finalized: the check above tested nothing"
    assert ignored == []
    assert summary(lib.last.stdout) == counts(1, left=len(FORMATS) - 1)
