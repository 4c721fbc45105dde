"""Tag genres from the audio itself with genretag's model.

``beet genretag [QUERY]`` classifies library items (or albums with ``-a``); with
``auto: yes`` items are tagged on import, once their files are in the library.
Results are stored in ``genres`` and in ``genretag_*`` flexible attributes.

Only beets and the standard library are imported here: torch and PyAV load on
the first classification, so other ``beet`` commands stay quick.
"""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import sys
import threading
from collections import Counter
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from beets import config, plugins, ui
from beets.dbcore import types
from beets.library import Album, FileOperationError, Item, ReadError, WriteError
from beets.plugins import BeetsPlugin
from beets.ui import Subcommand, should_write

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from pathlib import Path

    from beets.importer import ImportSession, ImportTask
    from beets.library import Library
    from genretag import Failure, TrackPrediction
    from genretag.model import GenreModel

Distribution = dict[str, float]
"""Probability of each model class (lower-case GTZAN name), in the model's class order."""

Group = tuple[Album | None, list[Item]]
"""Items classified together; with an album, it also gets their mean distribution."""

DEFAULT_GENRE_MAP = {
    "blues": "Blues", "classical": "Classical", "country": "Country", "disco": "Disco",
    "hiphop": "Hip-Hop", "jazz": "Jazz", "metal": "Metal", "pop": "Pop",
    "reggae": "Reggae", "rock": "Rock",
}


# Pure decision logic.

def format_probs(probs: Distribution) -> str:
    """``"blues:0.12 classical:0.01 …"``: the distribution as one queryable string."""
    return " ".join(f"{genre}:{p:.2f}" for genre, p in probs.items())


def parse_probs(text: str) -> Distribution:
    """Inverse of :func:`format_probs`; ``{}`` for empty or malformed text."""
    probs = {}
    for part in text.split():
        genre, _, value = part.rpartition(":")
        try:
            probs[genre] = float(value)
        except ValueError:
            return {}
    return probs


def pick_genres(probs: Distribution, *, count: int, min_confidence: float,
                genre_map: dict[str, str]) -> list[str]:
    """Display names of the ``count`` most probable classes that reach ``min_confidence``.

    A class mapped to an empty name is left out; names mapped together appear once.
    """
    best = sorted(probs.items(), key=lambda kv: -kv[1])[:count]
    names = [genre_map.get(genre, genre) for genre, p in best if p >= min_confidence]
    return list(dict.fromkeys(name for name in names if name))


def may_replace(current: list[str], earlier: list[list[str]], *, overwrite: bool) -> bool:
    """Whether new genres may replace ``current``.

    Yes when overwriting, when ``current`` is empty, or when it is what genretag set
    from an ``earlier`` prediction (so a new model version can correct its predecessor).
    """
    return overwrite or not current or current in [e for e in earlier if e]


def result_fields(probs: Distribution, model_id: str) -> dict[str, Any]:
    """The ``genretag_*`` flexible attributes describing one prediction."""
    genre, confidence = max(probs.items(), key=lambda kv: kv[1])
    return {"genretag_genre": genre, "genretag_confidence": round(confidence, 4),
            "genretag_model": model_id, "genretag_probs": format_probs(probs)}


def pretend_line(obj: Item | Album, old: list[str], new: list[str], confidence: float) -> str:
    """``artist - title: old genres → new genres (confidence)``; for an album, its artist."""
    name = (f"{obj.albumartist} - {obj.album}" if isinstance(obj, Album)
            else f"{obj.artist} - {obj.title}")
    before, after = ", ".join(old) or "(none)", ", ".join(new) or "(none)"
    return f"{name}: {before} → {after} ({confidence:.2f})"


def stored_probs(obj: Item | Album, model_id: str) -> Distribution:
    """The distribution stored by this model version, or ``{}``."""
    if obj.get("genretag_model") != model_id:
        return {}
    return parse_probs(obj.get("genretag_probs", ""))


def needs_tagging(obj: Item | Album, model_id: str, *, force: bool) -> bool:
    """Whether ``obj`` still lacks a prediction from this model version."""
    return force or obj.get("genretag_model") != model_id


def album_distribution(items: list[Item], found: dict[int, Distribution],
                       model_id: str) -> Distribution | None:
    """Class-wise mean of the tracks' distributions, new (``found`` by id) or stored earlier."""
    dists = [d for d in (found.get(i.id) or stored_probs(i, model_id) for i in items) if d]
    if not dists:
        return None
    return {genre: sum(d.get(genre, 0.0) for d in dists) / len(dists) for genre in dists[0]}


