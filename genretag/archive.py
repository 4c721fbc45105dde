"""Archive scale: classify millions of files with Ray Data into a resumable Parquet dataset.

``genretag classify --ray [ADDRESS] --out DIR (PATH... | --manifest FILE)`` calls
:func:`run_job`. The work is a pure map over files: a pool of Ray actors, each loading the
verified model once and classifying with :func:`genretag.classify_files` (the CLI's own
path, so every row equals what ``genretag classify --json`` prints for that file).

The output directory ``DIR`` is a Parquet dataset with one row per input file:

========== ====================== ==================================================
column     type                   meaning
========== ====================== ==================================================
path       string                 the file, as an absolute path
genre      string                 best class (null: failed, or silent)
confidence double                 its score (4 decimals, as the CLI prints)
probs      map<string, double>    every class's score (4 decimals; empty when silent)
genres     list<string>           classes over their threshold (multi-label models)
padded     bool                   shorter than one slice, repeat-padded
silent     bool                   analysed, but nothing to hear
model      string                 ``"<model id>/<version>"`` that produced the row
error      string (null: done)    why the file could not be classified
========== ====================== ==================================================

How the files stay right when runs are killed or rerun:

- Each task handles a *chunk* of paths and writes its rows to a hidden temporary file, then
  renames it to ``part-<hash>.parquet`` (the hash of the model id and the chunk's paths). A
  part is therefore either complete or invisible: Parquet readers (pyarrow, pandas, Ray)
  ignore names that start with ``.``. A chunk retried by Ray writes the same name again.
- A run first reads the ``path`` and ``model`` columns of the parts already in ``DIR`` and
  skips the paths already there for the same model id (done or failed), so rerunning an
  interrupted job completes it with every path exactly once.
- One job per ``DIR`` at a time (a lock file); a new job also waits for the workers of a
  killed job to be gone before it reads what is done.

Ray and pyarrow are imported inside the functions: ``import genretag.archive`` is cheap, and
the plain CLI and the beets plugin never import Ray.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import sys
import time
import uuid
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator
from urllib.parse import urlsplit
from urllib.request import url2pathname

#: What to tell a user who asked for ``--ray`` without Ray installed.
INSTALL_HINT = "pip install 'genretag[ray]'"
#: Paths per task: the work lost when a worker dies, and the rows per Parquet part.
CHUNK_SIZE = 32
#: How often Ray restarts a crashed actor and retries its task before a chunk counts as failed.
RETRIES = 2
#: Seconds a new job waits for the workers of a killed job to exit.
ORPHAN_WAIT_S = 60.0

_WORK = ".genretag-work"          # chunk files of the running job (hidden: never read as data)
_DRIVER_LOCK = ".genretag-driver.lock"
_WRITER_LOCK = ".genretag-writers.lock"

_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def schema():
    """The Arrow schema of every part file (see the module docstring)."""
    import pyarrow as pa

    return pa.schema([("path", pa.string()), ("genre", pa.string()),
                      ("confidence", pa.float64()), ("probs", pa.map_(pa.string(), pa.float64())),
                      ("genres", pa.list_(pa.string())), ("padded", pa.bool_()),
                      ("silent", pa.bool_()), ("model", pa.string()), ("error", pa.string())])


#: Keys of ``TrackPrediction.to_dict()`` present only when true.
_FLAGS = ("padded", "silent")


def result_row(result, model_id: str) -> dict:
    """One output row from a ``TrackPrediction`` or ``Failure`` (values as the CLI prints them)."""
    d = result.to_dict()
    row = {"path": d["path"], "genre": None, "confidence": None, "probs": None, "genres": None,
           "padded": None, "silent": None, "model": model_id, "error": d.get("error")}
    if row["error"] is None:
        row.update(genre=d["genre"], confidence=d["confidence"],
                   probs=list(d["probs"].items()), genres=d.get("genres"), model=d["model"],
                   **{flag: bool(d.get(flag, False)) for flag in _FLAGS})
    return row


def row_to_dict(row: dict) -> dict:
    """A row read back from ``DIR`` as the dict ``genretag classify --json`` prints for it."""
    if row["error"] is not None:
        return {"path": row["path"], "error": row["error"]}
    out = {"path": row["path"], "genre": row["genre"], "confidence": row["confidence"],
           "probs": dict(row["probs"]), "model": row["model"]}
    if row["genres"] is not None:
        out["genres"] = row["genres"]
    out.update({flag: True for flag in _FLAGS if row[flag]})
    return out


def read_results(out_dir: str | os.PathLike) -> Iterator[dict]:
    """Every row of the dataset in ``out_dir``, as the CLI's JSON dicts (streamed by batch)."""
    import pyarrow.dataset as pads

    if not any(Path(out_dir).glob("part-*.parquet")):
        return
    for batch in pads.dataset(os.fspath(out_dir), format="parquet").to_batches():
        for row in batch.to_pylist():
            yield row_to_dict(row)


