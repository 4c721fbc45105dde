"""The beets plugin end to end: a real library on disk, real imports, real audio files.

Each scenario builds a beets setup in a temporary directory with beets' own test
helpers, imports synthetic but fully tagged files (MP3, FLAC, M4A, Ogg Vorbis,
Opus) through ``beet import`` and runs ``beet genretag`` in this process, then
checks the database, the queries users run, and the files' tags read back with
mutagen. What needs processes (signals, kills, locks, a terminal, the network
guard) is in test_safety.py and test_plugin_interrupt.py.
"""
from __future__ import annotations

import io
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from genretag.model import model_dir, read_card
from beets import ui
from beets.library import Album, Item

from beetsplug.genretag import DEFAULT_GENRE_MAP, format_probs, parse_probs
from .plugin_support import (FORMATS, Beets, InProcess, counts, file_state, make_track,
                             read_genres, read_tags, rows, states, summary, without_genre)

# Fixtures (``model``, the loaded shipped model, comes from conftest.py).


@pytest.fixture(scope="session")
def album_src(tmp_path_factory) -> Path:
    """One album, one track per format, tagged like a ripped CD (cover, comment, ReplayGain)."""
    src = tmp_path_factory.mktemp("src") / "Test Artist - Test Album"
    for n, ext in enumerate(FORMATS, start=1):
        make_track(src / f"{n:02d} track.{ext}", title=f"Song {n}", artist="Test Artist",
                   album="Test Album", track=n, seed=n)
    return src


@pytest.fixture
def src(album_src, tmp_path) -> Path:
    """A private copy of the album to import."""
    return Path(shutil.copytree(album_src, tmp_path / "src" / album_src.name))


@pytest.fixture
def beets():
    """``beets(**genretag_options)``: an in-process beets setup, closed after the test."""
    made = []

    def make(**config) -> InProcess:
        made.append(InProcess(**config))
        return made[-1]

    yield make
    for setup in made:
        setup.close()


def source_of(item: Item, source: Path) -> Path:
    return source / f"{item.track:02d} track{item.filepath.suffix}"


def mean(dists: list[dict[str, float]]) -> dict[str, float]:
    return {c: sum(d[c] for d in dists) / len(dists) for c in dists[0]}


def check_prediction(obj: Item | Album, model) -> dict[str, float]:
    """The ``genretag_*`` fields are consistent with each other; returns the distribution."""
    probs = parse_probs(obj["genretag_probs"])
    assert list(probs) == model.classes
    assert 0 < sum(probs.values()) < 1.03  # the rest is the model's "not music" share
    assert obj["genretag_model"] == model.model_id
    genre = obj["genretag_genre"]
    assert probs[genre] == max(probs.values())
    assert math.isclose(float(obj["genretag_confidence"]), probs[genre], abs_tol=0.006)
    return probs


def own_genres(obj: Item | Album) -> list[str]:
    """What the default settings (count 1, min_confidence 0) put into ``genres``."""
    return [DEFAULT_GENRE_MAP[obj["genretag_genre"]]]


def plugin_lines(output) -> list[str]:
    """The lines the plugin logged (beets' own are left out)."""
    return [line for line in output.lines if line.startswith("genretag: ")]


def change_lines(output) -> list[str]:
    """The per-item result lines a run logged."""
    return [line for line in output.lines if " → " in line]


