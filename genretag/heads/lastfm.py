"""The ``lastfm`` vocabulary: the backbone's own Last.fm genre tags, calibrated.

MSD_musicnn was trained to predict the 50 most frequent Last.fm tags of the
Million Song Dataset (:data:`MSD_TAGS`, in the order of its output layer). Thirty
of them are genres (:data:`GENRES`); the rest are decades, moods, vocals and
instrumentation, which this vocabulary leaves out. The head reads the backbone's
``tag_logits`` view, so it costs no second network pass.

Raw tag scores are not comparable across tags: ``rock`` is MSD's most frequent tag
and wins on almost anything. The head applies a per-tag affine map to each logit
before the sigmoid (the calibration fitted by :mod:`genretag.tag_calibration`),
so that scores are comparable between tags: one threshold serves every tag, and a
track's genres are a prefix of its score ranking.

The names and trees here are data, not code: :data:`GENRES` gives every tag its
display name (spelt as beets' ``lastgenre`` spells them), its canonical parent
(for a ``canonical: yes`` option) and the families used to measure it.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from .base import Head

#: The 50 outputs of MSD_musicnn's tag layer, in order, spelt as in the MSD tag list.
MSD_TAGS = (
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s",
    "alternative rock", "jazz", "beautiful", "metal", "chillout", "male vocalists",
    "classic rock", "soul", "indie rock", "Mellow", "electronica", "80s", "folk", "90s",
    "chill", "instrumental", "punk", "oldies", "blues", "hard rock", "ambient", "acoustic",
    "experimental", "female vocalist", "guitar", "Hip-Hop", "70s", "party", "country",
    "easy listening", "sexy", "catchy", "funk", "electro", "heavy metal", "Progressive rock",
    "60s", "rnb", "indie pop", "sad", "House", "happy",
)


class Genre(NamedTuple):
    """How one genre tag is shown, grouped and measured."""

    display: str
    """Name shown to users and written to files, e.g. ``"Hip-Hop"``, ``"R&B"``."""
    parent: str
    """Display name of its canonical parent (itself for a top-level genre)."""
    families: tuple[str, ...]
    """Families that count as right when the tag is a track's top genre (measuring only)."""
    group: str
    """Calibration group: tags the labels cannot tell apart share one fitted offset."""


#: The genre tags (lower case, the vocabulary's class names), in MSD output order.
GENRES: dict[str, Genre] = {
    "rock": Genre("Rock", "Rock", ("rock",), "rock"),
    "pop": Genre("Pop", "Pop", ("pop",), "pop"),
    "alternative": Genre("Alternative", "Rock", ("rock",), "rock"),
    "indie": Genre("Indie", "Rock", ("rock",), "rock"),
    "electronic": Genre("Electronic", "Electronic", ("electronic",), "electronic"),
    "dance": Genre("Dance", "Electronic", ("electronic", "pop"), "electronic"),
    "alternative rock": Genre("Alternative Rock", "Rock", ("rock",), "rock"),
    "jazz": Genre("Jazz", "Jazz", ("jazz",), "jazz"),
    "metal": Genre("Metal", "Metal", ("rock",), "metal"),
    "chillout": Genre("Chillout", "Electronic", ("electronic",), "electronic"),
    "classic rock": Genre("Classic Rock", "Rock", ("rock",), "rock"),
    "soul": Genre("Soul", "R&B", ("r&b",), "r&b"),
    "indie rock": Genre("Indie Rock", "Rock", ("rock",), "rock"),
    "electronica": Genre("Electronica", "Electronic", ("electronic",), "electronic"),
    "folk": Genre("Folk", "Folk", ("folk",), "folk"),
    "punk": Genre("Punk", "Rock", ("rock",), "rock"),
    "blues": Genre("Blues", "Blues", ("blues",), "blues"),
    "hard rock": Genre("Hard Rock", "Rock", ("rock",), "rock"),
    "ambient": Genre("Ambient", "Electronic", ("experimental",), "experimental"),
    "experimental": Genre("Experimental", "Experimental", ("experimental",), "experimental"),
    "hip-hop": Genre("Hip-Hop", "Hip-Hop", ("hip-hop",), "hip-hop"),
    "country": Genre("Country", "Country", ("country",), "country"),
    "easy listening": Genre("Easy Listening", "Easy Listening", ("easy listening",),
                            "easy listening"),
    "funk": Genre("Funk", "R&B", ("r&b",), "r&b"),
    "electro": Genre("Electro", "Electronic", ("electronic",), "electronic"),
    "heavy metal": Genre("Heavy Metal", "Metal", ("rock",), "metal"),
    "progressive rock": Genre("Progressive Rock", "Rock", ("rock",), "rock"),
    "rnb": Genre("R&B", "R&B", ("hip-hop", "r&b"), "hip-hop"),
    "indie pop": Genre("Indie Pop", "Pop", ("pop",), "pop"),
    "house": Genre("House", "Electronic", ("electronic",), "electronic"),
}

#: Tags of :data:`MSD_TAGS` that are not genres: decades, moods, vocals, instrumentation.
NON_GENRE_TAGS = tuple(t for t in MSD_TAGS if t.lower() not in GENRES)


def tag_index(tag: str) -> int:
    """Position of a tag (any case) among the backbone's 50 outputs; ``KeyError`` if absent."""
    lowered = [t.lower() for t in MSD_TAGS]
    try:
        return lowered.index(tag.lower())
    except ValueError:
        raise KeyError(tag) from None


def display_name(tag: str, *, canonical: bool = False) -> str:
    """Display name of a tag: ``"hip-hop"`` -> ``"Hip-Hop"``.

    With ``canonical``, its parent's instead: ``"indie rock"`` -> ``"Rock"``.

    ``KeyError`` for a tag outside the vocabulary.
    """
    genre = GENRES[tag]
    return genre.parent if canonical else genre.display


class LastfmHead(Head):
    """Calibrated genre tags from the backbone's tag logits, independently per tag.

    For tag ``k`` (output ``tag_index[k]`` of the tag layer) and a slice's logit
    ``x``, the score is ``sigmoid(scale[k] * x + shift[k])``. The buffers come
    from the model directory's safetensors file; a new head is the identity
    calibration (scale 1, shift 0), i.e. the raw MSD tag probabilities.
    """

    arch = "lastfm-tags"
    reads = ("tag_logits",)
    multi_label = True

    def __init__(self, n_classes: int, *, n_tags: int = len(MSD_TAGS)):
        super().__init__()
        self.n_tags = int(n_tags)
        self.register_buffer("tag_index", torch.zeros(n_classes, dtype=torch.long))
        self.register_buffer("scale", torch.ones(n_classes))
        self.register_buffer("shift", torch.zeros(n_classes))

    def forward(self, views: dict[str, torch.Tensor]) -> torch.Tensor:
        """``views["tag_logits"]`` ``[n, 50]`` -> calibrated scores ``[n, n_classes]`` in 0..1."""
        logits = views["tag_logits"].index_select(1, self.tag_index)
        return torch.sigmoid(logits * self.scale + self.shift)
