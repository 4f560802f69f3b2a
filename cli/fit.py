"""`autolabel fit`: 3D labels for every frame of a folder of images with 2D detections.

Output layout under ``--out``::

    label_2/<frame>.txt   KITTI labels, the score in the 16th column
    json/<frame>.json     the full labels (autolabel.io.labels.write_frame_json) with, per
                          object, the method, acceptance, reasons, latent, loss terms, source;
                          per frame the evidence used and the detections left out and why
    viz/<frame>.png       with --viz: fitted boxes on the image and a bird's-eye view
    meshes/<frame>_<i>.ply  with --save-meshes: each fitted shape in the camera frame
    failures.json         frame id -> reason, for the frames that could not be labelled

Every file is written atomically, the JSON last: a frame whose JSON exists is finished and is
skipped when the command runs again (resume after an interruption). A frame that cannot be
read or fitted is reported on one line and recorded in ``failures.json``; the others are
labelled and the exit code is 1. A re-run retries the recorded frames, or skips them with
``--skip-failed``.

With ``--workers N`` (by default one on a CPU, four on a GPU) N worker processes read the
frames and build their hypotheses up to two batches ahead while this process fits the current
batch (:mod:`cli.fit_stream`); the batches and labels are those of ``--workers 0``.

With ``--ray ADDRESS`` the same batches are labelled by a pool of Ray actors (one per GPU, else
one per CPU of the cluster), each writing its frames to ``--out``; only this process writes
``failures.json``. The labels equal a single-process run's with the same ``--batch``.

This module checks the arguments and the detections file without loading torch (an error
costs a fraction of a second); :mod:`cli.fit_run` does the work.
"""

from __future__ import annotations

import dataclasses
import re
import tempfile
from pathlib import Path

import typer

from autolabel.classes import CLASS_MEAN_SIZE, mean_size
from autolabel.distributed import RaySettings, import_ray
from autolabel.errors import InputError
from autolabel.io.class_map import read_class_map
from autolabel.io.class_sizes import read_class_sizes
from autolabel.io.detections import Detection, read_detections
from autolabel.io.files import IMAGE_SUFFIXES
from cli.common import user_errors

METHODS = ("render", "lshape")
BOX_EXTENTS = ("shape", "box")  # autolabel.fit.BOX_EXTENTS; a test keeps the two equal
DEFAULT_ITERATIONS = 60  # FitConfig.iterations; a test keeps the two equal
DEFAULT_VIEWPOINT_WEIGHT = 0.0  # ImageEvidenceConfig.viewpoint_weight; likewise
DEFAULT_NOCS_WEIGHT = 0.1  # LossWeights.nocs, with ImageEvidenceConfig.nocs on; likewise
DEFAULT_CAMERA_HEIGHT = 1.65  # InitConfig.camera_height; likewise
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")
RAY_ADDRESS_PATTERN = re.compile(r"local|auto|(ray://)?[\w.-]+:\d+")


@dataclasses.dataclass(frozen=True)
class FitJob:
    """Everything ``autolabel fit`` was asked to do, checked.

    Attributes:
        images: frame id -> image file. calib: folder of calib files.
        lidar, depth: evidence folders (at most one), None for none.
        lidar_origin: how the LiDAR folder was chosen, for the opening message.
        allow_missing_evidence: a frame without a file in the evidence folder is labelled
            from its boxes (with a warning) instead of failing.
        detections: image file name -> its detections (classes renamed by the class map).
        class_sizes: class -> mean (length, width, height) metres.
        out: output folder (exists, writable).
        ray: where and how wide to run on Ray, or None for this process alone.
        workers: processes that read and prepare frames ahead of the fit in one process
            (0: none), None for the default of the device.
        image_model: the image model's weights, None for the shipped model, 'none' for
            no image model.
        viewpoint_weight: weight of its viewpoint in the choice of the heading of labels
            with LiDAR or depth.
        nocs_weight: weight of the fit term that compares the render's NOCS with the image
            model's map (0: the term is off).
        camera_height: metres from the camera to the road (the ground of frames without
            LiDAR or depth). accept_weak: labels without 3D evidence may be accepted.
        compile: fit iterations compiled with torch.compile.
        box_extent: what a detection box is compared with, 'shape' or 'box'
            (:class:`autolabel.fit.FitConfig`).
    """

    images: dict[str, Path]
    calib: Path
    lidar: Path | None
    lidar_origin: str
    depth: Path | None
    allow_missing_evidence: bool
    detections: dict[str, list[Detection]]
    class_sizes: dict[str, tuple[float, float, float]]
    out: Path
    method: str
    prior: Path | None
    device: str
    batch: int
    batch_objects: int
    iterations: int
    viz: bool
    save_meshes: bool
    min_score: float
    max_detections: int
    min_box_side: float
    skip_failed: bool
    ray: RaySettings | None = None
    workers: int | None = None
    image_model: str | None = None
    viewpoint_weight: float = DEFAULT_VIEWPOINT_WEIGHT
    nocs_weight: float = DEFAULT_NOCS_WEIGHT
    camera_height: float = DEFAULT_CAMERA_HEIGHT
    accept_weak: bool = False
    compile: bool = False
    box_extent: str = "shape"


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


