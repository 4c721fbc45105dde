"""Parallel classification in worker processes, with a time bound per file.

Each worker loads the model once and runs torch on one thread, so ``jobs`` workers
use ``jobs`` cores. A file's clock starts when a worker that has finished loading
the model starts on it; a file that takes longer than ``timeout_s`` (a decoder
stuck on a FIFO or a network mount, say) is reported as a failure and its worker
is replaced. Results come back in input order.

Workers are forked from a ``forkserver`` that imported torch, PyAV and genretag
once, so a worker starts in about 0.1 s of CPU instead of the 1.4 s a fresh
interpreter's imports cost (``spawn`` where there is no forkserver). Scripts that
call :func:`classify_parallel` at module level need the usual
``if __name__ == "__main__":`` guard: each worker imports the calling script again.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from . import defaults
from .result import Failure, TrackPrediction

_READY, _LOAD_FAILED = "ready", "load-failed"


def _die_with_parent() -> None:
    """On Linux, have the kernel kill this worker when its parent dies, even mid-file.

    The parent is the forkserver, which exits as soon as the process that uses it
    dies (with ``spawn``: the thread that started the worker, so start workers from
    a thread that outlives them, as the CLI and the plugin do).
    """
    import ctypes
    import sys

    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass  # the parent check between tasks still applies


def keep_buffers() -> None:
    """Ask glibc to keep the network's activation buffers (10-20 MB) between batches.

    By default each batch returns them to the OS and faults them in again; keeping
    them made the per-slice time steady at its best (up to 17 % faster on the runs
    where it was not), for about 15 MB more peak memory (bench/backbone_speed.py).
    """
    import ctypes
    import sys

    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None)
            libc.mallopt(-3, 256 << 20)  # M_MMAP_THRESHOLD
            libc.mallopt(-1, 512 << 20)  # M_TRIM_THRESHOLD
        except (OSError, AttributeError):
            pass  # not glibc: its defaults apply


def set_up_worker() -> None:
    """What every process that classifies on one core does first (the CLI's workers,
    the Ray actors): torch on one thread, and :func:`keep_buffers`."""
    keep_buffers()
    import torch

    torch.set_num_threads(1)


def _worker(worker_id, model_args, max_slices, adaptive, cache_path, tasks, results) -> None:
    """Load the model, say so, then classify ``(index, path)`` tasks until ``None``."""
    _die_with_parent()
    if hasattr(signal, "pthread_sigmask"):  # the parent alone handles Ctrl-C (see _pool)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    set_up_worker()
    from .classify import classify_files
    from .model import load_model

    try:
        model = load_model(**model_args)
    except Exception as exc:  # reported to the parent, which raises it
        results.put((_LOAD_FAILED, worker_id, exc))
        return
    cache = _open_cache(cache_path, model.backbone.sha256)
    _warm_up(model)
    results.put((_READY, worker_id, None))
    parent = mp.parent_process()
    while True:
        try:
            task = tasks.get(timeout=1.0)
        except queue.Empty:
            if parent is not None and not parent.is_alive():
                results.cancel_join_thread()  # nobody reads them any more
                return  # the parent was killed: do not linger as an orphan
            continue
        if task is None:
            return
        index, path = task
        results.put((index, worker_id, next(classify_files([path], model, max_slices=max_slices,
                                                            adaptive=adaptive, cache=cache))))


def _open_cache(cache_path, backbone_sha256: str):
    if cache_path is None:
        return None
    from .cache import EmbeddingCache

    return EmbeddingCache(cache_path, backbone_sha256=backbone_sha256)


def _warm_up(model) -> None:
    """Pay the one-time costs (PyAV's import, torch's first calls) before the clock runs."""
    import av  # noqa: F401  (imported for its side effect: loading FFmpeg's libraries)
    import numpy as np

    from .classify import Analysis, predict

    silence = np.zeros((1, model.features.slice_samples), np.float32)
    predict(Analysis(path="", starts=np.zeros(1), embedding=model.backbone.embed(silence)), model)


@dataclass
class _Worker:
    proc: object
    tasks: object
    ready: bool = False
    task: tuple[int, str] | None = None
    since: float | None = field(default=None)  # when the current task's clock started

    def assign(self, task: tuple[int, str]) -> None:
        self.task = task
        self.tasks.put(task)
        self.since = time.monotonic() if self.ready else None

    def became_ready(self) -> None:
        self.ready = True
        if self.task is not None:
            self.since = time.monotonic()

    def overdue(self, timeout_s: float | None) -> bool:
        return (timeout_s is not None and self.since is not None
                and time.monotonic() - self.since > timeout_s)

    def retire(self) -> None:
        """End the process (killed if still running) and close its task queue, whose
        finalizers run now rather than whenever it is collected (call it with Ctrl-C
        deferred, like all teardown)."""
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join()
        self.tasks.close()
        self.tasks.join_thread()


def _stop_all(workers: dict[int, _Worker], grace_s: float = 5.0) -> None:
    """Ask every worker to finish, kill those still running ``grace_s`` later, release all."""
    for w in workers.values():
        w.tasks.put(None)
    deadline = time.monotonic() + grace_s
    for w in workers.values():
        w.proc.join(timeout=max(0.0, deadline - time.monotonic()))
        w.retire()
    workers.clear()


def classify_parallel(paths: Iterable[str | os.PathLike], *, jobs: int = 2,
                      weights_dir: str | os.PathLike | None = None,
                      vocabulary: str | None = None,
                      max_slices: int | None = defaults.MAX_SLICES,
                      adaptive: bool = defaults.ADAPTIVE,
                      timeout_s: float | None = defaults.TIMEOUT_S,
                      precision: str = defaults.PRECISION,
                      cache_path: str | os.PathLike | None = None
                      ) -> Iterator[TrackPrediction | Failure]:
    """Like :func:`genretag.classify.classify_files`, on ``jobs`` worker processes.

    With ``cache_path`` (an embedding cache, see :mod:`genretag.cache`), files the cache
    holds are scored without decoding (here, or by the workers when they are few: see
    :data:`PARENT_SCORES_FROM`), and the workers store what they analyse. Raises
    :class:`~genretag.errors.WeightsError` if the model cannot be loaded.
    """
    paths = [os.fspath(p) for p in paths]
    model_args = {"weights": None if weights_dir is None else os.fspath(weights_dir),
                  "vocabulary": vocabulary, "precision": precision}
    hits, model = _cache_hits(paths, model_args, max_slices, adaptive, cache_path)
    misses = [p for i, p in enumerate(paths) if i not in hits]
    analysed = _pool(misses, jobs=jobs, model_args=model_args, max_slices=max_slices,
                     adaptive=adaptive, timeout_s=timeout_s, cache_path=cache_path)
    try:
        for i, path in enumerate(paths):
            if i not in hits:
                yield next(analysed)
                continue
            from .classify import predict
            from .errors import PathError

            try:
                yield predict(hits.pop(i), model)
            except PathError as exc:
                yield Failure(path=path, error=exc.reason)
    finally:
        analysed.close()


#: Cache hits are scored in this process when every file is one, or from this many on:
#: then loading the model here (importing torch, about 1.4 s of CPU) pays for itself.
#: Fewer go to the workers with the rest, which read the same entries (no decoding).
PARENT_SCORES_FROM = 256


def _cache_hits(paths: list[str], model_args: dict, max_slices, adaptive, cache_path
                ) -> tuple[dict, object]:
    """``({index: Analysis}, model)``: the paths the cache holds for the model, and the
    model, loaded here to score them (``({}, None)`` when the workers are left to score
    them, see :data:`PARENT_SCORES_FROM`: no torch here then)."""
    if cache_path is None or not paths:
        return {}, None
    from .classify import from_cache, slices_keys, usable
    from .model import load_model, model_dir, read_card

    card = read_card(model_dir(model_args["weights"], vocabulary=model_args["vocabulary"]))
    cache = _open_cache(cache_path, card["backbone"]["sha256"])
    try:
        found = cache.get_many(paths, slices_key=slices_keys(max_slices, adaptive=adaptive))
    finally:
        cache.close()
    found = {path: hit for path, hit in found.items() if hit is not None}
    if not found or len(found) < min(len(paths), PARENT_SCORES_FROM):
        return {}, None
    model = load_model(**model_args)
    return {i: from_cache(path, found[path]) for i, path in enumerate(paths)
            if path in found and usable(found[path], model)}, model


@contextmanager
def _ctrl_c_deferred():
    """Hold a Ctrl-C (SIGINT) that comes during the block, and deliver it at its end.

    A worker's start must not be cut short: a worker started but not kept would lose
    its queues while it still reads them (a traceback on the terminal). The first
    start can take a second (the forkserver imports torch). Nor must stopping workers:
    a ``KeyboardInterrupt`` raised inside a queue's finalizer is only reported as
    ignored, and the queue's feeder thread is left running. Only the main thread can
    set handlers; elsewhere, or under a handler set outside Python, nothing is held.
    """
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is None):  # None: could not be put back
        yield
        return
    held = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        for _ in held:  # a second Ctrl-C stays a second one
            signal.raise_signal(signal.SIGINT)


#: What the forkserver imports once for all workers (the costly part of a worker's start).
_PRELOAD = ["torch", "av", "genretag.classify", "genretag.model"]


def _context():
    """``forkserver`` (preloaded with :data:`_PRELOAD`) where the platform has it, else
    ``spawn``: never plain ``fork``, which would copy this process's threads' state."""
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    return ctx


def _pool(paths: list[str], *, jobs: int, model_args: dict, max_slices, adaptive, timeout_s,
          cache_path) -> Iterator[TrackPrediction | Failure]:
    """Classify ``paths`` on worker processes; results in input order."""
    from .errors import WeightsError

    ctx = _context()
    results = ctx.Queue()
    workers: dict[int, _Worker] = {}
    ids = iter(range(1 << 30))
    cache_path = None if cache_path is None else os.fspath(cache_path)

    def start_worker() -> int:
        worker_id = next(ids)
        tasks = ctx.Queue()
        proc = ctx.Process(target=_worker, daemon=True,
                           args=(worker_id, model_args, max_slices, adaptive, cache_path, tasks,
                                 results))
        # Workers start with SIGINT blocked: Ctrl-C on a terminal reaches the whole
        # process group, and the parent alone decides how to stop. (Blocking, unlike
        # ignoring, keeps a Ctrl-C that arrives meanwhile for the parent.) Each worker
        # blocks it again itself: a forkserver started here need not inherit the mask
        # (multiprocessing's resource tracker unblocks SIGINT while it starts).
        mask = getattr(signal, "pthread_sigmask", None)
        with _ctrl_c_deferred():
            previous = mask(signal.SIG_BLOCK, {signal.SIGINT}) if mask else None
            try:
                proc.start()
            finally:
                if mask:
                    mask(signal.SIG_SETMASK, previous)
            workers[worker_id] = _Worker(proc=proc, tasks=tasks)
        return worker_id

    def replace(worker_id: int, reason: str) -> None:
        with _ctrl_c_deferred():
            w = workers.pop(worker_id)
            index, path = w.task
            done[index] = Failure(path=path, error=reason)
            w.retire()
            del w  # released here, with Ctrl-C still deferred
            start_worker()

    pending = deque(enumerate(paths))
    done: dict[int, TrackPrediction | Failure] = {}
    next_out = 0
    try:
        for _ in range(min(jobs, len(paths))):
            start_worker()
        while next_out < len(paths):
            for w in workers.values():
                if w.task is None and pending:
                    w.assign(pending.popleft())
            try:
                kind, worker_id, payload = results.get(timeout=0.2)
            except queue.Empty:
                kind = None
            if kind == _LOAD_FAILED:
                raise WeightsError(str(payload))
            if kind == _READY and worker_id in workers:
                workers[worker_id].became_ready()
            elif isinstance(kind, int):
                done[kind] = payload
                w = workers.get(worker_id)
                if w is not None and w.task is not None and w.task[0] == kind:
                    w.task, w.since = None, None
            for worker_id, w in list(workers.items()):
                if w.task is None:
                    continue
                if w.overdue(timeout_s):
                    replace(worker_id, f"gave up after {timeout_s:g} s (decoder hung?)")
                elif not w.proc.is_alive():
                    replace(worker_id, f"worker died (exit code {w.proc.exitcode})")
            while next_out in done:
                yield done.pop(next_out)
                next_out += 1
    finally:
        # A Ctrl-C turned into an exception inside a queue's or a process's finalizer
        # would be lost ("Exception ignored") with a traceback: teardown defers it.
        with _ctrl_c_deferred():
            _stop_all(workers)
            del results  # its pipe closes here too
