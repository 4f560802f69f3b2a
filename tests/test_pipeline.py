import dataclasses

import numpy as np

from autolabel.batching import sparse_depth_windows, window_samples

CAMERA = np.array([[100.0, 0.0, 50.0, 0.0], [0.0, 100.0, 50.0, 0.0], [0.0, 0.0, 1.0, 0.0]])


def test_sparse_depth_keeps_the_nearest_point_per_window_pixel():
    # Both points project onto image pixel (50, 50), the centre of the window's pixel (1, 1).
    points = np.array([[0.0, 0.0, 10.0], [0.0, 0.0, 6.0], [0.0, 0.0, -5.0]])
    window = np.array([[44.0, 44.0, 56.0, 56.0]])
    depth = sparse_depth_windows(points, CAMERA, window, 2)
    assert depth.shape == (1, 2, 2)
    assert depth[0, 1, 1] == 6.0 and (depth[0].ravel()[:3] == 0).all()


def test_window_samples_are_zero_outside_the_image():
    image = np.ones((4, 4))
    samples = window_samples(image, np.array([[-4.0, 0.0, 4.0, 8.0]]), 2)
    assert samples.tolist() == [[[0.0, 1.0], [0.0, 0.0]]]


def test_label_dataset_yields_one_result_per_frame_in_order_across_batches(monkeypatch):
    import autolabel
    from autolabel import pipeline

    seen = []

    def fake_fit_frames(chunk, prior, config):
        seen.append([frame for frame in chunk])
        return [pipeline.FrameResult(frame, [], None, 0.0) for frame in chunk]

    monkeypatch.setattr(pipeline, "prepare_frame", lambda frame, config: frame)
    monkeypatch.setattr(pipeline, "fit_frames", fake_fit_frames)
    results = list(autolabel.label_dataset(iter(["a", "b", "c"]), prior=object(), batch=2))
    assert [r.frame_id for r in results] == ["a", "b", "c"]
    assert seen == [["a", "b"], ["c"]]


def test_free_space_follows_only_rays_that_cross_the_object_between_the_band_heights():
    from autolabel.batching import FitObject, _free_space_rays
    from autolabel.init import GroundPlane, Hypothesis

    plane = GroundPlane(np.array([0.0, -1.0, 0.0]), 1.65)  # the sensor 1.65 m up
    car = Hypothesis(np.array([0.0, 1.0, 10.0]), 0.0, np.array([4.0, 1.6, 1.5]),
                     np.zeros((0, 3)), "lidar", ground=plane)
    # (distance ahead, height): the road 20 m ahead (its ray crosses the car 0.83 m up), a
    # hedge 25 m ahead 0.6 m up (1.23 m up at the car: through the windows), the road 12 m
    # ahead (0.36 m up at the car), a door 10 m ahead 0.5 m up, a roof 10 m ahead 1.4 m up.
    returns = np.array([[20.0, 0.0], [25.0, 0.6], [12.0, 0.1], [10.0, 0.5], [10.0, 1.4]])
    points = np.c_[np.zeros(5), 1.65 - returns[:, 1], returns[:, 0]]
    keep = _free_space_rays(points, np.zeros(3), [FitObject(0, 0, 0, car, plane)], (0.3, 0.9))
    assert keep.tolist() == [[True, False, True, True, False]]
    unknown = FitObject(0, 0, 0, dataclasses.replace(car, ground=None), None)
    assert _free_space_rays(points, np.zeros(3), [unknown], (0.3, 0.9)).all()


def test_sparse_depth_windows_take_only_the_points_each_window_uses():
    points = np.array([[0.0, 0.0, 10.0], [0.0, 0.0, 20.0]])
    window = np.array([[49.0, 49.0, 51.0, 51.0]] * 2)
    use = np.array([[True, True], [False, True]])
    depth = sparse_depth_windows(points, CAMERA, window, 1, use)
    assert depth[:, 0, 0].tolist() == [10.0, 20.0]


def test_a_chunk_without_frames_gives_no_results():
    from autolabel.pipeline import label_frames

    assert label_frames([], prior=object()) == []


def test_label_dataset_with_a_worker_process_gives_the_labels_of_one_process():
    import dataclasses

    from autolabel.fit import FitConfig
    from autolabel.io.detections import Detection
    from autolabel.pipeline import FrameInput, PipelineConfig, label_dataset
    from autolabel.prior import load_prior
    from autolabel.synth.rig import kitti_calib

    boxes = ([600.0, 170.0, 700.0, 230.0], [300.0, 180.0, 420.0, 260.0], [800.0, 175.0, 860.0,
                                                                           215.0])
    frames = [FrameInput(f"{i:06d}", (375, 1242), kitti_calib(),
                         [Detection(np.array(box), "Car", 0.9)]) for i, box in enumerate(boxes)]
    config = PipelineConfig(yaw_hypotheses=1, fit=dataclasses.replace(
        FitConfig(), iterations=2, pose_iterations=1))
    prior = load_prior()
    alone = list(label_dataset(frames, prior, config, batch=2))
    ahead = list(label_dataset(iter(frames), prior, config, batch=2, workers=1))
    assert [r.frame_id for r in ahead] == ["000000", "000001", "000002"]
    for ours, theirs in zip(ahead, alone, strict=True):
        (label,), (expected,) = ours.labels, theirs.labels
        assert label.label.center.tolist() == expected.label.center.tolist()
        assert label.label.size.tolist() == expected.label.size.tolist()
        assert label.latent.tolist() == expected.latent.tolist()


def test_nocs_maps_of_another_size_are_resampled_to_the_render_window():
    from autolabel.batching import FitObject, _nocs_targets
    from autolabel.init import Hypothesis

    car = Hypothesis(np.array([0.0, 1.0, 10.0]), 0.0, np.array([4.0, 1.6, 1.5]),
                     np.zeros((0, 3)), "lidar")
    nocs = np.broadcast_to(np.array([0.2, 0.5, 0.9], np.float32), (32, 32, 3))
    valid = np.zeros((32, 32), dtype=bool)
    valid[:, :16] = True  # the left half
    objects = [FitObject(0, 0, 0, car, None, nocs=(nocs, valid)), FitObject(0, 1, 0, car, None)]
    target, on = _nocs_targets(objects, 64)
    assert target.shape == (2, 64, 64, 3) and on.shape == (2, 64, 64)
    np.testing.assert_allclose(target[0], np.broadcast_to(nocs[0, 0], (64, 64, 3)), atol=1e-6)
    assert on[0, :, :32].all() and not on[0, :, 32:].any() and not on[1].any()
    assert _nocs_targets(objects[1:], 64) == (None, None)
