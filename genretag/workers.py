"""Parallel classification in worker processes, with a time bound per file.

Each worker loads the model once and runs torch on one thread, so ``jobs`` workers
use ``jobs`` cores. A file that takes longer than ``timeout_s`` (a decoder stuck on
a FIFO or a network mount, say) is reported as a failure; its worker is replaced.
Results come back in input order.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import time
from collections import deque
from typing import Iterable, Iterator

from .prediction import Failure, TrackPrediction

#: Per-file time bound (seconds) unless the caller says otherwise.
DEFAULT_TIMEOUT_S = 120.0


def _die_with_parent() -> None:
    """On Linux, have the kernel kill this worker when its parent dies, even mid-file.

    (The "parent" is the thread that started the worker: start workers from a thread
    that outlives them, as the CLI and the plugin do.)
    """
    import ctypes
    import sys

    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass  # the parent check between tasks still applies


def _worker(weights_dir, max_slices, precision, tasks, results) -> None:
    _die_with_parent()
    import torch

    from .model import load_model
    from .predict import classify_files

    torch.set_num_threads(1)
    try:
        model = load_model(weights_dir, precision=precision)
    except Exception as exc:  # reported to the parent, which raises it
        results.put((-1, exc))
        return
    results.put((-2, None))  # ready
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
        results.put((index, next(classify_files([path], model, max_slices=max_slices))))


def classify_parallel(paths: Iterable[str | os.PathLike], *, jobs: int = 2,
                      weights_dir: str | os.PathLike | None = None,
                      max_slices: int | None = 10, timeout_s: float | None = DEFAULT_TIMEOUT_S,
                      precision: str = "fp32") -> Iterator[TrackPrediction | Failure]:
    """Like :func:`genretag.predict.classify_files`, on ``jobs`` worker processes."""
    from .errors import WeightsError

    paths = [os.fspath(p) for p in paths]
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    args = (None if weights_dir is None else os.fspath(weights_dir), max_slices, precision)
    workers: list[dict] = []

    def start_worker() -> dict:
        tasks = ctx.Queue()
        proc = ctx.Process(target=_worker, args=(*args, tasks, results), daemon=True)
        # Workers start with SIGINT blocked: Ctrl-C on a terminal reaches the whole
        # process group, and the parent alone decides how to stop. (Blocking, unlike
        # ignoring, keeps a Ctrl-C that arrives meanwhile for the parent.)
        mask = getattr(signal, "pthread_sigmask", None)
        previous = mask(signal.SIG_BLOCK, {signal.SIGINT}) if mask else None
        try:
            proc.start()
        finally:
            if mask:
                mask(signal.SIG_SETMASK, previous)
        return {"proc": proc, "tasks": tasks, "task": None, "since": 0.0}

    pending = deque(enumerate(paths))
    done: dict[int, TrackPrediction | Failure] = {}
    next_out = 0
    try:
        workers = [start_worker() for _ in range(max(1, min(jobs, len(paths))))]
        while next_out < len(paths):
            for w in workers:
                if w["task"] is None and pending:
                    w["task"], w["since"] = pending.popleft(), time.monotonic()
                    w["tasks"].put(w["task"])
            try:
                index, result = results.get(timeout=0.2)
            except queue.Empty:
                index = None
            if index == -1:
                raise WeightsError(str(result))
            if index is not None and index >= 0:
                done[index] = result
                for w in workers:
                    if w["task"] is not None and w["task"][0] == index:
                        w["task"] = None
            for i, w in enumerate(workers):
                overdue = (timeout_s is not None and w["task"] is not None
                           and time.monotonic() - w["since"] > timeout_s)
                if overdue or (w["task"] is not None and not w["proc"].is_alive()):
                    index, path = w["task"]
                    reason = (f"gave up after {timeout_s:g} s (decoder hung?)" if overdue
                              else f"worker died (exit code {w['proc'].exitcode})")
                    done[index] = Failure(path=path, error=reason)
                    w["proc"].kill()
                    w["proc"].join()
                    workers[i] = start_worker()
            while next_out in done:
                yield done.pop(next_out)
                next_out += 1
    finally:
        for w in workers:
            w["tasks"].put(None)
        for w in workers:
            w["proc"].join(timeout=5)
            if w["proc"].is_alive():
                w["proc"].kill()
