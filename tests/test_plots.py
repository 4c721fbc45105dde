"""Timeline and library-overview pictures and text (``genretag.plots``), on synthetic results.

Images are opened and checked: pixel size, not blank (several distinct colours), and the
colours that must be there (a class's colour is the same in every picture).
"""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from genretag.errors import GenretagError
from genretag.plots import (CONFIDENCE_EDGES, GTZAN_COLOURS, OTHER, OTHER_COLOUR, Doubt,
                            clock, format_overview, genre_colours, library_overview,
                            plot_overview, plot_paths, plot_timeline)
from genretag.result import SliceResult, TrackPrediction

GTZAN = ["blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop",
         "reggae", "rock"]
SLICE_S = 3.008


def prediction(probs, classes, *, starts=None, multi_label=False, path="/music/a song.mp3"):
    """A TrackPrediction from per-slice scores ``[slices, classes]``, as the classifier makes."""
    probs = np.asarray(probs, dtype=float)
    starts = [i * SLICE_S for i in range(len(probs))] if starts is None else starts
    timeline = tuple(SliceResult(s, s + SLICE_S, classes[int(p.argmax())], float(p.max()),
                                 tuple(float(x) for x in p)) for s, p in zip(starts, probs))
    mean = probs.mean(axis=0)
    best = int(mean.argmax())
    genres = tuple(c for c, m in zip(classes, mean) if m >= 0.5) if multi_label else (
        classes[best],)
    return TrackPrediction(path=path, genre=classes[best], confidence=float(mean[best]),
                           probs=dict(zip(classes, map(float, mean))), model="test/1",
                           timeline=timeline, genres=genres, multi_label=multi_label)


def softmax_slices(n, n_classes, seed=0, favour=0):
    """``n`` slices of class distributions that drift over time, class ``favour`` on top."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None]
    logits = 2 * np.sin(t / 7 + np.arange(n_classes)) + rng.normal(0, 0.5, (n, n_classes))
    logits[:, favour] += 4.5
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def pixels(path: Path) -> np.ndarray:
    """The PNG at ``path`` as ``[height, width, 3]`` uint8, checked to be a real PNG."""
    from PIL import Image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def colours_in(img: np.ndarray) -> set[str]:
    """Every colour present in the image, as ``'#rrggbb'``."""
    flat = np.unique(img.reshape(-1, 3), axis=0)
    return {"#%02x%02x%02x" % tuple(int(v) for v in c) for c in flat}


def share_of(img: np.ndarray, colour: str) -> float:
    """Fraction of the image's pixels that have exactly ``colour``."""
    rgb = np.asarray([int(colour[i:i + 2], 16) for i in (1, 3, 5)], dtype=np.uint8)
    return float(np.all(img == rgb, axis=2).mean())


# --------------------------------------------------------------------------- file names

@pytest.mark.parametrize("out, inputs, expected", [
    ("t.png", ["a/song.mp3"], ["t.png"]),
    ("plots/t.png", ["a.mp3", "b/c.flac"], ["plots/t-a.png", "plots/t-c.png"]),
    ("t.png", ["x/song.mp3", "y/song.flac", "z/song.ogg"],
     ["t-song.png", "t-song-2.png", "t-song-3.png"]),
    ("t.png", ["Song.mp3", "song.mp3"], ["t-Song.png", "t-song-2.png"]),
    ("t.png", ["song.mp3", "song-2.mp3", "x/song.mp3"],
     ["t-song.png", "t-song-2.png", "t-song-3.png"]),
    ("t.png", ["same.mp3", "same.mp3"], ["t-same.png", "t-same-2.png"]),
    ("out", ["a.mp3", "b.mp3"], ["out-a", "out-b"]),
    ("t.png", ["dir/Ünïcode name.opus", "x.y.flac"], ["t-Ünïcode name.png", "t-x.y.png"]),
])
def test_plot_paths_one_image_per_input_named_after_it(out, inputs, expected):
    assert plot_paths(out, inputs) == [Path(e) for e in expected]


