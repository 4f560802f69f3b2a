"""Fuzzing the readers of autolabel.io with hypothesis.

Whatever a file holds (random bytes, random text, a valid file truncated, with bytes flipped,
with NaN, infinite or huge numbers, wrong column counts, wrong JSON types at any field, not
UTF-8), a reader either returns a well-formed value or raises InputError whose message is
one line naming the file; never another exception. Valid files round-trip.
"""

from __future__ import annotations

import copy
import io
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from autolabel.errors import InputError
from autolabel.io.class_sizes import read_class_sizes
from autolabel.io.depth import read_depth, write_depth_png
from autolabel.io.detections import Detection, encode_rle, read_detections, write_detections_coco
from autolabel.io.kitti import (
    DONT_CARE,
    Calib,
    read_calib,
    read_image,
    read_labels,
    read_velodyne,
    write_calib,
    write_labels,
)
from autolabel.io.labels import FrameRecord, read_frame_json, write_frame_json
from autolabel.io.pointcloud import read_points
from autolabel.label import ObjectLabel

# The suite draws the same inputs on every run (derandomised), so that a red build can be
# reproduced and a green one is not luck; AUTOLABEL_FUZZ_EXAMPLES=N draws N fresh random
# inputs per test instead, to look for new failures.
EXPLORE = int(os.environ.get("AUTOLABEL_FUZZ_EXAMPLES", "0"))
FUZZ = settings(max_examples=EXPLORE or 120, deadline=None, derandomize=not EXPLORE)
ROUND_TRIP = settings(max_examples=EXPLORE or 60, deadline=None, derandomize=not EXPLORE)