@dataclass(frozen=True)
class Options:
    """What one run does: the validated configuration and the command-line choices."""

    count: int
    min_confidence: float
    genre_map: dict[str, str]
    overwrite: bool  # configured overwrite, or --force
    album_consistent: bool
    max_slices: int
    timeout: float  # seconds per file, in worker processes
    write: bool
    pretend: bool
    force: bool

    def genres(self, probs: Distribution | None) -> list[str]:
        if not probs:
            return []
        return pick_genres(probs, count=self.count, min_confidence=self.min_confidence,
                           genre_map=self.genre_map)


def summary_line(counts: Counter[str], *, album: bool, pretend: bool,
                 interrupted: bool) -> str:
    """``genretag: 120 tagged, 4000 skipped, 1 failed[, 3 albums][, 50 not done (interrupted)]``."""
    verb = "would be tagged" if pretend else "tagged"
    line = (f"genretag: {counts['tagged']} {verb}, {counts['skipped']} skipped, "
            f"{counts['failed']} failed")
    if album:
        line += f", {counts['albums']} albums"
    if interrupted:
        left = counts["todo"] - counts["tagged"] - counts["failed"]
        line += f", {left} not done (interrupted)"
    return line


class Interruption:
    """Ctrl-C (SIGINT) during ``beet genretag``.

    The first one asks the run to stop after the current item (the current album,
    with ``-a``); a second one stops it at once, except while an item's file and
    database row are being updated (see :meth:`shielded`), which is finished first.
    """

    def __init__(self) -> None:
        self.count = 0
        self._shielded = False

    @property
    def requested(self) -> bool:
        return self.count > 0

    def _handle(self, signum: int, frame: Any) -> None:
        self.count += 1
        if self.count == 1:
            os.write(2, b"genretag: interrupted; stopping after the current item "
                        b"(Ctrl-C again to stop at once)\n")
        elif not self._shielded:
            raise KeyboardInterrupt

    @contextmanager
    def installed(self) -> Iterator[Interruption]:
        """Handle SIGINT this way inside the block (only possible in the main thread)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = signal.signal(signal.SIGINT, self._handle)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)

    @contextmanager
    def shielded(self) -> Iterator[None]:
        """Defer an immediate stop until the block has finished."""
        self._shielded = True
        try:
            yield
        finally:
            self._shielded = False
        if self.count > 1:
            raise KeyboardInterrupt


# The plugin.

class GenretagCLIOpts(Protocol):
    force: bool
    pretend: bool
    write: bool | None
    album: bool
    jobs: int | None


class GenretagPlugin(BeetsPlugin):
    item_types = album_types = {
        "genretag_genre": types.STRING,
        "genretag_confidence": types.NullFloat(2),
        "genretag_model": types.STRING,
        "genretag_probs": types.STRING,
    }

    def __init__(self) -> None:
        super().__init__()
        self.config.add({
            "auto": True,
            "count": 1,
            "min_confidence": 0.3,
            "overwrite": False,
            "album_consistent": False,
            "max_slices": 10,
            "jobs": 1,
            "timeout": 120.0,
            "genre_map": DEFAULT_GENRE_MAP,
        })
        self._model: GenreModel | None = None
        self._auto_failed = False
        if self.config["auto"].get(bool):
            self.register_listener("import_task_files", self.imported)

    def commands(self) -> list[Subcommand]:
        cmd = Subcommand("genretag", help="classify genres from the audio")
        cmd.parser.usage += " [QUERY]"
        add = cmd.parser.add_option
        add("-f", "--force", action="store_true", default=False,
            help="re-tag items already tagged by this model version and replace their genres")
        add("-p", "--pretend", action="store_true", default=False,
            help="show old → new genres and change nothing")
        add("-w", "--write", action="store_true", default=None,
            help="write genres into the files (default: import.write)")
        add("-W", "--nowrite", action="store_false", dest="write",
            help="do not write genres into the files")
        add("-a", "--album", action="store_true", default=False,
            help="work on albums: each album also gets its tracks' mean genre")
        add("-j", "--jobs", type="int", default=None, metavar="N",
            help="worker processes, one core each (default: the jobs option, 1)")
        cmd.func = self.command
        return [cmd]

    def command(self, lib: Library, opts: GenretagCLIOpts, args: list[str]) -> None:
        """``beet genretag``: exits with status 1 when an item failed or the run was stopped."""
        from genretag import GenretagError

        jobs = opts.jobs if opts.jobs is not None else self.config["jobs"].get(int)
        if jobs < 1:
            raise ui.UserError(f"--jobs must be at least 1, not {jobs}")
        if opts.album:
            groups = [(album, list(album.items())) for album in lib.albums(args)]
        else:
            groups = [(None, [item]) for item in lib.items(args)]
        counts: Counter[str] = Counter()
        stop = Interruption()
        try:
            with stop.installed():
                self.tag(lib, groups, write=should_write(opts.write), force=opts.force,
                         pretend=opts.pretend, progress=sys.stderr.isatty(), jobs=jobs,
                         stop=stop, counts=counts)
        except GenretagError as exc:
            raise ui.UserError(str(exc)) from None
        except sqlite3.OperationalError as exc:  # e.g. locked by another beets process
            raise ui.UserError(f"library database: {exc}; what was tagged before is saved, "
                               "run again to continue") from None
        except KeyboardInterrupt:  # a second Ctrl-C
            stop.count = max(stop.count, 2)
        ui.print_(summary_line(counts, album=opts.album, pretend=opts.pretend,
                               interrupted=stop.requested))
        if stop.requested:
            raise ui.UserError("interrupted; what was tagged is saved, run again to continue")
        if counts["failed"]:
            raise ui.UserError(f"{counts['failed']} item(s) could not be tagged and were left "
                               "unchanged (reasons above); the next run tries them again")

    def imported(self, session: ImportSession, task: ImportTask) -> None:
        """``import_task_files`` hook: the files are in the library now, tag them there."""
        from genretag import GenretagError

        if self._auto_failed:
            return
        album = task.album if task.is_album else None
        try:
            self.tag(session.lib, [(album, task.imported_items())],
                     write=session.config["write"].get(bool))
        except GenretagError as exc:
            self._auto_failed = True
            self._log.error("{}; imported items are not tagged (run `beet genretag` later)", exc)

    def tag(self, lib: Library, groups: Iterable[Group], *, write: bool, force: bool = False,
            pretend: bool = False, progress: bool = False, jobs: int | None = None,
            stop: Interruption | None = None, counts: Counter[str] | None = None
            ) -> Counter[str]:
        """Classify the groups' items, then store (and maybe write) the results.

        The one worker behind the command and the import hook. An item whose file
        cannot be read or written is logged and left as it was. ``jobs`` worker
        processes classify, each file within the ``timeout``; with ``jobs=None`` the
        model runs in this process (kept for later calls: one load per import).
        ``stop`` is checked between groups; what is not done is left for the next
        run. Returns (and adds to ``counts``) the counts of ``tagged``, ``skipped``
        and ``failed`` items, ``albums`` tagged and items ``todo`` in this run.
        """
        from genretag import Failure
        from genretag.model import read_model_id

        opts = self._options(write=write, force=force, pretend=pretend)
        groups = [(album, items) for album, items in groups if items]
        counts = Counter() if counts is None else counts
        if not groups:
            return counts
        model_id = read_model_id()  # no torch: a run that skips everything stays cheap
        pending = [[i for i in items if needs_tagging(i, model_id, force=force)]
                   for _, items in groups]
        n_todo = sum(map(len, pending))
        counts["todo"] += n_todo
        self._log.debug("{} items to classify, {} already tagged by {}", n_todo,
                        sum(len(items) for _, items in groups) - n_todo, model_id)
        results = self._results([i.filepath for todo in pending for i in todo], opts, jobs)
        try:
            with progress_bar(n_todo, enabled=progress) as bar:
                for (album, items), todo in zip(groups, pending):
                    if stop is not None and stop.requested:
                        break
                    counts["skipped"] += len(items) - len(todo)
                    found = {}
                    for item in todo:
                        result = next(results)
                        bar.update()
                        if isinstance(result, Failure):
                            self._log.error("cannot classify {}: {}; item left unchanged",
                                            item.filepath, result.error)
                            counts["failed"] += 1
                        else:
                            found[item.id] = result.probs
                    album_probs = (album_distribution(items, found, model_id)
                                   if album is not None else None)
                    shared = opts.genres(album_probs) if opts.album_consistent else None
                    for item in todo:
                        if item.id in found:
                            ok = self._apply(lib, item, found[item.id], model_id, opts,
                                             genres=shared, album=album, stop=stop)
                            counts["tagged" if ok else "failed"] += 1
                    if album_probs and (found or needs_tagging(album, model_id, force=force)):
                        self._apply(lib, album, album_probs, model_id, opts, stop=stop)
                        counts["albums"] += 1
        finally:
            results.close()  # stops worker processes still running
        return counts

    def _results(self, paths: list[Path], opts: Options, jobs: int | None
                 ) -> Iterator[TrackPrediction | Failure]:
        """A result per path, in order; worker processes are only started when iterated."""
        if not paths:
            return
        if jobs is None:
            from genretag import classify_files

            yield from classify_files(paths, self._load_model(), max_slices=opts.max_slices)
        else:
            from genretag.workers import classify_parallel

            yield from classify_parallel(paths, jobs=jobs, max_slices=opts.max_slices,
                                         timeout_s=opts.timeout)

    def _apply(self, lib: Library, obj: Item | Album, probs: Distribution, model_id: str,
               opts: Options, *, genres: list[str] | None = None, album: Album | None = None,
               stop: Interruption | None = None) -> bool:
        """Store one prediction on ``obj`` (an item also in its file if writing).

        ``genres`` replaces the item's own pick (an album's, with ``album_consistent``).
        Returns False, with nothing changed, if the file cannot be written. The file
        is replaced before the database transaction that marks the item done commits,
        so an item marked done always has the genres of its file.
        """
        current = list(obj.genres)
        new = opts.genres(probs) if genres is None else genres
        earlier = [opts.genres(parse_probs(o.get("genretag_probs", "")))
                   for o in (obj, album) if o is not None]
        if not new or not may_replace(current, earlier, overwrite=opts.overwrite):
            new = current
        if opts.pretend:
            from tqdm import tqdm

            with tqdm.external_write_mode():  # print above a progress bar, if any
                ui.print_(pretend_line(obj, current, new, max(probs.values())))
            return True
        fields = {**result_fields(probs, model_id), "genres": new}
        written = opts.write and isinstance(obj, Item) and (new != current or opts.force)
        with (stop.shielded() if stop else nullcontext()), lib.transaction() as tx:
            if written:
                # The database's write lock first: if another process holds it, the
                # run stops here and the file is not touched.
                tx.mutate("UPDATE items SET id = id WHERE id = ?", (obj.id,))
                try:
                    write_genres(obj, new)
                except FileOperationError as exc:
                    self._log.error("cannot write genres to {}: {}; item left unchanged",
                                    obj.filepath, exc.reason)
                    return False
            obj.update(fields)
            if written:  # after update(), which marks a changed item's file as stale
                obj.mtime = obj.current_mtime()
            if isinstance(obj, Album):
                obj.store(inherit=False)  # the album's own fields must not spread to its tracks
            else:
                obj.store()
        self._log.debug("{}: genres {}", obj, new)
        return True

    def _options(self, *, write: bool, force: bool, pretend: bool) -> Options:
        """The configuration, validated, with this run's choices."""
        count = self.config["count"].get(int)
        min_confidence = float(self.config["min_confidence"].as_number())
        max_slices = self.config["max_slices"].get(int)
        timeout = float(self.config["timeout"].as_number())
        if count < 1:
            raise ui.UserError(f"genretag.count must be at least 1, not {count}")
        if not 0.0 <= min_confidence <= 1.0:
            raise ui.UserError(f"genretag.min_confidence must be in 0..1, not {min_confidence}")
        if max_slices < 1:
            raise ui.UserError(f"genretag.max_slices must be at least 1, not {max_slices}")
        if timeout <= 0:
            raise ui.UserError(f"genretag.timeout must be positive, not {timeout:g}")
        genre_map = {str(k): str(v or "") for k, v in self.config["genre_map"].flatten().items()}
        return Options(count=count, min_confidence=min_confidence, genre_map=genre_map,
                       overwrite=force or self.config["overwrite"].get(bool),
                       album_consistent=self.config["album_consistent"].get(bool),
                       max_slices=max_slices, timeout=timeout, write=write, pretend=pretend,
                       force=force)

    def _load_model(self) -> GenreModel:
        if self._model is None:
            from genretag import load_model

            self._model = load_model()
            self._log.debug("loaded model {}", self._model.model_id)
        return self._model


# Writing tags without ever leaving a damaged file.

def write_genres(item: Item, genres: list[str]) -> None:
    """Set the genre tag of ``item``'s file to ``genres`` and touch no other tag.

    ``Item.write`` restricted to one field: it would rewrite every field (and add
    empty tags for unset ones). The tags go into a copy that then atomically
    replaces the file (:func:`genretag.atomic.replaced_atomically`): whenever the
    process dies, the file is either the old one or the new one. Other plugins
    still get the ``write`` and ``after_write`` events. Raises beets' ``ReadError``
    or ``WriteError``.
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


@contextmanager
def progress_bar(total: int, *, enabled: bool) -> Iterator[Any]:
    """A tqdm bar on stderr with beets' log lines printed above it, or a disabled one."""
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    redirect = logging_redirect_tqdm([logging.getLogger("beets")]) if enabled else nullcontext()
    with redirect, tqdm(total=total, unit="track", desc="genretag", disable=not enabled) as bar:
        yield bar
