"""One batch of `autolabel fit`'s frames end to end: read each frame and build its hypotheses
(:func:`prepare`), fit the batch together, write each frame atomically, and say what became
of each (:class:`FrameOutcome`).

:class:`BatchLabeler` is the unit of work of the single-process run and of each Ray actor
(:mod:`cli.fit_run` drives either); when the frames are prepared by worker processes
(:mod:`cli.fit_stream`) it fits and writes what they prepared. It never writes
``failures.json``, the driver does.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from autolabel.errors import InputError
from autolabel.fit import FitConfig
from autolabel.image.evidence import ImageEvidenceConfig
from autolabel.init import InitConfig, frame_hypotheses, hypothesis_labels
from autolabel.io.atomic import write_bytes_atomic
from autolabel.io.depth import DEPTH_SUFFIXES, read_depth
from autolabel.io.detections import Detection
from autolabel.io.files import POINT_CLOUD_SUFFIXES, frame_file
from autolabel.io.kitti import read_calib, read_image, write_labels
from autolabel.io.labels import read_frame_json, write_frame_json
from autolabel.io.pointcloud import read_points
from autolabel.pipeline import (
    FrameInput,
    FrameResult,
    PipelineConfig,
    PreparedFrame,
    fit_frames,
    label_mesh,
    prepare_frame,
    render_labels,
)
from autolabel.prior import load_prior
from autolabel.screening import detection_problem
from autolabel.verify import VerifyConfig
from autolabel.viz import (
    ACCEPTED_COLOUR,
    REJECTED_COLOUR,
    fit_overview,
    paint_silhouettes,
    save_png,
)
from cli.common import load_torch, set_threads
from cli.fit import FitJob


@dataclasses.dataclass
class LoadedFrame:
    """A frame's inputs with what the writer reports about them.

    Attributes:
        frame: the inputs. evidence: 'lidar', 'depth' or 'box' (boxes only).
        warning: why the frame has less evidence than asked for, or None.
        left_out: the detections not labelled, as JSON-ready records with a reason.
        prepared: the frame with its hypotheses (render method), once :func:`prepare` made
            them. failure: why they could not be made (one line), or None.
    """

    frame: FrameInput
    evidence: str
    warning: str | None
    left_out: list[dict]
    prepared: PreparedFrame | None = None
    failure: str | None = None

    @property
    def frame_id(self) -> str:
        """The frame's id."""
        return self.frame.frame_id


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
        pixels = read_image(image)
        image_size = pixels.shape[:2]
        calib = read_calib(job.calib / f"{frame_id}.txt")
        points, depth_map, warning = None, None, None
        if job.lidar is not None:
            scan = frame_file(job.lidar, frame_id, POINT_CLOUD_SUFFIXES)
            if scan is not None:
                points = calib.velo_to_rect(read_points(scan).astype(np.float64))
            if points is not None and len(points) == 0:
                warning = self._missing(scan, "the point cloud has no points")
                points = None
            elif scan is None:
                warning = self._missing(job.lidar, f"no point cloud {frame_id}"
                                        f"{'/'.join(POINT_CLOUD_SUFFIXES)}")
        if job.depth is not None:
            found = frame_file(job.depth, frame_id, DEPTH_SUFFIXES)
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
                                      depth_map, pixels), evidence, warning, left_out)

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
        write_frame_json(json_path(out, frame.frame_id), frame.frame_id, labels,
                         extras, {"method": self.job.method, "evidence": loaded.evidence,
                                  "left_out": loaded.left_out, **frame_extras})


def _failure(error: Exception) -> str:
    """An unexpected error as the one line recorded for its frame."""
    return f"{type(error).__name__}: {error}"


def _label_isolated(items: list[LoadedFrame], method: str, prior, config: PipelineConfig):
    """Yield (item, outcome) for every prepared frame, in order: its :class:`FrameResult`
    (render), None (lshape, labelled by the writer) or why it could not be labelled (one
    line). The frames whose hypotheses were made are fitted together; when that fails, one
    at a time, so one bad frame never stops the others."""
    if method != "render":
        for item in items:
            yield item, None
        return
    ready = [item for item in items if item.failure is None]
    try:
        fitted = fit_frames([item.prepared for item in ready], prior, config)
    except Exception as error:  # noqa: BLE001 - one frame's failure must not stop the run
        fitted = ([_failure(error)] if len(ready) == 1
                  else [_fitted_alone(item, prior, config) for item in ready])
    outcomes = dict(zip(map(id, ready), fitted, strict=True))
    for item in items:
        yield item, item.failure if item.failure is not None else outcomes[id(item)]


def _fitted_alone(item: LoadedFrame, prior, config: PipelineConfig):
    """The frame's :class:`FrameResult` fitted on its own, or why it failed (one line)."""
    try:
        return fit_frames([item.prepared], prior, config)[0]
    except Exception as error:  # noqa: BLE001
        return _failure(error)


