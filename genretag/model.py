"""Model directories: the card, verified loading of the backbone and a head.

A model directory holds ``model_card.json`` and the head's ``.safetensors`` files,
each listed in the card with its sha256; the card names the backbone file by name
and sha256 too, found in the directory itself or else in the shipped weights. The
shipped vocabularies are directories under ``weights/`` (:data:`VOCABULARIES`).
Loading never executes code from the files, checks every hash, and refuses
feature parameters this code does not implement.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import defaults
from .errors import GenretagError, WeightsError
from .features import MUSICNN_FEATURES, FeatureParams

CARD_NAME = "model_card.json"
#: Card layout this code reads: one backbone, one head (genretag >= 2).
CARD_FORMAT = 2
#: Shipped vocabularies: name -> directory under the shipped weights.
VOCABULARIES = {"genres": ".", "lastfm": "lastfm"}


def default_weights_dir() -> Path:
    """``$GENRETAG_WEIGHTS``, else the weights shipped with the package."""
    env = os.environ.get("GENRETAG_WEIGHTS")
    if env:
        return Path(env)
    return shipped_weights_dir()


def shipped_weights_dir() -> Path:
    """The repository's ``weights/`` in a source checkout, else the installed package data."""
    here = Path(__file__).resolve().parent
    repo = here.parent / "weights"
    if (repo / CARD_NAME).is_file():
        return repo
    return here / "weights"


def model_dir(weights: str | os.PathLike | None = None, *, vocabulary: str | None = None) -> Path:
    """The directory of the model to use: ``weights`` if given, else the vocabulary's."""
    if weights:
        return Path(weights)
    vocabulary = vocabulary or defaults.VOCABULARY
    if vocabulary not in VOCABULARIES:
        raise GenretagError(f"unknown vocabulary {vocabulary!r}; choose one of "
                            f"{', '.join(VOCABULARIES)} or give a model directory")
    return (default_weights_dir() / VOCABULARIES[vocabulary]).resolve()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_precision(precision: str) -> str:
    """``"auto"`` becomes ``"bf16"`` on CPUs with native bfloat16, else ``"fp32"``.

    At genretag's small batches float32 is as fast (bench/RESULTS.md); bfloat16 pays off
    for larger batches on such CPUs. On the validation protocol it changed the genre of
    2 clips in 246. Elsewhere it would be emulated and slower, so ``auto`` keeps float32.
    """
    if precision not in defaults.PRECISIONS:
        raise ValueError(f"precision must be one of {defaults.PRECISIONS}, not {precision!r}")
    if precision == "auto":
        return "bf16" if cpu_has_native_bf16() else "fp32"
    return precision


def cpu_has_native_bf16() -> bool:
    """Whether the CPU computes bfloat16 natively (x86 AVX512-BF16 or AMX), per /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            flags = next((line for line in fh if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def read_card(directory: Path) -> dict:
    """The model card of ``directory``, checked for the keys this code relies on."""
    card_path = Path(directory) / CARD_NAME
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WeightsError(f"{card_path}: model card not found") from None
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{card_path}: unreadable model card ({exc})") from None
    if not isinstance(card, dict):
        raise WeightsError(f"{card_path}: unreadable model card (not a JSON object)")
    if card.get("format") != CARD_FORMAT:
        raise WeightsError(f"{card_path}: model card format {card.get('format', 1)!r}, this "
                           f"version reads format {CARD_FORMAT}")
    for key in ("model_id", "version", "classes", "head", "backbone", "features", "files"):
        if key not in card:
            raise WeightsError(f"{card_path}: model card lacks '{key}'")
    return card


def read_model_id(weights: str | os.PathLike | None = None, *,
                  vocabulary: str | None = None) -> str:
    """``"<id>/<version>"`` of a model from its card alone (cheap: no torch, no weights)."""
    card = read_card(model_dir(weights, vocabulary=vocabulary))
    return f"{card['model_id']}/{card['version']}"


def check_features(card: dict, card_path: Path) -> FeatureParams:
    """The card's feature parameters, if this code computes exactly those."""
    wanted = card["features"]
    ours = MUSICNN_FEATURES.to_dict()
    diff = {k: wanted.get(k) for k in ours if wanted.get(k) != ours[k]}
    if diff or set(wanted) - set(ours):
        raise WeightsError(f"{card_path}: feature parameters this version cannot compute: "
                           f"{diff or sorted(set(wanted) - set(ours))}")
    return MUSICNN_FEATURES