def test_plot_paths_names_are_unique_ignoring_case_and_never_touch_the_disk(tmp_path):
    inputs = [f"{d}/{name}" for d in "abc" for name in ("Track.mp3", "track.flac", "TRACK.ogg")]
    paths = plot_paths(tmp_path / "t.png", inputs)
    assert len(paths) == len(inputs)
    assert len({p.name.casefold() for p in paths}) == len(inputs)
    assert all(p.parent == tmp_path for p in paths)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- timeline

@pytest.mark.parametrize("seconds, text", [(0, "0:00"), (59.9, "0:59"), (61, "1:01"),
                                           (3000, "50:00"), (3725, "1:02:05"), (-0.1, "0:00")])
def test_clock(seconds, text):
    assert clock(seconds) == text


@pytest.mark.parametrize("n_slices", [1, 19, 1000])
def test_timeline_of_one_to_a_thousand_slices(tmp_path, n_slices):
    pred = prediction(softmax_slices(n_slices, 10, favour=5), GTZAN)
    assert pred.genre == "jazz"
    out = plot_timeline(pred, tmp_path / "t.png")
    assert out == tmp_path / "t.png"
    img = pixels(out)
    assert img.shape == (450, 1000, 3)
    found = colours_in(img)
    assert len(found) > 20
    assert GTZAN_COLOURS["jazz"] in found
    # the track's genre is the bottom band of the stack: a large area of its colour
    assert share_of(img, GTZAN_COLOURS["jazz"]) > 0.05


def test_timeline_keeps_the_gaps_between_spread_slices_blank(tmp_path):
    probs = np.tile(np.eye(10)[5], (10, 1))  # all jazz, ten 3-s slices over five minutes
    pred = prediction(probs, GTZAN, starts=[i * 30.0 for i in range(10)])
    img = pixels(plot_timeline(pred, tmp_path / "t.png"))
    contiguous = pixels(plot_timeline(prediction(probs, GTZAN), tmp_path / "c.png"))
    jazz = share_of(img, GTZAN_COLOURS["jazz"])
    # a tenth of the time axis is analysed, so about a tenth of the jazz area of a full one
    assert 0.03 < jazz / share_of(contiguous, GTZAN_COLOURS["jazz"]) < 0.2


@pytest.mark.parametrize("n_classes", [10, 11, 30])
def test_timeline_for_any_vocabulary_uses_each_class_colour(tmp_path, n_classes):
    classes = GTZAN if n_classes == 10 else [f"tag{i:02d}" for i in range(n_classes)]
    pred = prediction(softmax_slices(40, n_classes, seed=n_classes, favour=3), classes)
    img = pixels(plot_timeline(pred, tmp_path / "t.png", title="any vocabulary"))
    assert img.shape == (450, 1000, 3)
    colours = genre_colours(classes)
    assert share_of(img, colours[pred.genre]) > 0.05
    if n_classes == 30:  # the classes that do not matter are one grey band
        assert share_of(img, OTHER_COLOUR) > 0.0


def test_multi_label_scores_are_lines_not_stacked(tmp_path):
    classes = [f"tag{i}" for i in range(11)]
    rng = np.random.default_rng(4)
    scores = rng.uniform(0.0, 0.3, (30, 11))
    scores[:, 2] = rng.uniform(0.7, 0.95, 30)
    scores[:, 6] = rng.uniform(0.5, 0.9, 30)
    pred = prediction(scores, classes, multi_label=True)
    img = pixels(plot_timeline(pred, tmp_path / "ml.png"))
    assert img.shape == (450, 1000, 3)
    assert share_of(img, "#ffffff") > 0.6  # lines on white, no filled areas
    assert len(colours_in(img)) > 20
    # the same scores forced into stacked areas fill the plot instead
    stacked = pixels(plot_timeline(pred, tmp_path / "st.png", stacked=True))
    assert share_of(stacked, "#ffffff") < 0.5


def test_scores_not_summing_to_one_are_lines_even_without_the_flag(tmp_path):
    probs = softmax_slices(12, 10) * 1.5
    pred = prediction(probs, GTZAN)
    assert not pred.multi_label
    assert share_of(pixels(plot_timeline(pred, tmp_path / "t.png")), "#ffffff") > 0.6


