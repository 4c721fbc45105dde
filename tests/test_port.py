"""The torch port of MSD_musicnn reproduces the original TensorFlow graph."""
from pathlib import Path

import numpy as np
import torch

from genretag.musicnn import Musicnn
from genretag.train import BACKBONE_FILE

FIXTURE = Path(__file__).parent / "fixtures" / "musicnn_reference.npz"


def test_port_matches_tensorflow_reference_outputs(model):
    """Reference: tools/convert_musicnn.py ran the original graph on these patches."""
    ref = np.load(FIXTURE)
    with torch.inference_mode():
        tags = torch.sigmoid(model.net.backbone(torch.from_numpy(ref["patches"]))).numpy()
    assert tags.shape == (4, 50)
    assert np.abs(tags - ref["tags"]).max() <= 1e-4
    # The reference is not degenerate: patches give clearly different tag vectors.
    assert np.abs(ref["tags"][0] - ref["tags"][2]).max() > 0.05


def test_untrained_network_does_not_match():
    """The comparison can fail: a randomly initialised network is far off."""
    ref = np.load(FIXTURE)
    torch.manual_seed(0)
    net = Musicnn().eval()
    with torch.inference_mode():
        tags = torch.sigmoid(net(torch.from_numpy(ref["patches"]))).numpy()
    assert np.abs(tags - ref["tags"]).max() > 1e-2


def test_backbone_file_is_the_one_in_the_card(model):
    entry = next(f for f in model.card["files"] if f["path"] == BACKBONE_FILE)
    assert entry["prefix"] == "backbone."