def load_tensors(path: Path, expected_sha256: str) -> dict:
    """Tensors of one safetensors file after checking its sha256 (no code is run)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    actual = sha256_file(path)
    if actual != expected_sha256:
        raise WeightsError(f"{path}: sha256 {actual[:12]}… does not match the model card "
                           f"({expected_sha256[:12]}…); the file is corrupted or was replaced")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path}: not a valid safetensors file ({exc})") from None


def save_tensors(tensors: dict, path: Path) -> dict:
    """Write tensors to ``path`` and return its card entry (path, sha256)."""
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous() for k, v in tensors.items()}, str(path))
    os.chmod(path, 0o644)  # shipped and shared like any data file
    return {"path": path.name, "sha256": sha256_file(path)}


def load_frozen(module, state: dict, what: str):
    """Load ``state`` into ``module`` (every tensor, exactly), then eval mode, no gradients.

    A state that does not fit raises :class:`WeightsError` with ``what`` and the first
    mismatch.
    """
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "mismatch"
        raise WeightsError(f"{what} ({first})") from None
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def leads(mean_scores: np.ndarray) -> bool:
    """The adaptive analysis' stopping rule on a track's mean scores ``[C]``: the best
    class leads the second by at least :data:`~genretag.defaults.SETTLED_MARGIN`."""
    if len(mean_scores) < 2:
        return True
    top = np.sort(mean_scores)[::-1]
    return bool(top[0] - top[1] >= defaults.SETTLED_MARGIN)


def is_check(n_read: int) -> bool:
    """Whether an adaptive analysis asks :meth:`GenreModel.settled` after ``n_read``
    slices: after :data:`~genretag.defaults.FIRST_CHECK`, then every
    :data:`~genretag.defaults.CHECK_EVERY`."""
    return n_read >= defaults.FIRST_CHECK and \
        (n_read - defaults.FIRST_CHECK) % defaults.CHECK_EVERY == 0


@dataclass
class GenreModel:
    """The backbone and one head, with what is needed to use them correctly."""

    backbone: object  # genretag.backbone.Backbone
    head: object      # a genretag.heads.base.Head, eval mode
    classes: list[str]
    model_id: str     # "<id>/<version>", stored with every prediction
    card: dict
    directory: Path

    @property
    def features(self) -> FeatureParams:
        return self.backbone.features

    @property
    def precision(self) -> str:
        return self.backbone.precision

    @property
    def multi_label(self) -> bool:
        return bool(self.head.multi_label)

    @property
    def thresholds(self) -> np.ndarray:
        """Per-class score a track needs for the class to be one of its genres.

        From the card's ``thresholds`` (per class) or ``min_confidence`` (all classes);
        0 when the card sets neither.
        """
        per_class = self.card.get("thresholds") or {}
        default = float(self.card.get("min_confidence", 0.0))
        return np.asarray([float(per_class.get(c, default)) for c in self.classes])

    @property
    def can_settle(self) -> bool:
        """Whether an adaptive analysis may stop early for this model: single-label
        heads only (a multi-label head's every class sits near its own cut somewhere,
        so stopping early changes too many of its genre lists)."""
        return not self.multi_label

    def settled(self, embedding: np.ndarray) -> bool:
        """Whether the slices analysed so far (embeddings ``[n, 1506]``) decide the track:
        in the mean of their scores, the best class leads the second by at least
        :data:`~genretag.defaults.SETTLED_MARGIN`."""
        return leads(self.scores(embedding).mean(axis=0))

    def scores(self, embedding: np.ndarray) -> np.ndarray:
        """Head scores per slice, ``[n, n_classes]`` float64, from embeddings ``[n, 1506]``.

        Always in chunks of :data:`~genretag.defaults.BATCH_SIZE` rows, so a slice's
        scores do not depend on how many slices are scored together.
        """
        import torch

        out = []
        with torch.inference_mode():
            for i in range(0, len(embedding), defaults.BATCH_SIZE):
                views = self.backbone.views(embedding[i:i + defaults.BATCH_SIZE], self.head.reads)
                out.append(self.head(views).float().numpy())
        if not out:
            return np.zeros((0, len(self.classes)))
        return np.concatenate(out).astype(np.float64)


_BACKBONES: dict[tuple, object] = {}


def _backbone_for(card: dict, directory: Path, precision: str):
    """The card's backbone, verified, shared by every model loaded in this process."""
    from .backbone import load_backbone

    entry = card["backbone"]
    path = directory / entry["path"]
    if not path.is_file():
        path = shipped_weights_dir() / entry["path"]
    key = (str(path.resolve()), entry["sha256"], precision)
    if key not in _BACKBONES:
        _BACKBONES[key] = load_backbone(path, entry["sha256"], precision=precision)
    return _BACKBONES[key]


def load_model(weights: str | os.PathLike | None = None, *, vocabulary: str | None = None,
               precision: str = defaults.PRECISION) -> GenreModel:
    """Load and verify a model: ``weights`` (a model directory), else a shipped vocabulary.

    ``precision``: ``"fp32"`` (default), ``"bf16"`` or ``"auto"``; see :func:`resolve_precision`.
    """
    from .heads import head_class

    precision = resolve_precision(precision)
    directory = model_dir(weights, vocabulary=vocabulary)
    card = read_card(directory)
    card_path = directory / CARD_NAME
    check_features(card, card_path)
    arch = card["head"].get("arch")
    try:
        cls = head_class(arch)
    except KeyError:
        raise WeightsError(f"{card_path}: unknown head type {arch!r}") from None
    head = cls(len(card["classes"]), **card["head"].get("params", {}))
    state: dict = {}
    for entry in card["files"]:
        state.update(load_tensors(directory / entry["path"], entry["sha256"]))
    load_frozen(head, state, f"{directory}: weights do not fit the {arch} head")
    backbone = _backbone_for(card, directory, precision)
    return GenreModel(backbone=backbone, head=head, classes=list(card["classes"]),
                      model_id=f"{card['model_id']}/{card['version']}", card=card,
                      directory=directory)
