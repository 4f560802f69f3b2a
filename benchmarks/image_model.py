"""The image model on real crops: viewpoint against label_2's alpha, masks against LiDAR.

    .venv/bin/python benchmarks/image_model.py --root ../shared/data/kitti_dev --jitter 3

Every ``Car`` of ``label_2`` becomes a detection (its 2D box, each edge jittered by N(0, PX^2)
pixels, seeded, as in ``benchmarks/kitti.py``) and a crop of the fitter's render window around
it; the model predicts the car's observation angle, mask and NOCS map from the crop alone.

* Viewpoint: the error to the label's alpha (degrees), its median and the share of heading
  flips (error > 90 degrees), over the headline set (box height >= 25 px, occlusion <= 1)
  and per image-height band and occlusion level.
* Mask: the LiDAR points of the car (inside its ground-truth 3D box, less the bottom 10 cm
  where ground points fall in) that project into the crop, and the crop's other points; the
  share of the car's points on the predicted mask and of the other points off it. The same
  two shares for the detection box filled as a mask show what a box alone gives.

Writes the JSON (default ``benchmarks/results/image_model.json``: settings, summaries, one
row per car) and a contact sheet of the headline crops with predictions (default
``benchmarks/output/image_model_kitti_dev.png``).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autolabel.geometry import points_in_box, project_points  # noqa: E402
from autolabel.image.crops import crop_image, crop_window  # noqa: E402
from autolabel.image.generate import CropConfig  # noqa: E402
from autolabel.image.network import ImagePrediction, predict  # noqa: E402
from autolabel.image.sheet import contact_sheet  # noqa: E402
from autolabel.image.train import FLIP_ERROR, load_image_model  # noqa: E402
from autolabel.image.viewpoint import angle_error, decode_angle  # noqa: E402
from benchmarks.common import (  # noqa: E402
    detections_from_labels,
    load_kitti,
    write_json,
)

HEADLINE_HEIGHT = 25.0  # px
HEADLINE_OCCLUSION = 1
BANDS = ((0.0, 25.0), (25.0, 40.0), (40.0, 80.0), (80.0, math.inf))  # box height, px
GROUND_MARGIN = 0.1  # metres of the box's bottom left out of the car's points


def crop_pixels(points: np.ndarray, projection: np.ndarray, window: np.ndarray, size: int,
                image_size: tuple[int, int]) -> np.ndarray:
    """(M, 2) int ``(row, col)`` crop pixels of the camera-frame points (N, 3) that lie in
    front of the camera and project into both the image and the crop."""
    pixels, depth = project_points(torch.from_numpy(points), torch.from_numpy(projection))
    pixels, depth = pixels.numpy(), depth.numpy()
    x0, y0, x1, y1 = window
    col = np.floor((pixels[:, 0] - x0) / (x1 - x0) * size)
    row = np.floor((pixels[:, 1] - y0) / (y1 - y0) * size)
    height, width = image_size
    keep = ((depth > 0.5) & (col >= 0) & (col < size) & (row >= 0) & (row < size)
            & (pixels[:, 0] >= -0.5) & (pixels[:, 0] <= width - 0.5)
            & (pixels[:, 1] >= -0.5) & (pixels[:, 1] <= height - 0.5))
    return np.stack([row[keep], col[keep]], axis=1).astype(np.int64)


def agreement(mask: np.ndarray, car: np.ndarray, other: np.ndarray
              ) -> tuple[float | None, float | None]:
    """(share of the car's crop pixels (M, 2) on the (S, S) mask, share of the other pixels
    (K, 2) off it); None for an empty set."""
    on = round(float(mask[car[:, 0], car[:, 1]].mean()), 4) if len(car) else None
    off = round(float((~mask[other[:, 0], other[:, 1]]).mean()), 4) if len(other) else None
    return on, off


def box_mask(box: np.ndarray, window: np.ndarray, size: int) -> np.ndarray:
    """(S, S) bool, the crop pixels whose centres lie inside the box (x1, y1, x2, y2)."""
    centres = window[0] + (np.arange(size) + 0.5) * (window[2] - window[0]) / size
    rows = window[1] + (np.arange(size) + 0.5) * (window[3] - window[1]) / size
    inside_x = (centres >= box[0]) & (centres <= box[2])
    inside_y = (rows >= box[1]) & (rows <= box[3])
    return inside_y[:, None] & inside_x[None, :]


def summary(rows: list[dict], keep: Callable[[dict], bool]) -> dict:
    """Viewpoint and mask statistics of the rows that ``keep`` selects."""
    chosen = [row for row in rows if keep(row)]
    if not chosen:
        return {"cars": 0}
    errors = np.array([row["error_deg"] for row in chosen])

    def mean(key: str) -> float | None:
        values = np.array([row[key] for row in chosen], dtype=np.float64)
        values = values[np.isfinite(values)]
        return round(float(values.mean()), 4) if len(values) else None

    return {"cars": len(chosen), "median_error_deg": round(float(np.median(errors)), 2),
            "mean_error_deg": round(float(errors.mean()), 2),
            "flip_rate": round(float((errors > math.degrees(FLIP_ERROR)).mean()), 4),
            "within_10_deg": round(float((errors <= 10).mean()), 4),
            "within_30_deg": round(float((errors <= 30).mean()), 4),
            "car_points_on_mask": mean("car_on_mask"),
            "other_points_off_mask": mean("other_off_mask"),
            "car_points_on_box": mean("car_on_box"), "other_points_off_box": mean("other_off_box")}


def headline(row: dict) -> bool:
    return row["height"] >= HEADLINE_HEIGHT and row["occlusion"] <= HEADLINE_OCCLUSION


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True,
                        help="KITTI-layout folder with image_2, calib, label_2 and velodyne.")
    parser.add_argument("--weights", type=Path, default=None,
                        help="Image model weights (default: the shipped model).")
    parser.add_argument("--jitter", type=float, default=3.0,
                        help="Std. dev. (pixels) of the noise on ground-truth box edges.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the box jitter.")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" /
                        "image_model.json", help="Where to write the JSON results.")
    parser.add_argument("--sheet", type=Path, default=ROOT / "benchmarks" / "output" /
                        "image_model_kitti_dev.png", help="Contact sheet of headline crops.")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model, metadata = load_image_model(args.weights)
    size, margin = model.config.size, CropConfig().margin
    rng = np.random.default_rng(args.seed)
    rows, crops, masks_by_box = [], [], []
    for frame in load_kitti(args.root):
        image = frame.image
        points = frame.points.astype(np.float64)
        cars = [label for label in frame.labels if label.category == "Car"]
        detections = detections_from_labels(cars, frame.image_size, args.jitter, rng)
        for index, (label, detection) in enumerate(zip(cars, detections, strict=True)):
            window = crop_window(detection.box2d, margin)
            crops.append(crop_image(image, window, size))
            masks_by_box.append(box_mask(detection.box2d, window, size))
            trimmed = label.size - np.array([0.0, 0.0, GROUND_MARGIN])
            lifted = label.center + label.rotation @ np.array([0.0, 0.0, GROUND_MARGIN / 2])
            inside = points_in_box(torch.from_numpy(points), torch.from_numpy(lifted),
                                   torch.from_numpy(label.rotation),
                                   torch.from_numpy(trimmed)).numpy()
            full_box = points_in_box(torch.from_numpy(points),
                                     torch.from_numpy(label.center),
                                     torch.from_numpy(label.rotation),
                                     torch.from_numpy(label.size)).numpy()
            project = (frame.calib.P2, window, size, frame.image_size)
            rows.append({"frame": frame.frame_id, "index": index,
                         "height": round(float(label.box2d[3] - label.box2d[1]), 1),
                         "occlusion": int(label.occlusion),
                         "truncation": round(float(label.truncation), 2),
                         "alpha_deg": round(math.degrees(label.alpha), 2),
                         "car_pixels": crop_pixels(points[inside], *project),
                         "other_pixels": crop_pixels(points[~full_box], *project)})
    images = torch.from_numpy(np.stack(crops))
    predict(model, images[:8])  # warm-up
    start = time.perf_counter()
    prediction = predict(model, images)
    seconds = time.perf_counter() - start
    predicted = decode_angle(prediction.bin_logits, prediction.residuals)
    masks = (prediction.mask_logits > 0).numpy()
    for row, alpha, mask, by_box in zip(rows, predicted.tolist(), masks, masks_by_box,
                                        strict=True):
        car, other = row.pop("car_pixels"), row.pop("other_pixels")
        truth = torch.tensor(math.radians(row["alpha_deg"]))
        row["predicted_deg"] = round(math.degrees(alpha), 2)
        row["error_deg"] = round(math.degrees(float(angle_error(torch.tensor(alpha), truth))),
                                 2)
        row["car_points"], row["other_points"] = len(car), len(other)
        row["car_on_mask"], row["other_off_mask"] = agreement(mask, car, other)
        row["car_on_box"], row["other_off_box"] = agreement(by_box, car, other)
    bands = {f"height {low:.0f}-{high:.0f} px": summary(
        rows, lambda row, low=low, high=high: low <= row["height"] < high)
        for low, high in BANDS}
    occlusion = {f"occlusion {level}": summary(
        rows, lambda row, level=level: row["occlusion"] == level) for level in range(4)}
    document = {
        "settings": {"root": str(args.root), "jitter": args.jitter, "seed": args.seed,
                     "weights": str(args.weights or "shipped"), "crop_size": size,
                     "margin": margin, "training": metadata["training"],
                     "data": metadata["data"]},
        "headline": {"selection": f"height >= {HEADLINE_HEIGHT:.0f} px, occlusion <= "
                     f"{HEADLINE_OCCLUSION}", **summary(rows, headline)},
        "all_cars": summary(rows, lambda row: True),
        "by_height": bands, "by_occlusion": occlusion,
        "inference_crops_per_second_1_thread": round(len(rows) / seconds, 1),
        "cars": rows}
    write_json(args.out, document)
    shown = [i for i, row in enumerate(rows) if headline(row)]
    captions = [f"{rows[i]['error_deg']:.0f} deg h{rows[i]['height']:.0f} o"
                f"{rows[i]['occlusion']}" for i in shown]
    args.sheet.parent.mkdir(parents=True, exist_ok=True)
    picked = torch.tensor(shown, dtype=torch.long)
    contact_sheet(images[picked].numpy(), ImagePrediction(*(field[picked] for field in
                                                            prediction)),
                  np.radians([rows[i]["alpha_deg"] for i in shown]), captions,
                  columns=8).save(args.sheet)
    _print(document)
    return document


def _print(document: dict) -> None:
    print(f"{'selection':<26}{'cars':>6}{'median deg':>12}{'flips':>8}{'<=10 deg':>10}"
          f"{'car on mask':>13}{'other off':>11}{'car on box':>12}{'other off':>11}")
    groups = {"headline": document["headline"], "all cars": document["all_cars"],
              **document["by_height"], **document["by_occlusion"]}
    for name, entry in groups.items():
        if not entry["cars"]:
            continue
        print(f"{name:<26}{entry['cars']:>6}{entry['median_error_deg']:>12.1f}"
              f"{entry['flip_rate']:>8.1%}{entry['within_10_deg']:>10.1%}"
              f"{_share(entry['car_points_on_mask']):>13}"
              f"{_share(entry['other_points_off_mask']):>11}"
              f"{_share(entry['car_points_on_box']):>12}"
              f"{_share(entry['other_points_off_box']):>11}")
    print(f"inference: {document['inference_crops_per_second_1_thread']} crops/s on one thread")


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


if __name__ == "__main__":
    main()
