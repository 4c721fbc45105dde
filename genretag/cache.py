"""The embedding cache: analyse a file once, classify it with any head many times.

One SQLite file (WAL mode) holds, per audio file, what every head reads: the backbone's
pooled per-slice embedding, ``np.ndarray [n_slices, 1506]``, stored as float16, with the
slice start times (seconds), the ``padded`` and ``silent`` flags and the slice setting
that produced it (``max_slices``, ``"all"`` or ``"auto:N"`` for an adaptive analysis
that stopped early). An entry is valid for one file identity (absolute path, size in
bytes, ``st_mtime_ns``) and one backbone (the sha256 of its weights); anything else is
a miss, and the next :meth:`EmbeddingCache.put` of that path replaces it, so there is
one row, one blob, per file.

Size: 10 slices x 1506 x 2 bytes = 30 120 bytes per track, stored in a single row; the
file takes 31 KB per track in all: 10 000 tracks take 308 MB (measured), plus a
write-ahead log of at most a few MB while it is open.
Tracks analysed with every slice (``"all"``) cost 3 KB per 3 s of audio.

What the caller may rely on:

- Concurrent processes may read and write the same cache: writes wait for each other
  (busy timeout of :data:`BUSY_TIMEOUT_S`), each :meth:`~EmbeddingCache.put` is one
  transaction, and a process killed at any moment (``kill -9``) leaves the cache
  consistent, with every ``put`` that had returned still in it.
- Nothing read is trusted blindly: an entry whose blobs do not match its recorded shape
  is a miss and is deleted; a file that is not a sound SQLite database (random bytes,
  truncated, another format) is reported once through the ``"genretag"`` logger, moved
  aside as ``<name>.corrupt`` and replaced by an empty cache; a cache written with
  another schema version is emptied.
- The cache never fails a classification: when it cannot be used (read-only location,
  disk full, another program's SQLite database at that path), one warning is logged and
  the instance behaves as an empty cache that stores nothing.

Standard library and numpy only.
"""
from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Hashable, Iterable, NamedTuple, Sequence, TypeVar, Union

import numpy as np

from .errors import GenretagError

log = logging.getLogger("genretag")

#: What a path argument may be: ``str``, ``bytes`` (as beets stores paths) or path-like.
StrPath = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]
#: ``max_slices`` as the analysis took it: a positive int, or ``None``/``"all"`` for every
#: slice; ``"auto:N"`` for an adaptive analysis of at most N slices that may have stopped early.
SlicesKey = Union[int, str, None]

#: Layout of the tables below; stored in ``PRAGMA user_version``.
SCHEMA_VERSION = 1
#: ``PRAGMA application_id`` of a genretag cache ("GTEC"): tells it from other SQLite files.
APPLICATION_ID = 0x47544543
#: Seconds a write waits for another process's write to finish before giving up.
BUSY_TIMEOUT_S = 60.0
#: Bytes the write-ahead log is cut back to after a checkpoint (a big put_many grows it).
WAL_SIZE_LIMIT = 8 * 1024 * 1024
#: Paths looked up per query by :meth:`EmbeddingCache.get_many` (below SQLite's 999 limit).
QUERY_CHUNK = 500

_COLUMNS = ("path", "size", "mtime_ns", "backbone", "slices_key", "n_slices", "dim",
            "padded", "silent", "starts", "embedding")
_SCHEMA = """
CREATE TABLE embeddings (
    path       BLOB PRIMARY KEY,  -- os.fsencode(absolute path)
    size       INTEGER NOT NULL,  -- bytes, from os.stat before the analysis
    mtime_ns   INTEGER NOT NULL,  -- st_mtime_ns, idem
    backbone   TEXT NOT NULL,     -- sha256 (hex) of the backbone weights
    slices_key TEXT NOT NULL,     -- "all", max_slices ("10") or adaptive ("auto:10")
    n_slices   INTEGER NOT NULL,
    dim        INTEGER NOT NULL,  -- 0 for a silent track
    padded     INTEGER NOT NULL,
    silent     INTEGER NOT NULL,
    starts     BLOB NOT NULL,     -- float64 little-endian [n_slices], seconds
    embedding  BLOB               -- float16 little-endian [n_slices, dim]; NULL when silent
)
"""
_SELECT = ("SELECT path, size, mtime_ns, backbone, slices_key, n_slices, dim, padded, silent,"
           " starts, embedding FROM embeddings")