# Tokens that break numbers, counts and parsers: non-finite and out-of-range numbers, a
# 5000-digit integer (Python refuses to parse it as an int), deep nesting, odd spellings.
NASTY_TOKENS = ["nan", "NaN", "inf", "-Infinity", "1e400", "-1.7e308", "1.7e308", "3e38",
                "1" * 5000, "-0", "0", "-1", "1_0", "0x10", "", "x", "[" * 5000, "{" * 5000,
                "true", "null", '"text"', "[]", "{}", "\x00", "\u00e9", "\ufeff"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


# --- well-formed values ----------------------------------------------------------------


def finite(*values) -> bool:
    return all(np.isfinite(np.asarray(value, dtype=np.float64)).all() for value in values)


def check_detections(value: dict) -> None:
    for name, detections in value.items():
        assert isinstance(name, str)
        for detection in detections:
            x1, y1, x2, y2 = detection.box2d
            assert finite(detection.box2d) and x2 > x1 and y2 > y1
            assert 0.0 <= detection.score <= 1.0
            assert isinstance(detection.category, str) and detection.category
            assert detection.mask is None or (detection.mask.ndim == 2
                                              and detection.mask.dtype == bool)


def check_class_sizes(value: dict) -> None:
    assert value
    for name, size in value.items():
        assert isinstance(name, str) and len(size) == 3
        assert all(isinstance(x, float) and math.isfinite(x) and x > 0 for x in size)


def check_label(label: ObjectLabel) -> None:
    assert isinstance(label.category, str) and label.category
    assert finite(label.box2d, label.center, label.rotation, label.size, label.truncation)
    assert label.box2d.shape == (4,) and label.center.shape == (3,)
    assert label.rotation.shape == (3, 3) and label.size.shape == (3,)
    assert label.box2d[2] >= label.box2d[0] and label.box2d[3] >= label.box2d[1]
    assert label.category == DONT_CARE or (label.size > 0).all()
    assert isinstance(label.occlusion, int)
    assert label.score is None or math.isfinite(label.score)


def check_labels(value: list) -> None:
    for label in value:
        check_label(label)


def check_frame(value: FrameRecord) -> None:
    assert isinstance(value.frame_id, str) and len(value.labels) == len(value.extras)
    check_labels(value.labels)


def check_calib(value: Calib) -> None:
    assert value.P2.shape == (3, 4) and finite(value.P2, value.R0_rect)
    assert abs(np.linalg.det(value.P2[:, :3])) > 0
    for matrix in (value.Tr_velo_to_cam, value.P0, value.P1, value.P3, value.Tr_imu_to_velo):
        assert matrix is None or (matrix.shape == (3, 4) and finite(matrix))


def check_velodyne(value: np.ndarray) -> None:
    assert value.dtype == np.float32 and value.ndim == 2 and value.shape[1] == 4
    assert finite(value)


def check_points(value: np.ndarray) -> None:
    assert value.dtype == np.float32 and value.ndim == 2 and value.shape[1] == 3
    assert len(value) >= 1 and finite(value)


def check_depth(value: np.ndarray) -> None:
    assert value.dtype == np.float32 and value.ndim == 2
    assert finite(value) and (value >= 0).all()


def check_image(value: np.ndarray) -> None:
    assert value.dtype == np.uint8 and value.ndim == 3 and value.shape[2] == 3


# --- valid files ---------------------------------------------------------------------


def small_mask() -> np.ndarray:
    mask = np.zeros((4, 6), dtype=bool)
    mask[1:3, 2:5] = True
    return mask


def coco_file() -> bytes:
    document = {
        "images": [{"id": 7, "file_name": "image_2/000008.png", "width": 6, "height": 4},
                   {"id": "b", "file_name": "000009.png"}],
        "categories": [{"id": 1, "name": "Car"}, {"id": 2, "name": "Pedestrian"}],
        "annotations": [
            {"image_id": 7, "category_id": 1, "bbox": [1.0, 2.0, 3.0, 1.5], "score": 0.9,
             "segmentation": encode_rle(small_mask())},
            {"image_id": 7, "category_id": 2, "bbox": [0, 0, 2, 2], "score": 0.5,
             "segmentation": [[1, 1, 3, 1, 3, 2, 1, 2]]},
            {"image_id": "b", "category_id": 1, "bbox": [5.5, 1, 10, 20]}],
    }
    return json.dumps(document).encode()


def simple_file() -> bytes:
    document = {
        "000008.png": [{"bbox": [1, 2, 4, 3.5], "category": "Car", "score": 0.9,
                        "mask": {"size": [4, 6], "counts": [9, 3, 12]}}],
        "000009.png": {"width": 6, "height": 4, "detections": [
            {"bbox": [0, 0, 2, 2], "bbox_format": "xywh", "category": "Van",
             "mask": [[1, 1, 3, 1, 3, 2]]}]},
        "000010.png": [],
    }
    return json.dumps(document).encode()


def class_sizes_file() -> bytes:
    return json.dumps({"Car": [4.6, 1.95, 1.73], "Pedestrian": [0.8, 0.7, 1.75]}).encode()


def some_labels() -> list[ObjectLabel]:
    return [
        ObjectLabel.upright("Car", [334.85, 178.94, 624.5, 372.04], [-1.17, 0.9, 7.86], 1.9,
                            [3.68, 1.5, 1.57], truncation=0.0, occlusion=1),
        ObjectLabel.upright("Pedestrian", [10, 20, 30, 80], [2.0, 1.0, 20.0], -0.4,
                            [0.8, 0.6, 1.7], truncation=0.5, occlusion=0, score=0.75),
        ObjectLabel.upright(DONT_CARE, [1, 2, 3, 4], [-1000, -1000, -1000], -10,
                            [-1, -1, -1], occlusion=-1),
    ]


def written(write: Callable[[Path], None], folder: Path, suffix: str) -> bytes:
    path = folder / f"written{suffix}"
    write(path)
    return path.read_bytes()


def frame_file(folder: Path) -> bytes:
    return written(lambda path: write_frame_json(
        path, "000008", some_labels(), [{"latent": [0.1, -2.0]}, {}, {"why": "far"}],
        {"seconds": 1.5}), folder, ".json")


def calib_file() -> bytes:
    return (b"P0: 700 0 600 0 0 700 180 0 0 0 1 0\n"
            b"P1: 700 0 600 -380 0 700 180 0 0 0 1 0\n"
            b"P2: 700 0 600 45 0 700 180 0.2 0 0 1 0.003\n"
            b"P3: 700 0 600 -330 0 700 180 2.3 0 0 1 0.003\n"
            b"R0_rect: 1 0 0 0 1 0 0 0 1\n"
            b"Tr_velo_to_cam: 0 -1 0 0 0 0 -1 -0.08 1 0 0 -0.27\n"
            b"Tr_imu_to_velo: 1 0 0 -0.8 0 1 0 0.3 0 0 1 -0.9\n")


def labels_file(folder: Path) -> bytes:
    return written(lambda path: write_labels(path, some_labels()), folder, ".txt")


def velodyne_file() -> bytes:
    return np.random.default_rng(0).normal(0, 10, (20, 4)).astype("<f4").tobytes()


def depth_png_file(folder: Path) -> bytes:
    depth = np.random.default_rng(1).uniform(0, 80, (5, 7))
    return written(lambda path: write_depth_png(path, depth), folder, ".png")


def npy_file() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.random.default_rng(2).uniform(0, 80, (5, 7)))
    return buffer.getvalue()


