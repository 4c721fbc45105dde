"""Tag genres from the audio itself with genretag's model.

``beet genretag [QUERY]`` classifies library items (or albums with ``-a``); with
``auto: yes`` items are tagged on import, once their files are in the library.
Results are stored in ``genres`` and in ``genretag_*`` flexible attributes.

The package: this module holds the plugin (configuration, command, import hook and
the one worker method both use); ``settings`` the options and their checks;
``policy`` the pure decisions; ``interrupt`` Ctrl-C; ``files`` tag writing;
``resume`` continuing an interrupted forced run; ``progress`` the progress bar.

Only beets and the standard library are imported here: torch and PyAV load on
the first classification, so other ``beet`` commands stay quick.
"""
from __future__ import annotations

import os
import sqlite3
import sys
import time
from collections import Counter
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from beets import config, ui
from beets.dbcore import types
from beets.library import Album, FileOperationError, Item
from beets.plugins import BeetsPlugin
from beets.ui import Subcommand, should_write

from .files import write_genres
from .interrupt import Interruption
from .policy import (Distribution, Group, Options, agrees, album_distribution, change_line,
                     class_aliases,
                     format_probs, genretag_set, is_silent, needs_tagging,
                     new_genres, parse_probs, pick_genres, pretend_line, result_fields,
                     silent_fields, stored_probs, summary_line)
from .progress import print_above, progress_bar
from .settings import (DEFAULT_GENRE_MAP, Settings, config_warnings, defaults, model_location,
                       read_settings)

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from beets.importer import ImportSession, ImportTask
    from beets.library import Library
    from genretag import Failure, TrackPrediction
    from genretag.model import GenreModel

__all__ = ["DEFAULT_GENRE_MAP", "GenretagPlugin", "Options", "Settings", "album_distribution",
           "change_line", "format_probs", "needs_tagging", "new_genres", "parse_probs",
           "pick_genres", "pretend_line", "result_fields", "stored_probs", "summary_line",
           "write_genres"]

#: Flexible fields whose values are genretag's; removed when an item turns out silent.
PREDICTION_FIELDS = ("genretag_confidence", "genretag_probs", "genretag_agrees")


class GenretagCLIOpts(Protocol):
    force: bool
    pretend: bool
    write: bool | None
    album: bool
    jobs: int | None
    stats: bool
    learn: bool
    plot: str | None


