"""Shared fixtures: generated audio in every supported format and the shipped model."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FORMATS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a")


def zero_audio_keeping_identity(path: Path) -> None:
    """Overwrite ``path`` with zero bytes of the same size and keep its mtime: the
    embedding cache's key (path, size, mtime) is unchanged, but decoding it now fails."""
    st = path.stat()
    path.write_bytes(b"\0" * st.st_size)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.fixture
def ctrl_c_in_queue_finalizer(monkeypatch) -> tuple[list[int], list]:
    """The first worker task queue finalized in this process gets a Ctrl-C (SIGINT to
    this process) from inside its finalizer. Returns ``(finalizers run, exceptions
    Python reported as "ignored")``, both lists filled as it happens."""
    import multiprocessing.queues
    import signal
    import sys

    ignored: list = []
    monkeypatch.setattr(sys, "unraisablehook", ignored.append)
    real_close = multiprocessing.queues.Queue._finalize_close
    finalizers: list[int] = []

    def finalize_close(buffer, notempty):
        finalizers.append(len(finalizers))
        if len(finalizers) == 1:
            os.kill(os.getpid(), signal.SIGINT)
        real_close(buffer, notempty)

    monkeypatch.setattr(multiprocessing.queues.Queue, "_finalize_close",
                        staticmethod(finalize_close))
    return finalizers, ignored


@pytest.fixture(scope="session")
def model():
    from genretag import load_model

    return load_model()


@pytest.fixture(scope="session")
def audio_files(tmp_path_factory) -> dict[str, Path]:
    """One 7-second stereo file per format, generated with the project's own encoder."""
    from genretag.encode import write
    from genretag.synthetic import synth_music

    folder = tmp_path_factory.mktemp("formats")
    audio = synth_music(7.0, 44100, seed=3, channels=2)
    files = {}
    for ext in FORMATS:
        path = folder / f"clip{ext}"
        write(audio, 44100, path)
        files[ext] = path
    return files


def pytest_configure(config):
    import tempfile

    os.environ.setdefault("PYTHONHASHSEED", "0")
    # The CLI's embedding cache: never the user's own during tests.
    os.environ["GENRETAG_CACHE"] = os.path.join(tempfile.mkdtemp(prefix="genretag-tests-"),
                                                "embeddings.sqlite")


#: The test modules that take longest, longest first (as measured on two cores), ahead of
#: the others: the pytest-xdist workers (pytest.ini) take whole modules in collection
#: order, so they start on the long ones and end on short ones, at about the same time.
LONGEST_FIRST = ("test_kill_trials.py", "test_safety.py", "test_archive.py", "test_plugin.py",
                 "test_cli.py", "test_adaptive.py", "test_bad_input.py",
                 "test_plugin_learn.py", "test_plots.py", "test_training.py")


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within each module is kept
