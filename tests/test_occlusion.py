"""Tests for autolabel.occlusion: nearer objects' masks and the box edges they cut."""

from __future__ import annotations

import numpy as np
import torch

from autolabel.io.detections import Detection
from autolabel.losses import silhouette_loss
from autolabel.occlusion import occluded_edges, occluder_masks


def _scene():
    """A far car (columns 10-39) whose right part hides behind a near car (columns 30-59)."""
    far_full = np.zeros((50, 80), dtype=bool)
    far_full[20:35, 10:40] = True
    near = np.zeros((50, 80), dtype=bool)
    near[15:45, 30:60] = True
    far_visible = far_full & ~near
    detections = [Detection(np.array([10.0, 20.0, 29.0, 34.0]), "Car", 0.9, far_visible),
                  Detection(np.array([30.0, 15.0, 59.0, 44.0]), "Car", 0.9, near)]
    return detections, far_full, near


def test_only_nearer_objects_occlude_and_their_pixels_border_the_cut_box_edge():
    detections, _, near = _scene()
    far_occluder, near_occluder = occluder_masks(detections, [20.0, 12.0])
    assert near_occluder is None
    np.testing.assert_array_equal(far_occluder, near)
    assert occluded_edges(detections[0].box2d, far_occluder).tolist() == [False, False, True,
                                                                          False]
    assert not occluded_edges(detections[1].box2d, near_occluder).any()


def test_ignoring_the_occluder_lets_the_whole_car_match_its_visible_mask():
    detections, far_full, _ = _scene()
    far_occluder = occluder_masks(detections, [20.0, 12.0])[0]
    rendered = far_full[None].astype(np.float32)  # the whole car, hidden part included
    visible = detections[0].mask[None].astype(np.float32)
    weight = torch.as_tensor(1.0 - far_occluder[None].astype(np.float32))
    assert silhouette_loss(torch.as_tensor(rendered), torch.as_tensor(visible), weight) == 0
    assert silhouette_loss(torch.as_tensor(rendered), torch.as_tensor(visible)) > 0.3
