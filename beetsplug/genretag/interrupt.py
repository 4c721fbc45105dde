"""Ctrl-C during ``beet genretag``: stop between items, never inside one."""
from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator


class Interruption:
    """Ctrl-C (SIGINT) during ``beet genretag``.

    The first one asks the run to stop after the current item (the current album,
    with ``-a``): :attr:`requested` turns true. A second one stops it at once by
    raising ``KeyboardInterrupt``, except inside :meth:`shielded` (an item's file and
    database row being updated): there it only sets :attr:`immediate`, and the
    caller stops as soon as it has counted that item. Once a run was interrupted,
    further Ctrl-C are ignored until the process exits, so the summary and the
    exit status 1 always come out.
    """

    def __init__(self) -> None:
        self.count = 0
        self._shielded = False

    @property
    def requested(self) -> bool:
        """Ctrl-C was pressed at least once: stop after the current item or album."""
        return self.count > 0

    @property
    def immediate(self) -> bool:
        """Ctrl-C was pressed twice: stop as soon as the item in hand is accounted for."""
        return self.count > 1

    def _handle(self, signum: int, frame: Any) -> None:
        self.count += 1
        if self.count == 1:
            os.write(2, b"genretag: interrupted; stopping after the current item "
                        b"(Ctrl-C again to stop at once)\n")
        elif self.count == 2 and not self._shielded:
            raise KeyboardInterrupt

    @contextmanager
    def installed(self) -> Iterator[Interruption]:
        """Handle SIGINT this way inside the block (only possible in the main thread).

        Leaving the block restores the previous handler, unless the run was
        interrupted: then SIGINT stays ignored, the process being on its way out.
        """
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = signal.signal(signal.SIGINT, self._handle)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN if self.requested else previous)

    @contextmanager
    def shielded(self) -> Iterator[None]:
        """Inside the block a second Ctrl-C does not raise; see :attr:`immediate`."""
        self._shielded = True
        try:
            yield
        finally:
            self._shielded = False