def image_file(image_format: str) -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(3).integers(0, 255, (6, 8, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format=image_format)
    return buffer.getvalue()


def pcd_file() -> bytes:
    return (b"# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\nFIELDS x y z\n"
            b"SIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 3\nHEIGHT 1\n"
            b"VIEWPOINT 0 0 0 1 0 0 0\nPOINTS 3\nDATA ascii\n1 2 3\n4.5 -5 6\nnan nan nan\n")


def ply_file() -> bytes:
    return (b"ply\nformat ascii 1.0\nelement vertex 2\nproperty double x\n"
            b"property double y\nproperty double z\nend_header\n1 2 3\n4.5 -5 6\n")


class Reader(NamedTuple):
    """One reader under test: how it reads, the suffix it wants, a valid file, and the
    check that what it returns is well formed."""

    read: Callable[[Path], Any]
    suffix: str
    valid: Callable[[Path], bytes]
    check: Callable[[Any], None]


READERS = {
    "detections-coco": Reader(read_detections, ".json", lambda _: coco_file(),
                              check_detections),
    "detections-simple": Reader(read_detections, ".json", lambda _: simple_file(),
                                check_detections),
    "class-sizes": Reader(read_class_sizes, ".json", lambda _: class_sizes_file(),
                          check_class_sizes),
    "frame-json": Reader(read_frame_json, ".json", frame_file, check_frame),
    "calib": Reader(read_calib, ".txt", lambda _: calib_file(), check_calib),
    "labels": Reader(read_labels, ".txt", labels_file, check_labels),
    "velodyne": Reader(read_velodyne, ".bin", lambda _: velodyne_file(), check_velodyne),
    "points-bin": Reader(read_points, ".bin", lambda _: velodyne_file(), check_points),
    "points-pcd": Reader(read_points, ".pcd", lambda _: pcd_file(), check_points),
    "points-ply": Reader(read_points, ".ply", lambda _: ply_file(), check_points),
    "depth-png": Reader(read_depth, ".png", depth_png_file, check_depth),
    "depth-npy": Reader(read_depth, ".npy", lambda _: npy_file(), check_depth),
    "image-png": Reader(read_image, ".png", lambda _: image_file("PNG"), check_image),
    "image-jpeg": Reader(read_image, ".jpg", lambda _: image_file("JPEG"), check_image),
}
TEXT_READERS = ["calib", "labels", "points-pcd", "points-ply"]
JSON_READERS = ["detections-coco", "detections-simple", "class-sizes", "frame-json"]


def reader_for(name: str) -> Reader:
    if name.startswith("points-p"):
        pytest.importorskip("open3d")
    return READERS[name]


def read_or_refuse(reader: Reader, folder: Path, content: bytes) -> Any:
    """What ``reader`` makes of a file holding ``content``: its checked value, or None when
    it raised InputError, after checking that the message is one line naming the file."""
    path = folder / f"input{reader.suffix}"
    path.write_bytes(content)
    try:
        value = reader.read(path)
    except InputError as error:
        message = str(error)
        assert len(message.splitlines()) == 1, message
        assert message.startswith(f"{path}: "), message
        return None
    reader.check(value)
    return value


# --- mutations -----------------------------------------------------------------------


@st.composite
def mutated_bytes(draw, content: bytes) -> bytes:
    """``content`` truncated, with bytes flipped, inserted or deleted (1 to 4 edits)."""
    data = bytearray(content)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        edit = draw(st.sampled_from(["truncate", "flip", "insert", "delete"]))
        if edit == "truncate":
            del data[at:]
        elif edit == "flip" and at < len(data):
            data[at] ^= draw(st.integers(1, 255))
        elif edit == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[at:at + draw(st.integers(1, 16))]
    return bytes(data)


TOKENS = st.sampled_from(NASTY_TOKENS) | st.text(max_size=12) | st.from_regex(
    r"-?[0-9]{1,4}(\.[0-9]{0,6})?(e-?[0-9]{1,3})?", fullmatch=True)


@st.composite
def mutated_text(draw, content: bytes) -> bytes:
    """``content`` (text) with 1 to 4 whitespace-separated tokens or lines replaced, deleted,
    duplicated or added."""
    lines = [line.split(" ") for line in content.decode().split("\n")]
    for _ in range(draw(st.integers(1, 4))):
        row = draw(st.integers(0, len(lines) - 1))
        tokens = lines[row]
        column = draw(st.integers(0, max(len(tokens) - 1, 0)))
        edit = draw(st.sampled_from(["replace", "delete", "duplicate", "insert",
                                     "drop line", "copy line", "add line"]))
        if edit == "replace" and tokens:
            tokens[column] = draw(TOKENS)
        elif edit == "delete" and tokens:
            del tokens[column]
        elif edit == "duplicate" and tokens:
            tokens.insert(column, tokens[column])
        elif edit == "insert":
            tokens.insert(column, draw(TOKENS))
        elif edit == "drop line" and len(lines) > 1:
            del lines[row]
        elif edit == "copy line":
            lines.insert(row, list(tokens))
        else:
            lines.insert(row, draw(st.lists(TOKENS, max_size=17)))
    return "\n".join(" ".join(tokens) for tokens in lines).encode("utf-8", "surrogatepass")


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.floats() | st.text(max_size=8)
    | st.integers(-(10 ** 30), 10 ** 30) | st.sampled_from([10 ** 400, -(2 ** 64), 0, -1]),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=8)