def _evidence(images: Path, lidar: str, depth: Path | None) -> tuple[Path | None, str]:
    """The LiDAR folder to read (None for none) and how it was chosen."""
    if lidar not in ("auto", "none"):
        if depth is not None:
            raise InputError(None, "give --lidar or --depth, not both")
        return _folder(Path(lidar), "--lidar"), "given as --lidar"
    if depth is not None:
        _folder(depth, "--depth")
    if lidar == "none" or depth is not None:
        return None, "not used"
    beside = images.parent / "velodyne"
    if beside.is_dir():
        return beside, "found beside the images; --lidar none to label without it"
    return None, f"none found at {beside}"


def _check_detections(path: Path, detections: dict[str, list[Detection]],
                      images: dict[str, Path],
                      class_sizes: dict[str, tuple[float, float, float]]) -> None:
    """Every detection names a known image and a class with size statistics."""
    names = {image.name for image in images.values()}
    for name, items in detections.items():
        if name not in names:
            raise InputError(path, "no such image in the --images folder", name)
        for index, detection in enumerate(items):
            try:
                mean_size(detection.category, class_sizes)
            except ValueError as error:
                raise InputError(path, f"{error} (add it with --class-sizes)",
                                 f"{name}[{index}]", "category") from None


def _renamed(detections: dict[str, list[Detection]], class_map: dict[str, str]
             ) -> dict[str, list[Detection]]:
    """The detections with their classes renamed by ``class_map`` (exact names)."""
    return {name: [dataclasses.replace(d, category=class_map.get(d.category, d.category))
                   for d in items] for name, items in detections.items()}


