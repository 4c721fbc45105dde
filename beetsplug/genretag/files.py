"""Writing the genre tag into a file without ever leaving it damaged."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from beets import config, plugins
from beets.library import ReadError, WriteError

if TYPE_CHECKING:
    from beets.library import Item


def write_genres(item: Item, genres: list[str]) -> None:
    """Set the genre tag of ``item``'s file to ``genres`` and touch no other tag.

    ``Item.write`` restricted to one field: it would rewrite every field (and add
    empty tags for unset ones). The tags go into a copy that then atomically
    replaces the file (:func:`genretag.atomic.replaced_atomically`): whenever the
    process dies, the file is either the old one or the new one. beets' ``id3v23``
    option is honoured, and other plugins get the ``write`` and ``after_write``
    events. Raises beets' ``ReadError`` or ``WriteError`` (the file is then unchanged).
    """
    from mediafile import MediaFile, UnreadableFileError

    from genretag.atomic import FileWriteError, replaced_atomically

    tags: dict[str, Any] = {"genres": genres}
    plugins.send("write", item=item, path=item.path, tags=tags)
    try:
        with replaced_atomically(item.filepath) as tmp:
            try:
                mediafile = MediaFile(tmp, id3v23=config["id3v23"].get(bool))
            except UnreadableFileError as exc:
                raise ReadError(item.path, _reason(exc)) from exc
            mediafile.update(tags)
            try:
                mediafile.save()
            except UnreadableFileError as exc:
                raise WriteError(item.path, _reason(exc)) from exc
    except FileWriteError as exc:
        raise WriteError(item.path, exc.reason) from exc
    except OSError as exc:
        raise ReadError(item.path, exc) from exc
    plugins.send("after_write", item=item, path=item.path)


def _reason(exc: Exception) -> str:
    """The error without a file name: it would be the temporary copy's, not the user's file."""
    return getattr(exc, "message", None) or str(exc)