@dataclasses.dataclass(frozen=True)
class FrameOutcome:
    """What became of one frame of a batch.

    Attributes:
        frame_id: the frame. evidence: what its labels used ('lidar', 'depth', 'box'), None
            when it failed. warning: why it has less evidence than asked for, or None.
        failure: why it could not be labelled (one line, naming the file), or None.
    """

    frame_id: str
    evidence: str | None = None
    warning: str | None = None
    failure: str | None = None


def json_path(out: Path, frame_id: str) -> Path:
    """The frame's JSON, written last: the frame is finished when it exists."""
    return out / "json" / f"{frame_id}.json"


def finished(out: Path, frame_id: str) -> FrameOutcome | None:
    """The outcome of a frame finished earlier (its JSON exists), or None."""
    path = json_path(out, frame_id)
    if not path.is_file():
        return None
    return FrameOutcome(frame_id, read_frame_json(path).frame_extras.get("evidence"))


def prepare(sources: Sources, config: PipelineConfig, frame_id: str
            ) -> LoadedFrame | FrameOutcome:
    """Read the frame and, for the render method, build its hypotheses: the CPU side of
    labelling it; the loaded frame keeps no pixels. A frame that cannot be read is a failed
    :class:`FrameOutcome`."""
    try:
        loaded = sources.load(frame_id)
    except (InputError, FileNotFoundError) as error:
        return FrameOutcome(frame_id, failure=str(error))
    if sources.job.method == "render":
        try:
            loaded.prepared = prepare_frame(loaded.frame, config)
        except Exception as error:  # noqa: BLE001 - recorded, and the batch fitted without it
            loaded.failure = _failure(error)
    # the image model has read the pixels: they need not travel back from a worker process
    loaded.frame = dataclasses.replace(loaded.frame, image=None)
    return loaded


def pipeline_config(job: FitJob, device: str) -> PipelineConfig:
    """The fitter's settings for the job on ``device``."""
    image = (ImageEvidenceConfig.off() if job.image_model == "none"
             else ImageEvidenceConfig(model=job.image_model,
                                      viewpoint_weight=job.viewpoint_weight,
                                      nocs=job.nocs_weight > 0))
    fit = FitConfig()
    return PipelineConfig(
        fit=dataclasses.replace(fit, iterations=job.iterations, compile=job.compile,
                                box_extent=job.box_extent,
                                weights=dataclasses.replace(fit.weights, nocs=job.nocs_weight)),
        init=InitConfig(class_sizes=tuple(job.class_sizes.items()),
                        camera_height=job.camera_height),
        verify=VerifyConfig(accept_weak=job.accept_weak), device=device,
        max_fit_objects=job.batch_objects * PipelineConfig().yaw_hypotheses, image=image)


class BatchLabeler:
    """Labels batches of the job's frames: ``labeler(frame_ids)`` reads them, fits them
    together (one at a time after a failure), writes each finished frame and returns one
    :class:`FrameOutcome` per frame, in order. A frame finished already is not redone."""

    def __init__(self, job: FitJob, config: PipelineConfig, prior):
        self.job = job
        self.config = config
        self.prior = prior
        self.sources = Sources(job)
        self.writer = FrameWriter(job, prior)

    @classmethod
    def in_new_process(cls, job: FitJob, device: str, threads: int) -> BatchLabeler:
        """A labeler for a fresh process (a Ray actor): torch on ``threads`` threads (0:
        torch's default), the job's prior loaded."""
        set_threads(threads)
        load_torch()
        prior = load_prior(job.prior) if job.method == "render" else None
        return cls(job, pipeline_config(job, device), prior)

    def __call__(self, frame_ids: list[str]) -> list[FrameOutcome]:
        return self.label_prepared([finished(self.job.out, frame_id)
                                    or prepare(self.sources, self.config, frame_id)
                                    for frame_id in frame_ids])

    def label_prepared(self, items: list[LoadedFrame | FrameOutcome]) -> list[FrameOutcome]:
        """Fit the prepared frames among ``items`` together, write each, and return one
        outcome per item, in order (an item that is an outcome already stays as it is)."""
        outcomes = {item.frame_id: item for item in items if isinstance(item, FrameOutcome)}
        loaded = [item for item in items if isinstance(item, LoadedFrame)]
        for item, result in _label_isolated(loaded, self.job.method, self.prior, self.config):
            outcomes[item.frame_id] = self._write(item, result)
        return [outcomes[item.frame_id] for item in items]

    def _write(self, item: LoadedFrame, result: FrameResult | str | None) -> FrameOutcome:
        """Write the frame's labels (``result``: see :func:`_label_isolated`)."""
        if isinstance(result, str):
            return FrameOutcome(item.frame_id, warning=item.warning, failure=result)
        try:
            if self.job.method == "render":
                self.writer.write(item, result)
            else:
                self.writer.write_lshape(item, self.config)
        except Exception as error:  # noqa: BLE001 - report it, go on with the rest
            return FrameOutcome(item.frame_id, warning=item.warning, failure=_failure(error))
        return FrameOutcome(item.frame_id, item.evidence, item.warning)