_UPSERT = (f"INSERT OR REPLACE INTO embeddings ({', '.join(_COLUMNS)})"
           f" VALUES ({', '.join('?' * len(_COLUMNS))})")
_CORRUPTION_CODES = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
_BUSY_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
_SQLITE_MAGIC = b"SQLite format 3\x00"

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


class CacheError(GenretagError):
    """The embedding cache at ``path`` cannot be used; ``str(exc)`` is ``"<path>: <reason>"``.

    Never raised to callers of :class:`EmbeddingCache`: it is logged as a warning and the
    cache carries on (rebuilt, or disabled).
    """

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class _Corrupt(CacheError):
    """The file is not a sound genretag cache; move it aside and start empty."""


@dataclass(frozen=True)
class CachedEmbedding:
    """What the analysis of one file left for the heads.

    ``embedding`` is ``np.ndarray [n_slices, dim]`` of float16 (read-only, as stored;
    ``dim`` is 1506 for musicnn's pooled features) or ``None`` for a silent track: use
    :meth:`as_float32` to compute with it. ``starts`` is ``np.ndarray [n_slices]`` of
    float64, each slice's start in seconds. ``padded`` is true when the track was shorter
    than one slice; ``silent`` when it was analysed and found silent. ``slices_key`` is
    ``"all"`` or ``max_slices`` as a string.
    """

    embedding: np.ndarray | None
    starts: np.ndarray
    padded: bool
    silent: bool
    slices_key: str

    @property
    def n_slices(self) -> int:
        return len(self.starts)

    def as_float32(self) -> np.ndarray:
        """The embedding as a new float32 array ``[n_slices, dim]`` (``[0, 0]`` when silent)."""
        if self.embedding is None:
            return np.zeros((0, 0), dtype=np.float32)
        return self.embedding.astype(np.float32)


class CacheRecord(NamedTuple):
    """One file's analysis, for :meth:`EmbeddingCache.put_many` (fields as in ``put``)."""

    path: StrPath
    embedding: np.ndarray | None
    starts: Sequence[float] | np.ndarray
    padded: bool = False
    silent: bool = False
    stat: os.stat_result | None = None


@dataclass(frozen=True)
class CacheStats:
    """A summary of a cache: entry counts (all backbones, this backbone, silent) and bytes
    on disk (database + write-ahead log). ``enabled`` is false when it degraded to no cache."""

    path: str
    enabled: bool
    entries: int
    current: int
    silent: int
    bytes_on_disk: int


def default_cache_path() -> Path:
    """``<user cache dir>/genretag/embeddings.sqlite``.

    The user cache directory is platformdirs' (``~/.cache`` on Linux, honouring
    ``XDG_CACHE_HOME``); without platformdirs, ``$XDG_CACHE_HOME`` or ``~/.cache``.
    """
    try:
        import platformdirs
    except ImportError:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "genretag"
    else:
        base = Path(platformdirs.user_cache_dir("genretag", appauthor=False))
    return base / "embeddings.sqlite"


def normalize_slices_key(max_slices: SlicesKey) -> str:
    """The stored form of an analysis' slice setting: ``"all"``, e.g. ``"10"`` or ``"auto:10"``.

    ``None`` and ``"all"`` mean every slice (the convention of ``max_slices`` elsewhere);
    a positive int (or its decimal string) means at most that many spread slices;
    ``"auto:N"`` an adaptive analysis of at most N (see :func:`genretag.classify.analyse_file`).
    """
    if max_slices is None or max_slices == "all":
        return "all"
    if isinstance(max_slices, str) and max_slices.startswith("auto:") \
            and max_slices[5:].isdigit() and int(max_slices[5:]) > 0:
        return f"auto:{int(max_slices[5:])}"
    if isinstance(max_slices, str) and max_slices.isdigit():
        max_slices = int(max_slices)
    if isinstance(max_slices, (int, np.integer)) and not isinstance(max_slices, bool) \
            and max_slices > 0:
        return str(int(max_slices))
    raise ValueError(f"slices_key must be a positive int, 'all' or None, not {max_slices!r}")


