"""The progress bar of ``beet genretag`` (on a terminal only)."""
from __future__ import annotations

import logging
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator


@contextmanager
def progress_bar(total: int, *, enabled: bool) -> Iterator[Any]:
    """A tqdm bar over ``total`` tracks on stderr, beets' log lines printed above it.

    Disabled (``update`` does nothing, nothing is printed) unless ``enabled``.
    """
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    redirect = logging_redirect_tqdm([logging.getLogger("beets")]) if enabled else nullcontext()
    with redirect, tqdm(total=total, unit="track", desc="genretag", disable=not enabled) as bar:
        yield bar


def print_above(text: str) -> None:
    """Print a line on stdout without breaking a progress bar, if one is shown."""
    from beets import ui
    from tqdm import tqdm

    with tqdm.external_write_mode():
        ui.print_(text)
