"""The ``genretag`` command on real files in every format, run in-process (``cli.main``).

Only what is about processes runs ``genretag`` as a child: a closed pipe.
"""
import json
import subprocess
import sys

import pytest

from genretag import cli
from genretag.model import read_card, model_dir

from .conftest import FORMATS, zero_audio_keeping_identity

CLASSES = read_card(model_dir())["classes"]


def run(capsys, *args):
    """``genretag ARGS`` in this process: ``(exit status, stdout, stderr)``."""
    try:
        status = cli.main([str(a) for a in args])
    except SystemExit as exc:  # argparse's usage errors and --version
        status = exc.code
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(scope="module")
def json_run(audio_files, tmp_path_factory):
    bad = tmp_path_factory.mktemp("bad") / "broken.mp3"
    bad.write_bytes(b"this is not audio at all" * 10)
    paths = [audio_files[e] for e in FORMATS] + [bad]
    with pytest.MonkeyPatch.context():
        import io
        from contextlib import redirect_stderr, redirect_stdout

        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            status = cli.main(["classify", "--json", *map(str, paths)])
    return paths, status, out.getvalue(), err.getvalue()


def test_json_has_one_object_per_file_in_order(json_run):
    paths, _, out, _ = json_run
    assert [json.loads(line)["path"] for line in out.splitlines()] == [str(p) for p in paths]


@pytest.mark.parametrize("ext", FORMATS)
def test_every_format_is_classified(json_run, ext):
    _, _, out, _ = json_run
    obj = next(json.loads(line) for line in out.splitlines()
               if json.loads(line)["path"].endswith(ext))
    assert set(obj) == {"path", "genre", "confidence", "probs", "model"}
    assert list(obj["probs"]) == CLASSES and obj["genre"] in CLASSES
    # The genres' probabilities; what is missing to 1 is the model's "not music" share.
    assert 0 < sum(obj["probs"].values()) < 1 + 1e-3
    assert obj["confidence"] == max(obj["probs"].values())
    assert obj["genre"] == max(obj["probs"], key=obj["probs"].get)
    card = read_card(model_dir())
    assert obj["model"] == f"{card['model_id']}/{card['version']}"


def test_lossless_copies_agree_and_lossy_ones_are_close(json_run):
    _, _, out, _ = json_run
    objs = {json.loads(line)["path"].rsplit(".", 1)[1]: json.loads(line)
            for line in out.splitlines()}
    wav, flac = objs["wav"]["probs"], objs["flac"]["probs"]
    assert max(abs(wav[g] - flac[g]) for g in CLASSES) < 0.01


def test_bad_file_reported_once_and_exit_1(json_run):
    paths, status, out, err = json_run
    assert status == 1
    assert json.loads(out.splitlines()[-1]) == {
        "path": str(paths[-1]), "error": "not a recognised audio file (invalid or corrupt data)"}
    assert err.splitlines() == [f"genretag: {paths[-1]}: not a recognised audio file "
                                "(invalid or corrupt data)"]


def test_table_and_top_k(capsys, audio_files):
    status, out, err = run(capsys, "classify", "--top", "3", audio_files[".flac"])
    assert status == 0, err
    line, = out.splitlines()
    genre, conf, path = line.split()[:3]
    assert genre in CLASSES and path == str(audio_files[".flac"])
    runners = line.split(path, 1)[1].strip()
    assert runners.startswith("[") and runners.endswith("]")
    pairs = runners[1:-1].split("  ")
    assert len(pairs) == 2
    scores = [float(conf)] + [float(p.split()[1]) for p in pairs]
    assert scores == sorted(scores, reverse=True)
    assert {p.split()[0] for p in pairs} <= set(CLASSES) - {genre}


def test_table_columns_line_up(capsys, audio_files):
    status, out, _ = run(capsys, "classify", audio_files[".flac"], audio_files[".wav"])
    assert status == 0
    width = max(map(len, CLASSES))
    assert [line.index(str(audio_files[".flac"].parent)) for line in out.splitlines()] == \
        [width + 8] * 2


