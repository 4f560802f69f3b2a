"""Scale-out on Ray: batches of work spread over a pool of Ray actors, one per GPU or per CPU.

Ray is an optional extra (``pip install autolabel[ray]``) and is imported only when a cluster
is joined, so this module stays light (the CLI reads :class:`RaySettings` before torch loads).

A pool is generic: each actor calls ``make_worker()`` once (e.g. to load the shape prior) and
then applies what it returned to one batch at a time. :meth:`WorkerPool.map` yields every
batch's result as it completes; a batch whose actor died is resubmitted to a fresh actor, and
after ``attempts`` deaths it yields :class:`BatchLost` instead. :func:`label_dataset` is
:func:`autolabel.pipeline.label_dataset` on such a pool.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import resource
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from autolabel.errors import InputError

INSTALL_HINT = "pip install autolabel[ray]"


@dataclasses.dataclass(frozen=True)
class RaySettings:
    """Where to run and how wide.

    Attributes:
        address: ``local`` (start a Ray cluster of this machine for the run, stopped at the
            end), ``auto`` (the cluster that ``ray start`` runs on this machine), or the
            address of a cluster's head, ``host:port`` or ``ray://host:port``.
        workers: actors in the pool; 0 for one per GPU of the cluster when the work uses
            GPUs, else one per CPU.
    """

    address: str = "local"
    workers: int = 0


@dataclasses.dataclass(frozen=True)
class Cluster:
    """The resources of the joined cluster: whole CPUs and GPUs."""

    cpus: int
    gpus: int

    def pool_size(self, settings: RaySettings, gpu: bool) -> int:
        """The number of actors for ``settings`` (one CPU or one GPU each); InputError when
        the cluster has fewer than asked for (the surplus actors would wait forever)."""
        kind, available = ("GPU", self.gpus) if gpu else ("CPU", self.cpus)
        if settings.workers > available:
            raise InputError(None, f"--ray-workers {settings.workers}: the Ray cluster has "
                             f"{available} {kind}(s)")
        return settings.workers or available


@dataclasses.dataclass(frozen=True)
class BatchLost:
    """A batch that no actor finished: its actor died (or raised) ``attempts`` times."""

    reason: str


def import_ray():
    """The ``ray`` module, or InputError naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise InputError(None, f"--ray needs Ray, which is not installed: {INSTALL_HINT}"
                         ) from None
    return ray


@contextlib.contextmanager
def ray_cluster(address: str) -> Iterator[Cluster]:
    """Join the cluster at ``address`` (see :class:`RaySettings`) for the duration of the
    block, quietly (no worker output or Ray log lines on the console). A Ray session that is
    already open in this process is used as it is and left open."""
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        quiet = {"log_to_driver": False, "logging_level": logging.ERROR}
        try:
            if address == "local":
                ray.init(address="local", include_dashboard=False, **quiet)
            else:
                ray.init(address=address, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as error:
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise InputError(None, f"--ray {address}: cannot join the cluster: {message}"
                             ) from None
    try:
        resources = ray.cluster_resources()
        yield Cluster(int(resources.get("CPU", 0)), int(resources.get("GPU", 0)))
    finally:
        if started:
            ray.shutdown()


class _Worker:
    """The body of a pool's actor: ``make_worker()`` once, then one batch per call."""

    def __init__(self, make_worker: Callable[[], Callable[[Any], Any]]):
        self._work = make_worker()

    def run(self, batch):
        return self._work(batch)

    def peak_memory(self) -> int:
        """The actor process's peak resident set size, bytes (Linux reports KiB)."""
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class WorkerPool:
    """``size`` Ray actors, each with one CPU (and one GPU when ``gpu``), each running what
    ``make_worker()`` returned on one batch at a time.

    ``make_worker`` must be picklable (a module-level function or class, or a
    ``functools.partial`` of one) and importable on the cluster's machines.
    """

    def __init__(self, make_worker: Callable[[], Callable[[Any], Any]], size: int,
                 gpu: bool = False, attempts: int = 2):
        ray = import_ray()
        self._actor_class = ray.remote(_Worker).options(num_cpus=1, num_gpus=int(gpu),
                                                        max_restarts=0)
        self._make_worker = make_worker
        self._attempts = attempts
        self._actors = [self._actor_class.remote(make_worker) for _ in range(size)]

    def map(self, batches: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
        """Yield ``(batch, result)`` for every batch, in order of completion; ``result`` is
        a :class:`BatchLost` for a batch whose actor died ``attempts`` times (each death
        replaces the actor). Batches are drawn from ``batches`` only as actors come free."""
        ray = import_ray()
        todo = iter(batches)
        retry: collections.deque = collections.deque()
        idle = list(range(len(self._actors)))
        running: dict = {}
        exhausted = False
        while True:
            while idle and (retry or not exhausted):
                if retry:
                    batch, attempt = retry.popleft()
                else:
                    batch, attempt = next(todo, _END), 1
                    if batch is _END:
                        exhausted = True
                        continue
                slot = idle.pop()
                running[self._actors[slot].run.remote(batch)] = (slot, batch, attempt)
            if not running:
                return
            (done,), _ = ray.wait(list(running), num_returns=1)
            slot, batch, attempt = running.pop(done)
            idle.append(slot)
            try:
                yield batch, ray.get(done)
                continue
            except ray.exceptions.RayActorError as error:
                self._actors[slot] = self._actor_class.remote(self._make_worker)
                failure = f"worker died: {_first_line(error)}"
            except ray.exceptions.RayTaskError as error:
                failure = f"worker raised {_first_line(error)}"
            if attempt < self._attempts:
                retry.append((batch, attempt + 1))
            else:
                yield batch, BatchLost(f"{failure} (tried {attempt} times)")

    def peak_memory(self) -> list[int]:
        """Each live actor's peak resident set size, bytes."""
        ray = import_ray()
        return ray.get([actor.peak_memory.remote() for actor in self._actors])

    def close(self) -> None:
        """End the actors."""
        ray = import_ray()
        for actor in self._actors:
            ray.kill(actor)
        self._actors = []


_END = object()


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