class GenretagPlugin(BeetsPlugin):
    item_types = album_types = {
        "genretag_genre": types.STRING,
        "genretag_confidence": types.NullFloat(2),
        "genretag_model": types.STRING,
        "genretag_probs": types.STRING,
        "genretag_genres": types.MULTI_VALUE_DSV,
        "genretag_tagged": types.DATE,
        "genretag_agrees": types.BOOLEAN,
    }

    def __init__(self) -> None:
        super().__init__()
        self.config.add(defaults())
        self._model: GenreModel | None = None
        self._cache = None  # genretag.cache.EmbeddingCache, opened on first use
        self._auto_failed = False
        values = self._configured()
        self.settings, self.problems = read_settings(values)
        for warning in config_warnings(values, _classes_to_check(values, self.settings)):
            self._log.warning("{}", warning)
        if self.problems:
            for problem in self.problems:
                self._log.error("configuration: {}", problem)
            self._log.error("configuration: tagging on import is off, and `beet genretag` "
                            "refuses to run, until this is fixed")
        elif self.settings.auto:
            self.register_listener("import_task_files", self.imported)

    def _configured(self) -> dict[str, Any]:
        """The ``genretag`` section as plain values (``genre_map`` merged over its default)."""
        values = {}
        for key in self.config.keys():
            view = self.config[key]
            values[key] = view.flatten() if key == "genre_map" else view.get()
        return values

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
        add("--learn", action="store_true", default=False,
            help="learn a personal model from the genres of the matching items that you or "
                 "other plugins set (cross-validated first); tag with it using "
                 "vocabulary: personal")
        add("--stats", action="store_true", default=False,
            help="show what the stored predictions look like (changes nothing)")
        add("--plot", metavar="OUT.png", default=None,
            help="with --stats: also draw the overview into this PNG file")
        cmd.func = self.command
        return [cmd]

    def command(self, lib: Library, opts: GenretagCLIOpts, args: list[str]) -> None:
        """``beet genretag``: raises ``UserError`` (exit status 1) when an item failed,
        the run was interrupted or cannot start."""
        from genretag import GenretagError

        if self.settings is None:
            raise ui.UserError("; ".join(self.problems))
        if opts.plot is not None and not opts.stats:
            raise ui.UserError("--plot draws the overview of --stats: use both")
        if opts.stats:
            self.show_stats(lib, args, plot=opts.plot, album=opts.album)
            return
        if opts.learn:
            self.learn(lib, args)
            return
        jobs = self.settings.jobs if opts.jobs is None else opts.jobs
        if jobs < 1:
            raise ui.UserError(f"--jobs must be at least 1, not {jobs}")
        try:
            run = Options(self._model_settings(), write=should_write(opts.write),
                          pretend=opts.pretend, force=opts.force)
        except GenretagError as exc:
            raise ui.UserError(str(exc)) from None
        counts: Counter[str] = Counter()
        if opts.album:
            groups = [(album, list(album.items())) for album in lib.albums(args)]
            counts["singletons"] = len(lib.items([*args, "singleton:true"]))
        else:
            groups = [(None, [item]) for item in lib.items(args)]
        stop = Interruption()
        try:
            since = None
            if run.force and not run.pretend and any(items for _, items in groups):
                since = self._start_forced_run(args, opts.album, self._model_id(),
                                               run)
            with stop.installed():
                self.tag(lib, groups, run, jobs=jobs, progress=sys.stderr.isatty(),
                         stop=stop, counts=counts, done_since=since)
        except GenretagError as exc:
            raise ui.UserError(str(exc)) from None
        except sqlite3.OperationalError as exc:  # e.g. locked by another beets process
            raise ui.UserError(f"library database: {exc}; what was tagged before is saved, "
                               "run again to continue") from None
        except KeyboardInterrupt:  # a second Ctrl-C
            pass
        ui.print_(summary_line(counts, album=opts.album, pretend=opts.pretend,
                               interrupted=stop.requested))
        if stop.requested:
            raise ui.UserError("interrupted; what was tagged is saved, run the same command "
                               "again to continue")
        if run.force and not run.pretend:
            from . import resume

            resume.clear(_state_dir())
        if counts["failed"]:
            raise ui.UserError(f"{counts['failed']} item(s) could not be tagged and were left "
                               "unchanged (reasons above); the next run tries them again")

    def learn(self, lib: Library, query: list[str]) -> None:
        """``beet genretag --learn [QUERY]``: a personal model from the matching items'
        genres that genretag did not set itself, written where ``vocabulary: personal``
        finds it."""
        from dataclasses import replace

        from genretag import GenretagError
        from genretag.learning import NotEnoughExamples, learn_personal_model

        tracks, ours, without = [], 0, 0
        for item in lib.items(query):
            if not item.genres:
                without += 1
            elif genretag_set(item, self.settings) == list(item.genres):
                ours += 1
            else:
                tracks.append((item.filepath, list(item.genres), item.get("artist") or None))
        out_dir, _ = model_location(replace(self.settings, vocabulary="personal"),
                                    config.config_dir())
        skipped = [f"{n} {what}" for n, what in ((ours, "with genres genretag set"),
                                                 (without, "without genres")) if n]
        ui.print_(f"genretag: learning from {len(tracks)} items with genres set by you or "
                  "other plugins" + (f" (not from {' and '.join(skipped)})" if skipped else ""))
        try:
            with progress_bar(len(tracks), enabled=sys.stderr.isatty()) as bar:
                card = learn_personal_model(
                    tracks, out_dir, cache=embedding_cache_path(lib),
                    min_examples=self.settings.min_examples,
                    max_slices=self.settings.max_slices, genre_map=self.settings.genre_map,
                    source="beets library", progress=lambda _: bar.update(),
                    log=lambda line: print_above(line), out=ui.print_)
        except NotEnoughExamples as exc:
            raise ui.UserError(f"{exc} (the `min_examples` option sets how many)") from None
        except GenretagError as exc:
            raise ui.UserError(str(exc)) from None
        ui.print_(f"genretag: saved {card['model_id']} ({len(card['classes'])} genres) in "
                  f"{out_dir}; tag with it: set `vocabulary: personal`, then `beet genretag`")

    def show_stats(self, lib: Library, query: list[str], *, plot: str | None = None,
                   album: bool = False) -> None:
        """``beet genretag --stats [-a] [--plot OUT.png] [QUERY]``: print (and draw) the
        overview of the matching items' stored predictions (with ``-a``: of the tracks of
        the matching albums). Loads no model and changes nothing."""
        from genretag import GenretagError

        from . import stats

        items = ([i for a in lib.albums(query) for i in a.items()] if album
                 else lib.items(query))
        try:  # the model's display names and cut decide what a prediction lists
            settings = self._model_settings()
        except GenretagError:
            settings = self.settings
        overview, labels = stats.library_stats(items, settings, _model_classes(self.settings))
        ui.print_(stats.report(overview, labels))
        if plot is not None:
            title = "genretag: " + (" ".join(query) or "the whole library") \
                + (" (albums)" if album else "")
            try:
                path = stats.draw(overview, Path(plot), title)
            except OSError as exc:
                raise ui.UserError(f"{plot}: cannot write the plot ({exc.strerror or exc})"
                                   ) from None
            ui.print_(f"genretag: overview drawn in {path}")

    def _start_forced_run(self, args: list[str], album: bool, model_id: str,
                          run: Options) -> float | None:
        """Record a forced run; if the same one was interrupted, when that one started."""
        from . import resume

        directory = _state_dir()
        key = resume.run_key(args, album=album, model_id=model_id, settings=run.settings,
                             write=run.write)
        earlier = resume.load(directory)
        if earlier is not None and earlier.key == key:
            self._log.info("continuing the --force run interrupted earlier (started {}); "
                           "items it did are skipped",
                           time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(earlier.started)))
            return earlier.started
        resume.save(directory, resume.ForcedRun(key=key, started=time.time()))
        return None

    def imported(self, session: ImportSession, task: ImportTask) -> None:
        """``import_task_files`` hook: the files are in the library now, tag them there.

        Never stops the import: a problem with the model is logged once and the rest
        of the import goes on untagged (``beet genretag`` can tag it later).
        """
        from genretag import GenretagError

        if self._auto_failed or self.settings is None:
            return
        album = task.album if task.is_album else None
        try:
            run = Options(self._model_settings(), write=session.config["write"].get(bool))
            self.tag(session.lib, [(album, task.imported_items())], run)
        except GenretagError as exc:
            self._auto_failed = True
            self._log.error("{}; imported items are not tagged (run `beet genretag` later)", exc)

    def tag(self, lib: Library, groups: Iterable[Group], run: Options, *,
            jobs: int | None = None, progress: bool = False, stop: Interruption | None = None,
            counts: Counter[str] | None = None, done_since: float | None = None
            ) -> Counter[str]:
        """Classify the groups' items, then store (and maybe write) the results.

        The one worker behind the command and the import hook. Items that already
        carry this model version's prediction are skipped unless ``run.force``
        (and, with ``done_since``, also forced items tagged since that time). An
        item whose file cannot be read or written is logged and left as it was; a
        silent one is recorded as such. ``jobs`` worker processes classify, each
        file within the ``timeout``; with ``jobs=None`` the model runs in this
        process (kept for later calls: one load per import). ``stop`` is checked
        between groups (and after every item once it is :attr:`~Interruption.immediate`);
        what is not done is left for the next run. Returns (and adds to ``counts``)
        the counts of ``tagged``, ``skipped``, ``failed`` and ``silent`` items,
        ``albums`` tagged and items ``todo`` in this run.
        """
        from genretag import Failure

        groups = [(album, items) for album, items in groups if items]
        counts = Counter() if counts is None else counts
        if not groups:
            return counts
        model_id = self._model_id()  # no torch: skipping everything stays cheap

        def todo(obj: Item | Album) -> bool:
            if not needs_tagging(obj, model_id, force=run.force):
                return False
            return not (done_since is not None and obj.get("genretag_model") == model_id
                        and obj.get("genretag_tagged", 0.0) >= done_since)

        pending = [[i for i in items if todo(i)] for _, items in groups]
        n_todo = sum(map(len, pending))
        counts["todo"] += n_todo
        self._log.debug("{} items to classify, {} already tagged by {}", n_todo,
                        sum(len(items) for _, items in groups) - n_todo, model_id)
        results = self._results([i.filepath for items in pending for i in items], run, jobs,
                                cache_path=embedding_cache_path(lib))
        shield = stop.shielded if stop is not None else nullcontext
        try:
            with progress_bar(n_todo, enabled=progress) as bar:
                for (album, items), work in zip(groups, pending):
                    if stop is not None and stop.requested:
                        break
                    counts["skipped"] += len(items) - len(work)
                    found: dict[int, Distribution] = {}
                    for item in work:
                        result = next(results)
                        bar.update()
                        if is_silent(result):
                            with shield():
                                self._store_silent(lib, item, model_id, run)
                            counts["silent"] += 1
                        elif not isinstance(result, Failure):
                            found[item.id] = result.probs
                        else:
                            self._log.error("cannot classify {}: {}; item left unchanged",
                                            item.filepath, result.error)
                            counts["failed"] += 1
                        _stop_now(stop)
                    album_probs = (album_distribution(items, found, model_id)
                                   if album is not None else None)
                    shared = run.genres(album_probs) if run.settings.album_consistent else None
                    for item in work:
                        if item.id in found:
                            with shield():
                                ok = self._apply(lib, item, found[item.id], model_id, run,
                                                 genres=shared)
                            counts["tagged" if ok else "failed"] += 1
                            _stop_now(stop)
                    if album_probs and (found or todo(album)):
                        with shield():
                            self._apply(lib, album, album_probs, model_id, run)
                        counts["albums"] += 1
        finally:
            results.close()  # stops worker processes still running (Ctrl-C deferred)
        return counts

    def _results(self, paths: list[Path], run: Options, jobs: int | None, *,
                 cache_path: str | None = None) -> Iterator[TrackPrediction | Failure]:
        """A result per path, in order; worker processes are only started when iterated.

        Files analysed before (by any vocabulary) come from the embedding cache at
        ``cache_path`` without being decoded.
        """
        if not paths:
            return
        weights, vocabulary = self._where()
        if jobs is None:
            from genretag import classify_files

            model = self._load_model()
            yield from classify_files(paths, model, max_slices=run.settings.max_slices,
                                      adaptive=run.settings.adaptive,
                                      cache=self._open_cache(cache_path,
                                                             lambda: model.backbone.sha256))
        else:
            from genretag.workers import classify_parallel

            yield from classify_parallel(paths, jobs=jobs, max_slices=run.settings.max_slices,
                                         adaptive=run.settings.adaptive,
                                         timeout_s=run.settings.timeout, weights_dir=weights,
                                         vocabulary=vocabulary, cache_path=cache_path)

    def _open_cache(self, cache_path: str | None, backbone_sha256: Callable[[], str]):
        """The embedding cache at ``cache_path`` (kept open for the session), opened for
        the backbone ``backbone_sha256()`` gives, which is only asked when it opens."""
        if cache_path is None:
            return None
        if self._cache is None or str(self._cache.path) != os.path.abspath(cache_path):
            from genretag.cache import EmbeddingCache

            self._cache = EmbeddingCache(cache_path, backbone_sha256=backbone_sha256())
        return self._cache

    def _model_id(self) -> str:
        """The configured model's id from its card (no torch)."""
        from genretag.model import read_model_id

        weights, vocabulary = self._where()
        return read_model_id(weights, vocabulary=vocabulary)

    def _where(self) -> tuple[str | None, str | None]:
        """``(weights directory, vocabulary)`` of the configured model."""
        return model_location(self.settings, config.config_dir())

    def _model_settings(self) -> Settings:
        """The settings completed by the configured model's card (cut, display names)."""
        from genretag import GenretagError
        from genretag.model import CARD_NAME, model_dir, read_card

        weights, vocabulary = self._where()
        directory = model_dir(weights, vocabulary=vocabulary)
        if self.settings.vocabulary == "personal" and not (Path(directory) / CARD_NAME).exists():
            raise GenretagError(f"{directory}: no personal model there yet; learn one with "
                                "`beet genretag --learn` (or point `personal_model` at one)")
        return self.settings.for_model(read_card(directory))

    def _apply(self, lib: Library, obj: Item | Album, probs: Distribution, model_id: str,
               run: Options, *, genres: list[str] | None = None) -> bool:
        """Store one prediction on ``obj`` (an item also in its file if writing).

        ``genres`` replaces the item's own pick (an album's, with ``album_consistent``).
        Returns False, with nothing changed, if the file cannot be written. The file
        is replaced before the database transaction that marks the item done commits,
        so an item marked done always has the genres of its file.
        """
        current = list(obj.genres)
        listed = run.genres(probs)  # what this prediction names (also for agreement)
        pick = listed if genres is None else genres
        new, ours = new_genres(current, pick, ours=genretag_set(obj, run.settings),
                               overwrite=run.overwrite)
        top = max(probs, key=probs.__getitem__)
        line = change_line(obj, current, new, probs[top],
                           predicted=run.settings.genre_map.get(top, top) or top,
                           why=("below the cut" if not pick else
                                "your genres kept" if not ours else ""))
        if run.pretend:
            print_above(line)
            return True
        fields = {**result_fields(probs, model_id, new if ours else None),
                  "genretag_tagged": time.time(), "genres": new}
        agreement = agrees([] if ours else new, top, class_aliases(run.settings.genre_map),
                           listed=listed)
        written = run.write and isinstance(obj, Item) and (new != current or run.force)
        with lib.transaction() as tx:
            if written:
                # The database's write lock first: if another process holds it, the
                # run stops here and the file is not touched.
                tx.mutate("UPDATE items SET id = id WHERE id = ?", (obj.id,))
                try:
                    before = os.stat(obj.filepath)
                except OSError:
                    before = None  # write_genres names the problem
                try:
                    write_genres(obj, new)
                except FileOperationError as exc:
                    self._log.error("cannot write genres to {}: {} (-W stores genres in the "
                                    "library only); item left unchanged",
                                    obj.filepath, exc.reason)
                    return False
                if before is not None:
                    self._restamp(lib, obj.filepath, before)
            if agreement is None:
                if "genretag_agrees" in obj:
                    del obj["genretag_agrees"]
            else:
                fields["genretag_agrees"] = agreement
            obj.update(fields)
            if written:  # after update(), which marks a changed item's file as stale
                obj.mtime = obj.current_mtime()
            if isinstance(obj, Album):
                obj.store(inherit=False)  # the album's own fields must not spread to its tracks
            else:
                obj.store()
        self._log.info("{}", line)
        return True

    def _restamp(self, lib: Library, path: str, before: os.stat_result) -> None:
        """The file's audio is what was analysed, only its genre tag changed: keep its
        cached analysis valid, so that a re-tag with another model decodes nothing."""
        from genretag.model import model_dir, read_card

        def card_sha256() -> str:
            weights, vocabulary = self._where()
            return read_card(model_dir(weights, vocabulary=vocabulary))["backbone"]["sha256"]

        self._open_cache(embedding_cache_path(lib), card_sha256).restamp(path, before)

    def _store_silent(self, lib: Library, item: Item, model_id: str, run: Options) -> None:
        """Record that ``item`` was analysed and is silent; its genres and file stay."""
        self._log.warning("{}: the audio is silent; recorded as silent, no genre set",
                          item.filepath)
        if run.pretend:
            return
        with lib.transaction():
            for key in PREDICTION_FIELDS:
                if key in item:
                    del item[key]
            item.update({**silent_fields(model_id), "genretag_tagged": time.time()})
            item.store()

    def _load_model(self) -> GenreModel:
        if self._model is None:
            from genretag import load_model

            weights, vocabulary = self._where()
            self._model = load_model(weights, vocabulary=vocabulary)
            self._log.debug("loaded model {}", self._model.model_id)
        return self._model


