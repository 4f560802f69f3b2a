"""The image model's evidence in the fitter: pasted masks, the viewpoint cost, and both wired
into the pipeline on a generated frame."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from autolabel.batching import build_batch, window_samples
from autolabel.evaluate import labels_to_boxes
from autolabel.geometry import wrap_angle
from autolabel.image.crops import crop_window
from autolabel.image.evidence import (
    FrameEvidence,
    ImageEvidenceConfig,
    paste_mask,
    read_frame,
    viewpoint_cost,
)
from autolabel.image.viewpoint import bin_centres, observation_angle
from autolabel.pipeline import PipelineConfig, label_frames, prepare_frame
from autolabel.prior import load_prior
from tests.test_fit import generated_frame


def test_a_pasted_mask_sampled_through_its_window_is_the_crop_inside_the_box():
    rng = np.random.default_rng(0)
    probability = rng.uniform(size=(64, 64))
    box = np.array([300.2, 100.7, 420.9, 170.1])  # 120 px wide: a window pixel < an image one
    window = crop_window(box, 0.15)
    mask = paste_mask(probability, window, box, (375, 1242), 0.5)
    assert not mask[:, :300].any() and not mask[:, 421:].any()
    assert not mask[:100].any() and not mask[171:].any()
    back = window_samples(mask.astype(np.float32), window[None], 64)[0]
    centres = window[0] + (np.arange(64) + 0.5) * (window[2] - window[0]) / 64
    rows = window[1] + (np.arange(64) + 0.5) * (window[3] - window[1]) / 64
    inside = (((rows > box[1] + 1) & (rows < box[3] - 1))[:, None]
              & ((centres > box[0] + 1) & (centres < box[2] - 1))[None, :])
    assert inside.sum() > 1200
    np.testing.assert_array_equal(back[inside] > 0.5, probability[inside] > 0.5)
    assert paste_mask(probability, window, np.array([-9.0, -9, -2, -2]), (375, 1242),
                      0.5).sum() == 0


def test_the_viewpoint_cost_interpolates_the_bins_and_prefers_the_models_heading():
    bins = 8
    probabilities = torch.full((1, bins), 0.02)
    probabilities[0, 5] = 0.86
    centres = bin_centres(bins, torch.float64)
    center = torch.tensor([[3.0, 1.5, 20.0]], dtype=torch.float64)
    ray = math.atan2(3.0, 20.0)

    def cost(alpha: float) -> float:
        yaw = torch.tensor([alpha + ray], dtype=torch.float64)
        return float(viewpoint_cost(probabilities, yaw, center, 0.05)[0])

    assert cost(float(centres[5])) == pytest.approx(-math.log(0.86))
    halfway = float(centres[5] + math.pi / bins)
    assert cost(halfway) == pytest.approx(-math.log((0.86 + 0.02) / 2))
    assert cost(float(centres[1])) == pytest.approx(-math.log(0.05))  # the floor
    assert cost(float(centres[0])) == pytest.approx(-math.log(0.05))  # and it wraps around
    assert cost(float(centres[5]) + math.pi) > cost(float(centres[5])) + 2


@pytest.fixture(scope="module")
def scene():
    """A generated frame with its image, its detections without masks, and the truth."""
    inputs, truth = generated_frame()
    detections = [dataclasses.replace(d, mask=None) for d in inputs.detections]
    return dataclasses.replace(inputs, detections=detections), inputs.detections, truth


def test_predicted_masks_fill_only_maskless_detections_and_match_the_rendered_masks(scene):
    frame, given, _ = scene
    config = PipelineConfig(image=ImageEvidenceConfig(masks=True))
    prepared = prepare_frame(frame, config)
    ious = []
    for predicted, true in zip(prepared.frame.detections, given, strict=True):
        x1, y1, x2, y2 = predicted.box2d
        rows, columns = np.nonzero(predicted.mask)
        assert columns.min() >= x1 - 1 and columns.max() <= x2 + 1
        assert rows.min() >= y1 - 1 and rows.max() <= y2 + 1
        ious.append((predicted.mask & true.mask).sum() / (predicted.mask | true.mask).sum())
    print("IoU of predicted and rendered masks:", np.round(ious, 3).tolist())
    assert min(ious) > 0.6
    kept = prepare_frame(dataclasses.replace(frame, detections=given), config)
    assert all(a.mask is b.mask for a, b in zip(kept.frame.detections, given, strict=True))
    unused = prepare_frame(frame, PipelineConfig())
    assert all(d.mask is None for d in unused.frame.detections)
    assert read_frame(frame.image, frame.detections, 0.15).masks is None


def test_a_heavy_viewpoint_weight_turns_every_label_to_the_models_heading(scene, monkeypatch):
    from autolabel import pipeline

    frame, _, truth = scene
    boxes = labels_to_boxes(truth)
    flipped = wrap_angle(observation_angle(boxes[:, 6], boxes[:, :3]) + math.pi)
    bins = 24
    index = ((flipped + math.pi) / (2 * math.pi / bins)).floor().long() % bins
    believed = torch.nn.functional.one_hot(index, bins).double() * 0.9 + 0.1 / bins

    def reading(image, detections, margin, config):
        # detections are in the order of the cars in this generated frame
        return FrameEvidence(None, believed.numpy(), flipped.numpy())

    monkeypatch.setattr(pipeline, "read_frame", reading)
    prior = load_prior()
    headings = {}
    for weight in (0.0, 100.0):
        config = PipelineConfig(yaw_hypotheses=2, image=ImageEvidenceConfig(
            viewpoint_weight=weight))
        labels = [r.label for r in label_frames([frame], prior, config)[0].labels]
        error = wrap_angle(labels_to_boxes(labels)[:, 6] - boxes[:, 6]).abs()
        headings[weight] = torch.rad2deg(error)
    print("heading errors (deg) without and with the viewpoint:", headings)
    assert (headings[0.0] < 20).all() and (headings[100.0] > 160).all()


def test_the_reading_of_a_frame_does_not_depend_on_the_processs_thread_count(scene):
    frame = scene[0]
    # six crops (the cars, and again 2 px to the right): with the first three alone the
    # viewpoints happen to come out the same on 1 and 2 threads, with six they do not
    detections = [*frame.detections, *(dataclasses.replace(d, box2d=d.box2d + [2, 0, 2, 0])
                                       for d in frame.detections)]
    before = torch.get_num_threads()
    readings = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            readings.append(read_frame(frame.image, detections, 0.15,
                                       ImageEvidenceConfig(masks=True)))
            assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)
    one, two = readings
    np.testing.assert_array_equal(one.viewpoints, two.viewpoints)
    np.testing.assert_array_equal(one.alphas, two.alphas)
    assert all((a == b).all() for a, b in zip(one.masks, two.masks, strict=True))


def _box_nocs(label, projection: np.ndarray, window: np.ndarray, size: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """(S, S, 3) where each window pixel's ray enters the label's 3D box, as NOCS of the box
    (``point / size + 1/2`` in its frame), and (S, S) bool where the ray meets the box."""
    K, offset = projection[:, :3], projection[:, 3]
    camera = -np.linalg.solve(K, offset)
    steps = (np.arange(size) + 0.5) / size
    u = window[0] + steps * (window[2] - window[0])
    v = window[1] + steps * (window[3] - window[1])
    pixels = np.stack(np.meshgrid(u, v), axis=-1).reshape(-1, 2)
    directions = np.linalg.solve(K, np.c_[pixels, np.ones(len(pixels))].T).T
    start = (camera - label.center) @ label.rotation  # object frame
    heading = directions @ label.rotation
    with np.errstate(divide="ignore", invalid="ignore"):
        near = (-label.size / 2 - start) / heading
        far = (label.size / 2 - start) / heading
    enter = np.minimum(near, far).max(axis=1)
    leave = np.maximum(near, far).min(axis=1)
    hit = enter < leave
    entry = start + enter[:, None] * heading
    return (entry / label.size + 0.5).reshape(size, size, 3), hit.reshape(size, size)


def test_predicted_nocs_maps_say_where_on_the_true_box_each_pixel_lies(scene):
    """The image model's NOCS maps, in the fitter's windows, agree with the true cars' boxes
    (the renderer's convention: x forward, y left, z up), and much less turned end for end."""
    frame, _, truth = scene
    config = PipelineConfig(yaw_hypotheses=1, image=ImageEvidenceConfig(nocs=True))
    objects = prepare_frame(frame, config).objects
    batch = build_batch([frame], objects, config, torch.device("cpu"))
    assert batch.nocs is not None and batch.nocs.shape == (len(objects), 64, 64, 3)
    without = PipelineConfig(image=ImageEvidenceConfig(nocs=False))
    assert build_batch([frame], prepare_frame(frame, without).objects, without,
                       torch.device("cpu")).nocs is None
    boxes_only = dataclasses.replace(frame, points=None)  # weak hypotheses get no NOCS target
    assert build_batch([boxes_only], prepare_frame(boxes_only, config).objects, config,
                       torch.device("cpu")).nocs is None
    for row, obj in enumerate(objects):
        box, hit = _box_nocs(truth[obj.detection], frame.calib.P2,
                             batch.window[row].numpy().astype(np.float64), 64)
        both = hit & batch.nocs_valid[row].numpy()
        assert both.sum() > 200
        predicted = batch.nocs[row].numpy()[both]
        turned = np.c_[1 - predicted[:, :2], predicted[:, 2:]]
        error = np.abs(predicted - box[both]).sum(-1).mean()
        error_turned = np.abs(turned - box[both]).sum(-1).mean()
        print(f"detection {obj.detection}: mean L1 {error:.3f}, turned {error_turned:.3f}")
        assert error < 0.3 and error < 0.6 * error_turned
