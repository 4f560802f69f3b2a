"""Tests for autolabel.synth.writer: the KITTI folder, read back with the project's readers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from autolabel.io.depth import read_depth
from autolabel.io.detections import DETECTIONS_FILE, merge_detections, read_detections
from autolabel.io.kitti import list_frames, read_calib, read_labels, read_velodyne
from autolabel.synth.generate import SynthConfig, generate_frame
from autolabel.synth.lidar import LidarConfig
from autolabel.synth.noise import DepthNoise
from autolabel.synth.rig import kitti_calib
from autolabel.synth.scene import SceneConfig
from autolabel.synth.writer import write_frame

CONFIG = SynthConfig(scene=SceneConfig(min_cars=3, max_cars=4),
                     lidar=LidarConfig(azimuth_step=math.radians(0.4)), depth=DepthNoise())


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    frames = [generate_frame(3, index, CONFIG) for index in range(2)]
    for frame in frames:
        write_frame(root, frame)
    merge_detections(root, [frame.frame_id for frame in frames])
    return root, frames


def _files(root) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes()
            for path in sorted(root.rglob("*")) if path.is_file()}


def test_written_folder_reads_back_with_the_kitti_readers(written):
    root, frames = written
    assert list_frames(root) == ["000000", "000001"]
    for frame in frames:
        stem = frame.frame_id
        calib = read_calib(root / "calib" / f"{stem}.txt")
        np.testing.assert_array_equal(calib.Tr_velo_to_cam, kitti_calib().Tr_velo_to_cam)
        labels = read_labels(root / "label_2" / f"{stem}.txt")
        assert [label.category for label in labels] == [a.label.category
                                                         for a in frame.annotations]
        np.testing.assert_array_equal(read_velodyne(root / "velodyne" / f"{stem}.bin"),
                                      frame.scan.points)
        depth = read_depth(root / "depth" / f"{stem}.png")
        np.testing.assert_allclose(depth, frame.depth, atol=0.5 / 256 + 1e-6)
        (detections,) = read_detections(root / "detections" / f"{stem}.json").values()
        assert len(detections) == len(frame.detections)
        for read, made in zip(detections, frame.detections, strict=True):
            np.testing.assert_allclose(read.box2d, made.box2d, atol=1e-9)
            np.testing.assert_array_equal(read.mask, made.mask)
        assert (root / "viz" / f"{stem}.png").is_file()


def test_merged_detections_hold_every_frame(written):
    root, frames = written
    merged = read_detections(root / DETECTIONS_FILE)
    assert sorted(merged) == ["000000.png", "000001.png"]
    for frame in frames:
        detections = merged[f"{frame.frame_id}.png"]
        assert [d.score for d in detections] == [d.score for d in frame.detections]
        for read, made in zip(detections, frame.detections, strict=True):
            np.testing.assert_array_equal(read.mask, made.mask)


def test_merged_detections_name_each_image_after_its_frame(written, tmp_path):
    root, frames = written
    (tmp_path / "detections").mkdir()
    for copy in ("a", "b"):
        (tmp_path / "detections" / f"{copy}.json").symlink_to(
            root / "detections" / f"{frames[1].frame_id}.json")
    merged = read_detections(merge_detections(tmp_path, ["a", "b"]))
    assert sorted(merged) == ["a.png", "b.png"]
    assert [d.score for d in merged["b.png"]] == [d.score for d in frames[1].detections]


def test_scene_record_links_every_labelled_car_to_its_label_line(written):
    root, frames = written
    for frame in frames:
        record = json.loads((root / "scene" / f"{frame.frame_id}.json").read_text())
        labels = read_labels(root / "label_2" / f"{frame.frame_id}.txt")
        assert len(record["cars"]) == len(frame.scene.cars)
        for car in record["cars"]:
            if car["label_line"] is None or labels[car["label_line"]].category != "Car":
                continue
            label = labels[car["label_line"]]
            np.testing.assert_allclose(label.center, car["center"], atol=0.008)
            np.testing.assert_allclose(label.size, car["size"], atol=0.006)


def test_same_seed_writes_identical_files_and_another_seed_differs(written, tmp_path):
    root, _ = written
    again, other = tmp_path / "again", tmp_path / "other"
    write_frame(again, generate_frame(3, 0, CONFIG))
    write_frame(other, generate_frame(4, 0, CONFIG))
    expected = {name: data for name, data in _files(root).items() if "000000" in name}
    assert _files(again) == expected
    different = _files(other)
    assert different.keys() == expected.keys()
    for folder in ("image_2", "velodyne", "label_2", "detections"):
        name = next(name for name in expected if name.startswith(folder))
        assert different[name] != expected[name]