def _stop_now(stop: Interruption | None) -> None:
    """Raise ``KeyboardInterrupt`` if a second Ctrl-C came while an item was in hand."""
    if stop is not None and stop.immediate:
        raise KeyboardInterrupt


def _state_dir() -> Path:
    return Path(config.config_dir())


def embedding_cache_path(lib: Library) -> str:
    """The embedding cache of a library: ``genretag-embeddings.sqlite`` beside its database."""
    return os.path.join(os.path.dirname(os.path.abspath(os.fsdecode(lib.path))),
                        "genretag-embeddings.sqlite")


def _model_classes(settings: Settings | None = None) -> list[str] | None:
    """The configured model's classes from its card (no torch), or ``None`` if it cannot
    be read (the command reports that itself)."""
    from genretag import GenretagError
    from genretag.model import model_dir, read_card

    weights, vocabulary = (model_location(settings, config.config_dir()) if settings
                           else (None, None))
    try:
        return list(read_card(model_dir(weights, vocabulary=vocabulary))["classes"])
    except GenretagError:
        return None


def _classes_to_check(values: dict[str, Any], settings: Settings | None) -> list[str] | None:
    """The classes to check ``genre_map`` against, or ``None`` when every configured key
    is a default one (reading the card would cost every ``beet`` command a numpy import)."""
    genre_map = values.get("genre_map")
    if not isinstance(genre_map, dict) or set(genre_map) <= set(DEFAULT_GENRE_MAP):
        return None
    return _model_classes(settings)