def test_colours_are_the_same_in_every_picture():
    assert genre_colours(GTZAN) == GTZAN_COLOURS
    assert genre_colours(["rock", "jazz"]) == {"rock": GTZAN_COLOURS["rock"],
                                               "jazz": GTZAN_COLOURS["jazz"]}
    tags = [f"tag{i:02d}" for i in range(30)]
    assert genre_colours(tags) == genre_colours(list(reversed(tags)))
    assert len(set(genre_colours(tags + GTZAN).values())) == 40
    many = [f"tag{i:02d}" for i in range(44)]
    assert len(set(genre_colours(many).values()) | set(GTZAN_COLOURS.values())) == 54


def test_timeline_size_follows_width_and_dpi(tmp_path):
    pred = prediction(softmax_slices(5, 10), GTZAN)
    img = pixels(plot_timeline(pred, tmp_path / "t.png", width_in=6, dpi=80))
    assert img.shape == (216, 480, 3)


def test_timeline_is_png_whatever_the_suffix(tmp_path):
    pred = prediction(softmax_slices(3, 10), GTZAN)
    out = plot_timeline(pred, tmp_path / "plot")
    assert out == tmp_path / "plot"
    assert pixels(out).shape == (450, 1000, 3)


def test_timeline_refuses_what_it_cannot_draw(tmp_path):
    silent = TrackPrediction(path="quiet.flac", genre=None, confidence=0.0, probs={},
                             model="test/1", silent=True)
    with pytest.raises(GenretagError, match="quiet.flac"):
        plot_timeline(silent, tmp_path / "s.png")
    pred = prediction(softmax_slices(3, 10), GTZAN)
    no_timeline = TrackPrediction(path="x.mp3", genre="rock", confidence=0.5, probs=pred.probs,
                                  model="test/1")
    with pytest.raises(GenretagError, match="x.mp3: no timeline"):
        plot_timeline(no_timeline, tmp_path / "n.png")
    with pytest.raises(ValueError, match="11 classes but slices have 10 scores"):
        plot_timeline(pred, tmp_path / "c.png", classes=GTZAN + ["extra"])
    assert list(tmp_path.iterdir()) == []


