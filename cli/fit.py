"""`autolabel fit`: 3D labels for every frame of a folder of images with 2D detections.

Output layout under ``--out``::

    label_2/<frame>.txt   KITTI labels, the score in the 16th column
    json/<frame>.json     the full labels (autolabel.io.labels.write_frame_json) with, per
                          object, the method, acceptance, reasons, latent, loss terms, source
    viz/<frame>.png       with --viz: fitted boxes on the image and a bird's-eye view
    meshes/<frame>_<i>.ply  with --save-meshes: each fitted shape in the camera frame

Every file is written atomically, the JSON last: a frame whose JSON exists is finished and is
skipped when the command runs again (resume after an interruption). A frame that cannot be
read or fitted is reported on one line and recorded in ``failures.json`` (frame id -> reason);
the others are labelled and the exit code is 1. A re-run retries the recorded frames, or skips
them with ``--skip-failed``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import typer
from rich.console import Console
from rich.progress import Progress

from autolabel.classes import CLASS_MEAN_SIZE
from autolabel.errors import InputError
from autolabel.fit import FitConfig
from autolabel.init import InitConfig, frame_hypotheses, hypothesis_labels
from autolabel.io.atomic import write_bytes_atomic, write_text_atomic
from autolabel.io.class_sizes import read_class_sizes
from autolabel.io.depth import read_depth
from autolabel.io.detections import Detection, read_detections
from autolabel.io.kitti import IMAGE_SUFFIXES, read_calib, read_image, write_labels
from autolabel.io.labels import write_frame_json
from autolabel.io.pointcloud import POINT_CLOUD_SUFFIXES, read_points
from autolabel.pipeline import (
    FrameInput,
    FrameResult,
    PipelineConfig,
    label_frames,
    label_mesh,
    render_labels,
)
from autolabel.prior import load_prior
from autolabel.viz import (
    ACCEPTED_COLOUR,
    REJECTED_COLOUR,
    fit_overview,
    paint_silhouettes,
    save_png,
)
from cli.common import user_errors

METHODS = ("render", "lshape")


def _folder(path: Path, option: str) -> Path:
    if not path.is_dir():
        raise InputError(path, f"no such folder (given as {option})")
    return path


def _images(folder: Path) -> dict[str, Path]:
    """Frame id -> image file of an image folder."""
    images = {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    if not images:
        raise InputError(folder, f"no images ({', '.join(IMAGE_SUFFIXES)}) in this folder "
                         "(given as --images)")
    return images


def _check_detections(path: Path, detections: dict[str, list[Detection]],
                      images: dict[str, Path], init: InitConfig) -> None:
    """Every detection names a known image and a class with size statistics."""
    names = {image.name for image in images.values()}
    for name, items in detections.items():
        if name not in names:
            raise InputError(path, "no such image in the --images folder", name)
        for index, detection in enumerate(items):
            try:
                init.mean_size(detection.category)
            except ValueError as error:
                raise InputError(path, str(error), f"{name}[{index}]", "category") from None


def _scan(folder: Path | None, frame_id: str) -> Path | None:
    """The frame's point cloud file in ``folder``, or None."""
    if folder is None:
        return None
    for suffix in POINT_CLOUD_SUFFIXES:
        path = folder / f"{frame_id}{suffix}"
        if path.is_file():
            return path
    return None


@dataclasses.dataclass(frozen=True)
class Sources:
    """Where each frame's inputs live; :meth:`load` reads one frame."""

    images: dict[str, Path]
    calib: Path
    lidar: Path | None
    depth: Path | None
    detections: dict[str, list[Detection]]
    min_score: float = 0.0
    max_detections: int | None = None

    def frame_detections(self, image_name: str) -> list[Detection]:
        """The frame's detections scoring at least ``min_score``, at most ``max_detections``
        of them (the highest scores; ties keep the file's order), in the file's order."""
        kept = [(index, d) for index, d in enumerate(self.detections.get(image_name, []))
                if d.score >= self.min_score]
        if self.max_detections is not None and len(kept) > self.max_detections:
            best = sorted(kept, key=lambda item: (-item[1].score, item[0]))
            kept = sorted(best[:self.max_detections], key=lambda item: item[0])
        return [d for _, d in kept]

    def load(self, frame_id: str) -> FrameInput:
        """The frame's inputs (raises InputError naming the file when one is corrupt)."""
        calib = read_calib(self.calib / f"{frame_id}.txt")
        scan = _scan(self.lidar, frame_id)
        points = (None if scan is None
                  else calib.velo_to_rect(read_points(scan).astype(np.float64)))
        depth_map = None
        if self.depth is not None:
            found = [self.depth / f"{frame_id}{suffix}" for suffix in (".png", ".npy")]
            found = [path for path in found if path.is_file()]
            if found:
                depth_map = read_depth(found[0])
        image = self.images[frame_id]
        return FrameInput(frame_id, read_image(image).shape[:2], calib,
                          self.frame_detections(image.name), points, depth_map)


