"""The torch port of MSD_musicnn reproduces the original TensorFlow graph.

The eval-mode forward is computed in cheaper ways than its definition (see
``genretag.musicnn``); these tests hold it to the TensorFlow reference and to the
definition (``Musicnn.pooled_plain``).
"""
from pathlib import Path

import numpy as np
import pytest
import torch

from genretag.backbone import BACKBONE_FILE
from genretag.model import sha256_file, shipped_weights_dir
from genretag.musicnn import POOLED_DIM, Musicnn, max_over_last

FIXTURE = Path(__file__).parent / "fixtures" / "musicnn_reference.npz"


def test_port_matches_tensorflow_reference_outputs(model):
    """Reference: tools/convert_musicnn.py ran the original graph on these patches."""
    ref = np.load(FIXTURE)
    with torch.inference_mode():
        tags = torch.sigmoid(model.backbone.net(torch.from_numpy(ref["patches"]))).numpy()
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


def test_pooled_features_equal_the_plain_definition(model):
    """Shipped weights (batch norms of both signs in every front-end block) on the fixture."""
    net = model.backbone.net
    assert all((b.bn.weight < 0).any() and (b.bn.weight > 0).any()
               for b in list(net.timbral) + list(net.temporal))
    patches = torch.from_numpy(np.load(FIXTURE)["patches"])
    with torch.inference_mode():
        fast, plain = net.pooled(patches), net.pooled_plain(patches)
    assert fast.shape == (4, POOLED_DIM)
    assert (fast - plain).abs().max() <= 1e-4 * plain.abs().max()


def test_random_batch_norms_equal_the_plain_definition():
    """Negative, zero-mean and large batch-norm scales, random inputs, batch sizes 1 and 3."""
    gen = torch.Generator().manual_seed(1)
    net = Musicnn().eval()
    with torch.no_grad():
        for bn in [b.bn for b in list(net.timbral) + list(net.temporal)] + [net.input_bn]:
            n = bn.num_features
            bn.weight.copy_(torch.randn(n, generator=gen) * 2)
            bn.bias.copy_(torch.randn(n, generator=gen))
            bn.running_mean.copy_(torch.randn(n, generator=gen))
            bn.running_var.copy_(torch.rand(n, generator=gen) + 0.1)
    for batch in (1, 3):
        patches = torch.randn(batch, 187, 96, generator=gen)
        with torch.inference_mode():
            fast, plain = net.pooled(patches), net.pooled_plain(patches)
        assert (fast - plain).abs().max() <= 1e-4 * plain.abs().max()


def test_training_mode_keeps_the_plain_forward():
    """Training updates the front-end batch norms' statistics, so it runs the definition."""
    torch.manual_seed(2)
    net = Musicnn().train()
    before = net.timbral[0].bn.running_mean.clone()
    out = net.pooled(torch.randn(2, 187, 96))
    assert out.requires_grad
    assert not torch.equal(before, net.timbral[0].bn.running_mean)


@pytest.mark.parametrize("size", [1, 2, 15, 16, 17, 30, 31, 32, 33, 59, 67, 96, 97])
def test_max_over_last_is_amax(size):
    z = torch.randn(3, 5, size, generator=torch.Generator().manual_seed(size))
    assert torch.equal(max_over_last(z), z.amax(dim=-1))


def test_backbone_file_is_the_one_in_the_card(model):
    entry = model.card["backbone"]
    assert entry["path"] == BACKBONE_FILE
    path = model.directory / entry["path"]
    if not path.is_file():
        path = shipped_weights_dir() / entry["path"]
    assert sha256_file(path) == entry["sha256"]
