"""The render-and-compare fitter on generated frames with known answers."""

import dataclasses
import math

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from autolabel import fit as fit_module
from autolabel.batching import build_batch
from autolabel.evaluate import bev_iou, labels_to_boxes
from autolabel.fit import FitConfig, ObjectBatch, _Fit, fit
from autolabel.geometry import points_in_box
from autolabel.init import InitConfig
from autolabel.pipeline import FrameInput, PipelineConfig, label_frames, prepare_frame
from autolabel.prior import load_prior
from autolabel.synth import SynthConfig, generate_frame
from autolabel.synth.lidar import LidarConfig
from autolabel.synth.noise import DetectionNoise
from autolabel.synth.rig import kitti_calib
from autolabel.synth.scene import SceneConfig
from autolabel.verify import box_iou_2d

SCENE = SynthConfig(
    scene=SceneConfig(min_cars=2, max_cars=3),
    lidar=LidarConfig(azimuth_step=math.radians(0.2)),
    detections=DetectionNoise(box_jitter=1.0, mask_noise=1, miss_rate=0.0, false_positives=0.0),
    viz=False)


@pytest.fixture(scope="module")
def prior():
    return load_prior()


def generated_frame(seed: int = 3) -> tuple[FrameInput, list]:
    """Frame 0 of the generated data set ``seed`` (``SCENE``) with its image, and its cars'
    true labels."""
    generated = generate_frame(seed, 0, SCENE)
    calib = kitti_calib()
    points = calib.velo_to_rect(generated.scan.points[:, :3].astype(np.float64))
    truth = [a.label for a in generated.annotations if a.label.category == "Car"]
    image = generated.render.image
    return FrameInput("000000", image.shape[:2], calib, generated.detections, points,
                      image=image), truth


@pytest.fixture(scope="module")
def frame():
    """The generated frame without its image: the fit alone, no image model."""
    inputs, truth = generated_frame()
    return dataclasses.replace(inputs, image=None), truth


def test_fitted_labels_of_a_generated_frame_match_the_ground_truth(prior, frame):
    inputs, truth = frame
    config = PipelineConfig(yaw_hypotheses=2)
    result = label_frames([inputs], prior, config)[0]
    labels = [r.label for r in result.labels]
    assert len(labels) == len(inputs.detections)
    iou = bev_iou(labels_to_boxes(labels), labels_to_boxes(truth))
    best = iou.max(dim=1).values
    print("BEV IoU of the fitted labels with the ground truth:", best.tolist())
    assert (best >= 0.8).all() and best.median() >= 0.85  # measured 0.93 to 0.94
    assert all(r.accepted and r.source == "lidar" for r in result.labels)
    assert all(np.isfinite(r.latent).all() and 0 <= r.label.score <= 1 for r in result.labels)
    assert result.ground_plane is not None


def test_the_size_prior_of_each_object_is_its_classs_spread(frame):
    inputs, _ = frame
    spreads = InitConfig(class_spreads=(("Car", (0.2, 0.05, 0.07)),))
    for config, expected in ((PipelineConfig(yaw_hypotheses=1), [0.15, 0.063, 0.09]),
                             (PipelineConfig(yaw_hypotheses=1, init=spreads), [0.2, 0.05, 0.07])):
        batch = build_batch([inputs], prepare_frame(inputs, config).objects, config,
                            torch.device("cpu"))
        assert len(batch) > 0
        torch.testing.assert_close(batch.size_log_std,
                                   torch.tensor(expected).expand(len(batch), 3))


def test_lidar_objects_get_free_ray_samples_outside_their_cars(frame):
    inputs, truth = frame
    config = PipelineConfig(yaw_hypotheses=1)
    batch = build_batch([inputs], prepare_frame(inputs, config).objects, config,
                        torch.device("cpu"))
    assert batch.free_points is not None and batch.free_valid.sum(-1).min() > 20
    # The simulated LiDAR has no glass: no sample the sensor saw through lies in a true car
    # (its box less 0.15 m a side: rounded bumper corners leave the box's corners empty).
    samples = batch.free_points[batch.free_valid].double()
    for car in truth:
        inside = points_in_box(samples, torch.as_tensor(car.center),
                               torch.as_tensor(car.rotation), torch.as_tensor(car.size - 0.3))
        assert not inside.any()
    off = dataclasses.replace(config, free_rays=None)
    assert build_batch([inputs], prepare_frame(inputs, off).objects, off,
                       torch.device("cpu")).free_points is None