def json_paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """The key/index paths of every value in a JSON document, the root's ``()`` first."""
    children = (node.items() if isinstance(node, dict)
                else enumerate(node) if isinstance(node, list) else [])
    return [prefix] + [path for key, child in children
                       for path in json_paths(child, prefix + (key,))]


@st.composite
def mutated_json(draw, content: bytes) -> bytes:
    """A valid JSON document with 1 to 3 values (anywhere in it) replaced by random JSON
    values of any type, or deleted; NaN and infinity are written as Python writes them."""
    document = copy.deepcopy(json.loads(content))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(json_paths(document)))
        if not path:
            document = draw(JSON_VALUES)
            continue
        parent = document
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.booleans()):
            parent[path[-1]] = draw(JSON_VALUES)
        else:
            del parent[path[-1]]
    return json.dumps(document).encode()


# --- fuzzing -------------------------------------------------------------------------


@pytest.mark.parametrize("name", READERS)
def test_a_valid_file_reads(folder, name):
    reader = reader_for(name)
    assert read_or_refuse(reader, folder, reader.valid(folder)) is not None


@pytest.mark.parametrize("name", READERS)
def test_an_empty_file_reads_as_nothing_or_is_refused(folder, name):
    value = read_or_refuse(reader_for(name), folder, b"")
    assert value is None or len(value) == 0