def _key(path: StrPath) -> bytes:
    """The stored identity of a path: the bytes of its absolute, normalised form."""
    return os.fsencode(os.path.abspath(os.fspath(path)))


def _identity(path: StrPath) -> tuple[int, int] | None:
    """``(size, mtime_ns)`` of ``path`` (symlinks followed), or ``None`` if it cannot be stat'ed."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_size, st.st_mtime_ns


def _error_code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def _is_corruption(exc: sqlite3.Error) -> bool:
    return _error_code(exc) in _CORRUPTION_CODES


def _check_header(path: Path) -> None:
    """Raise :class:`_Corrupt` if ``path`` is visibly not a whole SQLite database.

    Checks the magic string and, when no write-ahead log is pending, that the file holds
    all the pages its header counts (a truncated file). A missing or empty file passes:
    SQLite makes it a new database.
    """
    try:
        with open(path, "rb") as f:
            header = f.read(100)
            size = os.fstat(f.fileno()).st_size
    except FileNotFoundError:
        return
    if not header:
        return
    if len(header) < 100 or not header.startswith(_SQLITE_MAGIC):
        raise _Corrupt(str(path), "not an SQLite database")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    change_counter = int.from_bytes(header[24:28], "big")
    n_pages = int.from_bytes(header[28:32], "big")
    valid_for = int.from_bytes(header[92:96], "big")
    try:
        wal_pending = os.path.getsize(f"{path}-wal") > 0
    except OSError:
        wal_pending = False
    if not wal_pending and n_pages and change_counter == valid_for and size < n_pages * page_size:
        raise _Corrupt(str(path), f"truncated: {size} bytes where its header counts "
                                  f"{n_pages} pages of {page_size} bytes")


def _unwritable_reason(path: Path) -> str | None:
    """Why SQLite could not write a cache at ``path``, judged from permission bits.

    Like :mod:`genretag.atomic`, a file or directory without any write bit counts as
    read-only even for root (who could write it anyway); other failures surface as
    errors when the database is opened.
    """
    if path.exists() and not path.stat().st_mode & 0o222:
        return "the cache file is read-only"
    directory = path.parent
    while not directory.exists() and directory != directory.parent:
        directory = directory.parent
    if not directory.is_dir():
        return f"{directory} is not a directory"
    if not directory.stat().st_mode & 0o222 or not os.access(directory, os.W_OK | os.X_OK):
        return f"the directory {directory} is read-only"
    return None


def _decode_row(row: tuple) -> CachedEmbedding | None:
    """The entry of a row, or ``None`` when its blobs do not match its recorded shape."""
    _, _, _, _, key, n, dim, padded, silent, starts_blob, emb_blob = row
    if not isinstance(starts_blob, bytes) or n < 0 or len(starts_blob) != 8 * n:
        return None
    starts = np.frombuffer(starts_blob, dtype="<f8")
    if silent:
        if emb_blob is not None:
            return None
        embedding = None
    else:
        if not isinstance(emb_blob, bytes) or n < 1 or dim < 1 or len(emb_blob) != 2 * n * dim:
            return None
        embedding = np.frombuffer(emb_blob, dtype="<f2").reshape(n, dim)
    return CachedEmbedding(embedding=embedding, starts=starts, padded=bool(padded),
                           silent=bool(silent), slices_key=key)


class EmbeddingCache:
    """Per-file backbone embeddings in one SQLite file, for one backbone.

    ``path`` is the cache file (created with its directory if missing; see
    :func:`default_cache_path`); ``backbone_sha256`` the hex sha256 of the backbone's
    weights: entries written with another backbone are misses. Usable as a context
    manager; :meth:`close` releases the file. Safe to share between threads of one
    process; other processes open their own instance. Never raises on account of the
    cache file: see the module docstring for what happens instead. Example::

        with EmbeddingCache(default_cache_path(), backbone_sha256=sha) as cache:
            hit = cache.get("song.flac", slices_key=10)
            if hit is None:
                st = os.stat("song.flac")
                emb, starts, padded = analyse("song.flac")  # [n, 1506] float32, [n] s
                cache.put("song.flac", emb, starts, padded=padded, silent=False,
                          slices_key=10, stat=st)
    """

    def __init__(self, path: StrPath, *, backbone_sha256: str):
        sha = str(backbone_sha256).lower()
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise ValueError(f"backbone_sha256 must be 64 hex digits, not {backbone_sha256!r}")
        self.path = Path(os.fsdecode(os.path.abspath(os.fspath(path))))
        self.backbone_sha256 = sha
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._file_id: tuple[int, int] | None = None
        self._inherited: list[sqlite3.Connection] = []
        self._disabled: str | None = None
        self._closed = False
        with self._lock:
            self._open()

    # -- public API ---------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        """False once the cache degraded to no cache (the warning said why)."""
        return self._disabled is None and not self._closed

    def get(self, path: StrPath, *, slices_key: SlicesKey | tuple[SlicesKey, ...]
            ) -> CachedEmbedding | None:
        """The entry of ``path`` if it is valid for the file as it is now, else ``None``.

        Valid means: same absolute path, size and ``st_mtime_ns`` as when it was put,
        this cache's backbone and the same ``slices_key`` (see :func:`normalize_slices_key`),
        or one of them when a tuple is given.
        A file that cannot be stat'ed is a miss.
        """
        return self.get_many([path], slices_key=slices_key)[path]

    def get_many(self, paths: Iterable[K], *, slices_key: SlicesKey | tuple[SlicesKey, ...]
                 ) -> dict[K, CachedEmbedding | None]:
        """:meth:`get` for many paths: ``{path: entry or None}`` in the order given.

        One query per :data:`QUERY_CHUNK` paths plus one ``os.stat`` per path. Each hit
        holds its float16 embedding (30 KB for 10 slices); for a whole library, call it
        on chunks of paths to bound memory.
        """
        want = tuple(dict.fromkeys(normalize_slices_key(k) for k in (
            slices_key if isinstance(slices_key, tuple) else (slices_key,))))
        paths = list(paths)
        result: dict[K, CachedEmbedding | None] = dict.fromkeys(paths)
        by_key: dict[bytes, list[tuple[K, tuple[int, int]]]] = {}
        for p in paths:
            ident = _identity(p)
            if ident is not None:
                by_key.setdefault(_key(p), []).append((p, ident))
        if not by_key:
            return result

        def lookup(conn: sqlite3.Connection) -> list[bytes]:
            bad = []
            keys = list(by_key)
            for i in range(0, len(keys), QUERY_CHUNK):
                chunk = keys[i:i + QUERY_CHUNK]
                marks = ",".join("?" * len(chunk))
                keys_in = ",".join("?" * len(want))
                rows = conn.execute(f"{_SELECT} WHERE path IN ({marks}) AND backbone = ?"
                                    f" AND slices_key IN ({keys_in})",
                                    (*chunk, self.backbone_sha256, *want))
                for row in rows:
                    entry = _decode_row(row)
                    if entry is None:
                        bad.append(row[0])
                        continue
                    for p, ident in by_key.get(row[0], ()):
                        if ident == (row[1], row[2]):
                            result[p] = entry
            return bad

        bad = self._run(lookup, [])
        if bad:
            self._delete(bad)
        return result

    def put(self, path: StrPath, embedding: np.ndarray | None, starts: Sequence[float] | np.ndarray,
            *, padded: bool, silent: bool, slices_key: SlicesKey,
            stat: os.stat_result | None = None) -> bool:
        """Store the analysis of ``path``, replacing any entry of that path; one transaction.

        ``embedding`` is ``np.ndarray [n_slices, dim]`` (any float dtype; stored as
        float16) or ``None`` when ``silent``; ``starts`` the ``n_slices`` slice starts in
        seconds (may be empty for a silent track). ``stat`` is ``os.stat(path)`` taken
        *before* the analysis: if the file's size or mtime differs now, it changed while
        being analysed and nothing is stored. Returns whether the entry was stored (also
        false when the cache is disabled, the file is gone, or a value does not fit in
        float16, which is logged). Raises ``ValueError`` for arguments of the wrong shape.
        """
        return self.put_many([CacheRecord(path, embedding, starts, padded, silent, stat)],
                             slices_key=slices_key) == 1

    def put_many(self, records: Iterable[CacheRecord], *, slices_key: SlicesKey) -> int:
        """:meth:`put` for many files in one transaction; returns how many were stored."""
        key = normalize_slices_key(slices_key)
        rows = [row for row in (self._row(r, key) for r in records) if row is not None]
        if not rows:
            return 0

        def write(conn: sqlite3.Connection) -> int:
            with _transaction(conn):
                conn.executemany(_UPSERT, rows)
            return len(rows)

        return self._run(write, 0)

    def restamp(self, path: StrPath, before: os.stat_result) -> bool:
        """Keep the analysis of a file whose tags were rewritten, its audio unchanged.

        ``before`` is ``os.stat(path)`` taken just before the rewrite. Only an entry of
        exactly that version (size, mtime) moves to the file's version now, so an entry
        made before some other change stays stale and is analysed again. Returns whether
        an entry moved. (The beets plugin calls it after writing a genre tag: otherwise
        the next re-tag would decode every file it wrote.)
        """
        now = _identity(path)
        if now is None:
            return False
        old = (before.st_size, before.st_mtime_ns)

        def move(conn: sqlite3.Connection) -> bool:
            with _transaction(conn):
                return conn.execute(
                    "UPDATE embeddings SET size = ?, mtime_ns = ?"
                    " WHERE path = ? AND size = ? AND mtime_ns = ?",
                    (*now, _key(path), *old)).rowcount > 0

        return self._run(move, False)

    def prune(self, exists: Callable[[str], bool] = os.path.exists) -> int:
        """Delete the entries of files for which ``exists(path)`` is false; returns how many.

        ``exists`` receives the absolute path as ``str``. Entries of every backbone count.
        """
        def paths(conn: sqlite3.Connection) -> list[bytes]:
            return [row[0] for row in conn.execute("SELECT path FROM embeddings")]

        gone = [k for k in self._run(paths, []) if not exists(os.fsdecode(k))]
        return self._delete(gone)

    def __len__(self) -> int:
        """Number of entries, all backbones and slice settings included."""
        return self._run(lambda conn: conn.execute("SELECT count(*) FROM embeddings").fetchone()[0], 0)

    def stats(self) -> CacheStats:
        """Entry counts and the bytes the cache takes on disk."""
        def count(conn: sqlite3.Connection) -> tuple[int, int, int]:
            row = conn.execute("SELECT count(*), coalesce(sum(backbone = ?), 0),"
                               " coalesce(sum(silent), 0) FROM embeddings",
                               (self.backbone_sha256,)).fetchone()
            return tuple(row)

        entries, current, silent = self._run(count, (0, 0, 0))
        size = 0
        for suffix in ("", "-wal"):
            try:
                size += os.path.getsize(f"{self.path}{suffix}")
            except OSError:
                pass
        return CacheStats(path=str(self.path), enabled=self.enabled, entries=entries,
                          current=current, silent=silent, bytes_on_disk=size)

    def close(self) -> None:
        """Release the database; later calls behave as an empty, disabled cache."""
        with self._lock:
            self._closed = True
            self._close()

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "open" if self.enabled else f"disabled: {self._disabled or 'closed'}"
        return f"EmbeddingCache({str(self.path)!r}, {state})"

    # -- internals ----------------------------------------------------------------------

    def _row(self, record: CacheRecord, key: str) -> tuple | None:
        """The table row for ``record``, or ``None`` when it must not be stored."""
        path = os.fspath(record.path)
        starts = np.ascontiguousarray(record.starts, dtype="<f8")
        if starts.ndim != 1:
            raise ValueError(f"{os.fsdecode(path)}: starts must be 1-D, not shape {starts.shape}")
        if record.silent:
            if record.embedding is not None:
                raise ValueError(f"{os.fsdecode(path)}: a silent track has no embedding")
            emb_blob, n, dim = None, len(starts), 0
        else:
            emb = np.asarray(record.embedding)
            if emb.ndim != 2 or emb.shape[0] < 1 or emb.shape[1] < 1 \
                    or emb.shape[0] != len(starts) or not np.issubdtype(emb.dtype, np.floating):
                raise ValueError(f"{os.fsdecode(path)}: embedding must be floats [n_slices >= 1, dim]"
                                 f" with one start per slice, not {emb.dtype} {emb.shape} and "
                                 f"{len(starts)} starts")
            with np.errstate(over="ignore"):
                emb16 = np.ascontiguousarray(emb, dtype="<f2")
            if not np.isfinite(emb16).all():
                log.warning("genretag: %s: not cached: its embedding has values that are not "
                            "finite or beyond float16's range", os.fsdecode(path))
                return None
            emb_blob, (n, dim) = emb16.tobytes(), emb16.shape
        now = _identity(path)
        if now is None:
            return None
        if record.stat is not None and now != (record.stat.st_size, record.stat.st_mtime_ns):
            return None  # changed during the analysis: what was analysed is not the file now
        return (_key(path), now[0], now[1], self.backbone_sha256, key, n, dim,
                int(bool(record.padded)), int(bool(record.silent)), starts.tobytes(), emb_blob)

    def _delete(self, keys: list[bytes]) -> int:
        if not keys:
            return 0

        def delete(conn: sqlite3.Connection) -> int:
            with _transaction(conn):
                return sum(conn.execute("DELETE FROM embeddings WHERE path = ?", (k,)).rowcount
                           for k in keys)

        return self._run(delete, 0)

    def _run(self, op: Callable[[sqlite3.Connection], T], default: T) -> T:
        """``op(connection)``, or ``default`` when the cache is (or becomes) unusable.

        A corruption found on the way rebuilds the cache and ``op`` runs again on the
        empty one; any other SQLite error disables the cache with one warning.
        """
        with self._lock:
            for attempt in range(2):
                conn = self._connection()
                if conn is None:
                    return default
                try:
                    return op(conn)
                except sqlite3.Error as exc:
                    if _is_corruption(exc) and attempt == 0:
                        self._rebuild(str(exc))
                        continue
                    self._disable(str(exc))
            return default

    def _connection(self) -> sqlite3.Connection | None:
        if self._closed or self._disabled is not None:
            return None
        if os.getpid() != self._pid:
            # A forked child must not use (or close, which may checkpoint) its parent's
            # connection: keep it referenced, unused, and open a fresh one.
            if self._conn is not None:
                self._inherited.append(self._conn)
            self._conn, self._pid = None, os.getpid()
            self._open()
        return self._conn

    def _open(self, *, after_rebuild: bool = False) -> None:
        try:
            self._conn = self._connect()
        except _Corrupt as exc:
            if after_rebuild:
                self._disable(exc.reason)
            else:
                self._rebuild(exc.reason)
        except sqlite3.Error as exc:
            if _is_corruption(exc) and not after_rebuild:
                self._rebuild(str(exc))
            else:
                self._disable(str(exc))
        except CacheError as exc:
            self._disable(exc.reason)
        except OSError as exc:
            self._disable(exc.strerror or str(exc))

    def _connect(self) -> sqlite3.Connection:
        reason = _unwritable_reason(self.path)
        if reason:
            raise CacheError(str(self.path), reason)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _check_header(self.path)
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                               check_same_thread=False)
        try:
            self._refuse_foreign(conn)
            _use_wal(conn, str(self.path))
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
            self._prepare_schema(conn)
            st = os.stat(self.path)
        except BaseException:
            conn.close()
            raise
        self._file_id = (st.st_dev, st.st_ino)
        return conn

    def _refuse_foreign(self, conn: sqlite3.Connection) -> None:
        """Raise :class:`CacheError`, before anything is written, if the file is another
        program's SQLite database (not ours and not empty)."""
        conn.execute("BEGIN")  # one snapshot: another process may be creating the cache
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            n_objects = conn.execute(
                "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'").fetchone()[0]
        finally:
            conn.execute("COMMIT")
        if app_id != APPLICATION_ID and n_objects:
            raise CacheError(str(self.path), "this SQLite file is not a genretag cache; "
                                             "it is left untouched")

    def _prepare_schema(self, conn: sqlite3.Connection) -> None:
        """Create the table in a new file, check it in an existing one, empty an old one."""
        with _transaction(conn):
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = [r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
            if app_id == 0 and not tables:
                pass  # a new file
            elif app_id != APPLICATION_ID:
                raise CacheError(str(self.path), "this SQLite file is not a genretag cache; "
                                                 "it is left untouched")
            elif version == SCHEMA_VERSION and tables == ["embeddings"] and tuple(
                    r[1] for r in conn.execute("PRAGMA table_info(embeddings)")) == _COLUMNS:
                return
            else:
                log.warning("genretag: embedding cache %s has schema version %d, not %d: "
                            "starting it empty", self.path, version, SCHEMA_VERSION)
                for table in tables:
                    conn.execute(f'DROP TABLE "{table}"')
            conn.execute(_SCHEMA)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _rebuild(self, reason: str) -> None:
        """Move the corrupt file aside as ``<name>.corrupt`` and open an empty cache."""
        self._close()
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            st = None
        replaced = st is not None and self._file_id is not None \
            and (st.st_dev, st.st_ino) != self._file_id
        if st is not None and not replaced:  # else another process rebuilt it already
            aside = self.path.with_name(self.path.name + ".corrupt")
            try:
                os.replace(self.path, aside)
                for suffix in ("-wal", "-shm"):  # a stale log must not be replayed into the new file
                    try:
                        os.replace(f"{self.path}{suffix}", f"{aside}{suffix}")
                    except FileNotFoundError:
                        pass
            except OSError as exc:
                self._disable(f"corrupt ({reason}), and it cannot be moved aside: {exc.strerror}")
                return
            log.warning("genretag: embedding cache %s is corrupt (%s): moved it to %s and "
                        "starting an empty cache", self.path, reason, aside)
        self._file_id = None
        self._open(after_rebuild=True)

    def _disable(self, reason: str) -> None:
        self._close()
        if self._disabled is None:
            self._disabled = reason
            log.warning("genretag: embedding cache %s cannot be used (%s): going on without it",
                        self.path, reason)

    def _close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except sqlite3.Error:
                pass
            self._conn = None


def _use_wal(conn: sqlite3.Connection, path: str) -> None:
    """Put the database in WAL mode (a lasting property of the file).

    The switch needs the file to itself and SQLite does not wait for that (no busy handler
    for it), so it is retried for up to :data:`BUSY_TIMEOUT_S` while other processes
    hold it; once the file is in WAL mode, nothing is taken.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    delay = 0.001
    while True:
        try:
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() != "wal":
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.OperationalError as exc:
            if _error_code(exc) not in _BUSY_CODES or time.monotonic() > deadline:
                raise
        else:
            if str(mode).lower() == "wal":
                return
            if time.monotonic() > deadline:
                raise CacheError(path, f"cannot use WAL mode (journal_mode is {mode})")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


class _transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error) on an autocommit connection.

    IMMEDIATE takes the write lock at the start, so a concurrent writer waits through the
    busy timeout instead of failing when its read turns into a write.
    """

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        elif self.conn.in_transaction:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
