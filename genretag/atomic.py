"""Replace a file atomically after editing a copy of it, so it is never left half-written.

Used to write tags into a user's music files: whenever the process dies, the file
is either the old one or the new one.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from contextlib import contextmanager, suppress
from typing import Iterator

from .errors import FileWriteError

__all__ = ["TEMP_PREFIX", "FileWriteError", "replaced_atomically", "temp_path"]

#: Name prefix of the copy a file's new version is prepared in.
TEMP_PREFIX = ".genretag-tmp."


def temp_path(path: str) -> str:
    """Where the new version of ``path`` is prepared: a hidden file next to it.

    Hidden, so beets' default ``ignore`` patterns (``.*``) never import it; in the same
    directory, so replacing the original is one atomic rename; with the same extension,
    so tag libraries recognise the format. The name is fixed per file, so a copy left
    by a killed run is removed when that file is written next.
    """
    directory, name = os.path.split(path)
    tmp = TEMP_PREFIX + name
    if len(os.fsencode(tmp)) > 255:  # NAME_MAX of common file systems
        digest = hashlib.sha1(os.fsencode(name)).hexdigest()[:16]
        tmp = TEMP_PREFIX + digest + os.path.splitext(name)[1]
    return os.path.join(directory, tmp)


@contextmanager
def replaced_atomically(path: str) -> Iterator[str]:
    """Yield the path of a copy of ``path`` to edit; if the block succeeds, it replaces ``path``.

    The copy keeps the permission bits, owner (where allowed), times and extended
    attributes; it is flushed to disk and renamed over the original. If the block
    raises, the copy is removed and ``path`` is untouched. A symlink's target is
    replaced, the link stays. A file without any write permission bit counts as
    read-only, even for root. Raises :class:`FileWriteError` (or ``OSError`` from
    ``os.stat`` when ``path`` cannot be accessed).
    """
    target = os.path.realpath(path)
    st = os.stat(target)
    if not st.st_mode & 0o222 or not os.access(target, os.W_OK):
        raise FileWriteError(path, "the file is read-only")
    tmp = temp_path(target)
    try:
        with suppress(FileNotFoundError):
            os.remove(tmp)  # left behind by a run that was killed
        try:
            shutil.copy2(target, tmp)
        except OSError as exc:
            raise FileWriteError(path, f"cannot make a temporary copy next to it: "
                                       f"{exc.strerror or exc}") from exc
        with suppress(OSError):
            os.chown(tmp, st.st_uid, st.st_gid)
        yield tmp
        try:
            fsync_path(tmp)
            os.replace(tmp, target)
        except OSError as exc:
            raise FileWriteError(path, exc.strerror or str(exc)) from exc
    except BaseException:
        with suppress(OSError):
            os.remove(tmp)
        raise
    with suppress(OSError):  # make the rename durable; not every file system can
        fsync_path(os.path.dirname(target))


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a file (or a directory's entries) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