@pytest.mark.parametrize("name", READERS)
@FUZZ
@given(content=st.binary(max_size=600))
def test_random_bytes_are_read_or_refused_with_one_line(folder, name, content):
    read_or_refuse(reader_for(name), folder, content)


@pytest.mark.parametrize("name", READERS)
@FUZZ
@given(text=st.text(max_size=300))
def test_random_text_is_read_or_refused_with_one_line(folder, name, text):
    read_or_refuse(reader_for(name), folder, text.encode("utf-8", "surrogatepass"))


# Each reader's valid file, damaged as bytes; the text and JSON readers' also token by token
# and value by value.
MUTATIONS = ([(name, mutated_bytes) for name in READERS]
             + [(name, mutated_text) for name in TEXT_READERS]
             + [(name, mutated_json) for name in JSON_READERS])


@pytest.mark.parametrize(("name", "mutate"), MUTATIONS,
                         ids=[f"{name}-{mutate.__name__}" for name, mutate in MUTATIONS])
@FUZZ
@given(data=st.data())
def test_damaged_valid_files_are_read_or_refused_with_one_line(folder, name, mutate, data):
    reader = reader_for(name)
    read_or_refuse(reader, folder, data.draw(mutate(reader.valid(folder))))


# --- what the fuzzing found ----------------------------------------------------------

