"""The ``lastfm`` vocabulary: tag selection, calibration, thresholds, names and its card."""
import json
from pathlib import Path

import numpy as np
import pytest

from genretag.heads.lastfm import GENRES, MSD_TAGS, NON_GENRE_TAGS, display_name, tag_index
from genretag import tag_calibration as tc


@pytest.fixture(scope="module")
def lastfm_model():
    from genretag import load_model

    return load_model(vocabulary="lastfm")


@pytest.fixture(scope="module")
def analysis(lastfm_model, tmp_path_factory):
    """Generated music (12 s, four slices) analysed once by the shared backbone."""
    from genretag.classify import analyse_file
    from genretag.encode import write
    from genretag.synthetic import synth_music

    path = tmp_path_factory.mktemp("lastfm") / "song.flac"
    write(synth_music(12.5, 22050, seed=7), 22050, path)
    return analyse_file(path, lastfm_model.backbone)


def test_vocabulary_is_the_thirty_genre_tags_in_msd_order():
    assert len(MSD_TAGS) == 50 and len(GENRES) == 30
    assert [tag_index(t) for t in GENRES] == sorted(tag_index(t) for t in GENRES)
    assert NON_GENRE_TAGS == (
        "female vocalists", "00s", "beautiful", "male vocalists", "Mellow", "80s", "90s",
        "chill", "instrumental", "oldies", "acoustic", "female vocalist", "guitar", "70s",
        "party", "sexy", "catchy", "60s", "sad", "happy")
    assert all(t == t.lower() for t in GENRES)


@pytest.mark.parametrize("tag, shown, parent", [
    ("hip-hop", "Hip-Hop", "Hip-Hop"), ("rnb", "R&B", "R&B"), ("indie rock", "Indie Rock", "Rock"),
    ("house", "House", "Electronic"), ("heavy metal", "Heavy Metal", "Metal"),
    ("electronic", "Electronic", "Electronic"), ("indie pop", "Indie Pop", "Pop"),
    ("soul", "Soul", "R&B"), ("progressive rock", "Progressive Rock", "Rock"),
])
def test_display_names_and_canonical_parents(tag, shown, parent):
    assert display_name(tag) == shown
    assert display_name(tag, canonical=True) == parent


def test_every_parent_is_itself_a_display_name_that_maps_to_itself():
    shown = {g.display: t for t, g in GENRES.items()}
    for tag, genre in GENRES.items():
        if genre.parent in shown:
            assert GENRES[shown[genre.parent]].parent == genre.parent, tag


def test_head_applies_the_calibration_to_the_backbone_tag_logits(lastfm_model, analysis):
    import torch

    head = lastfm_model.head
    with torch.inference_mode():
        logits = lastfm_model.backbone.net.tag_logits(torch.from_numpy(analysis.embedding))
    expected = torch.sigmoid(logits[:, [tag_index(t) for t in lastfm_model.classes]]
                             * head.scale + head.shift)
    scores = lastfm_model.scores(analysis.embedding)
    assert scores.shape == (len(analysis.embedding), 30)
    np.testing.assert_allclose(scores, expected.numpy(), rtol=0, atol=1e-6)
    assert lastfm_model.classes == list(GENRES)
    assert lastfm_model.multi_label


def test_genres_are_every_tag_over_its_threshold_best_first(lastfm_model, analysis):
    from dataclasses import replace

    from genretag.classify import predict

    pred = predict(analysis, lastfm_model)
    order = sorted(pred.probs, key=lambda t: -pred.probs[t])
    assert pred.genre == order[0] and pred.confidence == pred.probs[order[0]]
    # thresholds set between the 3rd and 4th best scores: exactly the three best, in order
    cut = (pred.probs[order[2]] + pred.probs[order[3]]) / 2
    card = dict(lastfm_model.card, thresholds={t: cut for t in lastfm_model.classes})
    assert predict(analysis, replace(lastfm_model, card=card)).genres == tuple(order[:3])
    # a per-tag threshold: the best tag alone is held back
    card["thresholds"] = {**card["thresholds"], order[0]: 1.0}
    assert predict(analysis, replace(lastfm_model, card=card)).genres == tuple(order[1:3])
    shipped = lastfm_model.thresholds
    assert pred.genres == tuple(t for t in order
                                if pred.probs[t] >= shipped[lastfm_model.classes.index(t)])


