"""`autolabel eval`: KITTI AP (official devkit) and pose errors of predicted labels."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import track

from autolabel.errors import InputError
from autolabel.io.atomic import write_text_atomic
from cli.common import load_torch, user_errors

if TYPE_CHECKING:
    from autolabel.label import ObjectLabel

RECALL_POSITIONS = (40, 11)  # autolabel.evaluate's; checked here before torch loads


def _label_files(folder: Path, option: str) -> dict[str, Path]:
    """Frame id -> ``<id>.txt`` of a label_2 folder."""
    if not folder.is_dir():
        raise InputError(folder, f"no such folder (given as {option})")
    return {path.stem: path for path in sorted(folder.glob("*.txt"))}


def _read_folder(files: dict[str, Path], description: str) -> dict[str, list[ObjectLabel]]:
    from autolabel.io.kitti import read_labels

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
    recall_positions: int = typer.Option(40, "--recall-positions", help="Which AP the table "
                                         "shows: 40 for AP|R40 (what KITTI publishes), 11 for "
                                         "the older AP|R11. The JSON has both."),
) -> None:
    """KITTI AP|R40 (BEV and 3D, IoU 0.7 and 0.5, easy/moderate/hard) and median
    pose errors.

    AP is computed as the official KITTI object devkit (evaluate_object.cpp,
    2019) computes it: precision sampled at 41 score thresholds, so with at most
    40 valid ground truths AP is capped ((n - 1) / 40 for a perfect prediction
    of n); ground truths at most 40/25/25 px tall (easy/moderate/hard), too
    occluded or truncated, and vans (for Car) are ignored; predictions lower
    than the minimum height are ignored, not false positives; IoU must exceed
    0.7/0.5 (0.5/0.25 for pedestrians and cyclists); DontCare regions do not
    affect BEV and 3D. A prediction without a score counts as 1.0.
    """
    with user_errors():
        names = _parse_classes(classes)
        if recall_positions not in RECALL_POSITIONS:
            raise InputError(None, f"expected 40 or 11, got {recall_positions}",
                             field="--recall-positions")
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
        load_torch()
        from autolabel.evaluate import evaluate, format_table, to_json

        result = evaluate(_read_folder(gt_files, "reading ground truth"),
                          _read_folder(pred_files, "reading predictions"),
                          classes=names)
        typer.echo(format_table(result, recall_positions=recall_positions), nl=False)
        if json_path is not None:
            write_text_atomic(json_path, json.dumps(to_json(result), indent=2) + "\n")
            typer.echo(f"wrote {json_path}")
