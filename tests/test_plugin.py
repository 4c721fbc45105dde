"""The beets plugin, end to end: real library, real ``beet`` processes, real audio files.

Each scenario builds a beets home in a temporary directory, imports synthetic but
fully tagged files (MP3, FLAC, M4A, Ogg Vorbis, Opus) and checks the database,
the queries users run, and the files' tags read back with mutagen.
"""
from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from beets.library import Album, Item

from beetsplug.genretag import (DEFAULT_GENRE_MAP, album_distribution, format_probs,
                                may_replace, needs_tagging, parse_probs, pick_genres,
                                pretend_line, result_fields)
from .plugin_support import (FORMATS, Beets, file_state, make_track, read_genres, read_tags,
                            without_genre, write_adts)

SUMMARY = re.compile(r"^genretag: (\d+) (?:tagged|would be tagged), (\d+) skipped, "
                     r"(\d+) failed(?:, (\d+) albums)?$", re.M)


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


@pytest.fixture(scope="module")
def imported(album_src, tmp_path_factory):
    """A library where the album was imported with ``auto: yes`` (copy + write)."""
    root = tmp_path_factory.mktemp("imported")
    source = Path(shutil.copytree(album_src, root / "src" / album_src.name))
    before = {p.name: file_state(p) for p in source.iterdir()}
    beets = Beets(root)
    beets.run("import", "-A", str(source))
    return beets, source, before


def summary(output: str) -> tuple[int, ...]:
    match = SUMMARY.search(output)
    assert match, f"no summary line in {output!r}"
    return tuple(int(g) for g in match.groups() if g is not None)


def rows(beets: Beets) -> tuple[dict, dict]:
    """Every stored field of every item and album: equal snapshots mean an untouched DB."""
    lib = beets.library()
    return ({i.id: dict(i) for i in lib.items()}, {a.id: dict(a) for a in lib.albums()})


def states(beets: Beets) -> dict[str, tuple[str, int]]:
    return {p.name: file_state(p) for p in beets.music.rglob("*.*")}


def items_by_title(beets: Beets) -> dict[str, Item]:
    return {item.title: item for item in beets.library().items()}


def source_of(item: Item, source: Path) -> Path:
    return source / f"{item.track:02d} track{item.filepath.suffix}"


def mean(dists: list[dict[str, float]]) -> dict[str, float]:
    return {c: sum(d[c] for d in dists) / len(dists) for c in dists[0]}


def check_prediction(obj: Item | Album, model) -> dict[str, float]:
    """The ``genretag_*`` fields are consistent with each other; returns the distribution."""
    probs = parse_probs(obj["genretag_probs"])
    assert list(probs) == model.classes
    assert math.isclose(sum(probs.values()), 1.0, abs_tol=0.03)
    assert obj["genretag_model"] == model.model_id
    genre = obj["genretag_genre"]
    assert probs[genre] == max(probs.values())
    assert math.isclose(float(obj["genretag_confidence"]), probs[genre], abs_tol=0.006)
    return probs


# Pure decision logic.

def test_probs_round_trip_through_the_stored_string():
    probs = {"blues": 0.123, "hiphop": 0.5, "rock": 0.377}
    text = format_probs(probs)
    assert text == "blues:0.12 hiphop:0.50 rock:0.38"
    assert parse_probs(text) == {"blues": 0.12, "hiphop": 0.5, "rock": 0.38}
    assert parse_probs("") == {} and parse_probs("blues:x rock:0.1") == {}


def test_pick_genres_takes_top_k_above_threshold_through_the_map():
    probs = {"blues": 0.1, "hiphop": 0.5, "jazz": 0.3, "rock": 0.1}
    pick = dict(min_confidence=0.0, genre_map=DEFAULT_GENRE_MAP)
    assert pick_genres(probs, count=1, **pick) == ["Hip-Hop"]
    assert pick_genres(probs, count=2, **pick) == ["Hip-Hop", "Jazz"]
    assert pick_genres(probs, count=3, min_confidence=0.3, genre_map={}) == ["hiphop", "jazz"]
    assert pick_genres(probs, count=1, min_confidence=0.6, genre_map={}) == []
    # Mapped to one name, it appears once; mapped to "", it is dropped.
    merged = {"hiphop": "Urban", "jazz": "Urban", "blues": ""}
    assert pick_genres(probs, count=3, min_confidence=0.0, genre_map=merged) == ["Urban"]