def _writable_folder(out: Path) -> Path:
    """``out``, created if needed, after checking that files can be written in it."""
    if out.exists() and not out.is_dir():
        raise InputError(out, "is a file, not a folder (given as --out)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as error:
        raise InputError(out, f"cannot write here (given as --out): {error.strerror}"
                         ) from None
    return out


def _ray_settings(address: str | None, workers: int) -> RaySettings | None:
    """The Ray settings of ``--ray`` and ``--ray-workers`` (None without ``--ray``), after
    checking that Ray is installed."""
    if address is None:
        if workers:
            raise InputError(None, "--ray-workers needs --ray")
        return None
    if not RAY_ADDRESS_PATTERN.fullmatch(address):
        raise InputError(None, f"--ray {address!r} is not one of local, auto, HOST:PORT, "
                         "ray://HOST:PORT")
    import_ray()
    return RaySettings(address, workers)


def fit_command(
    images: Path = typer.Option(..., "--images", help="Folder of the frames' images (KITTI "
                                "image_2); a frame is an image, its id the file stem."),
    detections_path: Path = typer.Option(..., "--detections", help="Detections JSON (COCO "
                                         "results or per-image layout, see docs/formats.md)."),
    lidar: str = typer.Option("auto", "--lidar", help="Folder of point clouds "
                              "<frame>.bin/.pcd/.ply in the LiDAR frame; 'auto': "
                              "IMAGES/../velodyne when it exists; 'none': no LiDAR."),
    depth: Path | None = typer.Option(None, "--depth", help="Folder of depth maps "
                                      "<frame>.png (KITTI 16-bit, value/256 = metres) or .npy "
                                      "(metres), the image's size; used instead of LiDAR."),
    allow_missing_evidence: bool = typer.Option(False, "--allow-missing-evidence", help="A "
                                                "frame without a usable file in the LiDAR or "
                                                "depth folder is labelled from its boxes "
                                                "alone, with a warning, instead of failing."),
    calib: Path | None = typer.Option(None, "--calib", help="Folder of KITTI calib "
                                      "<frame>.txt files (default: IMAGES/../calib)."),
    out: Path = typer.Option(..., "--out", help="Output folder: label_2/ and json/ per frame; "
                             "frames already there are skipped."),
    method: str = typer.Option("render", "--method", help="render: render-and-compare with the "
                               "shape prior; lshape: the classical LiDAR baseline."),
    prior_path: Path | None = typer.Option(None, "--prior", help="Shape prior file (default: "
                                           "the shipped car prior)."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present), cpu, cuda "
                               "or cuda:N."),
    ray: str | None = typer.Option(None, "--ray", metavar="local|auto|HOST:PORT", help="Label "
                                   "on Ray (pip install autolabel[ray]): 'local' starts a "
                                   "cluster of this machine for the run, 'auto' joins the one "
                                   "`ray start` runs here, HOST:PORT a remote head. One worker "
                                   "per GPU, else per CPU; the labels equal a single-process "
                                   "run's."),
    ray_workers: int = typer.Option(0, "--ray-workers", min=0, help="Ray workers (0: one per "
                                    "GPU of the cluster, else one per CPU); each runs "
                                    "--threads torch threads."),
    workers: int | None = typer.Option(None, "--workers", min=0, show_default=False,
                                       help="Processes that read the frames and build their "
                                       "hypotheses up to two batches ahead while this process "
                                       "fits (same labels as 0: no workers). Default: 1 on a "
                                       "CPU, 4 on a GPU (at most the cores less one); 0 with "
                                       "--method lshape. Not with --ray."),
    batch: int = typer.Option(8, "--batch", min=1, help="At most this many frames are fitted "
                              "together."),
    batch_objects: int = typer.Option(0, "--batch-objects", min=0, help="At most this many "
                                      "detections are fitted together (a frame with more is "
                                      "fitted in pieces); 0: 8 on a CPU, where small batches "
                                      "are faster and use about 1 GB, 64 on a GPU."),
    iterations: int = typer.Option(DEFAULT_ITERATIONS, "--iterations", min=1,
                                   help="Optimiser steps per batch."),
    viz: bool = typer.Option(False, "--viz", help="Also write OUT/viz/<frame>.png: fitted "
                             "boxes on the image and a bird's-eye view with the points."),
    save_meshes: bool = typer.Option(False, "--save-meshes", help="Also write each fitted "
                                     "shape as OUT/meshes/<frame>_<index>.ply (camera frame)."),
    min_score: float = typer.Option(0.3, "--min-score", min=0.0, max=1.0, help="Detections "
                                    "scoring less are not labelled."),
    max_detections: int = typer.Option(50, "--max-detections", min=1, help="At most this many "
                                       "detections a frame are labelled, the highest scores "
                                       "first: bounds time on a detector's raw output (often "
                                       "~100 boxes an image)."),
    min_box_side: float = typer.Option(4.0, "--min-box-side", min=0.0, help="Detections "
                                       "narrower or lower than this many pixels inside the "
                                       "image are not labelled (the reason goes in the JSON)."),
    skip_failed: bool = typer.Option(False, "--skip-failed", help="Do not retry the frames that "
                                     "failures.json in --out lists as failed by an earlier "
                                     "run."),
    class_sizes_path: Path | None = typer.Option(None, "--class-sizes", help="JSON of class -> "
                                                 "mean [length, width, height] in metres of "
                                                 "this data set; overrides KITTI's means for "
                                                 "the classes it names."),
    class_map_path: Path | None = typer.Option(None, "--class-map", help="JSON of detector "
                                               "class -> label class, e.g. {\"vehicle\": "
                                               "\"Car\"}; applied before anything else. "
                                               "KITTI classes are written in KITTI's spelling "
                                               "whatever their case."),
    image_model: str | None = typer.Option(None, "--image-model", metavar="FILE|none",
                                           show_default=False, help="Image model weights "
                                           "(default: the shipped model, see `autolabel "
                                           "image-model`); it reads each detection's crop "
                                           "for the heading and place of cars without LiDAR "
                                           "or depth (and, with --viewpoint-weight, the "
                                           "heading of the others). none: no image model."),
    viewpoint_weight: float = typer.Option(DEFAULT_VIEWPOINT_WEIGHT, "--viewpoint-weight",
                                           min=0.0, help="Weight of the image model's "
                                           "viewpoint when the fitter chooses the heading of a "
                                           "label with LiDAR or depth (0: not used there; on "
                                           "real images the model flips one car in five, "
                                           "and at 0.01 it cost kitti_dev two heading "
                                           "flips)."),
    nocs_weight: float = typer.Option(DEFAULT_NOCS_WEIGHT, "--nocs-weight", min=0.0,
                                      help="Weight of the fit term that compares each "
                                      "render's NOCS (where on the car a pixel lies) with the "
                                      "image model's map, either end for end (0: off; on "
                                      "kitti_dev it shortens cars fitted too long)."),
    camera_height: float = typer.Option(DEFAULT_CAMERA_HEIGHT, "--camera-height", min=0.0,
                                        help="Metres from "
                                        "the camera down to the road (KITTI's: 1.65): the "
                                        "ground on which cars are placed in frames without "
                                        "LiDAR or depth."),
    accept_weak: bool = typer.Option(False, "--accept-weak", help="Labels from the image and "
                                     "box alone (no LiDAR or depth) may be accepted when their "
                                     "score passes; otherwise they are always rejected."),
    compile_fit: bool = typer.Option(False, "--compile", help="Compile each fit iteration "
                                     "with torch.compile: 49-84 operators (profiler) instead "
                                     "of 687-905, up to 1.7 times as fast at large batches, after "
                                     "tens of seconds of compiling per process (for long runs "
                                     "and GPUs)."),
    box_extent: str = typer.Option("shape", "--box-extent", help="What a detection's box "
                                   "bounds: shape, the object's visible outline (detectors "
                                   "trained on boxes drawn around pixels, e.g. COCO's), or "
                                   "box, the projection of its 3D box (detectors trained on "
                                   "KITTI's or nuScenes' 2D boxes, which are their 3D boxes "
                                   "projected)."),
) -> None:
    """Label every frame: one 3D box per 2D detection, written as KITTI label_2 and JSON."""
    with user_errors():
        if method not in METHODS:
            raise InputError(None, f"--method {method!r} is not one of {', '.join(METHODS)}")
        if not DEVICE_PATTERN.fullmatch(device):
            raise InputError(None, f"--device {device!r} is not one of auto, cpu, cuda, cuda:N")
        if box_extent not in BOX_EXTENTS:
            raise InputError(None, f"--box-extent {box_extent!r} is not one of "
                             f"{', '.join(BOX_EXTENTS)}")
        ray_settings = _ray_settings(ray, ray_workers)
        if ray_settings is not None and workers:
            raise InputError(None, "--workers is for a run in one process; on Ray each "
                             "worker reads its own batches")
        frames = _images(_folder(images, "--images"))
        calib_folder = _folder(calib if calib is not None else images.parent / "calib",
                               "--calib")
        lidar_folder, lidar_origin = _evidence(images, lidar, depth)
        sizes = dict(CLASS_MEAN_SIZE)
        if class_sizes_path is not None:
            sizes.update(read_class_sizes(class_sizes_path))
        detections = read_detections(detections_path)
        if class_map_path is not None:
            detections = _renamed(detections, read_class_map(class_map_path))
        _check_detections(detections_path, detections, frames, sizes)
        for frame_id in frames:
            if not (calib_folder / f"{frame_id}.txt").is_file():
                raise InputError(calib_folder / f"{frame_id}.txt", "no such file (the "
                                 f"calibration of image {frames[frame_id].name})")
        if prior_path is not None and not prior_path.is_file():
            raise InputError(prior_path, "no such file (given as --prior)")
        if image_model not in (None, "none") and not Path(image_model).is_file():
            raise InputError(image_model, "no such file (given as --image-model)")
        job = FitJob(frames, calib_folder, lidar_folder, lidar_origin, depth,
                     allow_missing_evidence, detections, sizes, _writable_folder(out), method,
                     prior_path, device, batch, batch_objects,
                     iterations, viz, save_meshes, min_score, max_detections, min_box_side,
                     skip_failed, ray_settings, workers, image_model, viewpoint_weight,
                     nocs_weight, camera_height, accept_weak, compile_fit, box_extent)
    from cli.fit_run import run  # loads torch

    failed = run(job)
    if failed:
        raise typer.Exit(1)
