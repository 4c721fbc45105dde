"""Learning a personal head: genre folding, examples, artist-grouped CV, model directories.

The end-to-end tests learn from generated audio of two clearly different kinds
(drum/bass/chord patterns and slow drumless pads), 12 files of each.
"""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from genretag.errors import GenretagError, WeightsError
from genretag.learning import (HEAD_FILE, NotEnoughExamples, artist_weights, assign_folds,
                               cross_validate, fit_linear, fit_personal_head, fold_genre,
                               format_cv, learn_from_csv,
                               learn_personal_model, prepare_examples, read_labels_csv,
                               write_personal_model)
from genretag.model import CARD_NAME, load_model, sha256_file

SR = 22050
PER_GENRE = 12


# -- folding -------------------------------------------------------------------------

@pytest.mark.parametrize("names, key", [
    (["Hip Hop", "hip-hop", "HipHop", " HIP  HOP ", "hip_hop"], "hiphop"),
    (["Drum & Bass", "drum and bass", "Drum'n'Bass", "Drum n Bass", "DnB", "drum&bass"],
     "drumandbass"),
    (["R&B", "RnB", "R'n'B", "Rhythm and Blues", "r & b"], "randb"),
    (["Post-Rock", "post rock", "PostRock", "post-rock"], "postrock"),
    (["Rock & Roll", "Rock'n'Roll", "rock and roll"], "rockandroll"),
    (["Chanson française", "CHANSON FRANCAISE"], "chansonfrancaise"),
    (["Lo-Fi", "lofi", "Lo Fi"], "lofi"),
    (["", "  ", "-", "_", "?!"], ""),
])
def test_fold_genre_meets_spelling_variants(names, key):
    assert {fold_genre(n) for n in names} == {key}


def test_fold_genre_keeps_different_genres_apart():
    keys = [fold_genre(n) for n in ("Rock", "Pop", "Pop Rock", "Electronic", "Electronica",
                                    "House", "Tech House", "Blues", "Blues Rock")]
    assert len(set(keys)) == len(keys)


def test_genre_map_applies_before_folding():
    genre_map = {"electronica": "Electronic", "Prog": "Progressive Rock"}
    assert fold_genre("Electronica", genre_map) == "electronic"
    assert fold_genre("PROG", genre_map) == "progressiverock"
    assert fold_genre("Jazz", genre_map) == "jazz"


# -- examples ------------------------------------------------------------------------

def _tracks(spec):
    """``[(genres, n, artist)]`` -> tracks with made-up paths."""
    out = []
    for genres, n, artist in spec:
        out += [(f"/music/{artist}/{'-'.join(genres or [])}-{i}.flac", genres, artist)
                for i in range(n)]
    return out


def test_examples_fold_and_keep_the_commonest_spelling():
    tracks = _tracks([(["Hip Hop"], 3, "a"), (["hip-hop"], 8, "b"), (["Jazz"], 10, "c")])
    ex = prepare_examples(tracks, min_examples=10)
    assert ex.classes == ("hip-hop", "Jazz")
    assert ex.keys == ("hiphop", "jazz")
    assert ex.counts == {"hip-hop": 11, "Jazz": 10}
    assert ex.left_out == {}
    assert len(ex) == 21


def test_multi_genre_item_counts_for_its_first_kept_genre():
    tracks = _tracks([(["Shoegaze", "Rock"], 4, "a"), (["Rock"], 7, "b"), (["Jazz"], 10, "c"),
                      (["Jazz", "Rock"], 2, "d"), ([], 2, "e"), (None, 1, "g"),
                      (["Polka"], 2, "f")])
    ex = prepare_examples(tracks, min_examples=10)
    assert ex.counts == {"Jazz": 12, "Rock": 11}  # Shoegaze items fall back to Rock
    assert ex.left_out == {"Shoegaze": 4, "Polka": 2}
    assert ex.unlabelled == 5  # three without genres, two Polka-only
    assert ex.multi_genre == 6
    shoegaze = [p for p in ex.paths if "Shoegaze" in p]
    assert {ex.classes[ex.labels[ex.paths.index(p)]] for p in shoegaze} == {"Rock"}