def test_shipped_genres_are_a_prefix_of_the_score_ranking(lastfm_model, analysis):
    from dataclasses import replace

    from genretag.classify import predict

    assert set(lastfm_model.thresholds.tolist()) == {tc.GENRE_THRESHOLD}
    pred = predict(analysis, lastfm_model)
    order = sorted(pred.probs, key=lambda t: -pred.probs[t])
    assert pred.genres == tuple(order[:len(pred.genres)])
    # whatever the scores, the list starts with the top tag and skips no better tag
    for shift in (-0.3, 0.0, 0.3):
        card = dict(lastfm_model.card)
        cut = pred.probs[order[4]] + shift * (pred.probs[order[0]] - pred.probs[order[4]])
        card["thresholds"] = {t: cut for t in lastfm_model.classes}
        genres = predict(analysis, replace(lastfm_model, card=card)).genres
        assert genres == tuple(t for t in order if pred.probs[t] >= cut)
        assert genres[:1] == (pred.genre,)


def test_json_line_has_the_keys_of_the_issue(lastfm_model, analysis):
    from genretag.classify import predict

    out = json.loads(json.dumps(predict(analysis, lastfm_model).to_dict()))
    assert list(out) == ["path", "genre", "confidence", "genres", "probs", "model"]
    assert sorted(out["probs"]) == sorted(GENRES)
    assert out["genre"] in GENRES and out["genre"] == out["genre"].lower()
    assert out["model"] == "genretag-musicnn-msd-lastfm/" + tc.VERSION


def test_card_documents_vocabulary_calibration_and_licence(lastfm_model):
    from genretag.backbone import MUSICNN_PROVENANCE
    from genretag.model import shipped_weights_dir

    card = lastfm_model.card
    assert card["vocabulary"] == "lastfm" and card["classes"] == list(GENRES)
    assert card["display_names"] == {t: g.display for t, g in GENRES.items()}
    assert card["canonical"] == {t: g.parent for t, g in GENRES.items()}
    assert card["thresholds"] == {t: tc.GENRE_THRESHOLD for t in GENRES}
    metrics = card["metrics"]
    for subset in ("clean", "all_augmentations"):
        shares = metrics["genres_per_track"][subset]
        assert list(shares) == ["0", "1", "2", "3", "4"]
        assert sum(shares.values()) == pytest.approx(1, abs=1e-3)
        assert shares["1"] + shares["2"] + shares["3"] >= 0.75   # mostly one to three genres
        firing = metrics["unlabelled_tags_on_other_genres"][subset]
        assert sorted(firing) == sorted(["soul", "folk", "ambient", "experimental",
                                         "easy listening", "funk", "any"])
        assert max(v for t, v in firing.items() if t != "any") <= 0.03
    own = {t: v["own_labels"] for t, v in card["calibration"]["per_tag"].items()}
    assert [t for t in GENRES if not own[t]] == ["soul", "folk", "ambient", "experimental",
                                                "easy listening", "funk"]
    assert card["provenance"] == [MUSICNN_PROVENANCE]
    assert card["backbone"]["sha256"] == json.loads(
        (shipped_weights_dir() / "model_card.json").read_text())["backbone"]["sha256"]
    assert not (lastfm_model.directory / card["backbone"]["path"]).exists()  # not duplicated
    assert (lastfm_model.directory / card["files"][0]["path"]).stat().st_size < 4096
    assert card["limitations"] and card["metrics"]["tags"]["clean"]["rock"]["positives"] > 0


