"""`autolabel fit`: 3D labels for every frame of a folder of images with 2D detections.

Output layout under ``--out``::

    label_2/<frame>.txt   KITTI labels, the score in the 16th column
    json/<frame>.json     the full labels (autolabel.io.labels.write_frame_json) with, per
                          object, the method, the hypothesis source and whether it is weak

Both files are written atomically, the JSON last: a frame whose JSON exists is finished and
is skipped when the command runs again (resume after an interruption).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import typer
from rich.console import Console
from rich.progress import track

from autolabel.errors import InputError
from autolabel.init import frame_hypotheses, mean_size
from autolabel.io.detections import Detection, read_detections
from autolabel.io.kitti import IMAGE_SUFFIXES, read_calib, read_image, write_labels
from autolabel.io.labels import write_frame_json
from autolabel.io.pointcloud import POINT_CLOUD_SUFFIXES, read_points
from cli.common import user_errors

METHODS = ("lshape",)


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
                      images: dict[str, Path]) -> None:
    """Every detection names a known image and a class with size statistics."""
    names = {image.name for image in images.values()}
    for name, items in detections.items():
        if name not in names:
            raise InputError(path, "no such image in the --images folder", name)
        for index, detection in enumerate(items):
            try:
                mean_size(detection.category)
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


def fit_command(
    images: Path = typer.Option(..., "--images", help="Folder of the frames' images (KITTI "
                                "image_2); a frame is an image, its id the file stem."),
    detections_path: Path = typer.Option(..., "--detections", help="Detections JSON (COCO "
                                         "results or per-image layout, see docs/formats.md)."),
    lidar: Path | None = typer.Option(None, "--lidar", help="Folder of point clouds "
                                      "<frame>.bin/.pcd/.ply in the LiDAR frame (default: "
                                      "IMAGES/../velodyne when it exists; without LiDAR the "
                                      "labels come from the 2D boxes alone and are weak)."),
    calib: Path | None = typer.Option(None, "--calib", help="Folder of KITTI calib "
                                      "<frame>.txt files (default: IMAGES/../calib)."),
    out: Path = typer.Option(..., "--out", help="Output folder: label_2/ and json/ per frame; "
                             "frames already there are skipped."),
    method: str = typer.Option("lshape", "--method", help="Labeling method: lshape (the "
                               "classical LiDAR baseline)."),
) -> None:
    """Label every frame: one 3D box per 2D detection, written as KITTI label_2 and JSON."""
    if method not in METHODS:
        raise NotImplementedError(f"--method {method!r}: only 'lshape' exists so far; the "
                                  "render-and-compare fitter is issue 6")
    with user_errors():
        frames = _images(_folder(images, "--images"))
        calib_folder = _folder(calib if calib is not None else images.parent / "calib",
                               "--calib")
        if lidar is not None:
            _folder(lidar, "--lidar")
        elif (images.parent / "velodyne").is_dir():
            lidar = images.parent / "velodyne"
        detections = read_detections(detections_path)
        _check_detections(detections_path, detections, frames)
        for frame_id in frames:
            if not (calib_folder / f"{frame_id}.txt").is_file():
                raise InputError(calib_folder / f"{frame_id}.txt", "no such file (the "
                                 f"calibration of image {frames[frame_id].name})")
        todo = [f for f in frames if not (out / "json" / f"{f}.json").is_file()]
        console = Console(stderr=True)
        if lidar is None:
            console.print("no LiDAR folder: labels come from the 2D boxes alone (weak)")
        for frame_id in track(todo, description=f"labeling ({method})", console=console):
            _label_frame(frame_id, frames[frame_id], calib_folder, lidar,
                         detections.get(frames[frame_id].name, []), out, method)
    typer.echo(f"labeled {len(todo)} frames ({len(frames) - len(todo)} already done) "
               f"into {out}")


def _label_frame(frame_id: str, image: Path, calib_folder: Path, lidar: Path | None,
                 detections: list[Detection], out: Path, method: str) -> None:
    start = time.perf_counter()
    calib = read_calib(calib_folder / f"{frame_id}.txt")
    scan = _scan(lidar, frame_id)
    points = None if scan is None else calib.velo_to_rect(read_points(scan).astype(np.float64))
    image_size = read_image(image).shape[:2]
    hypotheses, plane = frame_hypotheses(points, calib, detections, image_size)
    labels = [h.to_label(d.category, d.box2d, d.score)
              for h, d in zip(hypotheses, detections, strict=True)]
    extras = [{"method": method, "source": h.source, "weak": h.weak, "points": len(h.points)}
              for h in hypotheses]
    frame_extras = {
        "method": method,
        "lidar": None if scan is None else str(scan),
        "ground_plane": None if plane is None else {"normal": plane.normal,
                                                     "offset": plane.offset},
        "seconds": round(time.perf_counter() - start, 4),
    }
    write_labels(out / "label_2" / f"{frame_id}.txt", labels)
    write_frame_json(out / "json" / f"{frame_id}.json", frame_id, labels, extras, frame_extras)