def test_may_replace_only_empty_own_or_overwritten_genres():
    assert may_replace([], [], overwrite=False)
    assert not may_replace(["Shoegaze"], [["Jazz"]], overwrite=False)
    assert may_replace(["Shoegaze"], [["Jazz"]], overwrite=True)
    assert may_replace(["Jazz"], [[], ["Jazz"]], overwrite=False)  # genretag set it before


def test_album_distribution_mixes_new_and_stored_predictions():
    model_id = "m/2"
    stored = Item(id=1, genretag_model=model_id, genretag_probs="jazz:0.80 rock:0.20")
    outdated = Item(id=2, genretag_model="m/1", genretag_probs="jazz:0.00 rock:1.00")
    fresh = Item(id=3)
    mean = album_distribution([stored, outdated, fresh], {3: {"jazz": 0.4, "rock": 0.6}},
                              model_id)
    assert mean == pytest.approx({"jazz": 0.6, "rock": 0.4})
    assert album_distribution([outdated], {}, model_id) is None
    assert needs_tagging(outdated, model_id, force=False)
    assert not needs_tagging(stored, model_id, force=False)
    assert needs_tagging(stored, model_id, force=True)


def test_result_fields():
    fields = result_fields({"jazz": 0.25, "rock": 0.75}, "m/1")
    assert fields == {"genretag_genre": "rock", "genretag_confidence": 0.75,
                      "genretag_model": "m/1", "genretag_probs": "jazz:0.25 rock:0.75"}


def test_pretend_line():
    item = Item(artist="Nina Simone", title="Sinnerman")
    assert (pretend_line(item, [], ["Jazz"], 0.876)
            == "Nina Simone - Sinnerman: (none) → Jazz (0.88)")
    album = Album(albumartist="Slayer", album="Reign in Blood")
    assert (pretend_line(album, ["Thrash", "Metal"], ["Metal"], 0.5)
            == "Slayer - Reign in Blood: Thrash, Metal → Metal (0.50)")


