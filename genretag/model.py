"""Load, verify and save genre models described by a model card.

A model is a directory with ``model_card.json`` and one or more ``.safetensors``
files listed in it with their sha256. Loading never executes code from the files,
checks every hash, and refuses feature parameters this code does not implement.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import WeightsError
from .features import MUSICNN_FEATURES, FeatureParams

CARD_NAME = "model_card.json"


def default_weights_dir() -> Path:
    """``$GENRETAG_WEIGHTS``, else the repository's ``weights/``, else the installed copy."""
    env = os.environ.get("GENRETAG_WEIGHTS")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parent.parent / "weights"
    if (repo / CARD_NAME).is_file():
        return repo
    return Path(sys.prefix) / "share" / "genretag" / "weights"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class GenreModel:
    """A loaded network with what is needed to use it correctly."""

    net: object  # torch.nn.Module in eval mode
    classes: list[str]
    features: FeatureParams
    model_id: str  # "<id>/<version>", stored with every prediction
    card: dict
    precision: str = "fp32"  # "fp32", or "bf16" for the backbone's convolutions


PRECISIONS = ("auto", "fp32", "bf16")


def cpu_has_native_bf16() -> bool:
    """Whether the CPU computes bfloat16 natively (x86 AVX512-BF16 or AMX), per /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            flags = next((line for line in fh if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str) -> str:
    """``"auto"`` becomes ``"bf16"`` on CPUs with native bfloat16, else ``"fp32"``.

    At genretag's small batches float32 is as fast (bench/RESULTS.md); bfloat16 pays off
    for larger batches on such CPUs. On the validation protocol it changed the genre of
    2 clips in 246. Elsewhere it would be emulated and slower, so ``auto`` keeps float32.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    if precision == "auto":
        return "bf16" if cpu_has_native_bf16() else "fp32"
    return precision


def read_card(weights_dir: Path) -> dict:
    card_path = Path(weights_dir) / CARD_NAME
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WeightsError(f"{card_path}: model card not found") from None
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{card_path}: unreadable model card ({exc})") from None
    for key in ("model_id", "version", "architecture", "classes", "features", "files"):
        if key not in card:
            raise WeightsError(f"{card_path}: model card lacks '{key}'")
    return card


def read_model_id(weights_dir: str | os.PathLike | None = None) -> str:
    """``"<id>/<version>"`` of a model from its card alone (cheap: no torch, no weights)."""
    card = read_card(Path(weights_dir) if weights_dir else default_weights_dir())
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
    """Tensors of one safetensors file after checking its sha256."""
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


def load_model(weights_dir: str | os.PathLike | None = None, *,
               precision: str = "fp32") -> GenreModel:
    """Build the network the card describes and load its verified weights.

    ``precision``: ``"fp32"`` (default), ``"bf16"`` or ``"auto"``; see :func:`resolve_precision`.
    """
    precision = resolve_precision(precision)
    import torch

    from .nets import ARCHITECTURES

    weights_dir = Path(weights_dir) if weights_dir else default_weights_dir()
    card = read_card(weights_dir)
    card_path = weights_dir / CARD_NAME
    features = check_features(card, card_path)
    arch = ARCHITECTURES.get(card["architecture"])
    if arch is None:
        raise WeightsError(f"{card_path}: unknown architecture {card['architecture']!r}")
    net = arch(len(card["classes"]), **card.get("arch_params", {}))
    state: dict = {}
    for entry in card["files"]:
        tensors = load_tensors(weights_dir / entry["path"], entry["sha256"])
        prefix = entry.get("prefix", "")
        state.update({prefix + k: v for k, v in tensors.items()})
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "mismatch"
        raise WeightsError(f"{weights_dir}: weights do not fit the {card['architecture']} "
                           f"network ({first})") from None
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return GenreModel(net=net, classes=list(card["classes"]), features=features,
                      model_id=f"{card['model_id']}/{card['version']}", card=card,
                      precision=precision)


def save_tensors(tensors: dict, path: Path) -> dict:
    """Write tensors to ``path`` and return its card entry (path, sha256)."""
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous() for k, v in tensors.items()}, str(path))
    return {"path": path.name, "sha256": sha256_file(path)}