def test_directory_is_walked_and_hidden_files_are_skipped(capsys, audio_files, tmp_path):
    import shutil

    for ext in (".flac", ".mp3"):
        shutil.copy(audio_files[ext], tmp_path / f"song{ext}")
    shutil.copy(audio_files[".mp3"], tmp_path / ".hidden.mp3")
    shutil.copy(audio_files[".mp3"], tmp_path / "._song.mp3")  # macOS resource fork
    shutil.copy(audio_files[".mp3"], tmp_path / ".genretag-tmp.song.mp3")
    (tmp_path / ".git").mkdir()
    shutil.copy(audio_files[".mp3"], tmp_path / ".git" / "inside.mp3")
    (tmp_path / "notes.txt").write_text("not audio")
    status, out, err = run(capsys, "classify", "--json", tmp_path)
    assert status == 0, err
    assert [json.loads(line)["path"] for line in out.splitlines()] == [
        str(tmp_path / "song.flac"), str(tmp_path / "song.mp3")]


def test_timeline_lists_every_slice(capsys, tmp_path):
    from genretag.encode import write
    from genretag.synthetic import synth_music

    path = tmp_path / "long.flac"
    write(synth_music(31.0, 22050, seed=2), 22050, path)
    status, out, err = run(capsys, "classify", "--timeline", path)
    assert status == 0, err
    rows = out.splitlines()[1:]
    assert len(rows) == 10  # 31 s = ten whole 3.008-s slices
    assert rows[0].split()[0] == "0:00-0:03" and rows[-1].split()[0] == "0:27-0:30"
    status, out, _ = run(capsys, "classify", "--timeline", "--json", path)
    timeline = json.loads(out)["timeline"]
    assert [set(s) for s in timeline] == [{"start_s", "end_s", "genre", "confidence"}] * 10
    assert timeline[1]["start_s"] == round(48128 / 16000, 3)


def test_silent_file_is_reported_not_failed(capsys, tmp_path):
    import numpy as np

    from genretag.encode import write

    path = tmp_path / "silence.wav"
    write(np.zeros(22050 * 5, np.float32), 22050, path)
    status, out, err = run(capsys, "classify", "--json", path)
    assert status == 0
    obj = json.loads(out)
    assert (obj["silent"], obj["genre"], obj["probs"]) == (True, None, {})
    assert err == f"genretag: {path}: silent (peak below -80 dBFS): no genre\n"