def test_a_detections_yaw_hypotheses_share_one_draw_of_free_ray_samples(frame):
    """Hypotheses are compared on the same samples, whichever frames they are batched with."""
    inputs, _ = frame
    config = PipelineConfig(yaw_hypotheses=4)
    objects = prepare_frame(inputs, config).objects
    batch = build_batch([inputs], objects, config, torch.device("cpu"))
    rows = [i for i, o in enumerate(objects) if o.detection == objects[0].detection]
    assert len(rows) == 4
    for row in rows[1:]:
        assert torch.equal(batch.free_points[row], batch.free_points[rows[0]])
    others = [i for i, o in enumerate(objects) if o.detection != objects[0].detection]
    assert not torch.equal(batch.free_points[others[0]], batch.free_points[rows[0]])
    alone = build_batch([inputs], [objects[r] for r in rows], config, torch.device("cpu"))
    count = int(batch.free_valid[rows[0]].sum())
    assert torch.equal(alone.free_points[0, :count], batch.free_points[rows[0], :count])


def test_an_object_whose_points_are_nan_is_frozen_and_the_others_are_fitted(prior, frame):
    inputs, _ = frame
    config = PipelineConfig(yaw_hypotheses=1)
    objects = prepare_frame(inputs, config).objects
    batch = build_batch([inputs], objects, config, torch.device("cpu"))
    batch.points[0, 0] = float("nan")
    short = dataclasses.replace(FitConfig(), iterations=6, pose_iterations=3)
    output = fit(prior, batch, short)
    assert not bool(output.finite[0]) and bool(output.finite[1:].all())
    assert torch.equal(output.center[0], batch.center[0])  # its initial box is kept
    for name in ("center", "size", "latent"):
        assert torch.isfinite(getattr(output, name)).all(), name


def test_without_sensors_labels_are_weak_and_not_accepted(prior, frame):
    inputs, _ = frame
    box_only = dataclasses.replace(inputs, points=None)
    config = PipelineConfig(yaw_hypotheses=1,
                            fit=dataclasses.replace(FitConfig(), iterations=10))
    result = label_frames([box_only], prior, config)[0]
    assert all(r.source == "box" and not r.accepted for r in result.labels)
    assert all(any("weak label" in reason for reason in r.reasons) for r in result.labels)


def test_a_box_extent_fit_reprojects_its_3d_box_onto_projected_box_detections(prior, frame):
    """Detections that are the true 3D boxes' projections (KITTI's convention) and no points:
    fitted with ``box_extent="box"`` the labels' own projected boxes land on them; the
    shape's outline, which fills less than its box, makes them overshoot."""
    inputs, truth = frame
    projected = [label.with_image_box(inputs.calib.P2, inputs.image_size).box2d
                 for label in truth]
    detections = []
    for detection in inputs.detections:
        overlap = [float(box_iou_2d(torch.tensor([detection.box2d]), torch.tensor([box]))[0])
                   for box in projected]
        detections.append(dataclasses.replace(detection, mask=None,
                                              box2d=projected[int(np.argmax(overlap))]))
    inputs = dataclasses.replace(inputs, detections=detections, points=None)
    misses = {}
    for extent in ("shape", "box"):
        config = PipelineConfig(yaw_hypotheses=1, extent=None,
                                fit=dataclasses.replace(FitConfig(), box_extent=extent))
        labels = [r.label for r in label_frames([inputs], prior, config)[0].labels]
        misses[extent] = float(np.median([np.abs(np.subtract(label.box2d, d.box2d)).mean()
                                          for label, d in zip(labels, detections, strict=True)]))
    print("median pixels between the labels' projected boxes and the detections:", misses)
    assert misses["box"] < 1.5 and misses["box"] < 0.7 * misses["shape"]


