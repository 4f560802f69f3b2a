"""The work of `autolabel fit` once its arguments are checked (:class:`cli.fit.FitJob`): read
each frame, label it, write it atomically, record the frames that fail and go on."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import typer
from rich.console import Console
from rich.progress import Progress

from autolabel.errors import InputError
from autolabel.fit import FitConfig
from autolabel.init import InitConfig, frame_hypotheses, hypothesis_labels
from autolabel.io.atomic import remove_stale_temporaries, write_bytes_atomic, write_text_atomic
from autolabel.io.depth import DEPTH_SUFFIXES, read_depth
from autolabel.io.detections import Detection
from autolabel.io.files import POINT_CLOUD_SUFFIXES
from autolabel.io.kitti import read_calib, read_image, write_labels
from autolabel.io.labels import write_frame_json
from autolabel.io.pointcloud import read_points
from autolabel.pipeline import (
    FrameInput,
    FrameResult,
    PipelineConfig,
    label_frames,
    label_mesh,
    render_labels,
)
from autolabel.prior import load_prior
from autolabel.screening import detection_problem
from autolabel.viz import (
    ACCEPTED_COLOUR,
    REJECTED_COLOUR,
    fit_overview,
    paint_silhouettes,
    save_png,
)
from cli.common import load_torch, user_errors
from cli.fit import FitJob

FAILURES_FILE = "failures.json"


def _evidence_file(folder: Path | None, frame_id: str, suffixes: tuple[str, ...]
                   ) -> Path | None:
    """The frame's file in an evidence folder, or None."""
    if folder is None:
        return None
    for suffix in suffixes:
        path = folder / f"{frame_id}{suffix}"
        if path.is_file():
            return path
    return None


@dataclasses.dataclass
class LoadedFrame:
    """A frame's inputs with what the writer reports about them.

    Attributes:
        frame: the inputs. evidence: 'lidar', 'depth' or 'box' (boxes only).
        warning: why the frame has less evidence than asked for, or None.
        left_out: the detections not labelled, as JSON-ready records with a reason.
    """

    frame: FrameInput
    evidence: str
    warning: str | None
    left_out: list[dict]


@dataclasses.dataclass(frozen=True)
class Sources:
    """Where each frame's inputs live; :meth:`load` reads one frame."""

    job: FitJob

    def select(self, image_name: str, image_size: tuple[int, int] | None = None
               ) -> tuple[list[Detection], list[dict]]:
        """The frame's detections to label, in the file's order, and a record of each one
        left out with the reason: those scoring under ``min_score``, then (given the image
        size) those too small or outside the image, then all but the ``max_detections``
        highest scores (ties keep the file's order)."""
        job = self.job
        given = list(enumerate(job.detections.get(image_name, [])))
        reasons = {i: f"score {d.score:g} below --min-score {job.min_score:g}"
                   for i, d in given if d.score < job.min_score}
        if image_size is not None:
            for i, d in given:
                problem = detection_problem(d.box2d, image_size, job.min_box_side)
                if i not in reasons and problem is not None:
                    reasons[i] = problem
        ranked = sorted(((i, d) for i, d in given if i not in reasons),
                        key=lambda item: (-item[1].score, item[0]))
        reasons.update({i: f"over --max-detections {job.max_detections}"
                        for i, _ in ranked[job.max_detections:]})
        records = [{"index": i, "category": d.category, "score": d.score,
                    "box2d": [round(float(v), 2) for v in d.box2d], "reason": reasons[i]}
                   for i, d in given if i in reasons]
        return [d for i, d in given if i not in reasons], records

    def count(self, frame_id: str) -> int:
        """At most how many detections of the frame will be labelled."""
        return len(self.select(self.job.images[frame_id].name)[0])

    def load(self, frame_id: str) -> LoadedFrame:
        """The frame's inputs (raises InputError naming the file when one is corrupt, or when
        the evidence folder has no usable file for it and that is not allowed)."""
        job = self.job
        image = job.images[frame_id]
        image_size = read_image(image).shape[:2]
        calib = read_calib(job.calib / f"{frame_id}.txt")
        points, depth_map, warning = None, None, None
        if job.lidar is not None:
            scan = _evidence_file(job.lidar, frame_id, POINT_CLOUD_SUFFIXES)
            if scan is not None:
                points = calib.velo_to_rect(read_points(scan).astype(np.float64))
            if points is not None and len(points) == 0:
                warning = self._missing(scan, "the point cloud has no points")
                points = None
            elif scan is None:
                warning = self._missing(job.lidar, f"no point cloud {frame_id}"
                                        f"{'/'.join(POINT_CLOUD_SUFFIXES)}")
        if job.depth is not None:
            found = _evidence_file(job.depth, frame_id, DEPTH_SUFFIXES)
            if found is None:
                warning = self._missing(job.depth, f"no depth map {frame_id}"
                                        f"{'/'.join(DEPTH_SUFFIXES)}")
            else:
                depth_map = read_depth(found)
                if depth_map.shape != image_size:
                    raise InputError(found, f"depth map is {depth_map.shape[1]} x "
                                     f"{depth_map.shape[0]} px, the image {image.name} "
                                     f"{image_size[1]} x {image_size[0]}", field="size")
        detections, left_out = self.select(image.name, image_size)
        evidence = "lidar" if points is not None else "depth" if depth_map is not None else "box"
        return LoadedFrame(FrameInput(frame_id, image_size, calib, detections, points,
                                      depth_map), evidence, warning, left_out)

    def _missing(self, path: Path, message: str) -> str:
        """The warning for missing evidence, or InputError when that is not allowed."""
        if not self.job.allow_missing_evidence:
            raise InputError(path, f"{message} (--allow-missing-evidence labels such frames "
                             "from their boxes alone)")
        return f"{path}: {message}; labelled from its boxes alone"