def test_beet_ls_does_not_load_torch(tmp_path):
    beets = Beets(tmp_path)
    code = ("import sys; import beets.ui; beets.ui.main(['ls']); "
            "print(sorted(m for m in ('torch', 'av', 'genretag.classify', "
            "'genretag.predict', 'genretag.model') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "BEETSDIR": str(beets.home)}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
    assert proc.stderr == ""


# Import with auto: yes.

def test_album_import_tags_items_album_and_files_and_queries_work(beets, src, model):
    before = {p.name: file_state(p) for p in src.iterdir()}
    lib = beets()
    out = lib.import_("-A", str(src))
    assert plugin_lines(out) == []  # an import stays quiet
    items = list(lib.lib.items())
    assert len(items) == len(FORMATS)
    item_probs = []
    for item in items:
        item_probs.append(check_prediction(item, model))
        assert item.genres == own_genres(item) == list(item["genretag_genres"])
        assert "genre" not in dict(item)
        path = item.filepath
        assert lib.music in path.parents  # tagged in the library, after the copy
        assert read_genres(path) == item.genres
        assert without_genre(read_tags(path)) == without_genre(read_tags(source_of(item, src)))
        assert item.mtime == int(path.stat().st_mtime)  # beets keeps whole seconds
    # The source files of a copy import are never written.
    assert {p.name: file_state(p) for p in src.iterdir()} == before

    (album,) = lib.lib.albums()
    probs = check_prediction(album, model)
    assert album.genres == own_genres(album)
    expected = mean(item_probs)
    assert all(math.isclose(probs[c], expected[c], abs_tol=0.011) for c in model.classes)

    # Queries on genres and on the typed flexible fields.
    def titles(*query: str) -> list[str]:
        return sorted(lib.run("ls", "-f", "$title", *query).stdout.splitlines())

    for genre in {g for item in items for g in item.genres}:
        assert titles(f"genres:{genre}") == sorted(i.title for i in items if genre in i.genres)
    for label in {i["genretag_genre"] for i in items}:
        assert titles(f"genretag_genre:{label}") == sorted(
            i.title for i in items if i["genretag_genre"] == label)
    confidences = {i.title: float(i["genretag_confidence"]) for i in items}
    middle = sorted(confidences.values())[len(confidences) // 2]
    for query, keep in ((f"..{middle}", lambda c: c <= middle),
                        (f"{middle}..", lambda c: c >= middle),
                        ("..0.5", lambda c: c <= 0.5)):
        assert titles(f"genretag_confidence:{query}") == sorted(
            t for t, c in confidences.items() if keep(c))
    shown = lib.run("ls", "-f", "$genretag_confidence", "genretag_confidence+").stdout.split()
    assert [float(s) for s in shown] == sorted(round(c, 2) for c in confidences.values())
    assert all(re.fullmatch(r"[01]\.\d\d", s) for s in shown), shown  # NullFloat(2)
    assert lib.run("ls", "-a", "-f", "$album", f"genres:{album.genres[0]}").stdout == (
        "Test Album\n")
    other = next(g for g in DEFAULT_GENRE_MAP.values() if g not in album.genres)
    assert lib.run("ls", "-a", "-f", "$album", f"genres:{other}").stdout == ""
    today = lib.run("ls", "-f", "$title", "genretag_tagged:2000..").stdout.splitlines()
    assert sorted(today) == sorted(confidences)  # a date: range queries work


def test_singleton_import_writes_real_multi_values(beets, src, model):
    lib = beets(count=2)
    lib.import_("-A", "-s", str(src))
    assert list(lib.lib.albums()) == []
    items = list(lib.lib.items())
    assert len(items) == len(FORMATS)
    for item in items:
        probs = check_prediction(item, model)
        first, second = item.genres
        assert first == DEFAULT_GENRE_MAP[item["genretag_genre"]]
        runner_up = sorted(probs.values())[-2]
        assert math.isclose(probs[second.lower().replace("-", "")], runner_up, abs_tol=0.011)
        assert read_genres(item.filepath) == [first, second]  # two values, not "A; B"
        assert (without_genre(read_tags(item.filepath))
                == without_genre(read_tags(source_of(item, src))))


def test_min_confidence_keeps_genres_but_stores_the_prediction(beets, src, model):
    lib = beets(min_confidence=1.0)
    mp3 = src / "01 track.mp3"
    lib.import_("-A", "-s", str(mp3))
    (item,) = lib.lib.items()
    check_prediction(item, model)
    assert item.genres == [] and list(item["genretag_genres"]) == []
    assert file_state(item.filepath)[0] == file_state(mp3)[0]  # nothing to write


def test_interactive_import_without_write(beets, src, monkeypatch):
    """Prompts still work (as-is chosen on stdin); with -W no file is written."""
    lib = beets()
    monkeypatch.setattr(sys, "stdin", io.StringIO("U\n"))
    out = lib.run("import", "-W", str(src))
    assert "No matching release found" in out.stdout
    assert "genretag" not in out.stdout + out.log
    (album,) = lib.lib.albums()
    assert album.genres == own_genres(album)
    for item in album.items():
        assert item.genres == own_genres(item)
        assert file_state(item.filepath)[0] == file_state(source_of(item, src))[0]


# The command.

def test_auto_no_then_pretend_and_write_options(beets, src, model):
    lib = beets(auto=False)
    lib.import_("-A", str(src))
    assert all("genretag_model" not in i and not i.genres for i in lib.lib.items())
    db, files = rows(lib.lib), states(lib.music)

    with pytest.raises(ui.UserError, match=r"^--jobs must be at least 1, not 0$"):
        lib.run("genretag", "-j", "0")

    out = lib.run("genretag", "-p")
    lines = [line for line in out.stdout.splitlines() if " → " in line]
    names = "|".join(map(re.escape, DEFAULT_GENRE_MAP.values()))
    assert sorted(lines) == lines and len(lines) == len(FORMATS)
    for n, line in enumerate(lines, start=1):
        assert re.fullmatch(rf"Test Artist - Song {n}: \(none\) → ({names}) \([01]\.\d\d\)",
                            line), line
    assert summary(out.stdout) == counts(5)
    assert out.stdout.splitlines()[-1] == "genretag: 5 would be tagged, 0 skipped, 0 failed"
    assert rows(lib.lib) == db and states(lib.music) == files

    out = lib.run("genretag", "-W")
    assert summary(out.stdout) == counts(5)
    assert states(lib.music) == files
    tagged = lib.items()
    for item in tagged.values():
        check_prediction(item, model)
        assert item.genres == own_genres(item)
    # One line per item, as pretend showed it (beets' info level: shown without -v).
    assert change_lines(out) == [f"genretag: {line}" for line in lines]

    out = lib.run("genretag")
    assert summary(out.stdout) == counts(0, 5)  # same model: nothing to redo
    assert change_lines(out) == [] and states(lib.music) == files

    lib.configure(auto=False, import_write=False)
    assert summary(lib.run("genretag", "-f").stdout) == counts(5)
    assert states(lib.music) == files  # the default follows import.write: no

    assert summary(lib.run("genretag", "-f", "-w").stdout) == counts(5)
    for item in lib.lib.items():
        assert read_genres(item.filepath) == item.genres == tagged[item.title].genres
        assert (without_genre(read_tags(item.filepath))
                == without_genre(read_tags(source_of(item, src))))
        assert item.mtime == int(item.filepath.stat().st_mtime)


def test_progress_bar_on_a_terminal(src, tmp_path):
    """On a terminal (a pty, 100 columns) a progress bar is drawn; two worker processes."""
    setup = Beets(tmp_path, auto=False)
    setup.run("import", "-A", str(src))
    shown = setup.run_on_terminal("genretag", "-W", "-j", "2")
    assert re.search(r"genretag: 100%\|.*\| 5/5 ", shown)
    assert summary(shown) == counts(5)
    # The per-item lines come out above the bar (tqdm clears its line first: no ^).
    assert len(re.findall(r"genretag: Test Artist - Song \d: \(none\) → ", shown)) == 5


def test_new_model_version_retags_but_keeps_user_genres(beets, src, model):
    lib = beets(auto=False)
    lib.import_("-A", str(src))
    lib.run("genretag", "-W")
    items = lib.items()
    old = "genretag-musicnn-msd/0.9.0"
    # "Song 1" carries an older model's (different) prediction, "Song 2" a genre the user set.
    mine, users = items["Song 1"], items["Song 2"]
    wrong = next(c for c in model.classes if c != mine["genretag_genre"])
    mine.update({"genretag_model": old, "genres": [DEFAULT_GENRE_MAP[wrong]],
                 "genretag_genres": [DEFAULT_GENRE_MAP[wrong]],
                 "genretag_probs": format_probs({c: float(c == wrong) for c in model.classes})})
    users.update({"genretag_model": old, "genres": ["Shoegaze"], "genretag_genres": []})
    for item in (mine, users):
        item.store()
    files = states(lib.music)

    assert summary(lib.run("genretag").stdout) == counts(2, 3)
    after = lib.items()
    for title in ("Song 1", "Song 2"):
        check_prediction(after[title], model)
    assert after["Song 1"].genres == own_genres(after["Song 1"])
    assert read_genres(after["Song 1"].filepath) == after["Song 1"].genres
    assert after["Song 2"].genres == ["Shoegaze"]  # not ours: kept without overwrite/--force
    assert list(after["Song 2"]["genretag_genres"]) == []
    assert states(lib.music)[after["Song 2"].filepath.name] == files[
        after["Song 2"].filepath.name]

    # lastgenre's name for the option, `force`, works as `overwrite`.
    lib.configure(auto=False, force=True)
    assert summary(lib.run("genretag", "-f", "Song 2").stdout) == counts(1)
    song2 = lib.items()["Song 2"]
    assert song2.genres == own_genres(song2) == list(song2["genretag_genres"])
    assert read_genres(song2.filepath) == song2.genres


def test_genres_genretag_set_follow_the_settings(beets, src, model):
    """Issue 12 B7: a higher min_confidence or a class mapped to "" removes genres that
    genretag itself set, even with --force; the user's own genres stay."""
    lib = beets(auto=False)
    lib.import_("-A", str(src))
    users = lib.items()["Song 1"]
    users.genres = ["Shoegaze"]
    users.store()
    lib.run("genretag", "-w")
    tagged = lib.items()
    assert all(tagged[f"Song {n}"].genres == own_genres(tagged[f"Song {n}"]) for n in (2, 3))

    lib.configure(auto=False, min_confidence=1.0)
    assert summary(lib.run("genretag", "-f", "-w").stdout) == counts(5)
    for title, item in lib.items().items():
        expected = ["Shoegaze"] if title == "Song 1" else []
        assert item.genres == expected and read_genres(item.filepath) == expected, title
        check_prediction(item, model)

    lib.configure(auto=False)
    lib.run("genretag", "-f", "-w")
    song2 = lib.items()["Song 2"]
    assert song2.genres == own_genres(song2)
    lib.configure(auto=False, genre_map={song2["genretag_genre"]: ""})
    lib.run("genretag", "-f", "-w", "title:Song 2")
    song2 = lib.items()["Song 2"]
    assert song2.genres == [] and read_genres(song2.filepath) == []


def test_albums_of_lastfm_tracks_are_made_from_their_stored_predictions(beets, src):
    # lastfm tags hold spaces ("indie rock"): the tracks' stored strings must read back
    lib = beets(auto=False, vocabulary="lastfm")
    lib.import_("-A", str(src))
    assert summary(lib.run("genretag", "-W").stdout)["tagged"] == 5
    out = lib.run("genretag", "-a", "-W").stdout
    assert summary(out)["albums"] == 1
    (album,) = lib.lib.albums()
    assert album["genretag_model"].startswith("genretag-musicnn-msd-lastfm/")
    assert "indie rock:" in album["genretag_probs"]  # every tag of the vocabulary


def test_a_retag_after_writing_genres_into_the_files_decodes_nothing(beets, src):
    """Writing the genre tag changes each file's size and mtime, not its audio: the
    cached analyses stay valid. Proof: the files' bytes are then zeroed (identity kept),
    and the re-tag with another vocabulary still classifies every item."""
    from .conftest import zero_audio_keeping_identity

    lib = beets(auto=False)
    lib.import_("-A", str(src))
    assert summary(lib.run("genretag", "-w").stdout) == counts(5)
    for item in lib.lib.items():
        assert item.genres  # written into the file: its version changed
        zero_audio_keeping_identity(Path(item.filepath))
    lib.configure(auto=False, vocabulary="lastfm")
    assert summary(lib.run("genretag", "-W").stdout) == counts(5)
    assert all(i["genretag_model"].startswith("genretag-musicnn-msd-lastfm/")
               for i in lib.lib.items())


def test_album_mode_and_album_consistent(beets, src, model, tmp_path):
    lib = beets(auto=False)
    lib.import_("-A", str(src))
    make_track(tmp_path / "single" / "lone.mp3", title="Lone", artist="Someone Else",
               album="", track=1, seed=9)
    lib.import_("-A", "-s", str(tmp_path / "single"))
    users = lib.items()["Song 1"]
    users.genres = ["Shoegaze"]
    users.store()
    assert summary(lib.run("genretag", "-a", "-W").stdout) == counts(5, albums=1, singletons=1)
    (album,) = lib.lib.albums()
    probs = check_prediction(album, model)
    expected = mean([parse_probs(i["genretag_probs"]) for i in album.items()])
    assert all(math.isclose(probs[c], expected[c], abs_tol=0.011) for c in model.classes)
    assert album.genres == own_genres(album)
    for item in album.items():  # tracks keep their own prediction and the user's genres
        check_prediction(item, model)
        assert item.genres == (["Shoegaze"] if item.title == "Song 1" else own_genres(item))
    assert "genretag_model" not in lib.lib.items("singleton:true").get()
    assert lib.run("ls", "-a", "-f", "$album", f"genres:{album.genres[0]}").stdout == (
        "Test Album\n")

    assert summary(lib.run("genretag", "-a", "artist:Test Artist").stdout) == counts(
        0, 5, albums=0)  # the singleton does not match: nothing said about it

    lib.configure(auto=False, album_consistent=True)
    assert summary(lib.run("genretag", "-a", "-f").stdout) == counts(5, albums=1, singletons=1)
    (album,) = lib.lib.albums()
    for item in album.items():
        assert item.genres == album.genres
        assert read_genres(item.filepath) == album.genres


def test_silent_tracks_are_recorded_and_not_retried(beets, tmp_path, model):
    """Issue 12 B10: a silent file is analysed once, recorded as silent (no genre, file
    untouched) and skipped afterwards; it is not a failure."""
    import numpy as np

    from genretag.encode import write
    from .plugin_support import add_tags

    src = tmp_path / "silent src"
    src.mkdir()
    write(np.zeros((1, 22050 * 4), np.float32), 22050, src / "silence.flac")
    add_tags(src / "silence.flac", title="silence", artist="Nobody", album="Quiet", track=1)
    make_track(src / "music.mp3", title="music", artist="Nobody", album="Quiet", track=2)
    lib = beets()
    out = lib.import_("-A", "-s", str(src))
    silent = lib.items()["silence"]
    assert plugin_lines(out) == [f"genretag: {silent.filepath}: the audio is silent; recorded as "
                         "silent, no genre set"]
    for item in lib.items().values():
        assert item["genretag_model"] == model.model_id
    assert silent["genretag_genre"] == "silence" and silent.genres == []
    assert "genretag_probs" not in silent and "genretag_confidence" not in silent
    assert read_genres(silent.filepath) == []
    files = states(lib.music)

    assert summary(lib.run("genretag").stdout) == counts(0, 2)  # exit status 0
    out = lib.run("genretag", "-f")
    assert summary(out.stdout) == counts(1, 0, silent=1)
    assert lib.run("ls", "-f", "$title", "genretag_genre:silence").stdout == "silence\n"
    assert states(lib.music)[silent.filepath.name] == files[silent.filepath.name]


@pytest.mark.parametrize("config, message", [
    ({"count": 0}, "genretag.count must be at least 1, not 0"),
    ({"auto": "maybe"}, "genretag.auto must be yes or no, not 'maybe'"),
])
def test_a_bad_option_never_aborts_an_import(beets, tmp_path, config, message):
    """Issue 12 B3: checked when the plugin loads; the import goes on untagged."""
    src = tmp_path / "albums"
    for a in range(3):
        make_track(src / f"Album {a}" / "01.mp3", title=f"Song {a}", artist="X",
                   album=f"Album {a}", track=1, seed=a, duration_s=3.5)
    lib = beets(**config)
    lib.import_("-A", str(src))
    items = list(lib.lib.items())
    assert len(items) == 3 and len(lib.lib.albums()) == 3
    assert all("genretag_model" not in i and i.genres == [] for i in items)
    assert plugin_lines(lib.load_output) == [
        f"genretag: configuration: {message}",
        "genretag: configuration: tagging on import is off, and `beet genretag` refuses to "
        "run, until this is fixed"]
    with pytest.raises(ui.UserError, match=f"^{re.escape(message)}$"):
        lib.run("genretag")


@pytest.mark.parametrize("config, warning", [
    ({"forse": True}, "genretag.forse is not an option of this plugin; it is ignored"),
    ({"genre_map": {"hip-hop": "Rap"}},
     "genretag.genre_map: 'hip-hop' is not a class of the model; it is ignored (classes: "
     + ", ".join(read_card(model_dir())["classes"]) + ")"),
])
def test_options_that_are_probably_typos_are_named(beets, config, warning):
    lib = beets(**config)
    (line,) = plugin_lines(lib.load_output)
    assert line.startswith(f"genretag: {warning}")


def test_jobs_option_is_named_as_the_option(beets):
    lib = beets(jobs=0)
    with pytest.raises(ui.UserError, match=r"^genretag\.jobs must be at least 1, not 0$"):
        lib.run("genretag")
