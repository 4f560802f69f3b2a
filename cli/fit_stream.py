"""`autolabel fit --workers N`: the frames are read and their hypotheses built (the CPU side,
:func:`cli.fit_batch.prepare`) by N worker processes, up to two batches ahead, while this
process fits the current batch and writes each of its frames as soon as it is done.

The batches are those of a run without workers (:func:`cli.fit_run.batches`: consecutive
frames, at most ``--batch`` of them and ``--batch-objects`` detections, counted from the
detections file), fitted in the same order by the same :class:`cli.fit_batch.BatchLabeler`,
so the labels are identical; only where each frame is read changes. A frame that cannot be
read fails alone, as without workers; a worker process that dies loses the frames it had in
flight (recorded as failed, retried by the next run) and a fresh pool goes on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Iterable, Iterator

from autolabel.io.detections import Detection
from autolabel.pipeline import PipelineConfig
from autolabel.stream import AHEAD_BATCHES, WorkerLost, map_ahead
from cli.common import load_torch, set_threads
from cli.fit import FitJob
from cli.fit_batch import BatchLabeler, FrameOutcome, LoadedFrame, Sources, prepare

# Worker processes by default when the fit runs on a GPU, where the CPU side dominates: a
# frame's reading and hypotheses take 0.5-0.7 s of one core here, while a GPU batch of 64
# detections (about 15 synthetic frames) runs its 60 steps at about 20 ms each on an H200
# (issue 13's step time; not measured end to end), so it takes about four to keep up.
GPU_WORKERS = 4


def default_workers(method: str, gpu: bool, cpus: int) -> int:
    """``--workers`` when not given: with the render method, one process on a CPU (the fit
    takes about 90 % of the time there) and :data:`GPU_WORKERS` on a GPU, leaving a core to
    the fitting process; none for the lshape method (its work is its hypotheses, which the
    fitting process builds).

    >>> default_workers("render", False, 2), default_workers("render", True, 16)
    (1, 4)
    >>> default_workers("render", False, 1), default_workers("lshape", True, 16)
    (0, 0)
    """
    if method != "render":
        return 0
    return max(0, min(GPU_WORKERS if gpu else 1, cpus - 1))


class FramePreparer:
    """:func:`cli.fit_batch.prepare` in a worker process. It holds the job without its
    detections: each task brings its frame's, so that a worker never holds the whole
    detections file (with instance masks, a full-image array per detection)."""

    def __init__(self, job: FitJob, config: PipelineConfig):
        self.job = job
        self.config = config

    @classmethod
    def in_new_process(cls, job: FitJob, config: PipelineConfig, threads: int
                       ) -> FramePreparer:
        """A preparer for a worker process: torch on ``threads`` threads (0: torch's
        default), those of the fitting process, so the hypotheses are the same."""
        set_threads(threads)
        load_torch()
        return cls(job, config)

    def __call__(self, task: tuple[str, list[Detection]]) -> LoadedFrame | FrameOutcome:
        frame_id, detections = task
        name = self.job.images[frame_id].name
        return prepare(Sources(dataclasses.replace(self.job, detections={name: detections})),
                       self.config, frame_id)


def streamed(labeler: BatchLabeler, workers: int, threads: int, chunks: Iterable[list[str]]
             ) -> Iterator[tuple[list[str], list[FrameOutcome]]]:
    """Yield ``(chunk, outcomes)`` for every batch of frame ids, fitted and written by
    ``labeler`` in this process as soon as ``workers`` processes (torch on ``threads``
    threads) have prepared its frames."""
    chunks = list(chunks)
    job = labeler.job
    make = functools.partial(FramePreparer.in_new_process,
                             dataclasses.replace(job, detections={}), labeler.config, threads)
    tasks = ((frame_id, job.detections.get(job.images[frame_id].name, []))
             for chunk in chunks for frame_id in chunk)
    with contextlib.closing(map_ahead(make, tasks, workers, AHEAD_BATCHES * job.batch)) as ready:
        for chunk in chunks:
            items = [_item(*next(ready)) for _ in chunk]
            yield chunk, labeler.label_prepared(items)


def _item(task: tuple[str, list[Detection]], result: LoadedFrame | FrameOutcome | WorkerLost
          ) -> LoadedFrame | FrameOutcome:
    """A worker's result for a frame; a failed outcome when its worker process died."""
    if isinstance(result, WorkerLost):
        return FrameOutcome(task[0], failure=result.reason)
    return result