def test_beet_ls_does_not_load_torch(tmp_path):
    beets = Beets(tmp_path)
    code = ("import sys; import beets.ui; beets.ui.main(['ls']); "
            "print(sorted(m for m in ('torch', 'av', 'genretag.predict') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "BEETSDIR": str(beets.home)}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# Import with auto: yes.

def test_album_import_tags_items_album_and_files(imported, model):
    beets, source, before = imported
    lib = beets.library()
    items = list(lib.items())
    assert len(items) == len(FORMATS)
    item_probs = []
    for item in items:
        item_probs.append(check_prediction(item, model))
        assert item.genres == [DEFAULT_GENRE_MAP[item["genretag_genre"]]]
        assert "genre" not in dict(item)
        path = item.filepath
        assert beets.music in path.parents  # tagged in the library, after the copy
        assert read_genres(path) == item.genres
        assert without_genre(read_tags(path)) == without_genre(read_tags(source_of(item, source)))
        assert item.mtime == int(path.stat().st_mtime)  # beets keeps whole seconds
    # The source files of a copy import are never written.
    assert {p.name: file_state(p) for p in source.iterdir()} == before

    (album,) = lib.albums()
    probs = check_prediction(album, model)
    assert album.genres == [DEFAULT_GENRE_MAP[album["genretag_genre"]]]
    expected = mean(item_probs)
    assert all(math.isclose(probs[c], expected[c], abs_tol=0.011) for c in model.classes)


def test_queries_on_genres_and_typed_flexible_fields(imported):
    beets, _, _ = imported
    items = items_by_title(beets).values()
    for genre in {g for item in items for g in item.genres}:
        expected = sorted(i.title for i in items if genre in i.genres)
        assert sorted(beets.lines(f"genres:{genre}", fmt="$title")) == expected
    for label in {i["genretag_genre"] for i in items}:
        expected = sorted(i.title for i in items if i["genretag_genre"] == label)
        assert sorted(beets.lines(f"genretag_genre:{label}", fmt="$title")) == expected

    confidences = {i.title: float(i["genretag_confidence"]) for i in items}
    middle = sorted(confidences.values())[len(confidences) // 2]
    for query, keep in ((f"..{middle}", lambda c: c <= middle),
                        (f"{middle}..", lambda c: c >= middle),
                        ("..0.5", lambda c: c <= 0.5)):
        expected = sorted(t for t, c in confidences.items() if keep(c))
        assert sorted(beets.lines(f"genretag_confidence:{query}", fmt="$title")) == expected
    shown = beets.lines("genretag_confidence+", fmt="$genretag_confidence")
    assert all(re.fullmatch(r"[01]\.\d\d", s) for s in shown), shown  # NullFloat(2)
    assert [float(s) for s in shown] == sorted(float(s) for s in shown)

    (album,) = beets.library().albums()
    assert beets.lines(f"genres:{album.genres[0]}", fmt="$album", album=True) == ["Test Album"]
    other = next(g for g in DEFAULT_GENRE_MAP.values() if g not in album.genres)
    assert beets.lines(f"genres:{other}", fmt="$album", album=True) == []


def test_singleton_import_writes_real_multi_values(src, tmp_path, model):
    beets = Beets(tmp_path, count=2)
    beets.run("import", "-A", "-s", str(src))
    lib = beets.library()
    assert list(lib.albums()) == []
    items = list(lib.items())
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


def test_min_confidence_keeps_genres_but_stores_the_prediction(src, tmp_path, model):
    beets = Beets(tmp_path, min_confidence=1.0)
    mp3 = src / "01 track.mp3"
    beets.run("import", "-A", "-s", str(mp3))
    (item,) = beets.library().items()
    check_prediction(item, model)
    assert item.genres == []
    assert file_state(item.filepath)[0] == file_state(mp3)[0]  # nothing to write


def test_interactive_import_without_write(src, tmp_path):
    """Prompts still work (as-is chosen on stdin); with -W no file is written."""
    beets = Beets(tmp_path)
    proc = beets.run("import", "-W", str(src), stdin="U\n")
    assert "No matching release found" in proc.stdout
    assert "genretag" not in proc.stdout + proc.stderr
    (album,) = beets.library().albums()
    assert album.genres and album["genretag_model"]
    for item in album.items():
        assert item.genres and item["genretag_model"]
        assert file_state(item.filepath)[0] == file_state(source_of(item, src))[0]


# The command.

def test_auto_no_then_pretend_and_write_options(src, tmp_path, model):
    beets = Beets(tmp_path, auto=False)
    beets.run("import", "-A", str(src))
    assert all("genretag_model" not in i and not i.genres for i in beets.library().items())
    db, files = rows(beets), states(beets)

    proc = beets.run("genretag", "-j", "0", check=False)
    assert proc.returncode != 0 and "--jobs must be at least 1" in proc.stderr

    proc = beets.run("genretag", "-p")
    lines = [line for line in proc.stdout.splitlines() if " → " in line]
    assert len(lines) == len(FORMATS)
    names = "|".join(map(re.escape, DEFAULT_GENRE_MAP.values()))
    for line in lines:
        assert re.fullmatch(rf"Test Artist - Song \d: \(none\) → ({names}) \([01]\.\d\d\)",
                            line), line
    assert summary(proc.stdout) == (5, 0, 0)
    assert "%|" not in proc.stderr  # no progress bar when stderr is not a terminal
    assert rows(beets) == db and states(beets) == files

    shown = beets.run_on_terminal("genretag", "-W", "-j", "2")
    assert re.search(r"genretag: 100%\|.*\| 5/5 ", shown)  # the progress bar
    assert summary(shown) == (5, 0, 0)
    assert states(beets) == files
    tagged = items_by_title(beets)
    for item in tagged.values():
        check_prediction(item, model)
        assert item.genres == [DEFAULT_GENRE_MAP[item["genretag_genre"]]]

    assert summary(beets.run("genretag").stdout) == (0, 5, 0)  # same model: nothing to redo
    assert states(beets) == files

    beets.write_config(auto=False, import_write=False)
    assert summary(beets.run("genretag", "-f").stdout) == (5, 0, 0)
    assert states(beets) == files  # the default follows import.write: no

    assert summary(beets.run("genretag", "-f", "-w").stdout) == (5, 0, 0)
    for item in beets.library().items():
        assert read_genres(item.filepath) == item.genres == tagged[item.title].genres
        assert (without_genre(read_tags(item.filepath))
                == without_genre(read_tags(source_of(item, src))))
        assert item.mtime == int(item.filepath.stat().st_mtime)


def test_new_model_version_retags_but_keeps_user_genres(src, tmp_path, model):
    beets = Beets(tmp_path, auto=False)
    beets.run("import", "-A", str(src))
    beets.run("genretag")
    items = items_by_title(beets)
    old = "genretag-musicnn-msd/0.9.0"
    # "Song 1" carries an older model's (different) prediction, "Song 2" a genre the user set.
    mine, users = items["Song 1"], items["Song 2"]
    wrong = next(c for c in model.classes if c != mine["genretag_genre"])
    mine.update({"genretag_model": old, "genres": [DEFAULT_GENRE_MAP[wrong]],
                 "genretag_probs": format_probs({c: float(c == wrong) for c in model.classes})})
    users.update({"genretag_model": old, "genres": ["Shoegaze"]})
    for item in (mine, users):
        item.store()
    files = states(beets)

    assert summary(beets.run("genretag").stdout) == (2, 3, 0)
    after = items_by_title(beets)
    for title in ("Song 1", "Song 2"):
        check_prediction(after[title], model)
    assert after["Song 1"].genres == [DEFAULT_GENRE_MAP[after["Song 1"]["genretag_genre"]]]
    assert read_genres(after["Song 1"].filepath) == after["Song 1"].genres
    assert after["Song 2"].genres == ["Shoegaze"]  # not ours: kept without overwrite/--force
    assert states(beets)[after["Song 2"].filepath.name] == files[after["Song 2"].filepath.name]

    assert summary(beets.run("genretag", "-f", "Song 2").stdout) == (1, 0, 0)
    song2 = items_by_title(beets)["Song 2"]
    assert song2.genres == [DEFAULT_GENRE_MAP[song2["genretag_genre"]]]
    assert read_genres(song2.filepath) == song2.genres


def test_album_mode_and_album_consistent(src, tmp_path, model):
    beets = Beets(tmp_path, auto=False)
    beets.run("import", "-A", str(src))
    users = items_by_title(beets)["Song 1"]
    users.genres = ["Shoegaze"]
    users.store()
    assert summary(beets.run("genretag", "-a", "-W").stdout) == (5, 0, 0, 1)
    lib = beets.library()
    (album,) = lib.albums()
    probs = check_prediction(album, model)
    expected = mean([parse_probs(i["genretag_probs"]) for i in album.items()])
    assert all(math.isclose(probs[c], expected[c], abs_tol=0.011) for c in model.classes)
    assert album.genres == [DEFAULT_GENRE_MAP[album["genretag_genre"]]]
    for item in album.items():  # tracks keep their own prediction and the user's genres
        check_prediction(item, model)
        own = ["Shoegaze"] if item.title == "Song 1" else [
            DEFAULT_GENRE_MAP[item["genretag_genre"]]]
        assert item.genres == own
    assert beets.lines(f"genres:{album.genres[0]}", fmt="$album", album=True) == ["Test Album"]

    assert summary(beets.run("genretag", "-a").stdout) == (0, 5, 0, 0)

    beets.write_config(auto=False, album_consistent=True)
    assert summary(beets.run("genretag", "-a", "-f").stdout) == (5, 0, 0, 1)
    (album,) = beets.library().albums()
    for item in album.items():
        assert item.genres == album.genres
        assert read_genres(item.filepath) == album.genres


def test_unreadable_and_unwritable_files_are_logged_and_left_alone(src, tmp_path, model):
    beets = Beets(tmp_path, auto=False)
    beets.run("import", "-A", str(src))
    items = items_by_title(beets)
    corrupt, tagless = items["Song 2"].filepath, items["Song 3"].filepath
    assert (corrupt.suffix, tagless.suffix) == (".flac", ".m4a")
    corrupt.write_bytes(os.urandom(corrupt.stat().st_size))
    write_adts(tagless)  # decodable audio in a container no tag can be written to
    db, files = rows(beets), states(beets)

    proc = beets.run("genretag", check=False)
    assert summary(proc.stdout) == (3, 0, 2)
    assert proc.returncode == 1  # after finishing the others
    errors = proc.stderr.splitlines()
    assert errors[-1].startswith("error: 2 item(s) could not be tagged")
    (unreadable,) = [line for line in errors if str(corrupt) in line]
    assert unreadable.startswith(f"genretag: cannot classify {corrupt}: ")
    (unwritable,) = [line for line in errors if str(tagless) in line]
    assert unwritable.startswith(f"genretag: cannot write genres to {tagless}: ")
    after_db, after_files = rows(beets), states(beets)
    for title in ("Song 2", "Song 3"):
        item_id = items[title].id
        assert after_db[0][item_id] == db[0][item_id]
        name = items[title].filepath.name
        assert after_files[name] == files[name]
    for title in ("Song 1", "Song 4", "Song 5"):
        check_prediction(items_by_title(beets)[title], model)

    # A rerun retries the failures and skips the rest.
    assert summary(beets.run("genretag", check=False).stdout) == (0, 3, 2)
