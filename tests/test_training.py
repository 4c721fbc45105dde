"""Training: collections and folds, augmentation, the fit, calibration, reproducible output."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from genretag.collections import GENRES, Clip, CollectionError, group_folds, load_collection


def _write_index(folder, rows, columns):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "index.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=columns)
        w.writeheader()
        w.writerows(rows)


def test_collection_groups_by_artist_or_split(tmp_path):
    _write_index(tmp_path / "gtzan", [
        {"path": "a.flac", "genre": "blues", "split": "train"},
        {"path": "b.flac", "genre": "blues", "split": "valid"},
        {"path": "c.flac", "genre": "Jazz", "split": "train"},
        {"path": "d.flac", "genre": "polka", "split": "train"}], ["path", "genre", "split"])
    _write_index(tmp_path / "emotify", [
        {"path": "x.opus", "genre": "pop", "artist": "Brad Senne"},
        {"path": "y.opus", "genre": "rock", "artist": "Brad Senne"}], ["path", "genre", "artist"])
    gtzan = load_collection(tmp_path / "gtzan")
    assert [(c.relpath, c.genre, c.group) for c in gtzan] == [
        ("a.flac", "blues", "gtzan:blues:train"), ("b.flac", "blues", "gtzan:blues:valid"),
        ("c.flac", "jazz", "gtzan:jazz:train")]  # polka is outside the vocabulary
    emotify = load_collection(tmp_path / "emotify")
    assert {c.group for c in emotify} == {"emotify:artist:Brad Senne"}
    assert all(c.collection == "emotify" and c.path.parent == tmp_path / "emotify"
               for c in emotify)


def test_collection_without_groups_is_refused(tmp_path):
    _write_index(tmp_path / "loose", [{"path": "a.wav", "genre": "rock"}], ["path", "genre"])
    with pytest.raises(CollectionError, match=r"loose/index\.csv: needs columns path, genre"):
        load_collection(tmp_path / "loose")
    with pytest.raises(CollectionError, match=r"missing/index\.csv: cannot read"):
        load_collection(tmp_path / "missing")


def test_group_folds_never_split_a_group_and_balance_genres():
    rng = np.random.default_rng(0)
    clips = []
    for g in range(40):
        genre = GENRES[g % 4]
        for _ in range(int(rng.integers(1, 8))):
            clips.append(Clip(path=None, relpath="", genre=genre, collection="c",
                              group=f"artist{g}"))
    folds = group_folds(clips, 5)
    assert folds == group_folds(clips, 5)  # deterministic
    by_group: dict[str, set] = {}
    for c, f in zip(clips, folds):
        by_group.setdefault(c.group, set()).add(f)
    assert all(len(s) == 1 for s in by_group.values())
    assert set(folds) == set(range(5))
    for genre in GENRES[:4]:
        per_fold = np.bincount([f for c, f in zip(clips, folds) if c.genre == genre],
                               minlength=5)
        assert per_fold.min() > 0


def test_augmentations_keep_length_and_are_deterministic():
    from genretag.augment import AUGMENTATIONS, augment, clip_seed, kept_slices

    rng = np.random.default_rng(1)
    audio = (0.3 * rng.standard_normal(16000 * 2)).astype(np.float32)
    for kind in AUGMENTATIONS:
        a = augment(audio, 16000, kind, seed=clip_seed("c", "x.wav", kind))
        b = augment(audio, 16000, kind, seed=clip_seed("c", "x.wav", kind))
        assert a.shape == audio.shape and a.dtype == np.float32, kind
        assert np.array_equal(a, b), kind
    assert np.allclose(augment(audio, 16000, "gain_m12"), audio * 10 ** (-12 / 20))
    assert np.abs(augment(audio, 16000, "gain_p6")).max() <= 1.0
    spec = np.abs(np.fft.rfft(augment(audio, 16000, "band8k")))  # 2 bins per Hz
    assert (spec[2 * 4500:] ** 2).sum() < 1e-3 * (spec[:2 * 3500] ** 2).sum()
    with pytest.raises(ValueError, match="unknown augmentation 'reverb'"):
        augment(audio, 16000, "reverb")
    assert list(kept_slices(9, "clean", 2)) == list(range(9))
    assert list(kept_slices(9, "band8k", 2)) == [1, 3, 5, 7]
    assert list(kept_slices(9, "band11k", 2)) == [0, 2, 4, 6, 8]
    assert list(kept_slices(1, "band8k", 4)) == [0]


def test_slice_weights_balance_classes_then_collections():
    from genretag.training import slice_weights

    labels = np.array([0] * 6 + [0] * 2 + [1] * 4)
    strata = np.array(["a"] * 6 + ["b"] * 2 + ["a"] * 4)
    w = slice_weights(labels, strata)
    assert w.mean() == pytest.approx(1.0)
    assert w[labels == 0].sum() == pytest.approx(w[labels == 1].sum())
    assert w[:6].sum() == pytest.approx(w[6:8].sum())


def _toy(seed=0, n=300, d=8, k=3):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 2, (k, d))
    y = rng.integers(0, k, n)
    return (centers[y] + rng.normal(0, 1, (n, d))).astype(np.float32), y


def test_fit_softmax_is_deterministic_and_learns():
    from genretag.training import fit_softmax

    x, y = _toy()
    w = np.ones(len(y))
    a = fit_softmax(x, y, w, 3, l2=1e-3)
    b = fit_softmax(x, y, w, 3, l2=1e-3)
    for t1, t2 in zip((a[0], a[1], *a[2].state_dict().values()),
                      (b[0], b[1], *b[2].state_dict().values())):
        assert t1.numpy().tobytes() == t2.numpy().tobytes()
    from genretag.training import slice_logits

    assert (slice_logits(a, x).argmax(1) == y).mean() > 0.9


def test_temperature_lowers_ece_of_overconfident_scores():
    from genretag.protocol import HeldOut, calibration_report, fit_temperature

    rng = np.random.default_rng(2)
    n_clips, k = 400, 4
    labels = rng.integers(0, k, n_clips)
    # One slice per clip; the true class leads by a margin that makes it the best class
    # about 80 % of the time, and every logit is scaled by 6: confident beyond accuracy.
    z = rng.normal(0, 1, (n_clips, k))
    z[np.arange(n_clips), labels] += 2.0
    held = HeldOut(6 * z, np.arange(n_clips), np.zeros(k, bool))
    t = fit_temperature(held, labels, k)
    report = calibration_report(held, labels, k, t)
    assert t > 2
    assert report["ece_calibrated"] < report["ece_uncalibrated"] / 2
    curve = report["precision_coverage"]
    assert curve[0]["coverage"] == 1.0 and curve[0]["threshold"] == 0.0
    chosen = report["min_confidence"]
    assert 0.5 < chosen < 1 and report["precision_at_min_confidence"] >= 0.9
    assert all(r["precision"] >= 0.9 for r in curve
               if r["threshold"] >= chosen and r["n"] >= 20)


def test_metrics_ece_and_curve_by_hand():
    from genretag.metrics import expected_calibration_error, precision_coverage

    conf = np.array([0.95, 0.95, 0.55, 0.55])
    right = np.array([True, False, True, True])
    assert expected_calibration_error(conf, right) == pytest.approx(
        0.5 * abs(0.5 - 0.95) + 0.5 * abs(1.0 - 0.55))
    curve = {r["threshold"]: r for r in precision_coverage(conf, right)}
    assert curve[0.5] == {"threshold": 0.5, "n": 4, "coverage": 1.0, "precision": 0.75}
    assert curve[0.9] == {"threshold": 0.9, "n": 2, "coverage": 0.5, "precision": 0.5}
    assert curve[0.99]["precision"] is None


def test_nonmusic_is_deterministic_per_kind_and_seed():
    from genretag.nonmusic import KINDS, NON_MUSIC, OUT_OF_VOCABULARY, generate

    assert set(OUT_OF_VOCABULARY).isdisjoint(NON_MUSIC)
    for kind in KINDS:
        a = generate(kind, 5, 1.0)
        assert a.shape == (16000,) and a.dtype == np.float32
        assert np.array_equal(a, generate(kind, 5, 1.0)), kind
        assert 0.02 < np.abs(a).max() <= 0.9, kind
    assert not np.array_equal(generate("white_noise", 1, 1.0), generate("white_noise", 2, 1.0))


def _tiny_collections(root, beta_rock_bpm: int = 110):
    """Two labelled collections of short generated clips (WAV), 2 genres x 2 groups each;
    jazz is at 90 bpm, electronic at 128, rock at 110 (beta's at ``beta_rock_bpm``)."""
    from genretag.encode import write
    from genretag.synthetic import synth_music

    specs = {"alpha": ("split", {"rock": ["train", "valid"], "jazz": ["train", "valid"]}),
             "beta": ("artist", {"rock": ["A", "B"], "electronic": ["C", "D"]})}
    seed = 0
    for name, (column, genres) in specs.items():
        (root / name).mkdir(parents=True)
        rows = []
        for genre, groups in genres.items():
            for group in groups:
                seed += 1
                tempo = {"jazz": 90, "electronic": 128}.get(
                    genre, beta_rock_bpm if name == "beta" else 110)
                path = f"{genre}{seed}.wav"
                write(synth_music(6.2, 16000, seed=seed, tempo_bpm=tempo)[0], 16000,
                      root / name / path)
                rows.append({"path": path, "genre": genre, column: group})
        _write_index(root / name, rows, ["path", "genre", column])
    return [root / "alpha", root / "beta"]


def test_train_writes_a_loadable_model_and_reproduces_it_bit_for_bit(tmp_path):
    from genretag.model import load_model
    from genretag.training import Recipe, train

    data = _tiny_collections(tmp_path / "data")
    recipe = Recipe(augmentations=("clean", "band8k"), nonmusic_seeds=(0,),
                    nonmusic_seconds=3.1, max_iter=50)
    cards = []
    for run, cache in enumerate(("cache1", "cache1", "cache2")):
        cards.append(train(data, tmp_path / f"out{run}", cache_dir=tmp_path / cache,
                           recipe=recipe, evaluate=False, log=lambda s: None))
    files = [c["files"][0] for c in cards]
    assert files[0] == files[1] == files[2]  # same cache, and a fresh one: same bytes
    texts = [(tmp_path / f"out{r}" / "model_card.json").read_text() for r in range(3)]
    assert texts[0] == texts[1] == texts[2]
    card = json.loads(texts[0])
    assert card["classes"] == list(GENRES) and card["version"] == "2.0.0"
    assert card["head"] == {"arch": "genre-softmax", "params": {
        "inputs": ["penultimate", "tag_logits"], "reject": True, "temperature": 1.0}}
    assert card["training"]["collections"]["beta"]["per_genre"] == {"rock": 2, "electronic": 2}
    model = load_model(tmp_path / "out0")
    scores = model.scores(np.zeros((3, 1506), np.float32))
    assert scores.shape == (3, len(GENRES))
    assert (scores.sum(1) <= 1 + 1e-6).all()  # the not-music share is left out


def test_cache_from_other_clips_is_refused(tmp_path):
    from genretag.training import Recipe, TrainingError, train

    data = _tiny_collections(tmp_path / "data")
    recipe = Recipe(augmentations=("clean",), nonmusic_seeds=(0,), nonmusic_seconds=3.1,
                    max_iter=20)
    train(data, tmp_path / "out", cache_dir=tmp_path / "cache", recipe=recipe, evaluate=False,
          log=lambda s: None)
    with pytest.raises(TrainingError, match=r"cache/manifest\.json: the cache was built for"):
        train(data[:1], tmp_path / "out2", cache_dir=tmp_path / "cache", recipe=recipe,
              evaluate=False, log=lambda s: None)


def test_protocol_part_b_is_also_scored_among_the_shared_genres_only(tmp_path):
    """(b) between collections sharing only rock, beta's rock at jazz's tempo: trained on
    alpha (rock, jazz), the ordinary score calls some of beta's rock jazz; the score among
    the shared genres only can answer nothing but rock."""
    from genretag.protocol import run_protocol
    from genretag.training import Recipe, prepare

    recipe = Recipe(augmentations=("clean", "band8k"), nonmusic_seeds=(0,),
                    nonmusic_seconds=3.1, max_iter=50)
    p = prepare(_tiny_collections(tmp_path / "data", beta_rock_bpm=90),
                cache_dir=tmp_path / "cache", backbone=None, recipe=recipe, log=lambda s: None)
    parts = run_protocol(p.emb, p.design, recipe, n_folds=2, log=lambda s: None)["parts"]
    rock = list(GENRES).index("rock")
    every = parts["b alpha->beta [clean]"]
    shared = parts["b alpha->beta, shared genres only [clean]"]
    assert shared["n"] == every["n"] == 2  # beta's two rock clips
    assert shared["support"] == every["support"] and shared["support"]["rock"] == 2
    assert np.asarray(every["confusion"]).sum(axis=0)[rock] < 2  # some called jazz
    answered = np.asarray(shared["confusion"]).sum(axis=0)
    assert answered[rock] == answered.sum() == 2
    assert shared["accuracy"] == 1.0