def test_hypotheses_are_fitted_in_chunks_that_keep_each_detection_whole(prior, frame,
                                                                        monkeypatch):
    from autolabel import pipeline

    inputs, truth = frame
    sizes, obstacles = [], []

    def recording_fit(prior, batch, config, seed):
        sizes.append(len(batch))
        obstacles.append(batch.obstacles_valid.sum(-1).tolist())
        return fit(prior, batch, config, seed)

    monkeypatch.setattr(pipeline, "fit", recording_fit)
    config = PipelineConfig(yaw_hypotheses=2, shape_hypotheses=2, max_fit_objects=3)
    result = label_frames([inputs], prior, config)[0]
    count = len(inputs.detections)
    assert sizes == [2] * count  # 3 cannot hold two detections' pairs
    # every hypothesis still sees the other detections of its frame, fitted or not
    assert all(n == count - 1 for rows in obstacles for n in rows)
    iou = bev_iou(labels_to_boxes([r.label for r in result.labels]), labels_to_boxes(truth))
    assert len(result.labels) == count and (iou.max(dim=1).values >= 0.8).all()


aten = torch.ops.aten
# Operators that read a value back to the host or return a shape that depends on the data.
WAITING = {aten._local_scalar_dense, aten.nonzero, aten.nonzero_numpy, aten.argwhere,
           aten.masked_select, aten.masked_scatter, aten._unique, aten._unique2, aten.unique_dim,
           aten.unique_consecutive, aten.repeat_interleave}
BOOL_INDEXED = {aten.index, aten.index_put, aten.index_put_, aten._index_put_impl_}