@dataclasses.dataclass
class FrameWriter:
    """Writes a frame's outputs atomically: label_2, then viz and meshes, the JSON last."""

    out: Path
    method: str
    viz: bool
    save_meshes: bool
    prior: object | None
    images: dict[str, Path]

    def write(self, frame: FrameInput, result: FrameResult) -> None:
        labels = [r.label for r in result.labels]
        extras = [{"method": self.method, **r.extras()} for r in result.labels]
        self._finish(frame, labels, [r.accepted for r in result.labels], extras,
                     [r.latent for r in result.labels], result.extras())

    def write_lshape(self, frame: FrameInput, config: PipelineConfig) -> None:
        start = time.perf_counter()
        hypotheses, plane = frame_hypotheses(frame.points, frame.calib, frame.detections,
                                         frame.image_size, config.init, depth=frame.depth)
        labels = hypothesis_labels(hypotheses, frame.detections, frame.calib.P2,
                                   frame.image_size)
        extras = [{"method": self.method, "source": h.source, "weak": h.weak,
                   "accepted": True, "points": len(h.points)} for h in hypotheses]
        self._finish(frame, labels, [True] * len(labels), extras, None,
                     FrameResult(frame.frame_id, [], plane, time.perf_counter() - start).extras())

    def _finish(self, frame, labels, accepted, extras, latents, frame_extras) -> None:
        for entry, detection in zip(extras, frame.detections, strict=True):
            entry["detection_box2d"] = [round(float(v), 2) for v in detection.box2d]
        write_labels(self.out / "label_2" / f"{frame.frame_id}.txt", labels)
        if self.viz:
            image = self._image(frame)
            if latents is not None and labels:
                rendered = render_labels(self.prior, np.stack(latents), labels, frame.calib.P2)
                colours = [ACCEPTED_COLOUR if ok else REJECTED_COLOUR for ok in accepted]
                image = paint_silhouettes(image, rendered.silhouette.cpu().numpy(),
                                          rendered.window.cpu().numpy(), colours)
            picture = fit_overview(image, labels, accepted, frame.calib.P2, frame.points)
            save_png(self.out / "viz" / f"{frame.frame_id}.png", picture)
        if self.save_meshes and latents is not None:
            for index, (label, latent) in enumerate(zip(labels, latents, strict=True)):
                mesh = label_mesh(self.prior, latent, label)
                write_bytes_atomic(self.out / "meshes" / f"{frame.frame_id}_{index}.ply",
                                   mesh.export(file_type="ply"))
        write_frame_json(self.out / "json" / f"{frame.frame_id}.json", frame.frame_id, labels,
                         extras, {"method": self.method, **frame_extras})

    def _image(self, frame: FrameInput) -> np.ndarray:
        return read_image(self.images[frame.frame_id])


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


