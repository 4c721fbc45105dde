"""Heads: small networks that turn slice embeddings into scores over a vocabulary.

A head reads one or more views of the backbone's slice embedding (see
:mod:`genretag.backbone`) and returns a score per class and slice, in 0..1; the
track's score is the mean over its slices (:func:`genretag.classify.aggregate`).
Each head is described by the model card of its directory (classes, the head type
and its parameters, calibration, thresholds, the sha256 of every file).

To add a head type, write one module with a :class:`~genretag.heads.base.Head`
subclass and add one line to :data:`HEADS`. Importing this package is cheap (no torch).
"""
from __future__ import annotations

import importlib

#: The one registry of head types: the card's ``head.arch`` -> ``"module:class"``.
HEADS: dict[str, str] = {
    "lastfm-tags": "genretag.heads.lastfm:LastfmHead",
    "genre-softmax": "genretag.heads.softmax:SoftmaxHead",
    "personal-linear": "genretag.heads.personal:PersonalHead",
}


def head_class(arch: str) -> type:
    """The head class registered as ``arch``; ``KeyError`` if there is none."""
    module, _, name = HEADS[arch].partition(":")
    return getattr(importlib.import_module(module), name)