class _NoWaiting(TorchDispatchMode):
    """Counts the operators run under it and raises on any that would wait for the device:
    ``.item()``, ``bool(tensor)``, ``nonzero``, ``unique``, boolean-mask indexing."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        packet = func.overloadpacket
        boolean = packet in BOOL_INDEXED and any(
            index is not None and index.dtype in (torch.bool, torch.uint8) for index in args[1])
        if packet in WAITING or boolean:
            raise AssertionError(f"{func} waits for the device")
        self.calls += 1
        return func(*args, **(kwargs or {}))


def _repeat(batch: ObjectBatch, count: int) -> ObjectBatch:
    """A batch of ``count`` objects cycling through the given ones."""
    rows = torch.arange(count) % len(batch)
    return dataclasses.replace(batch, **{
        field.name: getattr(batch, field.name)[rows] for field in dataclasses.fields(batch)
        if getattr(batch, field.name) is not None})


def test_the_guard_rejects_what_waits_for_the_device():
    values = torch.tensor([1.0, -1.0])
    for waits in (lambda: bool(values.sum() > 0), lambda: values.nonzero(),
                  lambda: values[values > 0], lambda: values.unique(),
                  lambda: float(values.max())):
        with pytest.raises(AssertionError, match="waits"), _NoWaiting():
            waits()


def test_an_iteration_runs_the_same_operators_at_any_batch_size_and_never_waits(prior, frame):
    inputs, _ = frame
    config = PipelineConfig(yaw_hypotheses=1)
    objects = prepare_frame(inputs, config).objects
    batch = build_batch([inputs], objects, config, torch.device("cpu"))
    _Fit(prior, batch, FitConfig()).step(False)  # the renderer's tables are made on first use
    calls = {}
    for count in (2, 16):
        run = _Fit(prior, _repeat(batch, count), FitConfig())
        for shape_stage in (False, True, True):  # the first shape step creates Adam's state
            with _NoWaiting() as guard:
                run.step(shape_stage)
            calls[count, shape_stage] = guard.calls
    print("operators per iteration (pose, shape stage):", calls[2, False], calls[2, True])
    assert calls[2, False] == calls[16, False] and calls[2, True] == calls[16, True]
    # 801 and 1055 measured with the free-ray term (1373 and 1677 before the renderer's
    # hand-written backward passes and the loss terms prepared once per batch); the issue's
    # target is under 300.
    assert calls[2, False] < 820 and calls[2, True] < 1060


def test_only_the_best_hypothesis_after_the_pose_stage_goes_on_to_the_shape_stage(
        prior, frame, monkeypatch):
    from autolabel import pipeline

    inputs, truth = frame
    calls = []

    def recording_fit(prior, batch, config, seed):
        output = fit(prior, batch, config, seed)
        calls.append((len(batch), config.fit_shape, config.iterations, batch.center.clone(),
                      output))
        return output

    monkeypatch.setattr(pipeline, "fit", recording_fit)
    config = PipelineConfig(yaw_hypotheses=4, shape_hypotheses=1)
    result = label_frames([inputs], prior, config)[0]
    count = len(inputs.detections)
    (posed_size, posed_shape, posed_steps, _, posed), (shaped_size, _, shaped_steps, start,
                                                       _) = calls
    assert (posed_size, posed_shape, posed_steps) == (4 * count, False, 30)
    assert shaped_size == count and shaped_steps == 30
    totals = torch.where(posed.finite, posed.total, math.inf).view(count, 4)
    best = totals.argmin(dim=1) + 4 * torch.arange(count)
    # the shape stage starts where the pose stage left the best hypothesis of each detection
    torch.testing.assert_close(start, posed.center[best])
    assert [r.hypothesis for r in result.labels] == (best % 4).tolist()
    iou = bev_iou(labels_to_boxes([r.label for r in result.labels]), labels_to_boxes(truth))
    assert (iou.max(dim=1).values >= 0.8).all()


def _steps(prior, frame, compiled: bool, steps=(False, False, True, True)) -> _Fit:
    """A fit of the frame's detections (one hypothesis each) after ``steps`` (pose or shape
    stage each)."""
    inputs, _ = frame
    config = PipelineConfig(yaw_hypotheses=1)
    batch = build_batch([inputs], prepare_frame(inputs, config).objects, config,
                        torch.device("cpu"))
    run = _Fit(prior, batch, dataclasses.replace(FitConfig(), compile=compiled))
    for shape_stage in steps:
        run.step(shape_stage)
    return run


def test_a_compiled_iteration_moves_the_parameters_as_the_eager_one(prior, frame):
    # FitConfig.compile: compiling the two stages takes about 10 s on 2 CPU cores with
    # inductor's on-disk cache and about 40 s without.
    eager, compiled = (_steps(prior, frame, flag) for flag in (False, True))
    assert compiled.compiled
    # Parameters in units of their learning rates, after 4 Adam steps of about 1 each (Adam
    # would hide a gradient wrong by a constant factor: the losses are compared too).
    torch.testing.assert_close(compiled.params.pose, eager.params.pose, atol=1e-3, rtol=0)
    torch.testing.assert_close(compiled.params.shape, eager.params.shape, atol=1e-3, rtol=0)
    torch.testing.assert_close(compiled.history[-1], eager.history[-1], atol=1e-6, rtol=1e-4)
    assert torch.equal(compiled.finite, eager.finite)


def test_past_the_recompile_limit_a_fit_steps_uncompiled(prior, frame, monkeypatch):
    # No compiled version allowed (and none left from other tests): the first step finds the
    # limit reached, and this fit's steps are then the eager ones, bit for bit.
    monkeypatch.setattr(fit_module, "RECOMPILE_LIMIT", 0)
    torch._dynamo.reset()
    eager, fallen_back = (_steps(prior, frame, flag, (False, True)) for flag in (False, True))
    assert not fallen_back.compiled
    assert torch.equal(fallen_back.params.pose, eager.params.pose)
    assert torch.equal(fallen_back.params.shape, eager.params.shape)


def test_an_unknown_box_extent_is_refused_when_the_config_is_made():
    with pytest.raises(ValueError, match="box_extent must be one of"):
        FitConfig(box_extent="mask")
