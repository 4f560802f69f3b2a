"""Tests for autolabel/distributed.py: a pool of Ray actors returns every batch's result once,
replaces a worker that dies and retries its batch, and gives up on a batch after two deaths."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from autolabel.distributed import BatchLost, Cluster, RaySettings, WorkerPool
from autolabel.errors import InputError


def _squares() -> Callable[[list[int]], list[int]]:
    return lambda batch: [value * value for value in batch]


class _Fragile:
    """Squares a batch; a batch holding "die" ends its worker's process (every time, or only
    the first time when ``once``: a marker file remembers it), after writing "done-<value>"
    for each number before it (a worker that dies after finishing some work)."""

    def __init__(self, folder: Path, once: bool):
        self.folder, self.once = folder, once

    def __call__(self, batch):
        for value in batch:
            if value == "die":
                marker = self.folder / "died"
                if not (self.once and marker.exists()):
                    marker.touch()
                    os._exit(3)
                continue
            (self.folder / f"done-{value}").touch()
        return [value * value for value in batch if value != "die"]


def test_every_batch_result_comes_back_once_with_its_batch(ray_local):
    pool = WorkerPool(_squares, size=2)
    batches = [[1, 2], [3], [4, 5, 6], [7]]
    results = list(pool.map(batches))
    pool.close()
    assert sorted(map(tuple, (batch for batch, _ in results))) == sorted(map(tuple, batches))
    assert all(result == [v * v for v in batch] for batch, result in results)


def test_a_batch_whose_worker_died_is_retried_on_a_fresh_worker(ray_local, tmp_path):
    pool = WorkerPool(functools.partial(_Fragile, tmp_path, True), size=2)
    results = dict((tuple(batch), result) for batch, result in
                   pool.map([[1, 2], [3, "die", 4], [5], [6]]))
    assert results == {(1, 2): [1, 4], (3, "die", 4): [9, 16], (5,): [25], (6,): [36]}
    assert len(pool.peak_memory()) == 2  # the dead worker was replaced
    pool.close()


def test_a_batch_that_kills_its_worker_twice_is_lost_and_the_others_finish(ray_local,
                                                                            tmp_path):
    pool = WorkerPool(functools.partial(_Fragile, tmp_path, False), size=2)
    results = dict((tuple(batch), result) for batch, result in
                   pool.map([[1], [2, "die"], [3], [4]]))
    pool.close()
    lost = results.pop((2, "die"))
    assert isinstance(lost, BatchLost)
    assert "worker died" in lost.reason and "tried 2 times" in lost.reason
    assert results == {(1,): [1], (3,): [9], (4,): [16]}
    assert (tmp_path / "done-2").exists()  # what it finished before dying stays


def test_pool_size_is_one_per_cpu_or_gpu_and_never_more_than_the_cluster_has():
    cluster = Cluster(cpus=4, gpus=2)
    assert cluster.pool_size(RaySettings("local"), gpu=False) == 4
    assert cluster.pool_size(RaySettings("local"), gpu=True) == 2
    assert cluster.pool_size(RaySettings("local", workers=3), gpu=False) == 3
    with pytest.raises(InputError, match="--ray-workers 3: the Ray cluster has 2 GPU"):
        cluster.pool_size(RaySettings("local", workers=3), gpu=True)
