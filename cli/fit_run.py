"""The work of `autolabel fit` once its arguments are checked (:class:`cli.fit.FitJob`): form
the batches of unfinished frames, have each labelled (:class:`cli.fit_batch.BatchLabeler`, in
this process, its frames read by worker processes ahead of the fit or not, or on a pool of Ray
actors), record the frames that fail and go on."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import Progress

from autolabel.distributed import BatchLost, Cluster, WorkerPool, ray_cluster
from autolabel.errors import InputError
from autolabel.image.evidence import cached_image_model
from autolabel.io.atomic import remove_stale_temporaries, write_text_atomic
from autolabel.pipeline import resolve_device
from autolabel.prior import load_prior
from cli.common import load_torch, thread_count, user_errors
from cli.fit import FitJob
from cli.fit_batch import (
    BatchLabeler,
    FrameOutcome,
    Sources,
    finished,
    json_path,
    pipeline_config,
)
from cli.fit_stream import default_workers, streamed

FAILURES_FILE = "failures.json"


@dataclasses.dataclass
class Failures:
    """The frames that could not be labelled, kept in ``path`` (JSON: frame id -> reason),
    written atomically whenever it changes."""

    path: Path
    frames: dict[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.path.is_file():
            try:
                self.frames = dict(json.loads(self.path.read_text()))
            except (ValueError, TypeError):
                self.frames = {}  # an unreadable record is rebuilt by this run

    def add(self, frame_id: str, reason: str) -> None:
        self.frames[frame_id] = reason
        self._save()

    def remove(self, frame_id: str) -> None:
        if self.frames.pop(frame_id, None) is not None:
            self._save()

    def _save(self) -> None:
        write_text_atomic(self.path, json.dumps(self.frames, indent=1, sort_keys=True) + "\n")


def batches(frame_ids: list[str], counts: dict[str, int], max_frames: int,
            max_objects: int) -> Iterator[list[str]]:
    """Consecutive runs of frames with at most ``max_frames`` frames and, unless one frame
    alone has more, at most ``max_objects`` detections.

    >>> list(batches(["a", "b", "c", "d"], {"a": 3, "b": 3, "c": 9, "d": 0}, 8, 6))
    [['a', 'b'], ['c'], ['d']]
    """
    chunk: list[str] = []
    objects = 0
    for frame_id in frame_ids:
        if chunk and (len(chunk) == max_frames or objects + counts[frame_id] > max_objects):
            yield chunk
            chunk, objects = [], 0
        chunk.append(frame_id)
        objects += counts[frame_id]
    if chunk:
        yield chunk


def _device(name: str) -> str:
    """The device name, after checking that torch can use it."""
    torch = load_torch()
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(None, f"--device {name}: no CUDA device is available to torch "
                         f"{torch.__version__}; use --device cpu or auto")
    if ":" in name and int(name.split(":")[1]) >= torch.cuda.device_count():
        raise InputError(None, f"--device {name}: torch sees {torch.cuda.device_count()} "
                         "CUDA device(s)")
    return name


def _evidence_summary(used: dict[str, list[str]]) -> str:
    """One line: how many frames used each kind of evidence, naming the box-only ones.

    >>> _evidence_summary({"lidar": ["1", "2"], "box": ["3"]})
    'box 1 frame(s) (3), lidar 2 frame(s)'
    """
    parts = []
    for name, frames in sorted(used.items()):
        named = ", ".join(frames[:10]) + (", ..." if len(frames) > 10 else "")
        parts.append(f"{name} {len(frames)} frame(s)"
                     + (f" ({named})" if name == "box" and len(used) > 1 else ""))
    return ", ".join(parts)


def _ray_gpu(device: str, cluster: Cluster) -> bool:
    """Whether each Ray actor takes a GPU: with ``--device auto`` when the cluster has GPUs,
    with ``cuda`` always (InputError when it has none), with ``cpu`` never."""
    if device.startswith("cuda") and not cluster.gpus:
        raise InputError(None, f"--device {device}: the Ray cluster has no GPU")
    return device != "cpu" and cluster.gpus > 0


def _on_ray(job: FitJob, stack: contextlib.ExitStack) -> tuple[WorkerPool, str, FitJob]:
    """A pool of Ray actors for the job, open until ``stack`` closes, its description, and
    the job with the batch size of the actors' device."""
    with user_errors():
        cluster = stack.enter_context(ray_cluster(job.ray.address))
        gpu = _ray_gpu(job.device, cluster)
        size = cluster.pool_size(job.ray, gpu)
    job = with_batch_default(job, gpu)
    make = functools.partial(BatchLabeler.in_new_process, job, "cuda" if gpu else "cpu",
                             thread_count())
    pool = WorkerPool(make, size, gpu)
    stack.callback(pool.close)
    return pool, f"{size} {'GPU' if gpu else 'CPU'} worker(s) on Ray ({job.ray.address})", job


def recovered(chunk: list[str], lost: BatchLost, out: Path) -> list[FrameOutcome]:
    """The outcomes of a batch no worker finished: its frames finished in ``out`` are done
    (a worker may die after writing some), the others failed."""
    return [finished(out, frame_id) or FrameOutcome(frame_id, failure=lost.reason)
            for frame_id in chunk]


