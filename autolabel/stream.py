"""Work done ahead in worker processes: :func:`map_ahead` applies a function to a stream of
items in a pool of processes, a bounded number of items ahead of the consumer, and yields the
results in the items' order.

The fit uses it to read frames and build their hypotheses (CPU work) while the previous batch
is being fitted. The pool is :class:`concurrent.futures.ProcessPoolExecutor` on the ``spawn``
context (safe beside CUDA and threads); the only queue is the bounded deque of futures in
flight, so at most ``ahead`` items and their results are held at a time.

As with :class:`autolabel.distributed.WorkerPool`, each process calls ``make_worker()`` once
(e.g. to load settings and set its torch threads) and applies what it returned to one item at
a time. A worker process ignores Ctrl-C; the consumer's process handles it and ends the pool.
"""

from __future__ import annotations

import collections
import dataclasses
import multiprocessing
import signal
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

# This process's function when it is a worker of a pool (set once by _start).
_work: Callable[[Any], Any] | None = None
_END = object()  # no more items

# Batches of frames prepared ahead of the one being fitted (by `autolabel fit --workers` and
# `label_dataset(workers=...)`): bounds memory at about (1 + AHEAD_BATCHES) batches of frames.
AHEAD_BATCHES = 2


@dataclasses.dataclass(frozen=True)
class WorkerLost:
    """The result of an item whose worker process died (killed, out of memory) before it
    finished: every item in flight in that pool then, whichever one killed it."""

    reason: str


def _start(make_worker: Callable[[], Callable[[Any], Any]]) -> None:
    """A worker process's start: Ctrl-C left to the consumer's process, the function made."""
    global _work
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _work = make_worker()


def _run(item: Any) -> Any:
    """One item's result, in a worker process."""
    return _work(item)


def _pool(make_worker: Callable[[], Callable[[Any], Any]], workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` spawned processes, each started by :func:`_start`."""
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start, initargs=(make_worker,))


def map_ahead(make_worker: Callable[[], Callable[[Any], Any]], items: Iterable[Any],
              workers: int, ahead: int) -> Iterator[tuple[Any, Any]]:
    """Yield ``(item, make_worker()(item))`` for every item, in order, computed in
    ``workers`` processes while the consumer works on earlier results.

    Args:
        make_worker: called once in each worker process; must be picklable (a module-level
            function or class, or a ``functools.partial`` of one).
        items: drawn lazily: at most ``ahead`` (>= 1) of them are in flight, drawn and not
            yet yielded. workers: processes (>= 1).
    Yields:
        Each item with its result, or with a :class:`WorkerLost` when a worker process died
        while it was in flight (a fresh pool then takes the items after it). An exception
        the function raises for an item is raised here, when that item's turn comes.
    """
    todo = iter(items)
    flight: collections.deque = collections.deque()
    pool = _pool(make_worker, workers)
    try:
        while True:
            while len(flight) < ahead and (item := next(todo, _END)) is not _END:
                try:
                    future = pool.submit(_run, item)
                except BrokenProcessPool:  # a worker died: the items in flight are lost
                    pool.shutdown(wait=False)
                    pool = _pool(make_worker, workers)
                    future = pool.submit(_run, item)
                flight.append((item, future))
            if not flight:
                return
            item, future = flight.popleft()
            try:
                result = future.result()
            except BrokenProcessPool as error:
                result = WorkerLost(f"a worker process died while it was in flight: {error}")
            yield item, result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
