"""Tests for autolabel.synth.annotate: label_2 ground truth from rendered scenes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from autolabel.geometry import box_corners, projected_box2d
from autolabel.io.kitti import DONT_CARE, read_labels, write_labels
from autolabel.synth.annotate import AnnotateConfig, annotate, truncation, visible_box
from autolabel.synth.camera import render_camera
from autolabel.synth.rig import ground_y, kitti_calib
from autolabel.synth.scene import Scene, SceneConfig, build_raycaster, place_car, sample_scene
from shape_priors.meshes import HELDOUT_SEEDS, sample_car_params


def _scene(*placements: tuple[float, float, float]) -> Scene:
    calib = kitti_calib()
    ground = ground_y(calib)
    cars = tuple(place_car(sample_car_params(HELDOUT_SEEDS[30 + i]), x, z, yaw, ground)
                 for i, (x, z, yaw) in enumerate(placements))
    return Scene(cars, calib, ground)


def _annotated(scene: Scene, config: AnnotateConfig = AnnotateConfig()):
    render = render_camera(scene, build_raycaster(scene), np.random.default_rng(0))
    return render, annotate(scene, render, config)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])
    return inter / (area - inter)


def _projected(label, P2) -> np.ndarray:
    corners = box_corners(torch.as_tensor(label.center), torch.as_tensor(label.rotation),
                          torch.as_tensor(label.size))
    return projected_box2d(corners, torch.as_tensor(P2)).numpy()


@pytest.fixture(scope="module")
def random_frame():
    scene = sample_scene(np.random.default_rng(11), SceneConfig(min_cars=8, max_cars=8))
    return scene, *_annotated(scene)


def test_projected_3d_box_contains_the_visible_mask_box(random_frame):
    scene, render, annotations = random_frame
    assert len(annotations) >= 4
    for annotation in annotations:
        projected = _projected(annotation.label, scene.calib.P2)
        box = visible_box(render.instance == annotation.car)
        np.testing.assert_array_equal(annotation.label.box2d, box)
        assert (box[:2] >= projected[:2] - 0.5).all() and (box[2:] <= projected[2:] + 0.5).all()


def test_unoccluded_untruncated_car_box_matches_its_projected_3d_box():
    scene = _scene((-1.0, 14.0, 0.5), (5.0, 25.0, -math.pi / 2))
    _, annotations = _annotated(scene)
    assert [a.label.occlusion for a in annotations] == [0, 0]
    assert [a.label.truncation for a in annotations] == [0.0, 0.0]
    for annotation in annotations:
        assert _iou(annotation.label.box2d, _projected(annotation.label, scene.calib.P2)) > 0.75


def test_car_hidden_behind_another_gets_a_higher_occlusion_level():
    _, annotations = _annotated(_scene((0.0, 9.0, math.pi / 2), (0.2, 16.0, math.pi / 2)))
    front, back = annotations
    assert front.label.occlusion == 0 and front.visible == pytest.approx(1.0)
    assert back.label.occlusion >= 1 and back.visible < 0.85


def test_car_cut_by_the_image_edge_is_truncated():
    _, (annotation,) = _annotated(_scene((-7.5, 8.0, math.pi / 2)))
    assert annotation.label.truncation > 0.1
    assert annotation.label.box2d[0] == 0.0


def test_truncation_of_a_box_half_outside_is_one_half():
    assert truncation(np.array([-10.0, 0.0, 10.0, 5.0]), width=100, height=50) == 0.5
    assert truncation(np.array([10.0, 10.0, 20.0, 20.0]), width=100, height=50) == 0.0


def test_cars_below_the_pixel_threshold_become_dont_care():
    _, annotations = _annotated(_scene((0.0, 12.0, 0.0)), AnnotateConfig(min_pixels=10**7))
    assert [a.label.category for a in annotations] == [DONT_CARE]


def test_labels_round_trip_through_read_labels(random_frame, tmp_path):
    _, _, annotations = random_frame
    labels = [a.label for a in annotations if a.label.category != DONT_CARE]
    write_labels(tmp_path / "000000.txt", labels)
    back = read_labels(tmp_path / "000000.txt")
    assert len(back) == len(labels)
    for written, read in zip(labels, back, strict=True):
        # The centre comes back from the rounded bottom-centre and the rounded height.
        np.testing.assert_allclose(read.center, written.center, atol=0.0076)
        np.testing.assert_allclose(read.size, written.size, atol=0.006)
        np.testing.assert_allclose(read.box2d, written.box2d, atol=0.006)
        assert math.remainder(read.yaw - written.yaw, 2 * math.pi) == pytest.approx(0, abs=0.006)
        assert (read.occlusion, read.truncation) == (written.occlusion, written.truncation)