def test_rows_of_one_path_merge_their_genres_in_order():
    tracks = _tracks([(["Jazz"], 10, "a"), (["Rock"], 10, "b")])
    tracks.append((tracks[0][0], ["Rock"], None))  # second row for a Jazz file
    ex = prepare_examples(tracks, min_examples=10)
    assert len(ex) == 20
    assert ex.classes[ex.labels[ex.paths.index(tracks[0][0])]] == "Jazz"


def test_too_few_examples_is_a_clear_error():
    tracks = _tracks([(["Rock"], 12, "a"), (["Jazz"], 9, "b"), (["Blues"], 3, "c")])
    with pytest.raises(NotEnoughExamples) as err:
        prepare_examples(tracks, min_examples=10)
    message = str(err.value)
    assert "at least two genres need 10 examples" in message
    assert "Rock 12" in message and "Jazz 9" in message and "Blues 3" in message
    assert isinstance(err.value, GenretagError)


# -- folds and cross-validation --------------------------------------------------------

def test_folds_never_split_an_artist():
    rng = np.random.default_rng(0)
    artists = [f"artist{rng.integers(0, 23)}" for _ in range(300)]
    labels = np.asarray([hash(a) % 4 for a in artists]) ^ rng.integers(0, 2, 300)
    fold_of, grouped, n_groups = assign_folds(labels, artists, 5)
    assert grouped and n_groups == len(set(artists))
    assert set(fold_of) == set(range(5))
    for artist in set(artists):
        assert len({f for f, a in zip(fold_of, artists) if a == artist}) == 1


def test_tracks_without_an_artist_are_groups_of_their_own():
    labels = np.asarray([0] * 6 + [1] * 6)
    artists = ["a", "A", "a", None, None, None, "b", "b", "B", None, None, None]
    fold_of, grouped, n_groups = assign_folds(labels, artists, 3)
    assert grouped and n_groups == 8
    assert len(set(fold_of[:3])) == 1 and len(set(fold_of[6:9])) == 1


def test_without_artists_folds_are_stratified_and_say_so():
    labels = np.asarray([0] * 10 + [1] * 20)
    fold_of, grouped, _ = assign_folds(labels, [None] * 30, 5)
    assert not grouped
    for f in range(5):
        assert np.bincount(labels[fold_of == f]).tolist() == [2, 4]
    rng = np.random.default_rng(1)
    emb = [rng.normal(size=(3, 1506)).astype(np.float32) + 2 * y for y in labels]
    report = cross_validate(emb, labels, [None] * 30, folds=5, classes=["A", "B"], l2=1.0)
    assert not report.grouped and "optimistic" in format_cv(report)


def test_cross_validation_report_figures():
    rng = np.random.default_rng(2)
    labels = np.asarray([0] * 12 + [1] * 18)
    artists = [f"x{i // 3}" for i in range(12)] + [f"y{i // 3}" for i in range(18)]
    emb = [rng.normal(size=(4, 1506)).astype(np.float32) + 0.5 * y for y in labels]
    report = cross_validate(emb, labels, artists, folds=5, classes=["Ambient", "Techno"])
    assert report.grouped and report.folds == 5 and report.n_groups == 10
    assert report.support == (12, 18) and report.n == 30
    assert report.baseline_genre == "Techno" and report.baseline_accuracy == pytest.approx(0.6)
    assert report.accuracy == pytest.approx(sum(report.correct) / 30)
    assert report.balanced_accuracy == pytest.approx((report.correct[0] / 12
                                                      + report.correct[1] / 18) / 2)
    table = format_cv(report)
    assert "grouped by artist" in table and "always guessing the commonest genre (Techno): 0.60" \
        in table
    assert f"{report.correct[0]:>5}/12" in table