def done_paths(out_dir: str | os.PathLike, model_id: str) -> set[str]:
    """Paths with a row (result or error) for ``model_id`` in ``out_dir``."""
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    if not any(Path(out_dir).glob("part-*.parquet")):
        return set()
    data = pads.dataset(os.fspath(out_dir), format="parquet")
    done: set[str] = set()
    for batch in data.to_batches(columns=["path"], filter=pc.field("model") == model_id):
        done.update(batch.column(0).to_pylist())
    return done


def write_part(out_dir: Path, rows: list[dict], model_id: str) -> Path:
    """Write ``rows`` as one part, visible only once complete; the name depends on the content."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    digest = hashlib.sha256(model_id.encode("utf-8", "surrogateescape"))
    for row in rows:
        digest.update(b"\0" + row["path"].encode("utf-8", "surrogateescape"))
    final = out_dir / f"part-{digest.hexdigest()[:32]}.parquet"
    tmp = out_dir / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        pq.write_table(pa.Table.from_pylist(rows, schema=schema()), tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return final


class _Classifier:
    """A Ray actor: loads the model once, then classifies one chunk of paths per call."""

    def __init__(self, out_dir: str, model_args: dict, slicing: dict, model_id: str):
        from genretag import load_model
        from genretag.workers import set_up_worker

        set_up_worker()  # as the CLI's workers do
        self.out_dir = Path(out_dir)
        # Held while this process lives: a later job waits for it before reading DIR.
        self._writer_lock = open(self.out_dir / _WRITER_LOCK, "a")
        fcntl.flock(self._writer_lock, fcntl.LOCK_SH)
        self.model = load_model(**model_args)
        if self.model.model_id != model_id:
            raise RuntimeError(f"model {self.model.model_id} on this node, {model_id} on the "
                               "driver: install the same genretag and weights on every node")
        self.slicing = slicing  # max_slices and adaptive, as classify_files takes them

    def __call__(self, batch: dict) -> dict:
        from genretag import classify_files

        chunks, done, failed = [], [], []
        for chunk in batch["chunk"]:
            name = self.out_dir / _WORK / str(chunk)
            paths = name.read_text(encoding="utf-8", errors="surrogateescape").split("\n")
            rows = [result_row(r, self.model.model_id)
                    for r in classify_files(paths, self.model, **self.slicing)]
            write_part(self.out_dir, rows, self.model.model_id)
            chunks.append(chunk)
            failed.append(sum(r["error"] is not None for r in rows))
            done.append(len(rows) - failed[-1])
        return {"chunk": chunks, "done": done, "failed": failed}


def iter_inputs(paths: Iterable[str], manifest: str | os.PathLike | None) -> Iterator[str]:
    """Absolute paths: directories walked as ``genretag classify`` does, then manifest lines.

    The manifest (``-`` for standard input) is read line by line; blank lines are skipped,
    ``file://`` URIs become paths, other URIs (``scheme://...``) are passed on as they are.
    """
    from .cli import walk

    for p in walk(list(paths)):
        yield os.path.abspath(p)
    if manifest is None:
        return
    fh = (sys.stdin if os.fspath(manifest) == "-"
          else open(manifest, encoding="utf-8", errors="surrogateescape"))
    try:
        for line in fh:
            line = line.rstrip("\r\n")
            if line.startswith("file://"):
                yield url2pathname(urlsplit(line).path)
            elif _URI.match(line):
                yield line
            elif line.strip():
                yield os.path.abspath(line)
    finally:
        if fh is not sys.stdin:
            fh.close()


@contextmanager
def _job_lock(out_dir: Path):
    """Exclusive use of ``out_dir``; waits for a killed job's workers to exit."""
    from .errors import GenretagError

    driver = open(out_dir / _DRIVER_LOCK, "a")
    try:
        try:
            fcntl.flock(driver, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise GenretagError(f"{out_dir}: another genretag job is writing here") from None
        with open(out_dir / _WRITER_LOCK, "a") as writers:
            deadline = time.monotonic() + ORPHAN_WAIT_S
            while True:
                try:
                    fcntl.flock(writers, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise GenretagError(f"{out_dir}: workers of an earlier job still write "
                                            f"here after {ORPHAN_WAIT_S:g} s") from None
                    time.sleep(0.5)
            fcntl.flock(writers, fcntl.LOCK_UN)
        yield
    finally:
        driver.close()


class _Chunker:
    """Writes the paths still to do as chunk files in ``DIR/.genretag-work``."""

    def __init__(self, work: Path, size: int):
        self.work, self.size = work, size
        self.current: list[str] = []
        self.count = 0
        self.paths = 0

    def add(self, path: str) -> None:
        self.current.append(path)
        self.paths += 1
        if len(self.current) == self.size:
            self.flush()

    def flush(self) -> None:
        if self.current:
            (self.work / str(self.count)).write_text("\n".join(self.current), encoding="utf-8",
                                                     errors="surrogateescape")
            self.count += 1
            self.current = []

    def read(self, chunk: int) -> list[str]:
        return (self.work / str(chunk)).read_text(encoding="utf-8",
                                                  errors="surrogateescape").split("\n")


def run_job(paths: Iterable[str] = (), *, manifest: str | os.PathLike | None = None,
            out_dir: str | os.PathLike, address: str | None = None, jobs: int | None = None,
            weights_dir: str | os.PathLike | None = None, vocabulary: str | None = None,
            precision: str = "fp32", max_slices: int | None = 10, adaptive: bool = True,
            chunk_size: int = CHUNK_SIZE, log: Log = _stderr) -> int:
    """Classify ``paths`` (files or directories) and the lines of ``manifest`` into ``out_dir``.

    Parameters
    ----------
    address : str or None
        ``None`` or ``"local"``: a Ray instance on this machine (or the one this process
        already started); ``"auto"`` or ``"HOST:PORT"``: an existing cluster.
    jobs : int or None
        Actors, one CPU each; default: every CPU of the Ray instance.
    weights_dir, vocabulary, precision
        The model, as for :func:`genretag.load_model` (a weights directory must be at the
        same path on every node).
    max_slices : int or None
        As ``genretag classify --max-slices``; ``None`` analyses every slice.
    adaptive : bool
        Stop a track's analysis early once its genre is clear (``False``: as
        ``genretag classify --fixed-slices``).
    chunk_size : int
        Paths per task and rows per Parquet part.

    Returns
    -------
    int
        Exit status as for ``genretag classify``: 0 when every file of this run worked,
        1 when some failed (each is a row with its error) or the job could not run,
        2 when Ray is not installed.
    """
    try:
        import pyarrow  # noqa: F401
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        log(f"genretag: --ray needs Ray Data and pyarrow: {INSTALL_HINT}")
        return 2
    from genretag import load_model

    from .errors import GenretagError

    out = Path(out_dir).absolute()
    model_args = {"weights": None if weights_dir is None
                  else os.fspath(Path(weights_dir).absolute()),
                  "vocabulary": vocabulary, "precision": precision}
    try:
        model_id = load_model(**model_args).model_id  # verified on the driver: fail early
        out.mkdir(parents=True, exist_ok=True)
        with _job_lock(out):
            return _run_locked(ray, paths, manifest, out, address, jobs, model_args, model_id,
                               {"max_slices": max_slices, "adaptive": adaptive}, chunk_size, log)
    except (GenretagError, OSError) as exc:
        log(f"genretag: {exc}")
        return 1


def _run_locked(ray, paths, manifest, out: Path, address, jobs, model_args, model_id,
                slicing: dict, chunk_size, log: Log) -> int:
    from genretag import Failure

    start = time.monotonic()
    work = out / _WORK
    shutil.rmtree(work, ignore_errors=True)       # chunks of a killed job
    for stale in out.glob(".part-*.tmp-*"):       # a part a killed worker never finished
        stale.unlink(missing_ok=True)
    work.mkdir()

    seen = done_paths(out, model_id)
    skipped = unsupported = 0
    chunker = _Chunker(work, chunk_size)
    for path in iter_inputs(paths, manifest):
        if path in seen:
            skipped += 1
        elif "\n" in path:
            write_part(out, [result_row(Failure(path=path, error="a line break in its name is "
                                                "not supported"), model_id)], model_id)
            seen.add(path)
            unsupported += 1
        else:
            seen.add(path)
            chunker.add(path)
    chunker.flush()
    del seen
    total = chunker.paths
    log(f"genretag: {total} files to classify with {model_id}, {skipped} already in {out}")

    tally = {"done": 0, "failed": unsupported}
    if total:
        owned = not ray.is_initialized()
        if owned:
            ray.init(address=None if address in (None, "local") else address,
                     include_dashboard=False, logging_level="warning")
        try:
            n_actors = jobs or max(1, int(ray.cluster_resources().get("CPU", 1)))
            left = _run_pass(ray, range(chunker.count), out, model_args, slicing, model_id,
                             n_actors, tally, total, start, log)
            if left:
                # Chunks whose worker kept dying: redo their paths one per chunk, so one bad
                # file cannot take the rest of its chunk down with it.
                singles = _Chunker(work, 1)
                singles.count = chunker.count
                first = singles.count
                for chunk in left:
                    for path in chunker.read(chunk):
                        singles.add(path)
                log(f"genretag: {len(left)} chunks failed; retrying their {singles.paths} "
                    "files one by one")
                lost = _run_pass(ray, range(first, singles.count), out, model_args, slicing,
                                 model_id, min(n_actors, singles.paths), tally, total, start,
                                 log)
                for chunk in lost:
                    failure = Failure(path=singles.read(chunk)[0],
                                      error=f"the worker died or failed on every one of "
                                            f"{RETRIES + 1} tries (see the Ray logs)")
                    write_part(out, [result_row(failure, model_id)], model_id)
                    tally["failed"] += 1
        finally:
            if owned:
                ray.shutdown()
    shutil.rmtree(work, ignore_errors=True)
    elapsed = time.monotonic() - start
    rate = (tally["done"] + tally["failed"]) / elapsed if elapsed > 0 else 0.0
    log(f"genretag: {tally['done']} done, {tally['failed']} failed, {skipped} skipped in "
        f"{elapsed:.1f} s ({rate:.2f} tracks/s); results in {out}")
    return 1 if tally["failed"] else 0


def _run_pass(ray, chunks: range, out: Path, model_args: dict, slicing: dict, model_id: str,
              n_actors: int, tally: dict, total: int, start: float, log: Log) -> list[int]:
    """Run ``chunks`` on a pool of actors; returns the chunks that never completed."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.max_errored_blocks = -1      # a chunk that keeps failing is retried one file at a time
    ctx.enable_progress_bars = False  # progress lines below count tracks, not chunks
    ds = ray.data.from_items([{"chunk": c} for c in chunks], override_num_blocks=len(chunks))
    with warnings.catch_warnings():
        # Ray Data retries actor tasks forever unless told otherwise, and takes the bounds
        # only as (deprecated) ray_remote_args, hence setup.py's upper bound on Ray.
        warnings.simplefilter("ignore", DeprecationWarning)
        ds = ds.map_batches(
            _Classifier, batch_size=1, num_cpus=1,
            compute=ray.data.ActorPoolStrategy(size=min(n_actors, len(chunks))),
            max_restarts=RETRIES, max_task_retries=RETRIES,
            fn_constructor_kwargs={"out_dir": os.fspath(out), "model_args": model_args,
                                   "slicing": slicing, "model_id": model_id})
    finished: set[int] = set()
    last = time.monotonic()
    for row in ds.iter_rows():
        finished.add(int(row["chunk"]))
        tally["done"] += int(row["done"])
        tally["failed"] += int(row["failed"])
        now = time.monotonic()
        if now - last >= 10:
            last = now
            n = tally["done"] + tally["failed"]
            rate = n / (now - start)
            eta = (total - n) / rate if rate else float("inf")
            log(f"genretag: {n} of {total} files ({100 * n / total:.0f} %), {rate:.2f} "
                f"tracks/s, about {_clock(eta)} left")
    return [c for c in chunks if c not in finished]


def _clock(seconds: float) -> str:
    if seconds == float("inf"):
        return "?"
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}"