def _record(outcome: FrameOutcome, failures: Failures, used: dict[str, list[str]],
            console: Console) -> None:
    """Report a frame's outcome: its warning, its failure (one line, and in failures.json)
    or the evidence its labels used."""
    quiet = {"soft_wrap": True, "markup": False, "highlight": False}
    if outcome.warning:
        console.print(f"warning: {outcome.warning}", **quiet)
    if outcome.failure is not None:
        console.print(f"failed frame {outcome.frame_id}: {outcome.failure}", **quiet)
        failures.add(outcome.frame_id, outcome.failure)
        return
    failures.remove(outcome.frame_id)
    used.setdefault(outcome.evidence, []).append(outcome.frame_id)


def _one_after_the_other(labeler: BatchLabeler, chunks: Iterable[list[str]]
                         ) -> Iterator[tuple[list[str], list[FrameOutcome]]]:
    """Label the batches one after the other in this process, reading each before its fit."""
    for chunk in chunks:
        yield chunk, labeler(chunk)


# Detections fitted together by default. On a CPU an object's step costs more in larger
# batches (benchmarks/speed.py, one thread: 7.6 ms at 16 hypotheses, 15 ms at 64); a GPU is
# bound by kernel launches (18 ms a step for 1 object, 20 ms for 64 on an H200).
CPU_BATCH_OBJECTS = 8
GPU_BATCH_OBJECTS = 64


def with_batch_default(job: FitJob, gpu: bool) -> FitJob:
    """The job with ``--batch-objects 0`` replaced by the default of the device that fits."""
    if job.batch_objects:
        return job
    return dataclasses.replace(job, batch_objects=GPU_BATCH_OBJECTS if gpu
                               else CPU_BATCH_OBJECTS)


def _in_this_process(job: FitJob, device: str, prior, console: Console
                     ) -> tuple[FitJob, Callable]:
    """The job with the batch size of ``device``, and what labels its batches in this
    process: streamed, their frames read by ``--workers`` processes ahead of the fit, or one
    after the other."""
    gpu = resolve_device(device).type == "cuda"
    job = with_batch_default(job, gpu)
    labeler = BatchLabeler(job, pipeline_config(job, device), prior)
    workers = (job.workers if job.workers is not None
               else default_workers(job.method, gpu, os.cpu_count() or 1))
    if not workers:
        return job, functools.partial(_one_after_the_other, labeler)
    console.print(f"{workers} worker process(es) read the frames and build their hypotheses "
                  "ahead of the fit", highlight=False)
    return job, functools.partial(streamed, labeler, workers, thread_count())


def run(job: FitJob) -> list[str]:
    """Label every unfinished frame of the job; returns the frames that failed."""
    console = Console(stderr=True)
    with user_errors():
        # Loaded here to check them before any work; each Ray actor loads its own copies.
        prior = load_prior(job.prior) if job.method == "render" else None
        if job.method == "render" and job.image_model != "none":
            cached_image_model(job.image_model)
        device = _device(job.device) if job.ray is None else job.device
    with contextlib.ExitStack() as stack:
        if job.ray is None:
            job, label_batches = _in_this_process(job, device, prior, console)
            failed = _label_unfinished(job, label_batches, console)
        else:
            pool, workers, job = _on_ray(job, stack)
            failed = _label_unfinished(job, pool.map, console)
            peaks = ", ".join(f"{b / 2**30:.2f}" for b in sorted(pool.peak_memory()))
            typer.echo(f"{workers}, peak memory per worker {peaks} GB")
    return failed


def _label_unfinished(job: FitJob, label_batches: Callable, console: Console) -> list[str]:
    """Have ``label_batches`` label the job's unfinished frames, batch by batch, with a
    progress bar, record each outcome and print the summary; returns the failed frames.

    ``label_batches(chunks)`` yields ``(chunk, outcomes)`` per batch of frame ids, the
    outcomes a list of :class:`FrameOutcome` or a :class:`BatchLost`."""
    removed = remove_stale_temporaries(job.out)
    if removed:
        console.print(f"removed {removed} temporary file(s) left by an interrupted run")
    sources = Sources(job)
    failures = Failures(job.out / FAILURES_FILE)
    unfinished = [f for f in job.images if not json_path(job.out, f).is_file()]
    todo = [f for f in unfinished if not (job.skip_failed and f in failures.frames)]
    evidence = (f"LiDAR from {job.lidar} ({job.lidar_origin})" if job.lidar is not None
                else f"depth maps from {job.depth}" if job.depth is not None
                else f"no LiDAR ({job.lidar_origin}) or depth: labels come from the 2D boxes "
                     "alone (weak)")
    console.print(evidence, soft_wrap=True, markup=False, highlight=False)
    used: dict[str, list[str]] = {}
    counts = {f: sources.count(f) for f in todo}
    with Progress(console=console) as progress:
        task = progress.add_task(f"labeling ({job.method})", total=len(todo))
        for chunk, outcomes in label_batches(batches(todo, counts, job.batch,
                                                     job.batch_objects)):
            if isinstance(outcomes, BatchLost):
                outcomes = recovered(chunk, outcomes, job.out)
            for outcome in outcomes:
                _record(outcome, failures, used, console)
            progress.advance(task, len(chunk))
    failed = [f for f in todo if f in failures.frames]
    skipped = len(unfinished) - len(todo)
    typer.echo(f"labeled {len(todo) - len(failed)} frames ({len(job.images) - len(unfinished)} "
               f"already done, {len(failed)} failed"
               + (f", {skipped} skipped as failed before" if skipped else "")
               + f") into {job.out}")
    if used:
        typer.echo(f"evidence: {_evidence_summary(used)}")
    if failed:
        typer.echo(f"failed frames: {', '.join(failed)} (listed in {failures.path})")
    return failed
