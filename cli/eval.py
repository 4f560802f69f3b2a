"""`autolabel eval`: KITTI AP|R40 and pose errors of predicted labels against ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import track

from autolabel.errors import InputError
from autolabel.evaluate import evaluate, format_table, to_json
from autolabel.io.atomic import write_text_atomic
from autolabel.io.kitti import read_labels
from autolabel.label import ObjectLabel
from cli.common import user_errors


def _label_files(folder: Path, option: str) -> dict[str, Path]:
    """Frame id -> ``<id>.txt`` of a label_2 folder."""
    if not folder.is_dir():
        raise InputError(folder, f"no such folder (given as {option})")
    return {path.stem: path for path in sorted(folder.glob("*.txt"))}


def _read_folder(files: dict[str, Path], description: str) -> dict[str, list[ObjectLabel]]:
    console = Console(stderr=True)
    items = track(files.items(), description=description, total=len(files), transient=True,
                  console=console, disable=not console.is_terminal)
    return {frame: read_labels(path) for frame, path in items}


def _parse_classes(text: str) -> list[str]:
    classes = [name.strip() for name in text.split(",") if name.strip()]
    if not classes:
        raise InputError(None, f"expected class names separated by commas, got {text!r}",
                         field="--classes")
    return classes


def eval_command(
    gt: Path = typer.Option(..., "--gt", help="Ground-truth label_2 folder: one KITTI .txt per "
                            "frame, all classes and DontCare."),
    pred: Path = typer.Option(..., "--pred", help="Predicted label_2 folder. A frame without a "
                              "file has no detections; the 16th column is the score (1.0 when "
                              "absent)."),
    json_path: Path | None = typer.Option(None, "--json", help="Also write the results to this "
                                          "JSON file."),
    classes: str = typer.Option("Car", "--classes", help="Classes to evaluate, separated by "
                                "commas, e.g. Car,Pedestrian."),
    dontcare_in_image: bool = typer.Option(False, "--dontcare-in-image", help="Do not count "
                                           "predictions inside DontCare regions (by their 2D "
                                           "boxes) as false positives. Not the devkit's rule "
                                           "for BEV and 3D."),
) -> None:
    """KITTI AP|R40 (BEV and 3D, IoU 0.7 and 0.5, easy/moderate/hard) and median pose errors."""
    with user_errors():
        names = _parse_classes(classes)
        gt_files = _label_files(gt, "--gt")
        pred_files = _label_files(pred, "--pred")
        if not gt_files:
            hint = f"; did you mean {gt / 'label_2'}?" if (gt / "label_2").is_dir() else ""
            raise InputError(gt, f"no label files (*.txt) in this folder (given as --gt){hint}")
        unmatched = sorted(set(pred_files) - set(gt_files))
        if unmatched:
            more = f" ({len(unmatched) - 1} more such files)" if len(unmatched) > 1 else ""
            raise InputError(pred_files[unmatched[0]],
                             f"no ground-truth file {unmatched[0]}.txt in {gt}{more}")
        result = evaluate(_read_folder(gt_files, "reading ground truth"),
                          _read_folder(pred_files, "reading predictions"),
                          classes=names, dontcare_in_image=dontcare_in_image)
        typer.echo(format_table(result), nl=False)
        if json_path is not None:
            write_text_atomic(json_path, json.dumps(to_json(result), indent=2) + "\n")
            typer.echo(f"wrote {json_path}")