def test_every_artist_weighs_as_one_track_in_the_fit():
    assert artist_weights(["A", "a", "B", None, None]).tolist() == [0.5, 0.5, 1.0, 1.0, 1.0]
    rng = np.random.default_rng(4)
    labels = np.asarray([0] * 6 + [1] * 6)
    tracks = [rng.normal(size=(3, 8)) + y for y in labels]
    artists = [f"artist{i}" for i in range(12)]
    base = fit_linear(tracks, labels, 2, groups=artists)
    # One prolific artist: the first track's artist has ten more of the same tracks.
    prolific = fit_linear(tracks + [tracks[0]] * 10, np.r_[labels, [0] * 10], 2,
                          groups=artists + ["ARTIST0"] * 10)
    np.testing.assert_allclose(prolific.weight, base.weight, atol=1e-5)
    np.testing.assert_allclose(prolific.mean, base.mean, atol=1e-12)
    # The same eleven tracks by eleven artists are eleven votes, and move the fit.
    many = fit_linear(tracks + [tracks[0]] * 10, np.r_[labels, [0] * 10], 2,
                      groups=artists + [f"other{i}" for i in range(10)])
    assert np.abs(many.weight - base.weight).max() > 0.01


def test_one_artist_cannot_be_cross_validated():
    labels = np.asarray([0] * 5 + [1] * 5)
    emb = [np.ones((2, 1506), np.float32) * y for y in labels]
    with pytest.raises(NotEnoughExamples, match="two artists"):
        cross_validate(emb, labels, ["same"] * 10)


# -- end to end on generated audio -------------------------------------------------------

