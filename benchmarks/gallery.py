"""Pictures of the cars a fit misses, from the rows of ``benchmarks/diagnose.py``.

Each failing car gets one PNG with two panels: (a) the image around the car with its
detection box, its ground-truth 3D box and the predicted 3D box, and (b) a bird's-eye view
around it with the LiDAR points (those in the detection's frustum highlighted), the
ground-truth footprints of the nearby objects (this car's highlighted), the predicted
footprint and the camera ray through the car. ``index.md`` lists the pictures by BEV IoU,
worst first. :func:`plot_score_curve` draws the verification score's precision and recall.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from autolabel.classes import DONT_CARE  # noqa: E402
from autolabel.geometry import camera_centres, points_in_frustum  # noqa: E402
from autolabel.io.atomic import atomic_path  # noqa: E402
from autolabel.label import ObjectLabel  # noqa: E402
from autolabel.viz import footprints, projected_box_edges  # noqa: E402
from benchmarks.common import Frame, load_kitti  # noqa: E402

TRUTH_COLOUR = "#00c853"
PREDICTED_COLOUR = "#ff1744"
DETECTION_COLOUR = "#ffd600"
OTHER_COLOUR = "#616161"
FRUSTUM_COLOUR = "#2979ff"
RAY_COLOUR = "#7e57c2"
CROP_MARGIN = 0.5  # of the detection's size, at least MIN_MARGIN pixels, on every side
MIN_MARGIN = 40.0
BEV_MARGIN = 6.0  # metres around the car and its prediction


def box_label(box: Sequence[float], box2d: Sequence[float] = (0, 0, 1, 1)) -> ObjectLabel:
    """An upright Car label from a ``(x, y, z, l, w, h, yaw)`` box (a row's ``truth`` or
    ``predicted``)."""
    x, y, z, length, width, height, yaw = box
    return ObjectLabel.upright("Car", box2d, [x, y, z], yaw, [length, width, height])


def _edge_segments(label: ObjectLabel, P2: np.ndarray) -> np.ndarray:
    """(E, 2, 2) pixel segments of the label's visible projected box edges."""
    pixels, visible = projected_box_edges([label], P2)
    return pixels[0][visible[0]]


def _crop(boxes: Sequence[np.ndarray], image_size: tuple[int, int]) -> np.ndarray:
    """(x1, y1, x2, y2) pixels around the union of ``boxes`` (each (4,)), with a margin,
    within the image of ``image_size`` (height, width)."""
    union = np.stack(boxes)
    low, high = union[:, :2].min(axis=0), union[:, 2:].max(axis=0)
    margin = np.maximum(CROP_MARGIN * (high - low), MIN_MARGIN)
    height, width = image_size
    return np.concatenate([np.maximum(low - margin, 0),
                           np.minimum(high + margin, [width, height])])


def _image_panel(ax: Axes, row: dict, frame: Frame, image: np.ndarray) -> None:
    """The image around the car with the detection, true and predicted boxes."""
    P2 = frame.calib.P2
    truth = _edge_segments(box_label(row["truth"]), P2)
    predicted = _edge_segments(box_label(row["predicted"]), P2)
    detection = np.array(row["detection"])
    near_prediction = [np.concatenate([s.min(axis=(0, 1)), s.max(axis=(0, 1))])
                       for s in (predicted,) if len(s)]
    x1, y1, x2, y2 = _crop([detection, *near_prediction], frame.image_size)
    ax.imshow(image)
    ax.add_collection(LineCollection(truth, colors=TRUTH_COLOUR, linewidths=1.5))
    ax.add_collection(LineCollection(predicted, colors=PREDICTED_COLOUR, linewidths=1.5))
    ax.add_patch(plt.Rectangle(detection[:2], *(detection[2:] - detection[:2]), fill=False,
                               edgecolor=DETECTION_COLOUR, linewidth=1.5, linestyle="--"))
    ax.set_xlim(x1, x2)
    ax.set_ylim(y2, y1)
    ax.set_axis_off()
    ax.legend(handles=[Line2D([], [], color=DETECTION_COLOUR, linestyle="--", label="detection"),
                       Line2D([], [], color=TRUTH_COLOUR, label="ground truth"),
                       Line2D([], [], color=PREDICTED_COLOUR, label="predicted")],
              loc="lower right", fontsize=8, framealpha=0.7)


