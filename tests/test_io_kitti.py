"""KITTI calib, label_2, velodyne and image files: real files, round trips, bad inputs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from autolabel.errors import InputError
from autolabel.geometry import box_corners, points_in_box, projected_box2d
from autolabel.io.kitti import (
    Calib,
    list_frames,
    read_calib,
    read_image,
    read_labels,
    read_velodyne,
    write_calib,
    write_labels,
)
from autolabel.label import ObjectLabel

KITTI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kitti_dev"
needs_kitti = pytest.mark.skipif(not KITTI.is_dir(), reason=f"KITTI sample data absent: {KITTI}")

P2_LINE = "P2: 700 0 600 45 0 700 180 0.2 0 0 1 0.003"
R0_LINE = "R0_rect: 1 0 0 0 1 0 0 0 1"
TR_LINE = "Tr_velo_to_cam: 0 -1 0 0 0 0 -1 -0.08 1 0 0 -0.27"
CAR_LINE = "Car 0.00 1 2.04 334.85 178.94 624.50 372.04 1.57 1.50 3.68 -1.17 1.65 7.86 1.90"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def tensors(label: ObjectLabel) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return (torch.tensor(label.center), torch.tensor(label.rotation), torch.tensor(label.size))


# --- calib ------------------------------------------------------------------------------


@needs_kitti
def test_read_calib_of_kitti_dev_frame_has_its_matrices():
    calib = read_calib(KITTI / "calib" / "000008.txt")
    assert calib.P2.shape == (3, 4) and calib.P2.dtype == np.float64
    assert calib.P2[0, 0] == pytest.approx(721.5377)
    assert calib.P2[2, 3] == pytest.approx(2.745884e-03)
    assert calib.R0_rect[0, 1] == pytest.approx(9.837760e-03)
    assert calib.Tr_velo_to_cam[2, 3] == pytest.approx(-2.717806e-01)
    assert calib.P3 is not None and calib.Tr_imu_to_velo is not None
    assert calib.source == KITTI / "calib" / "000008.txt"


@needs_kitti
def test_calib_round_trips_through_write_calib_exactly(tmp_path):
    calib = read_calib(KITTI / "calib" / "000008.txt")
    write_calib(tmp_path / "out.txt", calib)
    again = read_calib(tmp_path / "out.txt")
    for name in ("P0", "P1", "P2", "P3", "R0_rect", "Tr_velo_to_cam", "Tr_imu_to_velo"):
        np.testing.assert_array_equal(getattr(again, name), getattr(calib, name))


def test_calib_with_arbitrary_floats_round_trips_exactly(tmp_path):
    rng = np.random.default_rng(0)
    calib = Calib(rng.normal(size=(3, 4)), rng.normal(size=(3, 3)), rng.normal(size=(3, 4)))
    write_calib(tmp_path / "calib.txt", calib)
    again = read_calib(tmp_path / "calib.txt")
    np.testing.assert_array_equal(again.P2, calib.P2)
    np.testing.assert_array_equal(again.R0_rect, calib.R0_rect)
    np.testing.assert_array_equal(again.Tr_velo_to_cam, calib.Tr_velo_to_cam)
    assert again.P0 is None and again.Tr_imu_to_velo is None


def test_read_calib_accepts_3x4_r0_rect_and_tracking_spellings(tmp_path):
    path = write(tmp_path / "c.txt", f"{P2_LINE}\nR_rect 0 1 0 0 -1 0 0 0 0 0 1 0\n"
                 "Tr_velo_cam 0 -1 0 0 0 0 -1 0 1 0 0 0\n")
    calib = read_calib(path)
    np.testing.assert_array_equal(calib.R0_rect, [[0, 1, 0], [-1, 0, 0], [0, 0, 1]])
    np.testing.assert_array_equal(calib.Tr_velo_to_cam[:, 3], [0, 0, 0])


def test_read_calib_accepts_raw_data_keys_with_r_and_t(tmp_path):
    path = write(tmp_path / "c.txt", "calib_time: 09-Jan-2012 13:57:47\n"
                 "P_rect_02: 700 0 600 45 0 700 180 0.2 0 0 1 0.003\n"
                 "R_rect_00: 1 0 0 0 1 0 0 0 1\nR: 0 -1 0 0 0 -1 1 0 0\nT: 0.1 0.2 0.3\n")
    calib = read_calib(path)
    assert calib.P2[0, 3] == 45
    np.testing.assert_array_equal(calib.Tr_velo_to_cam,
                                  [[0, -1, 0, 0.1], [0, 0, -1, 0.2], [1, 0, 0, 0.3]])


def test_read_calib_without_p2_names_file_and_field(tmp_path):
    path = write(tmp_path / "c.txt", f"{R0_LINE}\n{TR_LINE}\n")
    with pytest.raises(InputError, match=r"c\.txt: field 'P2': missing"):
        read_calib(path)


def test_read_calib_with_eleven_numbers_names_line_and_field(tmp_path):
    path = write(tmp_path / "c.txt", f"{R0_LINE}\nP2: 1 2 3 4 5 6 7 8 9 10 11\n{TR_LINE}\n")
    message = r"c\.txt: line 2: field 'P2': expected 12 numbers, got 11$"
    with pytest.raises(InputError, match=message):
        read_calib(path)


def test_read_calib_with_non_numeric_value_names_line_and_field(tmp_path):
    path = write(tmp_path / "c.txt", f"{P2_LINE}\nR0_rect: 1 0 0 0 one 0 0 0 1\n{TR_LINE}\n")
    with pytest.raises(InputError, match=r"line 2: field 'R0_rect': expected a number, got 'one'"):
        read_calib(path)


def test_read_calib_with_nan_names_line_and_field(tmp_path):
    path = write(tmp_path / "c.txt", f"{P2_LINE}\n{R0_LINE}\n{TR_LINE.replace('-0.27', 'nan')}\n")
    with pytest.raises(InputError, match=r"line 3: field 'Tr_velo_to_cam': expected a finite"):
        read_calib(path)


def test_read_calib_with_lidar_transform_but_no_r0_rect_is_an_error(tmp_path):
    path = write(tmp_path / "c.txt", f"{P2_LINE}\n{TR_LINE}\n")
    with pytest.raises(InputError, match=r"field 'R0_rect': missing, but Tr_velo_to_cam"):
        read_calib(path)


def test_camera_only_calib_raises_naming_the_file_when_asked_for_lidar(tmp_path):
    calib = read_calib(write(tmp_path / "cam.txt", P2_LINE + "\n"))
    np.testing.assert_array_equal(calib.R0_rect, np.eye(3))
    with pytest.raises(InputError, match=r"cam\.txt: field 'Tr_velo_to_cam'"):
        calib.velo_to_rect(np.zeros((1, 3)))


def test_velo_to_rect_applies_r0_rect_after_tr_velo_to_cam():
    rng = np.random.default_rng(1)
    r0, tr = rng.normal(size=(3, 3)), rng.normal(size=(3, 4))
    calib = Calib(np.eye(3, 4), r0, tr)
    points = rng.normal(size=(5, 3))
    expected = (r0 @ (tr @ np.vstack([points.T, np.ones(5)]))).T
    np.testing.assert_allclose(calib.velo_to_rect(points), expected, rtol=1e-12, atol=1e-12)


def test_lidar_origin_is_the_rectified_translation_or_the_camera_without_a_transform():
    r0 = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    tr = np.c_[np.eye(3), [0.3, -0.1, -0.27]]
    np.testing.assert_allclose(Calib(np.eye(3, 4), r0, tr).lidar_origin(), [0.1, 0.3, -0.27])
    assert Calib(np.eye(3, 4)).lidar_origin().tolist() == [0.0, 0.0, 0.0]


@needs_kitti
def test_rect_to_velo_inverts_velo_to_rect_on_a_real_scan():
    calib = read_calib(KITTI / "calib" / "000008.txt")
    points = read_velodyne(KITTI / "velodyne" / "000008.bin")[:, :3].astype(np.float64)
    back = calib.rect_to_velo(calib.velo_to_rect(points))
    assert np.abs(back - points).max() < 1e-9
    assert calib.velo_to_rect(points.astype(np.float32)).dtype == np.float32


# --- label_2 ------------------------------------------------------------------------------


@needs_kitti
def test_read_labels_of_kitti_dev_frame_converts_bottom_centre_to_centre():
    labels = read_labels(KITTI / "label_2" / "000008.txt")
    assert [label.category for label in labels] == ["Car"] * 6 + ["DontCare"] * 4
    # Car 0.88 3 -0.69 0.00 192.37 402.31 374.00 1.60 1.57 3.23 -2.70 1.74 3.68 -1.29
    first = labels[0]
    np.testing.assert_allclose(first.center, [-2.70, 1.74 - 1.60 / 2, 3.68], atol=1e-12)
    np.testing.assert_allclose(first.size, [3.23, 1.57, 1.60])
    np.testing.assert_allclose(first.box2d, [0.0, 192.37, 402.31, 374.0])
    assert first.yaw == pytest.approx(-1.29, abs=1e-12)
    assert (first.truncation, first.occlusion, first.score) == (0.88, 3, None)


@needs_kitti
def test_rewriting_kitti_dev_labels_reproduces_every_column_but_alpha(tmp_path):
    for source in sorted((KITTI / "label_2").glob("*.txt")):
        write_labels(tmp_path / source.name, read_labels(source))
        original = [line.split() for line in source.read_text().splitlines()]
        written = [line.split() for line in (tmp_path / source.name).read_text().splitlines()]
        assert len(written) == len(original)
        for old, new in zip(original, written, strict=True):
            assert new[0] == old[0]
            assert [float(x) for x in new[1:3] + new[4:]] == [float(x) for x in old[1:3] + old[4:]]
            # alpha is recomputed from centre and yaw; KITTI's annotated alpha agrees closely.
            assert abs(float(new[3]) - float(old[3])) <= 0.05


def test_labels_round_trip_exactly_to_the_printed_precision(tmp_path):
    labels = [
        ObjectLabel.upright("Car", [10.123, 20.0, 110.5, 90.25], [1.234, 1.5, 20.126], 0.777,
                            [4.1, 1.7, 1.5], truncation=0.1, occlusion=2, score=0.87654),
        ObjectLabel.upright("Pedestrian", [5, 6, 7, 8], [-3.0, 1.0, 9.0], -3.0, [0.8, 0.6, 1.8]),
    ]
    write_labels(tmp_path / "a.txt", labels)
    first = read_labels(tmp_path / "a.txt")
    write_labels(tmp_path / "b.txt", first)
    assert (tmp_path / "a.txt").read_text() == (tmp_path / "b.txt").read_text()
    for before, after in zip(labels, first, strict=True):
        np.testing.assert_allclose(after.center, before.center, atol=0.005 + 1e-12)
        np.testing.assert_allclose(after.size, before.size, atol=0.005 + 1e-12)
        assert after.yaw == pytest.approx(before.yaw, abs=0.005 + 1e-12)
    assert first[0].score == 0.8765 and first[1].score is None


def test_written_location_is_half_the_height_below_the_centre(tmp_path):
    label = ObjectLabel.upright("Car", [0, 0, 10, 10], [1.0, 2.0, 10.0], 0.5, [4.0, 1.8, 1.6],
                                score=0.9)
    write_labels(tmp_path / "l.txt", [label])
    fields = (tmp_path / "l.txt").read_text().split()
    assert len(fields) == 16 and fields[15] == "0.9000"
    assert fields[8:11] == ["1.60", "1.80", "4.00"]  # h, w, l
    assert fields[11:14] == ["1.00", "2.80", "10.00"]  # camera y points down: bottom is +h/2
    assert fields[14] == "0.50"
    assert float(fields[3]) == pytest.approx(0.5 - math.atan2(1.0, 10.0), abs=0.005)


def test_dont_care_is_written_with_kitti_placeholders(tmp_path):
    path = write(tmp_path / "in.txt",
                 "DontCare -1 -1 -10 800.38 163.67 825.45 184.07 -1 -1 -1 -1000 -1000 -1000 -10\n")
    labels = read_labels(path)
    write_labels(tmp_path / "out.txt", labels)
    assert (tmp_path / "out.txt").read_text() == path.read_text()


def test_empty_label_file_gives_no_labels(tmp_path):
    assert read_labels(write(tmp_path / "e.txt", "\n")) == []


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (CAR_LINE.rsplit(" ", 1)[0], r"line 2: expected 15 fields \(16 with a score\), got 14"),
        (CAR_LINE.replace("-1.17", "left"), r"line 2: field 'x': expected a number, got 'left'"),
        (CAR_LINE.replace("1.90", "nan"), r"line 2: field 'rotation_y': expected a finite"),
        (CAR_LINE.replace("624.50", "300.00"), r"line 2: field 'bbox_right': .*negative size"),
        (CAR_LINE.replace("1.57 1.50", "-1.57 1.50"), r"line 2: field 'height': must be positive"),
        (CAR_LINE + " high", r"line 2: field 'score': expected a number, got 'high'"),
    ],
)
def test_bad_label_line_names_file_line_and_field(tmp_path, line, message):
    path = write(tmp_path / "bad.txt", f"{CAR_LINE}\n{line}\n")
    with pytest.raises(InputError, match=r"bad\.txt: " + message):
        read_labels(path)


def test_missing_label_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match=r"nothing\.txt: no such file"):
        read_labels(tmp_path / "nothing.txt")


# --- LiDAR and labels together --------------------------------------------------------------


@needs_kitti
def test_lidar_points_of_a_close_car_fall_inside_its_label_box():
    calib = read_calib(KITTI / "calib" / "000008.txt")
    points = torch.tensor(calib.velo_to_rect(
        read_velodyne(KITTI / "velodyne" / "000008.bin")[:, :3].astype(np.float64)))
    car = read_labels(KITTI / "label_2" / "000008.txt")[1]  # unoccluded-ish, 7.9 m ahead
    center, rotation, size = tensors(car)
    inside = int(points_in_box(points, center, rotation, size).sum())
    around = int(points_in_box(points, center, rotation, size * torch.tensor([1.2, 1.2, 1])).sum())
    assert inside > 1500
    assert inside / around > 0.85
    # Reading KITTI's bottom-centre location as the centre would put half the box underground.
    lowered = center + torch.tensor([0.0, float(size[2]) / 2, 0.0])
    assert int(points_in_box(points, lowered, rotation, size).sum()) < 0.7 * inside


@needs_kitti
def test_projected_boxes_of_untruncated_cars_match_their_2d_boxes():
    calib = read_calib(KITTI / "calib" / "000008.txt")
    cars = [label for label in read_labels(KITTI / "label_2" / "000008.txt")
            if label.category == "Car" and label.truncation == 0]
    assert len(cars) == 4
    for car in cars:
        box = projected_box2d(box_corners(*tensors(car)), torch.tensor(calib.P2)).numpy()
        np.testing.assert_allclose(box, car.box2d, atol=5.0)


# --- velodyne, images, folders -----------------------------------------------------------------


@needs_kitti
def test_read_velodyne_of_kitti_dev_scan_gives_float32_xyzr():
    path = KITTI / "velodyne" / "000008.bin"
    points = read_velodyne(path)
    assert points.shape == (path.stat().st_size // 16, 4) and points.dtype == np.float32
    assert np.isfinite(points).all()
    assert 0 <= points[:, 3].min() and points[:, 3].max() <= 1  # reflectance


def test_read_velodyne_rejects_size_not_a_multiple_of_16(tmp_path):
    path = tmp_path / "scan.bin"
    path.write_bytes(np.zeros(9, dtype=np.float32).tobytes())
    with pytest.raises(InputError, match=r"scan\.bin: size 36 bytes is not a multiple of 16"):
        read_velodyne(path)


def test_read_velodyne_names_the_first_point_with_nan(tmp_path):
    points = np.ones((5, 4), dtype=np.float32)
    points[3, 2] = np.nan
    path = tmp_path / "scan.bin"
    points.tofile(path)
    with pytest.raises(InputError, match=r"scan\.bin: point 3: field 'z': 1 point\(s\) have NaN"):
        read_velodyne(path)


@needs_kitti
def test_read_image_of_kitti_dev_gives_rgb_uint8():
    image = read_image(KITTI / "image_2" / "000008.png")
    assert image.shape == (375, 1242, 3) and image.dtype == np.uint8


def test_read_image_promotes_grayscale_to_three_equal_channels(tmp_path):
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    Image.fromarray(gray).save(tmp_path / "g.png")
    image = read_image(tmp_path / "g.png")
    assert image.shape == (3, 4, 3)
    np.testing.assert_array_equal(image[..., 1], gray)


def test_read_image_rejects_missing_and_corrupt_files(tmp_path):
    with pytest.raises(InputError, match=r"none\.png: no such image file"):
        read_image(tmp_path / "none.png")
    corrupt = write(tmp_path / "corrupt.png", "not a png")
    with pytest.raises(InputError, match=r"corrupt\.png: cannot decode the image"):
        read_image(corrupt)


@needs_kitti
def test_list_frames_of_kitti_dev_lists_its_images():
    frames = list_frames(KITTI)
    assert frames == sorted(p.stem for p in (KITTI / "image_2").glob("*.png"))
    assert "000008" in frames and "000217" in frames and len(frames) == 33


def test_list_frames_of_folder_without_image_2_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no image_2/ folder"):
        list_frames(tmp_path)


def test_a_calibration_with_a_singular_p2_is_an_error_naming_the_file_and_field(tmp_path):
    path = tmp_path / "000000.txt"
    path.write_text("P2: " + " ".join(["0"] * 12) + "\n")
    with pytest.raises(InputError) as caught:
        read_calib(path)
    assert str(path) in str(caught.value) and "P2" in str(caught.value)
    assert "singular" in str(caught.value)


def test_labels_of_kitti_classes_are_written_in_kittis_spelling(tmp_path):
    labels = [ObjectLabel.upright(name, np.array([10.0, 20, 60, 80]), [1.0, 1.5, 12.0], 0.3,
                                  [3.9, 1.6, 1.5], score=0.9) for name in ("car", "CYCLIST", "bus")]
    write_labels(tmp_path / "000000.txt", labels)
    names = [line.split()[0] for line in (tmp_path / "000000.txt").read_text().splitlines()]
    assert names == ["Car", "Cyclist", "bus"]