@dataclasses.dataclass
class FrameWriter:
    """Writes a frame's outputs atomically: label_2, then viz and meshes, the JSON last."""

    job: FitJob
    prior: object | None

    def write(self, loaded: LoadedFrame, result: FrameResult) -> None:
        labels = [r.label for r in result.labels]
        extras = [{"method": self.job.method, **r.extras()} for r in result.labels]
        self._finish(loaded, labels, [r.accepted for r in result.labels], extras,
                     [r.latent for r in result.labels], result.extras())

    def write_lshape(self, loaded: LoadedFrame, config: PipelineConfig) -> None:
        frame = loaded.frame
        start = time.perf_counter()
        hypotheses, plane = frame_hypotheses(frame.points, frame.calib, frame.detections,
                                             frame.image_size, config.init, depth=frame.depth)
        labels = hypothesis_labels(hypotheses, frame.detections, frame.calib.P2,
                                   frame.image_size)
        extras = [{"method": self.job.method, "source": h.source, "weak": h.weak,
                   "accepted": True, "points": len(h.points)} for h in hypotheses]
        self._finish(loaded, labels, [True] * len(labels), extras, None,
                     FrameResult(frame.frame_id, [], plane, time.perf_counter() - start).extras())

    def _finish(self, loaded, labels, accepted, extras, latents, frame_extras) -> None:
        frame, out = loaded.frame, self.job.out
        for entry, detection in zip(extras, frame.detections, strict=True):
            entry["detection_box2d"] = [round(float(v), 2) for v in detection.box2d]
        write_labels(out / "label_2" / f"{frame.frame_id}.txt", labels)
        if self.job.viz:
            image = read_image(self.job.images[frame.frame_id])
            if latents is not None and labels:
                rendered = render_labels(self.prior, np.stack(latents), labels, frame.calib.P2)
                colours = [ACCEPTED_COLOUR if ok else REJECTED_COLOUR for ok in accepted]
                image = paint_silhouettes(image, rendered.silhouette.cpu().numpy(),
                                          rendered.window.cpu().numpy(), colours)
            picture = fit_overview(image, labels, accepted, frame.calib.P2, frame.points)
            save_png(out / "viz" / f"{frame.frame_id}.png", picture)
        if self.job.save_meshes and latents is not None:
            for index, (label, latent) in enumerate(zip(labels, latents, strict=True)):
                mesh = label_mesh(self.prior, latent, label)
                write_bytes_atomic(out / "meshes" / f"{frame.frame_id}_{index}.ply",
                                   mesh.export(file_type="ply"))
        write_frame_json(out / "json" / f"{frame.frame_id}.json", frame.frame_id, labels,
                         extras, {"method": self.job.method, "evidence": loaded.evidence,
                                  "left_out": loaded.left_out, **frame_extras})


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