def _outline(ax: Axes, footprint: np.ndarray, colour: str, width: float) -> None:
    """A (4, 2) footprint as a closed outline with a tick from its centre to its front."""
    closed = np.vstack([footprint, footprint[:1]])
    ax.plot(closed[:, 0], closed[:, 1], color=colour, linewidth=width)
    centre, front = footprint.mean(axis=0), footprint[[0, 3]].mean(axis=0)
    ax.plot([centre[0], front[0]], [centre[1], front[1]], color=colour, linewidth=width)


def _bev_window(footprints_xz: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre (2,) and half side (metres) of a square BEV window around the footprints
    (F, 4, 2) plus BEV_MARGIN."""
    low, high = footprints_xz.reshape(-1, 2).min(axis=0), footprints_xz.reshape(-1, 2).max(axis=0)
    return (low + high) / 2, float((high - low).max()) / 2 + BEV_MARGIN


def _bev_panel(ax: Axes, row: dict, frame: Frame) -> None:
    """The bird's-eye view around the car (see the module docstring)."""
    truth, predicted = box_label(row["truth"]), box_label(row["predicted"])
    own = footprints([truth, predicted])
    centre, half = _bev_window(own)
    if frame.points is not None:
        points = torch.as_tensor(frame.points, dtype=torch.float64)
        near = (np.abs(frame.points[:, [0, 2]] - centre) <= half).all(axis=1)
        inside = points_in_frustum(points, torch.as_tensor(frame.calib.P2),
                                   torch.as_tensor(row["detection"])).numpy()
        for chosen, colour, size in ((near & ~inside, "#b0b0b0", 1.0),
                                     (near & inside, FRUSTUM_COLOUR, 2.0)):
            ax.scatter(frame.points[chosen, 0], frame.points[chosen, 2], s=size, c=colour,
                       linewidths=0)
    objects = [label for label in frame.labels if label.category != DONT_CARE]
    for footprint in footprints(objects):
        if (np.abs(footprint.mean(axis=0) - centre) <= half + 3.0).all():
            _outline(ax, footprint, OTHER_COLOUR, 0.8)
    _outline(ax, own[0], TRUTH_COLOUR, 2.0)
    _outline(ax, own[1], PREDICTED_COLOUR, 2.0)
    camera = camera_centres(torch.as_tensor(frame.calib.P2)[None])[0, [0, 2]].numpy()
    ray = np.array(row["ray_xz"])
    reach = np.linalg.norm(centre - camera) + 2 * half
    ax.plot([camera[0], camera[0] + reach * ray[0]], [camera[1], camera[1] + reach * ray[1]],
            color=RAY_COLOUR, linestyle=":", linewidth=1.2)
    ax.set_xlim(centre[0] - half, centre[0] + half)
    ax.set_ylim(centre[1] - half, centre[1] + half)
    ax.set_aspect("equal")
    ax.set_xlabel("camera x (m)")
    ax.set_ylabel("camera z (m)")
    ax.legend(handles=[Line2D([], [], color=TRUTH_COLOUR, label="this car (truth)"),
                       Line2D([], [], color=OTHER_COLOUR, label="other objects (truth)"),
                       Line2D([], [], color=PREDICTED_COLOUR, label="predicted"),
                       Line2D([], [], color=RAY_COLOUR, linestyle=":", label="camera ray"),
                       Line2D([], [], color=FRUSTUM_COLOUR, marker=".", linestyle="",
                              label="points in frustum")],
              loc="upper right", fontsize=7, framealpha=0.7)


def _title(row: dict, cause: str) -> str:
    verdict = "accepted" if row["accepted"] else "rejected"
    return (f"{row['frame']}/{row['index']}  BEV IoU {row['bev_iou']:.2f}  "
            f"{row['distance_m']:.1f} m  {row['points']} points  occlusion {row['occlusion']}  "
            f"score {row['score']:.2f} ({verdict})  cause: {cause}\n"
            f"along ray {row['along_ray_m']:+.2f} m  across {row['across_ray_m']:+.2f} m  "
            f"yaw {row['yaw_deg']:+.0f} deg  length {row['length_m']:+.2f}  "
            f"width {row['width_m']:+.2f}  height {row['height_m']:+.2f} m  "
            f"2D overlap {row['box_overlap']:.2f}")


def car_figure(row: dict, frame: Frame, cause: str) -> Figure:
    """The two-panel picture of one paired row (see the module docstring).

    Args:
        row: a row of ``benchmarks/diagnose.py`` with a prediction. frame: its frame (with
            its image). cause: the row's main cause.
    """
    figure, (left, right) = plt.subplots(1, 2, figsize=(15, 6.5), layout="constrained",
                                         gridspec_kw={"width_ratios": [1.4, 1]})
    _image_panel(left, row, frame, frame.image)
    _bev_panel(right, row, frame)
    figure.suptitle(_title(row, cause), fontsize=10)
    return figure


def _save(figure: Figure, path: Path) -> None:
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=80)
    plt.close(figure)


