"""Continuing an interrupted ``beet genretag --force`` run instead of starting it over.

A forced run redoes items that already carry the current model's prediction, so
"skip what is done" cannot tell what it already redid. When a forced run starts,
it records what it is (query, mode, model, settings) and when it started in a small
file in beets' configuration directory; each item it tags gets that run's
``genretag_tagged`` time. The same forced run started again skips the items tagged
since; a forced run that finishes removes the record.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .settings import Settings

STATE_NAME = "genretag-forced-run.json"


@dataclass(frozen=True)
class ForcedRun:
    """A forced run in progress: ``key`` says what it does, ``started`` when (Unix time)."""

    key: str
    started: float


def run_key(query: list[str], *, album: bool, model_id: str, settings: Settings,
            write: bool) -> str:
    """Identifies a forced run: equal keys redo the same items the same way."""
    what = {"query": list(query), "album": album, "model": model_id, "write": write,
            "settings": repr(settings)}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


def load(directory: Path) -> ForcedRun | None:
    """The recorded forced run, or ``None`` (also for an unreadable record)."""
    try:
        data = json.loads((directory / STATE_NAME).read_text(encoding="utf-8"))
        return ForcedRun(key=str(data["key"]), started=float(data["started"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save(directory: Path, run: ForcedRun) -> None:
    """Record ``run`` (replacing the file in one step, so it is never half-written)."""
    path = directory / STATE_NAME
    tmp = path.with_name(f".{STATE_NAME}.tmp")
    tmp.write_text(json.dumps(asdict(run)), encoding="utf-8")
    os.replace(tmp, path)


def clear(directory: Path) -> None:
    """Forget the recorded forced run (it finished)."""
    try:
        (directory / STATE_NAME).unlink()
    except FileNotFoundError:
        pass