def fit_command(
    images: Path = typer.Option(..., "--images", help="Folder of the frames' images (KITTI "
                                "image_2); a frame is an image, its id the file stem."),
    detections_path: Path = typer.Option(..., "--detections", help="Detections JSON (COCO "
                                         "results or per-image layout, see docs/formats.md)."),
    lidar: Path | None = typer.Option(None, "--lidar", help="Folder of point clouds "
                                      "<frame>.bin/.pcd/.ply in the LiDAR frame (default: "
                                      "IMAGES/../velodyne when it exists)."),
    depth: Path | None = typer.Option(None, "--depth", help="Folder of depth maps "
                                      "<frame>.png (KITTI 16-bit, value/256 = metres) or .npy "
                                      "(metres), used when there is no LiDAR."),
    calib: Path | None = typer.Option(None, "--calib", help="Folder of KITTI calib "
                                      "<frame>.txt files (default: IMAGES/../calib)."),
    out: Path = typer.Option(..., "--out", help="Output folder: label_2/ and json/ per frame; "
                             "frames already there are skipped."),
    method: str = typer.Option("render", "--method", help="render: render-and-compare with the "
                               "shape prior; lshape: the classical LiDAR baseline."),
    prior_path: Path | None = typer.Option(None, "--prior", help="Shape prior file (default: "
                                           "the shipped car prior)."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present), cpu or "
                               "cuda."),
    batch: int = typer.Option(4, "--batch", min=1, help="Frames whose objects are fitted "
                              "together in one batch."),
    iterations: int = typer.Option(FitConfig().iterations, "--iterations", min=1,
                                   help="Optimiser steps per batch."),
    viz: bool = typer.Option(False, "--viz", help="Also write OUT/viz/<frame>.png: fitted "
                             "boxes on the image and a bird's-eye view with the points."),
    save_meshes: bool = typer.Option(False, "--save-meshes", help="Also write each fitted "
                                     "shape as OUT/meshes/<frame>_<index>.ply (camera frame)."),
    min_score: float = typer.Option(0.3, "--min-score", min=0.0, max=1.0, help="Detections "
                                    "scoring less are not labelled."),
    max_detections: int = typer.Option(50, "--max-detections", min=1, help="At most this many "
                                       "detections a frame are labelled, the highest scores "
                                       "first: bounds time and memory on a detector's raw "
                                       "output (often ~100 boxes an image)."),
    skip_failed: bool = typer.Option(False, "--skip-failed", help="Do not retry the frames that "
                                     f"{FAILURES_FILE} in --out lists as failed by an earlier "
                                     "run."),
    class_sizes_path: Path | None = typer.Option(None, "--class-sizes", help="JSON of class -> "
                                                 "mean [length, width, height] in metres of "
                                                 "this data set; overrides KITTI's means for "
                                                 "the classes it names."),
) -> None:
    """Label every frame: one 3D box per 2D detection, written as KITTI label_2 and JSON."""
    with user_errors():
        if method not in METHODS:
            raise InputError(None, f"--method {method!r} is not one of {', '.join(METHODS)}")
        if lidar is not None and depth is not None:
            raise InputError(None, "give --lidar or --depth, not both")
        frames = _images(_folder(images, "--images"))
        calib_folder = _folder(calib if calib is not None else images.parent / "calib",
                               "--calib")
        if lidar is not None:
            _folder(lidar, "--lidar")
        elif depth is not None:
            _folder(depth, "--depth")
        elif (images.parent / "velodyne").is_dir():
            lidar = images.parent / "velodyne"
        sizes = dict(CLASS_MEAN_SIZE)
        if class_sizes_path is not None:
            sizes.update(read_class_sizes(class_sizes_path))
        init = InitConfig(class_sizes=tuple(sizes.items()))
        detections = read_detections(detections_path)
        _check_detections(detections_path, detections, frames, init)
        for frame_id in frames:
            if not (calib_folder / f"{frame_id}.txt").is_file():
                raise InputError(calib_folder / f"{frame_id}.txt", "no such file (the "
                                 f"calibration of image {frames[frame_id].name})")
        prior = load_prior(prior_path) if method == "render" else None
    sources = Sources(frames, calib_folder, lidar, depth, detections, min_score,
                      max_detections)
    config = PipelineConfig(fit=dataclasses.replace(FitConfig(), iterations=iterations),
                            init=init, device=device)
    failures = Failures(out / FAILURES_FILE)
    unfinished = [f for f in frames if not (out / "json" / f"{f}.json").is_file()]
    todo = [f for f in unfinished if not (skip_failed and f in failures.frames)]
    console = Console(stderr=True)
    if lidar is None and depth is None:
        console.print("no LiDAR or depth folder: labels come from the 2D boxes alone (weak)")
    writer = FrameWriter(out, method, viz, save_meshes, prior, frames)

    def report(frame_id: str, reason: str) -> None:
        console.print(f"failed frame {frame_id}: {reason}", soft_wrap=True, markup=False,
                      highlight=False)
        failures.add(frame_id, reason)

    with Progress(console=console) as progress:
        task = progress.add_task(f"labeling ({method})", total=len(todo))
        for start in range(0, len(todo), batch):
            chunk = todo[start:start + batch]
            loaded = []
            for frame_id in chunk:
                try:
                    loaded.append(sources.load(frame_id))
                except (InputError, FileNotFoundError) as error:
                    report(frame_id, str(error))
            for frame, outcome in _label_isolated(loaded, method, prior, config):
                try:
                    if isinstance(outcome, Exception):
                        raise outcome
                    if method == "render":
                        writer.write(frame, outcome)
                    else:
                        writer.write_lshape(frame, config)
                except Exception as error:  # noqa: BLE001 - report it, go on with the rest
                    report(frame.frame_id, f"{type(error).__name__}: {error}")
                    continue
                failures.remove(frame.frame_id)
            progress.advance(task, len(chunk))
    failed = [f for f in todo if f in failures.frames]
    skipped = len(unfinished) - len(todo)
    typer.echo(f"labeled {len(todo) - len(failed)} frames ({len(frames) - len(unfinished)} "
               f"already done, {len(failed)} failed"
               + (f", {skipped} skipped as failed before" if skipped else "") + f") into {out}")
    if failed:
        typer.echo(f"failed frames: {', '.join(failed)} (listed in {failures.path})")
        raise typer.Exit(1)
