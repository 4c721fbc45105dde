"""``beet genretag --stats``, and ``genretag_agrees``: the library overview (issue 12 A2, A3)."""
from __future__ import annotations

import struct
from collections import Counter

import pytest
from beets import ui

from beetsplug.genretag import DEFAULT_GENRE_MAP
from genretag.model import model_dir, read_card
from .plugin_support import FORMATS, InProcess, make_track, rows


@pytest.fixture
def lib(tmp_path):
    src = tmp_path / "src" / "Artist - Album"
    for n, ext in enumerate(FORMATS, start=1):
        make_track(src / f"{n:02d} track.{ext}", title=f"Song {n}", artist="Artist",
                   album="Album", track=n, seed=n, duration_s=3.5)
    setup = InProcess(auto=False)
    setup.import_("-A", str(src.parent))
    yield setup
    setup.close()


def test_agreement_is_stored_and_queryable_and_the_overview_lists_doubts(lib, tmp_path):
    items = lib.items()
    # Song 1: a genre the model does not know (never agrees); Song 2: every genre, one of
    # them in another spelling (always agrees); the rest: none, genretag sets its own.
    items["Song 1"].genres = ["Shoegaze"]
    every = [*DEFAULT_GENRE_MAP.values()]
    every[every.index("Hip-Hop")] = "hip hop"
    lib.configure(auto=False, genre_map={"hiphop": "Hip Hop"})
    items["Song 2"].genres = every
    for title in ("Song 1", "Song 2"):
        items[title].store()
    lib.run("genretag", "-W")
    items = lib.items()
    assert items["Song 1"]["genretag_agrees"] is False
    assert items["Song 2"]["genretag_agrees"] is True
    assert items["Song 1"].genres == ["Shoegaze"] and items["Song 2"].genres == every
    for n in (3, 4, 5):
        assert "genretag_agrees" not in items[f"Song {n}"]  # genretag's own genres
    assert lib.run("ls", "-f", "$title", "genretag_agrees:false").stdout == "Song 1\n"
    assert lib.run("ls", "-f", "$title", "genretag_agrees:true").stdout == "Song 2\n"

    db = rows(lib.lib)
    out = lib.run("genretag", "--stats").stdout.splitlines()
    assert rows(lib.lib) == db  # changes nothing
    assert out[0] == "5 items with a predicted genre"
    predicted = Counter(i["genretag_genre"] for i in items.values())
    shown = {line.split()[0]: int(line.split()[1]) for line in out[out.index("Predicted genres")
                                                                    + 1:out.index("Confidence")]
             if line.strip()}
    assert shown == {c: predicted.get(c, 0) for c in read_card(model_dir())["classes"]}
    assert "Agreement with user-set genres: 1 of 2 agree (50%)" in out
    doubt_header = next(i for i, line in enumerate(out) if line.startswith("Doubtful:"))
    song1 = items["Song 1"]
    if song1["genretag_confidence"] >= 0.7:
        assert out[doubt_header].endswith(": 1")
        assert out[doubt_header + 1].split() == [
            f"{song1['genretag_confidence']:.2f}", song1["genretag_genre"], "user:", "shoegaze",
            "Artist", "-", "Song", "1"]
    else:
        assert out[doubt_header].endswith(": 0") and out[doubt_header + 1:] == []

    # Only the items matching the query.
    out = lib.run("genretag", "--stats", "title:Song 3").stdout.splitlines()
    assert out[0] == "1 item with a predicted genre"
    # With -a, the tracks of the matching albums.
    assert lib.run("genretag", "--stats", "-a", "album:Album").stdout.splitlines() == \
        lib.run("genretag", "--stats").stdout.splitlines()
    out = lib.run("genretag", "--stats", "-a", "album:Other").stdout.splitlines()
    assert out == ["0 items with a predicted genre"]


def test_stats_before_tagging_and_the_plot(lib, tmp_path):
    out = lib.run("genretag", "--stats").stdout
    assert out == "0 items with a predicted genre (5 without)\n"
    lib.run("genretag", "-W")
    png = tmp_path / "overview.png"
    out = lib.run("genretag", "--stats", "--plot", str(png)).stdout
    assert out.splitlines()[-1] == f"genretag: overview drawn in {png}"
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    assert struct.unpack(">II", data[16:24]) == (1200, 900)
    with pytest.raises(ui.UserError, match=r"^--plot draws the overview of --stats: use both$"):
        lib.run("genretag", "--plot", str(png))
    with pytest.raises(ui.UserError, match=r"cannot write the plot"):
        lib.run("genretag", "--stats", "--plot", str(tmp_path / "missing dir" / "x.png"))