def test_worker_clock_starts_when_the_model_is_loaded():
    """A new process: importing torch and loading the model can take longer than 2 s
    (it did here, under load); the file itself does not."""
    from .conftest import REPO

    proc = subprocess.run([sys.executable, "-m", "genretag.cli", "classify", "-j", "1",
                           "--timeout", "2", "--no-cache", str(REPO / "examples" / "example.mp3")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[0] in CLASSES


@pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX signals")
def test_ctrl_c_while_the_workers_stop_is_raised_not_ignored(ctrl_c_in_queue_finalizer,
                                                             audio_files):
    """Ctrl-C landing in a worker queue's finalizer as the pool stops: a
    KeyboardInterrupt where it can be handled, not "Exception ignored" and a traceback."""
    import signal

    from genretag.workers import classify_parallel

    finalizers, ignored = ctrl_c_in_queue_finalizer
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            list(classify_parallel([audio_files[FORMATS[0]]], jobs=1))
    finally:
        signal.signal(signal.SIGINT, previous)
    assert finalizers and ignored == []


@pytest.mark.parametrize("args", [(), ("--top", "0", "x.mp3"), ("--timeout", "0", "x.mp3"),
                                  ("--timeout", "-1", "x.mp3"), ("--jobs", "0", "x.mp3"),
                                  ("--vocabulary", "klingon", "x.mp3")])
def test_usage_errors_exit_2(capsys, args):
    status, _, err = run(capsys, "classify", *args)
    assert status == 2
    assert "genretag classify: error:" in err or err == (
        "genretag classify: give at least one PATH\n")


def test_unknown_command_and_version(capsys):
    assert run(capsys, "frobnicate")[0] == 2
    status, out, _ = run(capsys, "--version")
    from genretag import __version__

    assert (status, out) == (0, f"genretag {__version__}\n")


def test_help_has_no_markup(capsys):
    status, out, _ = run(capsys, "--help")
    assert status == 0 and "``" not in out and "classify" in out


def test_closed_pipe_ends_quietly(audio_files):
    """``genretag classify ... | head -1``: no traceback when the reader goes away."""
    paths = [str(audio_files[e]) for e in FORMATS]
    for mode in ((), ("--json",), ("--timeline",)):
        proc = subprocess.Popen([sys.executable, "-m", "genretag.cli", "classify", "-j", "1",
                                 *mode, *paths], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        first = proc.stdout.readline()
        proc.stdout.close()
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=300) == 0, err
        assert first and "Traceback" not in err and "BrokenPipe" not in err, (mode, err)


def test_cache_hit_decodes_nothing_and_gives_the_same_answer(capsys, tmp_path, audio_files):
    """After one analysis, the file's audio is overwritten with zeros (same size and
    mtime): the cached embedding still gives the first answer; a real edit is re-analysed."""
    import os
    import shutil

    song, cache = tmp_path / "song.flac", tmp_path / "cache.sqlite"
    shutil.copy(audio_files[".flac"], song)
    first = run(capsys, "classify", "--json", "--cache", cache, song)
    st = song.stat()
    zero_audio_keeping_identity(song)
    again = run(capsys, "classify", "--json", "--cache", cache, song)
    assert first[0] == again[0] == 0 and json.loads(first[1]) == json.loads(again[1])
    os.utime(song, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # now it looks edited
    status, out, err = run(capsys, "classify", "--json", "--cache", cache, song)
    assert status == 1 and "error" in json.loads(out)


def test_a_few_cache_hits_among_new_files_are_scored_by_the_workers(capsys, tmp_path,
                                                                   audio_files):
    """One hit with a new file: the workers read the hit from the cache (its audio is
    zeros now, so decoding it would not give the first answer), the parent loads no model."""
    import shutil

    from genretag import workers

    song, new, cache = tmp_path / "song.flac", tmp_path / "new.mp3", tmp_path / "cache.sqlite"
    shutil.copy(audio_files[".flac"], song)
    shutil.copy(audio_files[".mp3"], new)
    first = run(capsys, "classify", "--json", "--cache", cache, song)
    zero_audio_keeping_identity(song)
    assert workers._cache_hits([str(song), str(new)], {"weights": None, "vocabulary": None,
                                                       "precision": "fp32"},
                               10, True, cache) == ({}, None)
    status, out, err = run(capsys, "classify", "--json", "--cache", cache, song, new)
    assert status == 0, err
    assert json.loads(out.splitlines()[0]) == json.loads(first[1])


def test_timeline_plot_one_image_per_file(capsys, tmp_path, audio_files):
    from PIL import Image

    out = tmp_path / "plots" / "genre.png"
    out.parent.mkdir()
    files = [audio_files[".flac"], audio_files[".mp3"]]
    status, _, err = run(capsys, "classify", "--timeline", "--plot", out, *files)
    assert status == 0, err
    made = sorted(p.name for p in out.parent.iterdir())
    assert made == ["genre-clip-2.png", "genre-clip.png"]  # same stem: the second gets -2
    for name in made:
        with Image.open(out.parent / name) as img:
            assert img.format == "PNG" and img.width >= 600 and img.height >= 300
            colours = img.convert("RGB").getcolors(maxcolors=1 << 20)
            assert len(colours) > 20  # a drawing, not a blank