def _index(rows: Sequence[dict], names: Sequence[str], causes: Sequence[str]) -> str:
    lines = ["# Cars under the BEV IoU threshold, worst first", "",
             "| BEV IoU | picture | distance m | points | occlusion | accepted | cause |",
             "|---|---|---|---|---|---|---|"]
    for row, name, cause in zip(rows, names, causes, strict=True):
        lines.append(f"| {row['bev_iou']:.2f} | [{name}]({name}) | {row['distance_m']:.1f} | "
                     f"{row['points']} | {row['occlusion']} | {row['accepted']} | {cause} |")
    return "\n".join(lines) + "\n"


def write_gallery(rows: Sequence[dict], root: Path, folder: Path,
                  cause: Callable[[dict], str], threshold: float) -> list[Path]:
    """One picture per paired row under ``threshold`` BEV IoU, and ``folder/index.md``.

    Args:
        rows: rows of ``benchmarks/diagnose.py``. root: the KITTI-layout folder they come
            from. folder: where to write. cause: a row's main cause.
    Returns:
        The pictures' paths, worst BEV IoU first.
    """
    failing = sorted((row for row in rows if row["bev_iou"] < threshold and "predicted" in row),
                     key=lambda row: row["bev_iou"])
    frames = {frame.frame_id: frame
              for frame in load_kitti(root, sorted({row["frame"] for row in failing}))}
    folder.mkdir(parents=True, exist_ok=True)
    names, causes = [], []
    for row in failing:
        frame = frames[row["frame"]]
        names.append(f"{row['frame']}_{row['index']:02d}.png")
        causes.append(cause(row))
        _save(car_figure(row, frame, causes[-1]), folder / names[-1])
    (folder / "index.md").write_text(_index(failing, names, causes))
    return [folder / name for name in names]


def plot_score_curve(curve: Sequence[dict], path: Path) -> None:
    """The verification score's precision-recall curve and both against the threshold.

    Args:
        curve: ``[{"threshold", "precision", "recall"}]`` (``diagnose.score_curve``).
    """
    thresholds, precision, recall = (np.array([point[k] for point in curve])
                                     for k in ("threshold", "precision", "recall"))
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5), layout="constrained")
    left.plot(recall, precision, marker=".")
    left.set_xlabel("recall")
    left.set_ylabel("precision")
    left.set_title("BEV IoU >= 0.5 predicted by score >= t")
    right.plot(thresholds, precision, label="precision")
    right.plot(thresholds, recall, label="recall")
    right.set_xlabel("score threshold t")
    right.legend()
    for ax in (left, right):
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    _save(figure, path)
