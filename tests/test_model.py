"""Model files: verified loading, clear failures, and the prediction path on real audio."""
import json
import shutil

import numpy as np
import pytest

from genretag import classify_file, load_model
from genretag.errors import WeightsError
from genretag.classify import Analysis, aggregate, predict
from genretag.model import CARD_NAME, default_weights_dir


@pytest.fixture
def weights_copy(tmp_path):
    dst = tmp_path / "weights"
    shutil.copytree(default_weights_dir(), dst)
    return dst


def _head_file(weights_dir):
    card = json.loads((weights_dir / CARD_NAME).read_text())
    return weights_dir / card["files"][0]["path"], card


def test_card_describes_the_shipped_model(model):
    card = model.card
    assert model.classes == ["blues", "classical", "country", "disco", "electronic", "hiphop",
                             "jazz", "metal", "pop", "reggae", "rock"]
    assert model.model_id == f"{card['model_id']}/{card['version']}"
    assert "ISC" in json.dumps(card["provenance"])
    assert card["backbone"]["sha256"] == model.backbone.sha256
    protocol = card["metrics"]["protocol"]
    assert 0 < protocol["mean"] <= 1 and set("abc") <= set(protocol)
    assert 0 < card["min_confidence"] < 1  # the calibrated cut the plugin uses


def test_truncated_weights_fail_naming_the_file(weights_copy):
    head, _ = _head_file(weights_copy)
    head.write_bytes(head.read_bytes()[:1000])
    with pytest.raises(WeightsError, match=head.name + ".*sha256"):
        load_model(weights_copy)


def test_tampered_weights_fail(weights_copy):
    head, _ = _head_file(weights_copy)
    data = bytearray(head.read_bytes())
    data[-5] ^= 0xFF
    head.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="does not match the model card"):
        load_model(weights_copy)


def test_mismatched_weights_with_matching_hash_fail(weights_copy):
    """A re-hashed file for another network is still refused, by shape."""
    from safetensors.torch import save_file
    import torch

    from genretag.model import sha256_file

    head, card = _head_file(weights_copy)
    save_file({"net.1.weight": torch.zeros(3, 3)}, str(head))
    card["files"][0]["sha256"] = sha256_file(head)
    (weights_copy / CARD_NAME).write_text(json.dumps(card))
    with pytest.raises(WeightsError, match="do not fit"):
        load_model(weights_copy)


def test_unknown_feature_parameters_are_refused(weights_copy):
    card = json.loads((weights_copy / CARD_NAME).read_text())
    card["features"]["n_mels"] = 128
    (weights_copy / CARD_NAME).write_text(json.dumps(card))
    with pytest.raises(WeightsError, match="n_mels"):
        load_model(weights_copy)


def test_missing_card(tmp_path):
    with pytest.raises(WeightsError, match="model card not found"):
        load_model(tmp_path)


def test_track_probability_is_the_mean_of_slices(model, audio_files):
    pred = classify_file(audio_files[".flac"], model)
    slices = np.array([s.probs for s in pred.timeline])
    assert len(pred.timeline) == 2
    assert np.allclose(slices.mean(0), list(pred.probs.values()), atol=1e-6)
    assert pred.genre == max(pred.probs, key=pred.probs.get)


def test_prediction_is_the_mean_of_slice_scores(model):
    """predict() averages the head's slice scores; the timeline keeps each slice's own."""
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((3, 1506)).astype(np.float32)
    pred = predict(Analysis(path="x", starts=np.array([0.0, 3.0, 6.0]), embedding=emb), model)
    scores = model.scores(emb)
    assert [s.genre for s in pred.timeline] == [model.classes[i] for i in scores.argmax(1)]
    assert list(pred.probs.values()) == list(aggregate(scores))
    assert pred.genre == model.classes[int(aggregate(scores).argmax())]
    assert pred.timeline[1].start_s == 3.0 and pred.timeline[1].end_s == 3.0 + 48128 / 16000


def test_aggregate_averages_evenly_spread_slices():
    scores = np.zeros((5, 2))
    scores[:, 0] = [1.0, 0.0, 0.5, 0.0, 0.0]
    assert aggregate(scores).tolist() == [0.3, 0.0]
    assert aggregate(scores, max_slices=3).tolist() == [0.5, 0.0]  # slices 0, 2, 4


def test_silent_analysis_gives_no_genre(model):
    pred = predict(Analysis(path="x", starts=np.zeros(1), embedding=np.zeros((1, 1506),
                                                                             np.float32),
                            silent=True), model)
    assert (pred.genre, pred.probs, pred.genres, pred.silent) == (None, {}, (), True)
    assert pred.to_dict()["silent"] is True


def test_a_head_type_is_one_registry_entry():
    """Every registered head type imports, names itself and reads known views."""
    from genretag.backbone import VIEWS
    from genretag.heads import HEADS, head_class

    assert HEADS
    for arch in HEADS:
        cls = head_class(arch)
        assert cls.arch == arch and set(cls.reads) <= set(VIEWS)


def test_unknown_head_type_is_refused(weights_copy):
    card = json.loads((weights_copy / CARD_NAME).read_text())
    card["head"]["arch"] = "crystal-ball"
    (weights_copy / CARD_NAME).write_text(json.dumps(card))
    with pytest.raises(WeightsError, match="unknown head type 'crystal-ball'"):
        load_model(weights_copy)


def test_backbone_is_verified_too(weights_copy, tmp_path):
    """The backbone file is checked against the card like the head (it was not in 1.0)."""
    card = json.loads((weights_copy / CARD_NAME).read_text())
    backbone = weights_copy / card["backbone"]["path"]
    data = bytearray(backbone.read_bytes())
    data[len(data) // 2] ^= 0x01
    backbone.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=backbone.name + ".*does not match the model card"):
        load_model(weights_copy, precision="fp32")


def test_old_card_format_is_refused_clearly(weights_copy):
    card = json.loads((weights_copy / CARD_NAME).read_text())
    del card["format"]
    (weights_copy / CARD_NAME).write_text(json.dumps(card))
    with pytest.raises(WeightsError, match="model card format 1"):
        load_model(weights_copy)