COCO_CAR = '{"a.png": [{"bbox": %s, "category": %s, "score": %s%s}]}'
CAR_LINE = "Car 0 1 2 1 2 3 4 1.7e308 1.5 3.7 -1 -1.7e308 8 1.9"
FOUND = [  # (reader, file content, what the one-line message says)
    ("detections-simple", COCO_CAR % ("[1e999, 2, 3, 4]", '"Car"', "1", ""),
     r"a\.png\[0\]: field 'bbox': expected a finite number"),
    ("detections-simple", COCO_CAR % ("[1" + "0" * 400 + ", 2, 3, 4]", '"Car"', "1", ""),
     r"field 'bbox': expected a finite number"),
    ("detections-simple", COCO_CAR % ("[1, 2, 3, 4]", '"Car"', "1" + "0" * 400, ""),
     r"field 'score': expected a finite number"),
    ("detections-simple", COCO_CAR % ("[1e308, 0, 1.7e308, 1]", '"Car"', "1",
                                      ', "bbox_format": "xywh"'),
     r"field 'bbox': box coordinates beyond the float range"),
    ("detections-simple", COCO_CAR % ("[3, 2, 3, 4]", '"Car"', "1", ""),
     r"field 'bbox': box width must be positive, got 0"),
    ("detections-simple", COCO_CAR % ("[18014398509481984, 0, 2, 2]", '"Car"', "1",
                                      ', "bbox_format": "xywh"'),
     r"field 'bbox': box too small for its coordinates"),
    ("detections-simple", COCO_CAR % ("[1, 2, 3, 4]", '"Car"', "NaN", ""),
     r"field 'score': expected a finite number, got nan"),
    ("detections-simple", COCO_CAR % ("[1, 2, 3, 4]", '"a\\nb"', "1", ""),
     r"field 'category': expected a class name \(printable characters\), got 'a\\nb'"),
    ("detections-simple", COCO_CAR % ("[1, 2, 3, 4]", '"Car"', "1",
                                      ', "mask": {"size": [100000, 100000], "counts": [1]}'),
     r"field 'mask': a 100000 x 100000 mask is larger than"),
    ("detections-simple", COCO_CAR % ("[1, 2, 3, 4]", '"Car"', "1",
                                      ', "mask": {"size": [4, 6], "counts": "' + "o" * 99
                                      + '0"}'),
     r"field 'mask': a count of the compressed RLE is longer than 64 bits"),
    ("detections-simple", '{"a\\nb": 3}', r"a\\nb: expected a list of detections"),
    ("detections-simple", "[" * 5000 + "]" * 5000, r"JSON nested too deeply"),
    ("class-sizes", '{"Car": [1' + "0" * 400 + ", 1, 1]}", r"'Car': expected \[length"),
    ("class-sizes", '{"Car": [' + "1" * 5000 + ", 1, 1]}", r"unreadable JSON"),
    ("frame-json", "ragged", r"objects\[0\]: field 'size': expected numbers of shape \(3,\)"),
    ("frame-json", "box", r"objects\[0\]: field 'box2d': the right or bottom edge is left"),
    ("labels", CAR_LINE,
     r"line 1: field 'y': the box centre \(y minus half the height\) is beyond"),
    ("labels", CAR_LINE.replace("Car 0 1", "Car 0 1e300").replace("1.7e308", "1.5"),
     r"field 'occluded': expected an occlusion level"),
    ("calib", "P2: 1e300 0 600 45 0 1e300 180 0.2 0 0 1e300 0.003",
     r"field 'P2': its left 3 x 3 block's determinant is beyond the float range"),
    ("points-pcd", pcd_file().decode().replace("POINTS 3", "POINTS 300000000"),
     r"field 'POINTS': the header declares 300000000 points but the file ends"),
    ("points-ply", ply_file().decode().replace("vertex 2", "vertex 3"),
     r"field 'element vertex': the header declares 3 points but the file ends"),
    ("points-ply", ply_file().decode().replace("end_header", "comment " + "x" * 1100
                                               + "\nend_header"),
     r"a header line of 1108 bytes; at most 1023 are read"),
    ("points-ply", ply_file().decode().replace("4.5 -5 6", "abc -5 6"),
     r"a point value that is not a number"),
    ("points-pcd", pcd_file().decode().replace("4.5 -5 6", "4.5 -5 " + "6" * 300),
     r"a value of 300 characters; at most 255 are read"),
    # open3d crashed the process on this one (a count of '1_0', which int() reads as 10)
    ("points-pcd", pcd_file().decode().replace("COUNT 1 1 1", "COUNT 1 1_0 1").replace(
        "1 2 3\n", "2 3\n"), r"field 'COUNT': expected a count, got b'1_0'"),
    # ... and on this one (a property line without its type and name)
    ("points-ply", ply_file().decode().replace("property double y", "property"),
     r"field 'property': a malformed header line b'property'"),
    ("points-pcd", pcd_file().decode().replace("1 2 3\n", "2 3\n"),
     r"data row 0 holds 2 values, not the 3 its header's COUNT adds up to"),
    ("depth-npy", "", r"cannot read the array \(No data left in file\)"),
    ("depth-npy", npy_file()[:20] + b"(5, 7), }  \n", r"cannot read the array"),
    ("depth-npy", npy_file().replace(b" 'shape'", b"b'shape'", 1), r"cannot read the array"),
    ("image-png", "P1", r"cannot decode the image"),
]


@pytest.mark.parametrize(("name", "content", "message"), FOUND)
def test_inputs_that_fuzzing_found_are_refused_with_a_clear_line(folder, name, content,
                                                                 message):
    reader = reader_for(name)
    if name == "frame-json":  # the first object's size ragged, or its box turned over
        document = json.loads(reader.valid(folder))
        if content == "box":
            document["objects"][0]["box2d"] = [30, 20, 10, 80]
        else:
            document["objects"][0]["size"] = [[1, 2], [3]]
        content = json.dumps(document)
    path = folder / f"found{reader.suffix}"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(InputError, match=message) as raised:
        reader.read(path)
    assert len(str(raised.value).splitlines()) == 1


@pytest.mark.parametrize("name", ["points-pcd", "points-ply"])
def test_coordinates_beyond_float32_are_dropped_like_infinite_ones(folder, name):
    reader = reader_for(name)
    content = reader.valid(folder).replace(b"4.5 -5 6", b"4.5 -5 1e300")
    assert read_or_refuse(reader, folder, content).tolist() == [[1.0, 2.0, 3.0]]


