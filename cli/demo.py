"""`autolabel demo`: the whole pipeline on a generated scene, in a few minutes on a CPU.

It runs what a user would: ``autolabel synth`` (a few frames of held-out procedural cars with
LiDAR and noisy detections), ``autolabel fit`` (render-and-compare with the shipped prior,
pictures on), ``autolabel eval`` against the scene's ground truth, and prints where the
pictures are.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer


def _run(*arguments: str) -> None:
    """Run one `autolabel` command line in this process, as a user would type it."""
    from cli.main import app  # here, not at the top: cli.main registers this module

    typer.echo(f"$ autolabel {' '.join(arguments)}")
    code = typer.main.get_command(app).main(list(arguments), standalone_mode=False)
    if code:
        raise typer.Exit(code)


def demo_command(
    out: Path = typer.Option(Path("demo_out"), "--out", help="Folder for the scene, the "
                             "labels and the pictures."),
    frames: int = typer.Option(3, "--frames", min=1, help="Frames to generate and label."),
    seed: int = typer.Option(7, "--seed", min=0, help="Scene seed."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
) -> None:
    """Generate a scene, label it with render-and-compare, evaluate, and show the pictures."""
    scene, labels = out / "scene", out / "labels"
    _run("synth", "--out", str(scene), "--frames", str(frames), "--seed", str(seed))
    _run("fit", "--images", str(scene / "image_2"), "--detections",
         str(scene / "detections.json"), "--out", str(labels), "--viz", "--device", device,
         "--batch", str(frames))
    _run("eval", "--gt", str(scene / "label_2"), "--pred", str(labels / "label_2"), "--json",
         str(out / "metrics.json"))
    counted = json.loads((out / "metrics.json").read_text())["classes"]["Car"]["num_gt"]
    moderate = counted["moderate"]
    if 0 < moderate <= 40:
        typer.echo(f"note: with {moderate} moderate cars the official AP|R40 is at most "
                   f"{100 * (moderate - 1) / 40:.2f} (the devkit samples 40 recall positions "
                   "and skips the first); use more frames (--frames) for comparable numbers")
    typer.echo("pictures (fitted shapes and boxes, green accepted / red rejected, and a "
               "bird's-eye view):")
    for picture in sorted((labels / "viz").glob("*.png")):
        typer.echo(f"  {picture}")
    typer.echo(f"ground truth drawn on the images: {scene / 'viz'}")
