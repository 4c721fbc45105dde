"""The musicnn backbone: log-mel slices -> one embedding per slice.

The expensive step of the data path (85-90 % of tagging time), run once per slice
whatever the heads: every head reads *views* of the same embedding.

============  ===================  ===============================================
view          shape                what it is
============  ===================  ===============================================
pooled        ``[n, 1506]``        max and mean over time of the mid-end features
                                   (the embedding; what a cache stores)
penultimate   ``[n, 200]``         the backbone's own dense layer after ReLU + BN
tag_logits    ``[n, 50]``          its 50 MSD/Last.fm tag logits (DESIGN.md order)
============  ===================  ===============================================

Only ``pooled`` needs the convolutional network; the other two are two small
dense layers on top of it, so computing them from a cached embedding is cheap.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from . import defaults
from .features import MUSICNN_FEATURES, FeatureParams, log_mel

#: The converted MSD_musicnn checkpoint, shipped in ``weights/``.
BACKBONE_FILE = "musicnn_msd_backbone.safetensors"
#: Width of the ``pooled`` view (the slice embedding).
EMBEDDING_DIM = 1506
VIEWS = ("pooled", "penultimate", "tag_logits")

MUSICNN_PROVENANCE = {
    "name": "MSD_musicnn",
    "source": "musicnn 0.1.0 wheel on PyPI (Music Technology Group, Universitat Pompeu Fabra; "
              "Jordi Pons)",
    "paper": "Pons & Serra, 'musicnn: pre-trained convolutional neural networks for music "
             "audio tagging', ISMIR 2019 LBD",
    "trained_on": "Million Song Dataset audio, 50 Last.fm tags",
    "conversion": "tools/convert_musicnn.py (TF-1 checkpoint -> safetensors), "
                  "port verified by tests/test_port.py",
    "licence": "ISC",
    "licence_text": "Copyright (c) Music Technology Group, Universitat Pompeu Fabra 2019. Code "
                    "developed by Jordi Pons (www.jordipons.me). Permission to use, copy, modify, "
                    "and/or distribute this software for any purpose with or without fee is "
                    "hereby granted, provided that the above copyright notice and this "
                    "permission notice appear in all copies. THE SOFTWARE IS PROVIDED \"AS IS\" "
                    "AND THE AUTHOR DISCLAIMS ALL WARRANTIES WITH REGARD TO THIS SOFTWARE "
                    "INCLUDING ALL IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS. IN NO EVENT "
                    "SHALL THE AUTHOR BE LIABLE FOR ANY SPECIAL, DIRECT, INDIRECT, OR "
                    "CONSEQUENTIAL DAMAGES OR ANY DAMAGES WHATSOEVER RESULTING FROM LOSS OF USE, "
                    "DATA OR PROFITS, WHETHER IN AN ACTION OF CONTRACT, NEGLIGENCE OR OTHER "
                    "TORTIOUS ACTION, ARISING OUT OF OR IN CONNECTION WITH THE USE OR "
                    "PERFORMANCE OF THIS SOFTWARE.",
}


@dataclass
class Backbone:
    """The frozen musicnn network, its file's sha256 and the arithmetic it runs in."""

    net: object  # genretag.musicnn.Musicnn, eval mode, no gradients
    sha256: str
    features: FeatureParams = MUSICNN_FEATURES
    precision: str = "fp32"

    def embed(self, slices: np.ndarray, *, batch_size: int = defaults.BATCH_SIZE) -> np.ndarray:
        """Embeddings of audio slices, ``batch_size`` slices per network call.

        Parameters
        ----------
        slices : np.ndarray [shape=(n, slice_samples)]
            Mono audio at ``features.sample_rate``.

        Returns
        -------
        np.ndarray [shape=(n, 1506), dtype=float32]
            The ``pooled`` view of each slice.
        """
        out = [self.embed_patches(log_mel(slices[i:i + batch_size], self.features))
               for i in range(0, len(slices), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, EMBEDDING_DIM), np.float32)

    def embed_patches(self, patches) -> np.ndarray:
        """``[n, 187, 96]`` log-mel patches (torch) -> ``[n, 1506]`` float32, in one call."""
        import torch

        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16,
                                                    enabled=self.precision == "bf16"):
            return self.net.pooled(patches).float().numpy()

    def views(self, pooled, names: Iterable[str]) -> dict:
        """The named views (see the module table) of ``pooled [n, 1506]``, as torch tensors."""
        import torch
        from torch.nn import functional as F

        names = set(names)
        unknown = names - set(VIEWS)
        if unknown:
            raise ValueError(f"unknown embedding views {sorted(unknown)}; known: {VIEWS}")
        net = self.net
        x = torch.as_tensor(pooled, dtype=torch.float32)
        out = {"pooled": x}
        if names & {"penultimate", "tag_logits"}:
            with torch.inference_mode():
                out["penultimate"] = net.dense_bn(F.relu(net.dense(net.pool_bn(x))))
                if "tag_logits" in names:
                    out["tag_logits"] = net.tags(out["penultimate"])
        return {k: v for k, v in out.items() if k in names}


def load_backbone(path: Path, sha256: str, *, precision: str = "fp32") -> Backbone:
    """The musicnn backbone from ``path``, after checking the file against ``sha256``."""
    from .model import load_frozen, load_tensors
    from .musicnn import Musicnn

    net = load_frozen(Musicnn(), load_tensors(path, sha256), f"{path}: not the musicnn backbone")
    return Backbone(net=net, sha256=sha256, precision=precision)