def test_a_byte_order_mark_before_json_or_a_calib_is_skipped(folder):
    assert read_or_refuse(READERS["class-sizes"], folder, b"\xef\xbb\xbf" + class_sizes_file())
    calib = read_or_refuse(READERS["calib"], folder, b"\xef\xbb\xbf" + calib_file())
    assert calib.P2[0, 0] == 700.0


# --- round trips ---------------------------------------------------------------------

FINITE = st.floats(-1e6, 1e6, allow_nan=False)


@ROUND_TRIP
@given(matrices=arrays(np.float64, (5, 3, 4), elements=FINITE))
def test_a_written_calib_reads_back_exactly(folder, matrices):
    matrices[0, :, :3] += np.eye(3) * 4e6  # diagonally dominant: P2 stays invertible
    calib = Calib(matrices[0], R0_rect=matrices[1, :, :3], Tr_velo_to_cam=matrices[2],
                  P0=matrices[3], Tr_imu_to_velo=matrices[4])
    write_calib(folder / "calib.txt", calib)
    again = read_calib(folder / "calib.txt")
    for name in ("P2", "R0_rect", "Tr_velo_to_cam", "P0", "Tr_imu_to_velo"):
        np.testing.assert_array_equal(getattr(again, name), getattr(calib, name))
    assert again.P1 is None and again.P3 is None


@ROUND_TRIP
@given(points=arrays(np.float32, st.tuples(st.integers(0, 50), st.just(4)),
                     elements=st.floats(-1e4, 1e4, width=32)))
def test_a_written_velodyne_scan_reads_back_exactly(folder, points):
    points.astype("<f4").tofile(folder / "scan.bin")
    np.testing.assert_array_equal(read_velodyne(folder / "scan.bin"), points)


@ROUND_TRIP
@given(values=st.lists(st.tuples(FINITE, FINITE, st.floats(0.1, 20), st.floats(-3.1, 3.1),
                                 st.floats(0, 1), st.integers(0, 3)), max_size=5))
def test_written_labels_read_back_to_their_decimals(folder, values):
    labels = [ObjectLabel.upright("Car", [x, y, x + 1, y + 1], [x, y, z], yaw, [z, 1.6, 1.5],
                                  truncation=truncation, occlusion=occlusion, score=0.5)
              for x, y, z, yaw, truncation, occlusion in values]
    write_labels(folder / "labels.txt", labels, decimals=4)
    again = read_labels(folder / "labels.txt")
    assert len(again) == len(labels)
    for read, label in zip(again, labels, strict=True):
        check_label(read)
        np.testing.assert_allclose(read.center, label.center, atol=2e-4)
        np.testing.assert_allclose(read.box2d, label.box2d, atol=1e-4)
        assert read.occlusion == label.occlusion


@ROUND_TRIP
@given(boxes=st.lists(st.tuples(st.floats(-50, 600), st.floats(-50, 300), st.floats(0.5, 99),
                                st.floats(0.5, 99), st.floats(0, 1)), max_size=4),
       with_mask=st.booleans())
def test_written_coco_detections_read_back(folder, boxes, with_mask):
    detections = [Detection([x, y, x + w, y + h], "Car", score,
                            small_mask() if with_mask else None) for x, y, w, h, score in boxes]
    write_detections_coco(folder / "dets.json", {"000008.png": detections},
                          {"000008.png": (4, 6)})
    again = read_or_refuse(READERS["detections-coco"], folder,
                           (folder / "dets.json").read_bytes())["000008.png"]
    assert len(again) == len(detections)
    for read, detection in zip(again, detections, strict=True):
        np.testing.assert_allclose(read.box2d, detection.box2d, rtol=1e-9, atol=1e-9)
        assert read.score == detection.score
        assert (read.mask is None) == (detection.mask is None)
        assert read.mask is None or np.array_equal(read.mask, detection.mask)