def _pad(duration_s: float, seed: int) -> np.ndarray:
    """Slow drumless chords with vibrato: ``[1, n]`` float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(duration_s * SR)) / SR
    f0 = 220 * 2 ** (rng.integers(0, 12) / 12)
    tone = sum(np.sin(2 * np.pi * f0 * r * t + 0.3 * np.sin(2 * np.pi * 5 * t)) / (1 + i)
               for i, r in enumerate((1.0, 1.25, 1.5, 2.0)))
    tone *= 0.5 + 0.5 * np.sin(2 * np.pi * t / duration_s)
    return (0.6 * tone / np.abs(tone).max()).astype(np.float32)[None, :]


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """Two kinds of generated music, 12 files each by 4 artists, a labels file naming them
    (and a missing and an undecodable file), and one held-out file of each kind."""
    from genretag.encode import write
    from genretag.synthetic import synth_music

    root = tmp_path_factory.mktemp("library")
    (root / "music").mkdir()
    rows = []
    for i in range(PER_GENRE):
        beats, pads = root / "music" / f"beats{i}.flac", root / "music" / f"pad{i}.flac"
        write(synth_music(4.0, SR, seed=i), SR, beats)
        write(_pad(4.0, seed=i), SR, pads)
        rows += [(f"music/{beats.name}", "Beat-Music", f"beatmaker {i % 4}"),
                 (f"music/{pads.name}", "ambient pads" if i % 3 else "Ambient Pads",
                  f"padder {i % 4}")]
    (root / "music" / "notes.mp3").write_text("not audio")
    rows += [("music/missing.flac", "Beat-Music", "beatmaker 0"),
             ("music/notes.mp3", "Ambient Pads", "padder 0")]
    write(synth_music(4.0, SR, seed=100), SR, root / "held_beats.flac")
    write(_pad(4.0, seed=100), SR, root / "held_pad.flac")
    labels = root / "labels.csv"
    with open(labels, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "genre", "artist"])
        writer.writerows(rows)
    return root


@pytest.fixture(scope="module")
def learnt(library):
    """``genretag learn`` run once on the library: (model dir, exit status, stdout, log)."""
    out, log = [], []
    status = learn_from_csv(library / "labels.csv", library / "model", folds=3,
                            cache=library / "cache.sqlite", log=log.append, out=out.append)
    return library / "model", status, "\n".join(out), log


def test_learn_prints_cv_and_reports_bad_files(learnt, library):
    model_dir, status, printed, log = learnt
    assert status == 0
    assert "Cross-validation: 3 folds grouped by artist (8 groups" in printed
    assert "Beat-Music" in printed and "ambient pads" in printed
    assert f"wrote {model_dir}: model genretag-personal-" in printed
    bad = [line for line in log if line.startswith("genretag: ")]
    assert len(bad) == 2
    assert any(str(library / "music" / "missing.flac") in line and "not found" in line
               for line in bad)
    assert any(str(library / "music" / "notes.mp3") in line for line in bad)


def test_learnt_model_loads_verified_and_classifies(learnt, library):
    from genretag.classify import classify_file

    model_dir, _, _, _ = learnt
    card = json.loads((model_dir / CARD_NAME).read_text())
    model = load_model(weights=model_dir)
    assert model.classes == ["ambient pads", "Beat-Music"]
    assert card["class_keys"] == ["ambientpads", "beatmusic"]
    assert card["vocabulary"] == "personal" and card["n_examples"] == 2 * PER_GENRE
    assert card["training"]["artist_balanced"] is True    # the labels name artists
    assert {(model_dir / n).stat().st_mode & 0o777 for n in (HEAD_FILE, CARD_NAME)} == {0o644}
    assert card["backbone"]["sha256"] == model.backbone.sha256
    head_sha = sha256_file(model_dir / HEAD_FILE)
    assert card["files"] == [{"path": HEAD_FILE, "sha256": head_sha}]
    assert model.model_id == f"genretag-personal-{head_sha[:10]}/1"
    assert card["cv"]["per_class"]["Beat-Music"]["support"] == PER_GENRE
    assert card["cv"]["tracks"] == 2 * PER_GENRE and card["cv"]["grouped"] is True
    for name, genre in (("held_beats.flac", "Beat-Music"), ("held_pad.flac", "ambient pads")):
        pred = classify_file(library / name, model)
        assert set(pred.probs) == {"ambient pads", "Beat-Music"}
        assert sum(pred.probs.values()) == pytest.approx(1.0, abs=1e-5)
        assert pred.genre == genre
        assert pred.model == model.model_id


def test_learning_is_deterministic_and_retraining_changes_the_id(learnt, library, tmp_path):
    model_dir, _, _, _ = learnt
    first_id = load_model(weights=model_dir).model_id
    again = tmp_path / "again"
    seen = []
    card = learn_personal_model(read_labels_csv(library / "labels.csv"), again, folds=3,
                                cache=library / "cache.sqlite", progress=seen.append,
                                log=lambda m: None, out=lambda m: None)
    assert len(seen) == 2 * PER_GENRE + 2
    assert all(item.cached for item in seen if item.error is None)  # nothing decoded again
    assert f"{card['model_id']}/1" == first_id  # same data, same head, same id
    assert load_model(weights=again).model_id == first_id
    fewer = tmp_path / "fewer.csv"
    rows = (library / "labels.csv").read_text().splitlines()
    fewer.write_text("\n".join(rows[:-4]).replace("music/", f"{library / 'music'}/")
                     + "\n")  # the last file of each kind left out
    out = []
    assert learn_from_csv(fewer, model_dir.parent / "retrained", folds=3,
                          cache=library / "cache.sqlite", log=lambda m: None,
                          out=out.append) == 0
    assert load_model(weights=model_dir.parent / "retrained").model_id != first_id
    assert "from 22 tracks" in out[-1]


def test_too_few_examples_exit_1_with_a_clear_message(library, tmp_path):
    labels = tmp_path / "labels.csv"
    lines = (library / "labels.csv").read_text().splitlines()
    keep = [lines[0]] + [l for l in lines[1:] if "Beat" in l or "pad0" in l]
    labels.write_text("\n".join(keep).replace("music/", str(library / "music") + "/") + "\n")
    log = []
    status = learn_from_csv(labels, tmp_path / "model", log=log.append, out=log.append)
    assert status == 1
    assert len(log) == 1 and log[0].startswith("genretag: not enough to learn from")
    assert "Beat-Music 13" in log[0] and "Ambient Pads 1" in log[0]
    assert log[0].endswith("(--min-examples sets how many)")
    assert not (tmp_path / "model").exists()


def test_labels_file_without_genre_column_is_refused(tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("file,style\na.flac,Rock\n")
    with pytest.raises(GenretagError, match="'path' and 'genre'"):
        read_labels_csv(labels)
    log = []
    assert learn_from_csv(labels, tmp_path / "m", log=log.append, out=log.append) == 1
    assert str(labels) in log[0]


def test_labels_paths_are_relative_to_the_file_and_genres_split_on_semicolons(tmp_path):
    labels = tmp_path / "sub" / "labels.csv"
    labels.parent.mkdir()
    labels.write_text("\ufeffPath, Genre \nx/a.flac,Rock; Pop\n/abs/b.flac,Jazz\n")
    assert read_labels_csv(labels) == [(str(labels.parent / "x" / "a.flac"), ["Rock", "Pop"], None),
                                       ("/abs/b.flac", ["Jazz"], None)]


# -- model directories -----------------------------------------------------------------

@pytest.fixture(scope="module")
def small_head():
    """A head fitted on random embeddings (no audio): (head, classes)."""
    rng = np.random.default_rng(3)
    labels = np.asarray([0] * 10 + [1] * 10)
    emb = [rng.normal(size=(2, 1506)).astype(np.float32) + y for y in labels]
    head = fit_personal_head(emb, labels, n_classes=2)
    return head, ["Rock", "Jazz"]


def test_tampered_personal_model_is_refused(learnt, tmp_path):
    import shutil

    model_dir, _, _, _ = learnt
    flipped = tmp_path / "flipped"
    shutil.copytree(model_dir, flipped)
    data = bytearray((flipped / HEAD_FILE).read_bytes())
    data[-3] ^= 0x01
    (flipped / HEAD_FILE).write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=f"{HEAD_FILE}.*does not match the model card"):
        load_model(weights=flipped)

    extra = tmp_path / "extra-class"
    shutil.copytree(model_dir, extra)
    card = json.loads((extra / CARD_NAME).read_text())
    card["classes"].append("Polka")
    (extra / CARD_NAME).write_text(json.dumps(card))
    with pytest.raises(WeightsError, match="do not fit the personal-linear head"):
        load_model(weights=extra)


def test_write_replaces_a_model_atomically_and_refuses_other_directories(small_head, tmp_path):
    head, classes = small_head
    sha = load_model().backbone.sha256
    out = tmp_path / "personal"
    card = write_personal_model(out, head, classes, None, 20, sha)
    assert load_model(weights=out).model_id == f"{card['model_id']}/1"
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(TypeError):  # fails while writing the card: nothing changes
        write_personal_model(out, head, classes, None, 20, sha, training={"bad": object()})
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["personal"]  # no temporary left

    card2 = write_personal_model(out, head, ["Blues", "Jazz"], None, 20, sha)
    assert card2["model_id"] != card["model_id"]  # class names are part of the hashed file
    assert load_model(weights=out).classes == ["Blues", "Jazz"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["personal"]

    music = tmp_path / "music"
    music.mkdir()
    (music / "song.flac").write_bytes(b"x")
    with pytest.raises(GenretagError, match="not a genretag model directory"):
        write_personal_model(music, head, classes, None, 20, sha)
    assert [p.name for p in music.iterdir()] == ["song.flac"]
