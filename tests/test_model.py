"""Model files: verified loading, clear failures, and the prediction path on real audio."""
import json
import shutil

import numpy as np
import pytest

from genretag import classify_file, load_model
from genretag.errors import WeightsError
from genretag.model import CARD_NAME, default_weights_dir
from genretag.predict import aggregate


@pytest.fixture
def weights_copy(tmp_path):
    dst = tmp_path / "weights"
    shutil.copytree(default_weights_dir(), dst)
    return dst


def _head_file(weights_dir):
    card = json.loads((weights_dir / CARD_NAME).read_text())
    return weights_dir / card["files"][-1]["path"], card


def test_card_describes_the_shipped_model(model):
    card = model.card
    assert model.classes == ["blues", "classical", "country", "disco", "hiphop", "jazz", "metal",
                             "pop", "reggae", "rock"]
    assert model.model_id == f"{card['model_id']}/{card['version']}"
    for fold in card["metrics"]["musicnn-head"]["folds"]:
        assert len(fold["metrics"]["confusion"]) == 10
    assert "ISC" in json.dumps(card["provenance"])


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
    card["files"][-1]["sha256"] = sha256_file(head)
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


def test_aggregate_picks_the_mean_winner(model):
    probs = np.zeros((3, 10))
    probs[0, 0], probs[1, 5], probs[2, 5] = 1.0, 0.6, 0.6
    probs[1, 0] = probs[2, 0] = 0.4
    pred = aggregate("x", model, [0.0, 3.0, 6.0], probs)
    assert pred.genre == "blues" and pred.confidence == pytest.approx(0.6)
    assert [s.genre for s in pred.timeline] == ["blues", "jazz", "jazz"]
