"""Bad input through the CLI: one clear line per bad file, the others still classified."""
import io
import json
import os
from contextlib import redirect_stderr, redirect_stdout
from types import SimpleNamespace

import numpy as np
import pytest

from genretag import cli
from genretag.encode import write
from genretag.synthetic import synth_music


def classify(*paths, extra=()):
    """``genretag classify --json`` in this process (its workers are still processes)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        status = cli.main(["classify", "--json", *extra, *map(str, paths)])
    proc = SimpleNamespace(returncode=status, stdout=out.getvalue(), stderr=err.getvalue())
    return proc, {json.loads(line)["path"]: json.loads(line) for line in proc.stdout.splitlines()}


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad input")
    rng = np.random.default_rng(0)
    files = {}
    files["corrupt"] = d / "random bytes.mp3"
    files["corrupt"].write_bytes(rng.bytes(50_000))
    good = d / "good.flac"
    write(synth_music(12.0, 22050, seed=1), 22050, good)
    files["truncated"] = d / "truncated.flac"
    files["truncated"].write_bytes(good.read_bytes()[:3000])
    files["empty"] = d / "empty.mp3"
    files["empty"].write_bytes(b"")
    files["text"] = d / "notes.mp3"
    files["text"].write_text("just some text, not audio\n" * 50)
    files["missing"] = d / "gone.ogg"
    return good, files


@pytest.fixture(scope="module")
def odd_but_valid(tmp_path_factory):
    d = tmp_path_factory.mktemp("odd")
    files = {}
    files["tiny"] = d / "0.2 s clip.wav"
    write(synth_music(0.2, 22050, seed=2), 22050, files["tiny"])
    files["noise"] = d / "clipped noise.flac"
    noise = np.clip(np.random.default_rng(3).standard_normal(44100 * 6) * 4, -1, 1)
    write(noise.astype(np.float32), 44100, files["noise"])
    files["six"] = d / "surround 5.1.flac"
    write(synth_music(6.0, 48000, seed=4, channels=6), 48000, files["six"])
    files["hires"] = d / "hires 96k.flac"
    write(synth_music(6.0, 96000, seed=5), 96000, files["hires"])
    files["unicode"] = d / "Björk – Jóga (ライブ).opus"
    write(synth_music(6.0, 48000, seed=6), 48000, files["unicode"])
    return files


def test_bad_files_fail_one_line_each_and_good_ones_work(bad_files):
    good, bad = bad_files
    proc, out = classify(good, *bad.values())
    assert proc.returncode == 1
    assert "genre" in out[str(good)]
    for name, path in bad.items():
        assert "error" in out[str(path)], name
        lines = [l for l in proc.stderr.splitlines() if str(path) in l]
        assert len(lines) == 1, (name, proc.stderr)
    assert "not found" in out[str(bad["missing"])]["error"]
    assert "Traceback" not in proc.stderr


def test_odd_but_valid_files_are_classified(odd_but_valid):
    proc, out = classify(*odd_but_valid.values())
    assert proc.returncode == 0, proc.stderr
    for name, path in odd_but_valid.items():
        assert out[str(path)]["genre"], name
    assert out[str(odd_but_valid["tiny"])].get("padded") is True


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_hanging_decoder_is_bounded(tmp_path, bad_files):
    """A FIFO named .mp3 blocks any reader forever; the per-file time bound ends it."""
    good, _ = bad_files
    fifo = tmp_path / "stuck.mp3"
    os.mkfifo(fifo)
    proc, out = classify(fifo, good, extra=("--timeout", "4", "--jobs", "2"))
    assert proc.returncode == 1
    assert "gave up after 4 s" in out[str(fifo)]["error"]
    assert "genre" in out[str(good)]
