"""Writing synthetic frames as a KITTI-layout folder; every file is written atomically.

Per frame ``<id>``::

    image_2/<id>.png        the image (written last, so a listed frame is complete)
    velodyne/<id>.bin       the LiDAR scan, KITTI float32 (x, y, z, reflectance)
    calib/<id>.txt          the rig's KITTI calibration
    label_2/<id>.txt        ground truth (Car and DontCare)
    detections/<id>.json    this frame's noisy detections, COCO results layout
    depth/<id>.png          with a depth model: noisy depth, 16-bit PNG, 256 units per metre
    viz/<id>.png            with viz: the image with the 3D boxes drawn
    scene/<id>.json         every car placed: shape seed, body type, box, label line or null

and, once for the data set, ``detections.json``: all frames' detections in one COCO file
(:func:`autolabel.io.detections.merge_detections`).
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from autolabel.io.atomic import atomic_path, write_text_atomic
from autolabel.io.depth import write_depth_png
from autolabel.io.detections import write_detections_coco
from autolabel.io.kitti import write_calib, write_labels
from autolabel.synth.generate import SynthFrame
from autolabel.viz import draw_boxes, save_png


def write_frame(root: str | Path, frame: SynthFrame, viz: bool = True) -> None:
    """Write all files of ``frame`` under ``root`` (see the module docstring)."""
    root = Path(root)
    name = f"{frame.frame_id}.png"
    calib = frame.scene.calib
    labels = [annotation.label for annotation in frame.annotations]
    with atomic_path(root / "velodyne" / f"{frame.frame_id}.bin") as temporary:
        frame.scan.points.astype("<f4").tofile(temporary)
    write_calib(root / "calib" / f"{frame.frame_id}.txt", calib)
    write_labels(root / "label_2" / f"{frame.frame_id}.txt", labels)
    write_detections_coco(root / "detections" / f"{frame.frame_id}.json",
                          {name: frame.detections}, {name: frame.render.instance.shape})
    if frame.depth is not None:
        write_depth_png(root / "depth" / name, frame.depth)
    if viz:
        save_png(root / "viz" / name, draw_boxes(frame.render.image, labels, calib.P2))
    write_text_atomic(root / "scene" / f"{frame.frame_id}.json",
                      json.dumps(_scene_record(frame), indent=1) + "\n")
    save_png(root / "image_2" / name, Image.fromarray(frame.render.image))


def _scene_record(frame: SynthFrame) -> dict:
    """The frame's cars as JSON: shape, box, and the 0-based label_2 line (null if unseen)."""
    line_of_car = {annotation.car: line for line, annotation in enumerate(frame.annotations)}
    return {"frame": frame.frame_id, "ground_y": frame.scene.ground_y, "cars": [
        {"shape_seed": car.params.seed, "body_type": car.params.body_type,
         "center": car.center.tolist(), "yaw": car.yaw, "size": car.size.tolist(),
         "label_line": line_of_car.get(index)}
        for index, car in enumerate(frame.scene.cars)]}
