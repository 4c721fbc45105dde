"""End-to-end: the installed ``genretag`` command on real files in every format."""
import json
import subprocess
import sys

import pytest

from .conftest import FORMATS

GENRES = {"blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae",
          "rock"}


def run(*args):
    return subprocess.run([sys.executable, "-m", "genretag.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def json_run(audio_files, tmp_path_factory):
    bad = tmp_path_factory.mktemp("bad") / "broken.mp3"
    bad.write_bytes(b"this is not audio at all" * 10)
    paths = [audio_files[e] for e in FORMATS] + [bad]
    proc = run("classify", "--json", *paths)
    return paths, proc


def test_json_has_one_object_per_file_in_order(json_run):
    paths, proc = json_run
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [line["path"] for line in lines] == [str(p) for p in paths]


@pytest.mark.parametrize("ext", FORMATS)
def test_every_format_is_classified(json_run, ext):
    paths, proc = json_run
    obj = next(json.loads(line) for line in proc.stdout.splitlines()
               if json.loads(line)["path"].endswith(ext))
    assert set(obj) == {"path", "genre", "confidence", "probs", "model"}
    assert set(obj["probs"]) == GENRES and obj["genre"] in GENRES
    assert abs(sum(obj["probs"].values()) - 1) < 1e-3
    assert obj["confidence"] == max(obj["probs"].values())
    assert obj["model"].startswith("genretag-")


def test_lossless_and_lossy_copies_agree(json_run):
    _, proc = json_run
    objs = {json.loads(line)["path"][-4:]: json.loads(line) for line in proc.stdout.splitlines()}
    wav, flac = objs[".wav"]["probs"], objs["flac"]["probs"]
    assert max(abs(wav[g] - flac[g]) for g in GENRES) < 0.01


def test_bad_file_reported_and_exit_1(json_run):
    paths, proc = json_run
    assert proc.returncode == 1
    err = json.loads(proc.stdout.splitlines()[-1])
    assert err["path"] == str(paths[-1]) and err["error"]
    assert [line for line in proc.stderr.splitlines() if "broken.mp3" in line]


def test_table_and_top_k(audio_files):
    proc = run("classify", "--top", "3", audio_files[".flac"])
    assert proc.returncode == 0, proc.stderr
    line, = proc.stdout.splitlines()
    assert str(audio_files[".flac"]) in line and line.split()[0] in GENRES
    assert line.count(" 0.") + line.count(" 1.") >= 3  # best + two others with probabilities


def test_directory_is_walked(audio_files):
    proc = run("classify", "--json", audio_files[".flac"].parent)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == len(FORMATS)


def test_timeline_lists_every_slice(tmp_path):
    from genretag.encode import write
    from genretag.testing import synth_music

    path = tmp_path / "long.flac"
    write(synth_music(31.0, 22050, seed=2), 22050, path)
    proc = run("classify", "--timeline", path)
    assert proc.returncode == 0, proc.stderr
    rows = proc.stdout.splitlines()[1:]
    assert len(rows) == 10  # 31 s = ten whole 3.008-s slices
    assert rows[0].split()[0] == "0:00-0:03" and rows[-1].split()[0] == "0:27-0:30"


def test_usage_errors_exit_2():
    assert run("classify").returncode == 2
    assert run("classify", "--top", "0", "x.mp3").returncode == 2
    assert run("frobnicate").returncode == 2
