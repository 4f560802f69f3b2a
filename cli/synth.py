"""`autolabel synth`: synthetic KITTI-format frames with ground truth and noisy detections."""

from __future__ import annotations

import math
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import track

from autolabel.errors import InputError
from cli.common import load_torch, user_errors


def synth_command(
    out: Path = typer.Option(..., "--out", help="Output folder (created if missing): image_2/, "
                             "velodyne/, calib/, label_2/, detections.json, viz/, scene/ and "
                             "with --depth depth/. Frames already there with the same ids are "
                             "replaced."),
    frames: int = typer.Option(10, "--frames", min=1, help="How many frames to generate."),
    seed: int = typer.Option(0, "--seed", min=0, help="Data-set seed: frame i depends only on "
                             "(SEED, i) and the options, so runs are reproducible."),
    start: int = typer.Option(0, "--start", min=0, help="Index of the first frame (frame ids "
                              "are the indices as six digits), to extend a data set."),
    min_cars: int = typer.Option(2, "--min-cars", min=0, help="Fewest cars placed per frame."),
    max_cars: int = typer.Option(7, "--max-cars", min=0, help="Most cars placed per frame."),
    box_jitter: float = typer.Option(2.0, "--box-jitter", min=0.0, help="Standard deviation "
                                     "of each detection box edge's error, pixels."),
    mask_noise: int = typer.Option(2, "--mask-noise", min=0, help="Largest random erosion or "
                                   "dilation of a detection mask, pixels."),
    miss_rate: float = typer.Option(0.05, "--miss-rate", min=0.0, max=1.0, help="Probability "
                                    "that a labelled car has no detection."),
    false_positives: float = typer.Option(0.3, "--false-positives", min=0.0, help="Mean "
                                          "number of false detections per frame."),
    depth: bool = typer.Option(False, "--depth", help="Also write a noisy dense depth map per "
                               "frame (depth/<id>.png, KITTI's 256 units per metre), a stand-in "
                               "for a monocular depth network."),
    depth_scale_bias: float = typer.Option(0.05, "--depth-scale-bias", min=0.0, help="Spread "
                                           "of the per-frame depth scale error (0.05: 5%)."),
    depth_noise: float = typer.Option(0.03, "--depth-noise", min=0.0, help="Spread of the "
                                      "smooth relative depth error (error in metres grows "
                                      "with distance)."),
    azimuth_step: float = typer.Option(0.08, "--azimuth-step", min=0.01, max=2.0, help="LiDAR "
                                       "horizontal resolution in degrees (KITTI: about 0.08)."),
    viz: bool = typer.Option(True, "--viz/--no-viz", help="Write viz/<id>.png, the image with "
                             "the 3D boxes drawn."),
) -> None:
    """Generate KITTI-format frames of held-out procedural cars with a simulated camera and
    64-beam LiDAR, ground-truth label_2 and noisy COCO-style detections."""
    with user_errors():
        if min_cars > max_cars:
            raise InputError(None, f"is {min_cars}, more than --max-cars {max_cars}",
                             field="--min-cars")
        if out.exists() and not out.is_dir():
            raise InputError(out, "exists and is not a folder (given as --out)")
        load_torch()
        # Imported after the checks: synthesis loads torch and needs open3d (an extra).
        from autolabel.synth import SynthConfig, generate_frame, merge_detections, write_frame
        from autolabel.synth.lidar import LidarConfig
        from autolabel.synth.noise import DepthNoise, DetectionNoise
        from autolabel.synth.scene import SceneConfig

        config = SynthConfig(
            scene=SceneConfig(min_cars=min_cars, max_cars=max_cars),
            lidar=LidarConfig(azimuth_step=math.radians(azimuth_step)),
            detections=DetectionNoise(box_jitter=box_jitter, mask_noise=mask_noise,
                                      miss_rate=miss_rate, false_positives=false_positives),
            depth=DepthNoise(scale_bias=depth_scale_bias, relative_noise=depth_noise)
            if depth else None,
            viz=viz)
        console = Console(stderr=True)
        began = time.perf_counter()
        labelled = 0
        for index in track(range(start, start + frames), description="Generating frames",
                           console=console, disable=not console.is_terminal):
            frame = generate_frame(seed, index, config)
            write_frame(out, frame, viz=config.viz)
            labelled += sum(a.label.category == "Car" for a in frame.annotations)
        every = sorted(path.stem for path in (out / "detections").glob("*.json"))
        merged = merge_detections(out, every)
        seconds = time.perf_counter() - began
        typer.echo(f"wrote {frames} frames ({labelled} labelled cars) to {out} in "
                   f"{seconds:.1f} s ({seconds / frames:.2f} s per frame); detections of "
                   f"{len(every)} frames in {merged}")
