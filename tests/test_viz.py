"""Tests for autolabel.viz: boxes land where the camera puts them, the BEV where the map does."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autolabel.io.kitti import read_calib, read_image, read_labels, read_velodyne
from autolabel.label import ObjectLabel
from autolabel.viz import (
    ACCEPTED_COLOUR,
    GROUND_TRUTH_COLOUR,
    OCCLUSION_COLOURS,
    REJECTED_COLOUR,
    bev_view,
    draw_boxes,
    fit_overview,
    save_png,
)

KITTI_DEV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kitti_dev"

BACKGROUND = (50, 80, 110)
# 1200 x 360 image, focal length 700 px, principal point (600, 180).
P_WIDE = np.array([[700.0, 0, 600, 0], [0, 700, 180, 0], [0, 0, 1, 0]])
# 1000 x 300 image: the BEV is 1000 px for x in [-25, 25] m, so 20 px per metre.
P_BEV = np.array([[700.0, 0, 500, 0], [0, 700, 150, 0], [0, 0, 1, 0]])


def _image(width: int, height: int) -> np.ndarray:
    return np.full((height, width, 3), BACKGROUND, dtype=np.uint8)


def _car(x: float, z: float, y: float = 0.0, score: float | None = None,
         occlusion: int = 0) -> ObjectLabel:
    """A 4 x 2 x 1.5 m car with yaw 0 (forward along camera +x) centred at (x, y, z)."""
    return ObjectLabel.upright("Car", [0, 0, 1, 1], [x, y, z], 0.0, [4.0, 2.0, 1.5],
                               occlusion=occlusion, score=score)


def _pixel(picture: Image.Image, column: int, row: int) -> tuple[int, int, int]:
    return tuple(int(v) for v in np.asarray(picture)[row, column])


def test_vertical_front_edge_of_a_car_10_m_ahead_is_drawn_at_its_projection():
    # Corner (2, +-0.75, 11) projects to u = 600 + 700 * 2 / 11 = 727.3, v = 132.3 .. 227.7.
    picture = fit_overview(_image(1200, 360), [_car(0.0, 10.0)], [True], P_WIDE, None)
    assert _pixel(picture, 727, 180) == ACCEPTED_COLOUR
    assert _pixel(picture, 727, 100) == BACKGROUND  # above the box
    assert _pixel(picture, 10, 10) == BACKGROUND
    assert _pixel(picture, 1100, 300) == BACKGROUND


@pytest.mark.parametrize("accepted", [(True, False), (False, True)])
def test_box_colours_follow_the_accepted_flags(accepted):
    # Left car's corner (-3, 0, 11) -> u = 409.1; right car's corner (7, 0, 11) -> u = 1045.5.
    labels = [_car(-5.0, 10.0), _car(5.0, 10.0)]
    picture = fit_overview(_image(1200, 360), labels, accepted, P_WIDE, None)
    expected = [ACCEPTED_COLOUR if flag else REJECTED_COLOUR for flag in accepted]
    assert [_pixel(picture, 409, 180), _pixel(picture, 1045, 180)] == expected


def test_ground_truth_is_drawn_in_its_own_colour_and_dont_care_is_skipped():
    dont_care = ObjectLabel.upright("DontCare", [100, 100, 200, 200], [-1000, -1000, -1000],
                                    -10.0, [-1.0, -1.0, -1.0])
    picture = fit_overview(_image(1200, 360), [], [], P_WIDE, None,
                           ground_truth=[_car(0.0, 10.0), dont_care])
    assert _pixel(picture, 727, 180) == GROUND_TRUTH_COLOUR
    assert _pixel(picture, 100, 150) == BACKGROUND  # no DontCare rectangle


def test_score_tag_is_written_above_the_box_and_only_there():
    plain = np.asarray(fit_overview(_image(1200, 360), [_car(0.0, 10.0)], [True], P_WIDE, None))
    scored = np.asarray(fit_overview(_image(1200, 360), [_car(0.0, 10.0, score=0.87)], [True],
                                     P_WIDE, None))
    rows, columns = np.nonzero((plain != scored).any(axis=-1))
    # The box's projection starts at u = 600 - 700 * 2 / 9 = 444.4, v = 180 - 700 * 0.75 / 9.
    assert len(rows) > 20
    assert rows.max() < 180 - 700 * 0.75 / 9 and columns.min() >= 444
    assert (scored[rows, columns] == ACCEPTED_COLOUR).all(axis=-1).any()


# x = 10 would land elsewhere if x were flipped, z = 15 if z were (z = 30 is the middle row).
@pytest.mark.parametrize(("x", "z"), [(10.0, 30.0), (-5.0, 15.0)])
def test_bev_footprint_and_heading_tick_sit_at_the_label_position(x, z):
    picture = fit_overview(_image(1000, 300), [_car(x, z, y=1.0)], [True], P_BEV, None)
    column, row = (x + 25.0) * 20, 300 + (60.0 - z) * 20
    # The tick runs from the centre to the front face 2 m along +x; the back edge is at x - 2.
    assert _pixel(picture, int(column + 20), int(row)) == ACCEPTED_COLOUR
    assert _pixel(picture, int(column - 40), int(row + 10)) == ACCEPTED_COLOUR
    assert _pixel(picture, int(column - 20), int(row)) != ACCEPTED_COLOUR  # inside: not filled


def test_bev_points_are_grey_dots_at_their_ground_position_and_outside_ones_are_ignored():
    points = np.array([[-10.0, 0.0, 40.0], [100.0, 0.0, 5.0], [0.0, 0.0, -5.0]])
    picture = fit_overview(_image(1000, 300), [], [], P_BEV, points)
    red, green, blue = _pixel(picture, 300, 300 + 400)
    assert red == green == blue and red >= 80
    empty = fit_overview(_image(1000, 300), [], [], P_BEV, None)
    assert _pixel(empty, 300, 300 + 400)[0] < 80


def test_overview_is_the_image_width_and_image_plus_bev_height():
    picture = fit_overview(_image(1000, 300), [_car(0.0, 20.0)], [True], P_BEV, None)
    assert picture.size == (1000, 300 + 1200)  # x in [-25, 25] m, z in [0, 60] m at 20 px/m
    assert picture.mode == "RGB"


def test_bev_grows_to_fit_a_far_label_and_keeps_the_width():
    far = _car(0.0, 75.0)  # its footprint reaches z = 76, plus a 2 m margin
    view = bev_view([far], 1000)
    assert view.z_range == (0.0, 78.0) and view.scale == 20.0
    picture = fit_overview(_image(1000, 300), [far], [False], P_BEV, None)
    assert picture.size == (1000, 300 + 78 * 20)
    wide = bev_view([_car(-40.0, 10.0)], 1000)  # footprint from x = -42 m
    assert wide.x_range == (-44.0, 25.0) and wide.size[0] == 1000


def test_bev_stops_growing_at_its_reach_for_absurdly_far_labels():
    view = bev_view([_car(0.0, 394.0), _car(-900.0, 30.0)], 1000)
    assert view.z_range == (0.0, 120.0) and view.x_range == (-120.0, 25.0)


def test_mismatched_accepted_flags_are_rejected():
    with pytest.raises(ValueError, match="1 accepted flags for 2 labels"):
        fit_overview(_image(1000, 300), [_car(0, 10), _car(3, 10)], [True], P_BEV, None)


def test_draw_boxes_colours_by_occlusion_unless_colours_are_given():
    label = _car(0.0, 10.0, occlusion=1)
    default = draw_boxes(_image(1200, 360), [label], P_WIDE)
    assert _pixel(default, 727, 180) == OCCLUSION_COLOURS[1]
    custom = draw_boxes(_image(1200, 360), [label], P_WIDE, colours=[(1, 2, 3)])
    assert _pixel(custom, 727, 180) == (1, 2, 3)


def test_box_reaching_behind_the_camera_is_clipped_not_mirrored():
    # A car beside the camera, from z = -1 to z = 3 and x = 0.5 to 2.5: everything of it in
    # front of the camera projects right of the centre column; unclipped corners behind the
    # camera would land on the left half, mirrored.
    label = ObjectLabel.upright("Car", [0, 0, 1, 1], [1.5, 0.0, 1.0], np.pi / 2,
                                [4.0, 2.0, 1.5])
    picture = np.asarray(draw_boxes(_image(1200, 360), [label], P_WIDE))
    drawn = (picture != BACKGROUND).any(axis=-1)
    assert drawn[:, 600:].any() and not drawn[:, :600].any()


def test_save_png_round_trips_and_leaves_no_temporary_file(tmp_path):
    picture = fit_overview(_image(1000, 300), [_car(0.0, 20.0)], [True], P_BEV, None)
    path = tmp_path / "viz" / "000001.png"
    save_png(path, picture)
    with Image.open(path) as read:
        np.testing.assert_array_equal(np.asarray(read), np.asarray(picture))
    assert [p.name for p in path.parent.iterdir()] == ["000001.png"]


@pytest.mark.skipif(not KITTI_DEV.is_dir(), reason=f"KITTI dev data not found at {KITTI_DEV}")
def test_overview_of_kitti_frame_8_with_its_lidar_keeps_the_image_and_is_fast():
    calib = read_calib(KITTI_DEV / "calib" / "000008.txt")
    image = read_image(KITTI_DEV / "image_2" / "000008.png")
    labels = read_labels(KITTI_DEV / "label_2" / "000008.txt")
    scan = read_velodyne(KITTI_DEV / "velodyne" / "000008.bin")
    points = calib.velo_to_rect(scan[:, :3].astype(np.float64))
    accepted = [True] * len(labels)
    start = time.perf_counter()
    picture = fit_overview(image, labels, accepted, calib.P2, points, ground_truth=labels)
    seconds = time.perf_counter() - start
    height, width = image.shape[:2]
    assert picture.size == (width, height + bev_view(labels, width).size[1])
    np.testing.assert_array_equal(np.asarray(picture)[:20, :200], image[:20, :200])
    assert seconds < 2.0  # about 0.1 s on one core; the bound leaves room for a busy machine