def test_matplotlib_is_loaded_only_to_draw_and_pyplot_never():
    code = (
        "import sys\n"
        "import genretag.plots as p\n"
        "assert 'matplotlib' not in sys.modules\n"
        "rows = [('rock', 0.9, ['Jazz']), ('jazz', 0.4, None)]\n"
        "o = p.library_overview(rows)\n"
        "p.format_overview(o)\n"
        "assert 'matplotlib' not in sys.modules\n"
        "import tempfile, os\n"
        "p.plot_overview(o, os.path.join(tempfile.mkdtemp(), 'o.png'))\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
        "import matplotlib\n"
        "print(matplotlib.get_backend())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr


# --------------------------------------------------------------------------- overview

ROWS = [
    ("rock", 0.95, ["Rock"]),                 # agrees (case folded)
    ("rock", 0.92, ["Jazz", "Blues"]),        # disagrees, confident: doubtful
    ("jazz", 0.65, ["blues"]),                # disagrees, below the threshold
    ("jazz", 0.70, [" JAZZ ", "Swing"]),      # agrees through its first genre
    ("metal", 1.0, ["pop", "metal"]),         # agrees through its second genre
    ("pop", 0.05, None),                      # no user genres
    ("pop", 0.1, []),                         # no user genres
    (None, None, ["rock"]),                   # not analysed (silent)
    ("disco", 0.99, ["Hip-Hop"]),             # disagrees, the most confident doubt
    ("hiphop", 0.71, ["hip-hop", ""]),        # agrees: spellings of one genre meet
]


def test_overview_counts():
    o = library_overview(ROWS)
    assert (o.n_rows, o.n_predicted, o.n_with_user_genres, o.n_agree) == (10, 9, 7, 4)
    assert o.distribution == {"jazz": 2, "pop": 2, "rock": 2, "disco": 1, "hiphop": 1,
                              "metal": 1}
    assert list(o.distribution) == ["jazz", "pop", "rock", "disco", "hiphop", "metal"]
    #                      0.0 .1 .2 .3 .4 .5 .6 .7 .8 .9
    assert o.confidence_counts == (1, 1, 0, 0, 0, 0, 1, 2, 0, 4)
    # A user genre naming a predicted class is shown as that class (Hip-Hop: hiphop).
    assert o.agreement == {"rock": {"rock": 1}, "jazz": {"rock": 1, "jazz": 1},
                           "blues": {"jazz": 1}, "metal": {"metal": 1},
                           "hiphop": {"disco": 1, "hiphop": 1}}
    assert o.doubtful == (Doubt(8, "disco", 0.99, ("hiphop",)),
                          Doubt(1, "rock", 0.92, ("jazz", "blues")))
    assert o.agreement_rate == pytest.approx(4 / 7)


def test_overview_aliases_threshold_and_vocabulary():
    o = library_overview(ROWS, aliases={"Rap": "hiphop"}, threshold=0.95, classes=GTZAN)
    assert o.n_agree == 4
    assert o.agreement["hiphop"] == {"hiphop": 1, "disco": 1}
    assert "hip-hop" not in o.agreement
    rap = library_overview([("hiphop", 0.9, ["Rap"])], aliases={"Rap": "hiphop"})
    assert rap.n_agree == 1 and library_overview([("hiphop", 0.9, ["Rap"])]).n_agree == 0
    assert [d.index for d in o.doubtful] == [8]  # 0.99 only: the threshold is inclusive
    assert set(o.distribution) == set(GTZAN)
    assert o.distribution["classical"] == 0
    assert sum(o.distribution.values()) == 9


def test_a_personal_vocabulary_agrees_whatever_the_spelling():
    # A personal model's classes are the user's own spellings ("Classical", "Post-Rock").
    rows = [("Classical", 0.9, ["classical"]), ("Post-Rock", 0.8, ["post rock"]),
            ("Classical", 0.95, ["Post Rock"])]
    o = library_overview(rows, classes=["Classical", "Post-Rock"])
    assert o.n_agree == 2
    assert o.agreement == {"Classical": {"Classical": 1}, "Post-Rock": {"Post-Rock": 1,
                                                                         "Classical": 1}}
    assert not any(o.unknown(u) for u in o.agreement)
    assert o.doubtful == (Doubt(2, "Classical", 0.95, ("Post-Rock",)),)
    # The genre head's display names (the plugin's default genre_map) name none of these
    # classes: they do not turn the user's "Pop" into the genre head's "pop".
    o = library_overview([("Rock", 0.5, ["Pop"])], classes=["Pop", "Rock"],
                         aliases={"Pop": "pop", "Rock": "rock"})
    assert o.agreement == {"Pop": {"Rock": 1}} and not o.unknown("Pop")


def test_a_multi_label_prediction_agrees_through_any_genre_it_lists():
    rows = [("dance", 0.9, ["Electronic"], ["Dance", "Electronic"]),   # listed second
            ("indie rock", 0.85, ["Rock"], ["Rock"]),                 # a canonical parent
            ("dance", 0.89, ["Jazz"], ["Dance"])]                     # not listed: doubtful
    o = library_overview(rows, classes=["dance", "electronic", "indie rock", "jazz", "rock"])
    assert o.n_agree == 2
    assert [d.index for d in o.doubtful] == [2]


@pytest.mark.parametrize("confidence, bin_", [(0.0, 0), (0.0999, 0), (0.1, 1), (0.5, 5),
                                              (0.95, 9), (1.0, 9)])
def test_confidence_bins_of_a_tenth(confidence, bin_):
    counts = library_overview([("rock", confidence, None)]).confidence_counts
    assert len(counts) == 10 == len(CONFIDENCE_EDGES) - 1
    assert counts[bin_] == 1 and sum(counts) == 1


@pytest.mark.parametrize("bad", [-0.01, 1.01, math.nan, None])
def test_overview_rejects_a_bad_confidence_naming_the_row(bad):
    with pytest.raises(ValueError, match=r"row 1 \(jazz\)"):
        library_overview([("rock", 0.5, None), ("jazz", bad, None)])


def test_overview_of_nothing():
    o = library_overview([])
    assert (o.n_rows, o.n_predicted, o.distribution, o.doubtful) == (0, 0, {}, ())
    assert o.agreement_rate is None
    assert format_overview(o) == "0 items with a predicted genre"


def test_agreement_table_merges_the_least_frequent_into_other():
    rows = [(f"g{i % 15}", 0.9, [f"u{i % 20}"]) for i in range(200)]
    rows += [("g0", 0.9, ["g0"])] * 30
    o = library_overview(rows)
    labels, cols, counts = o.agreement_table(max_rows=6, max_cols=5)
    assert labels[0] == "g0" and labels[-1] == OTHER and len(labels) == 6
    assert cols[0] == "g0" and cols[-1] == OTHER and len(cols) == 5
    assert counts[0][0] == 30
    assert sum(map(sum, counts)) == 230
    full = o.agreement_table(max_rows=100, max_cols=100)
    assert len(full[0]) == 21 and len(full[1]) == 15


def test_format_overview_text():
    o = library_overview(ROWS, threshold=0.9)
    labels = [f"Artist - Title {i}" for i in range(len(ROWS))]
    text = format_overview(o, labels=labels)
    text.encode("ascii")  # any terminal shows it
    lines = text.splitlines()
    assert lines[0] == "9 items with a predicted genre (1 without)"
    assert "Agreement with user-set genres: 4 of 7 agree (57%)" in lines
    table = lines.index("  (rows: user-set genre, columns: predicted genre)")
    # columns by frequency; rows in column order, then the other user genres
    assert lines[table + 1].split() == ["jazz", "rock", "disco", "hipho", "metal"]
    assert [line.split() for line in lines[table + 2:table + 7]] == [
        ["jazz", "1", "1", ".", ".", "."],
        ["rock", ".", "1", ".", ".", "."],
        ["hiphop", ".", ".", "1", "1", "."],
        ["metal", ".", ".", ".", ".", "1"],
        ["blues", "1", ".", ".", ".", "."]]
    assert all(len(line) <= 80 for line in lines if not line.startswith("  0."))
    doubts = lines[lines.index(next(x for x in lines if x.startswith("Doubtful"))) + 1:]
    assert [line.split()[0] for line in doubts] == ["0.99", "0.92"]
    assert doubts[0].endswith("Artist - Title 8")
    assert "  0.9-1.0      4  " + "#" * 30 in lines


def test_format_overview_lists_at_most_max_doubtful():
    rows = [("rock", 0.5 + i / 100, ["jazz"]) for i in range(30)]
    text = format_overview(library_overview(rows, threshold=0.5), max_doubtful=5)
    assert text.splitlines()[-1] == "  ... and 25 more"
    assert "  0.79  rock  user: jazz" in text.splitlines()[-6]


def test_overview_plot(tmp_path):
    o = library_overview(ROWS)
    img = pixels(plot_overview(o, tmp_path / "o.png"))
    assert img.shape == (900, 1200, 3)
    found = colours_in(img)
    assert len(found) > 50
    for genre in ("jazz", "pop", "rock", "metal"):  # the bars are in the genres' colours
        assert GTZAN_COLOURS[genre] in found


@pytest.mark.parametrize("rows", [[], [("rock", 0.8, None), ("pop", 0.3, None)]],
                         ids=["no rows", "no user genres"])
def test_overview_plot_without_data_is_still_a_picture(tmp_path, rows):
    img = pixels(plot_overview(library_overview(rows), tmp_path / "o.png", dpi=50))
    assert img.shape == (450, 600, 3)
    assert len(colours_in(img)) > 5


def test_user_genres_the_model_does_not_know_are_marked():
    rows = [("rock", 0.9, ["electronic"]), ("rock", 0.8, ["rock"])]
    o = library_overview(rows, classes=GTZAN)
    assert o.unknown("electronic") and not o.unknown("rock") and not o.unknown(OTHER)
    assert not library_overview(rows).unknown("electronic")  # vocabulary not given
    lines = format_overview(o).splitlines()
    table = lines.index("  (rows: user-set genre, columns: predicted genre)")
    assert [line.split() for line in lines[table + 1:table + 4]] == [
        ["rock"], ["rock", "1"], ["electronic*", "1"]]
    assert "  * not a genre the model knows: it can never agree" in lines