def _synthetic_logits(n_clips=40, slices=3, seed=0):
    """Clips of two genres whose right tag is 1.5 above the others, under a +4 prior on rock."""
    rng = np.random.default_rng(seed)
    classes = list(GENRES)
    genre = np.array(["rock", "hiphop"] * (n_clips // 2))
    clips = [tc.LabelledClip(Path(f"{i}.flac"), "emotify", g, f"emotify:a{i}")
             for i, g in enumerate(genre)]
    clip = np.repeat(np.arange(n_clips), slices)
    logits = rng.normal(-4.0, 1.0, (len(clip), len(classes)))
    logits[:, classes.index("rock")] += 4.0
    right = np.where(genre[clip] == "rock", classes.index("rock"), classes.index("hip-hop"))
    logits[np.arange(len(clip)), right] += 1.5
    return clips, classes, logits, clip


def test_calibration_removes_a_tag_prior_and_is_deterministic(tmp_path):
    clips, classes, logits, clip = _synthetic_logits()
    aug = np.zeros(len(clip), np.int8)
    labels = tc.label_matrix(clips, classes)
    strata = np.array([c.genre for c in clips])
    cal = tc.fit_calibration(logits, clip, aug, labels, strata, classes)
    rock, hiphop = classes.index("rock"), classes.index("hip-hop")
    _, _, raw = tc.track_means(logits, clip, aug)
    _, _, calibrated = tc.track_means(cal.scores(logits), clip, aug)
    is_hiphop = strata == "hiphop"
    assert (raw[is_hiphop].argmax(1) == rock).all()           # the prior wins raw
    assert (calibrated[is_hiphop, hiphop] > calibrated[is_hiphop, rock]).mean() >= 0.9
    assert cal.fitted[rock] and cal.fitted[hiphop] and not cal.fitted[classes.index("folk")]
    assert (cal.thresholds == tc.GENRE_THRESHOLD).all()
    again = tc.fit_calibration(logits, clip, aug, labels, strata, classes)
    a, b = tmp_path / "a", tmp_path / "b"
    for out, c in ((a, cal), (b, again)):
        tc.write_model_dir(out, c, backbone_sha256="0" * 64, training={}, metrics={})
    for name in ("model_card.json", "MODEL_CARD.md", tc.HEAD_FILE):
        assert (a / name).read_bytes() == (b / name).read_bytes()


def test_tags_without_labels_do_not_move_the_levels_of_the_fitted_tags():
    # Folk has no labelled clip: its logits, however loud, must not lift the fitted tags
    # over it (the old fit did: it only ever saw folk as a wrong answer).
    clips, classes, logits, clip = _synthetic_logits()
    aug = np.zeros(len(clip), np.int8)
    labels = tc.label_matrix(clips, classes)
    strata = np.array([c.genre for c in clips])
    folk = classes.index("folk")
    loud = logits.copy()
    loud[:, folk] = np.random.default_rng(2).normal(-4.0, 4.0, len(clip))
    quiet, noisy = (tc.fit_calibration(x, clip, aug, labels, strata, classes)
                    for x in (logits, loud))
    assert not quiet.fitted[folk]
    assert np.array_equal(quiet.offset[quiet.fitted], noisy.offset[noisy.fitted])
    assert np.array_equal(quiet.slope, noisy.slope)


def test_folds_keep_artists_and_gtzan_splits_apart():
    clips = [tc.LabelledClip(Path(f"{i}"), "emotify", g, f"emotify:{art}")
             for i, (g, art) in enumerate([("pop", "x"), ("pop", "x"), ("pop", "y"),
                                           ("rock", "z"), ("rock", "y"), ("rock", "w")])]
    clips += [tc.LabelledClip(Path("g1"), "gtzan", "jazz", "gtzan:train"),
              tc.LabelledClip(Path("g2"), "gtzan", "jazz", "gtzan:valid")]
    folds = tc.assign_folds(clips)
    for group in {c.group for c in clips}:
        assert len({f for c, f in zip(clips, folds) if c.group == group}) == 1
    assert list(folds[-2:]) == [0, 1]
    assert set(folds) == {0, 1}


def test_augmented_copies_keep_about_five_spread_slices():
    assert list(tc.augmented_slices(9, 0)) == list(range(9))
    assert list(tc.augmented_slices(9, 1)) == [1, 3, 5, 7]
    assert list(tc.augmented_slices(19, 2)) == [2, 6, 10, 14, 18]
    assert list(tc.augmented_slices(1, 3)) == [0]


def test_an_index_without_its_group_column_is_named(tmp_path):
    (tmp_path / "index.csv").write_text("path,genre\nx.flac,pop\n")
    with pytest.raises(tc.GenretagError, match=r"index\.csv: needs the columns path, genre "
                                               r"and artist"):
        tc.load_clips(emotify_dir=tmp_path)
    (tmp_path / "index.csv").write_text("path,genre,artist\nx.flac,polka,a\n")
    with pytest.raises(tc.GenretagError, match="genre 'polka' has no tag labels"):
        tc.load_clips(emotify_dir=tmp_path)


def test_a_tag_without_labels_is_lowered_until_it_rarely_fires_on_other_music():
    clips, classes, _, clip = _synthetic_logits(n_clips=200)
    aug = np.zeros(len(clip), np.int8)
    labels = tc.label_matrix(clips, classes)
    folk, soul, rock = classes.index("folk"), classes.index("soul"), classes.index("rock")
    rng = np.random.default_rng(1)
    logits = rng.normal(-3.0, 0.5, (len(clip), len(classes)))
    logits[:, folk] += np.where(clip < 40, 6.0, 0.0) + rng.normal(0, 1.0, len(clip))
    n = len(classes)
    cal = tc.Calibration(classes, np.zeros(n), np.ones(n), np.zeros(n), np.array(
        [t not in ("folk", "soul") for t in classes]))
    offset = tc.limit_unlabelled(cal, logits, clip, aug, labels)
    assert offset[soul] == 0 and offset[rock] == 0     # never raised; labelled tags untouched

    def share_over(b):
        x = cal.slope[folk] * (logits[:, folk] - cal.mean[folk]) + b
        _, _, tracks = tc.track_means(tc._sigmoid(x)[:, None], clip, aug)
        return (tracks[:, 0] >= tc.GENRE_THRESHOLD).mean()

    assert share_over(0.0) == pytest.approx(0.2, abs=0.02)    # a fifth of the tracks before
    assert share_over(offset[folk]) <= tc.UNLABELLED_RATE
    assert share_over(offset[folk] + 0.01) > tc.UNLABELLED_RATE   # lowered just enough