def _label_isolated(frames: list[FrameInput], method: str, prior, config: PipelineConfig):
    """Yield (frame, outcome) for every frame: its :class:`FrameResult` (render), None
    (lshape, labelled by the writer) or the exception that stopped it. A batch that fails is
    retried one frame at a time, so one bad frame never stops the others."""
    if method != "render":
        for frame in frames:
            yield frame, None
        return
    try:
        yield from zip(frames, label_frames(frames, prior, config), strict=True)
        return
    except Exception as error:  # noqa: BLE001 - one frame's failure must not stop the run
        if len(frames) == 1:
            yield frames[0], error
            return
    for frame in frames:
        try:
            yield frame, label_frames([frame], prior, config)[0]
        except Exception as error:  # noqa: BLE001
            yield frame, error


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


def run(job: FitJob) -> list[str]:
    """Label every unfinished frame of the job; returns the frames that failed."""
    console = Console(stderr=True)
    with user_errors():
        device = _device(job.device)
        prior = load_prior(job.prior) if job.method == "render" else None
    removed = remove_stale_temporaries(job.out)
    if removed:
        console.print(f"removed {removed} temporary file(s) left by an interrupted run")
    yaw_hypotheses = PipelineConfig().yaw_hypotheses
    config = PipelineConfig(
        fit=dataclasses.replace(FitConfig(), iterations=job.iterations),
        init=InitConfig(class_sizes=tuple(job.class_sizes.items())), device=device,
        max_fit_objects=job.batch_objects * yaw_hypotheses)
    sources = Sources(job)
    failures = Failures(job.out / FAILURES_FILE)
    unfinished = [f for f in job.images if not (job.out / "json" / f"{f}.json").is_file()]
    todo = [f for f in unfinished if not (job.skip_failed and f in failures.frames)]
    evidence = (f"LiDAR from {job.lidar} ({job.lidar_origin})" if job.lidar is not None
                else f"depth maps from {job.depth}" if job.depth is not None
                else f"no LiDAR ({job.lidar_origin}) or depth: labels come from the 2D boxes "
                     "alone (weak)")
    console.print(evidence, soft_wrap=True, markup=False, highlight=False)
    writer = FrameWriter(job, prior)
    used: dict[str, list[str]] = {}

    def report(frame_id: str, reason: str) -> None:
        console.print(f"failed frame {frame_id}: {reason}", soft_wrap=True, markup=False,
                      highlight=False)
        failures.add(frame_id, reason)

    counts = {f: sources.count(f) for f in todo}
    with Progress(console=console) as progress:
        task = progress.add_task(f"labeling ({job.method})", total=len(todo))
        for chunk in batches(todo, counts, job.batch, job.batch_objects):
            loaded = {}
            for frame_id in chunk:
                try:
                    loaded[frame_id] = sources.load(frame_id)
                except (InputError, FileNotFoundError) as error:
                    report(frame_id, str(error))
                    continue
                if loaded[frame_id].warning:
                    console.print(f"warning: {loaded[frame_id].warning}", soft_wrap=True,
                                  markup=False, highlight=False)
            frames = [item.frame for item in loaded.values()]
            for frame, outcome in _label_isolated(frames, job.method, prior, config):
                try:
                    if isinstance(outcome, Exception):
                        raise outcome
                    if job.method == "render":
                        writer.write(loaded[frame.frame_id], outcome)
                    else:
                        writer.write_lshape(loaded[frame.frame_id], config)
                except Exception as error:  # noqa: BLE001 - report it, go on with the rest
                    report(frame.frame_id, f"{type(error).__name__}: {error}")
                    continue
                failures.remove(frame.frame_id)
                used.setdefault(loaded[frame.frame_id].evidence, []).append(frame.frame_id)
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
