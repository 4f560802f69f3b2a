"""Detections JSON: both layouts, RLE and polygon masks, round trips, validation messages."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from autolabel.errors import InputError
from autolabel.io.detections import (
    Detection,
    decode_rle,
    encode_rle,
    rasterize_polygons,
    read_detections,
    write_detections_coco,
)


def dump(path: Path, document) -> Path:
    path.write_text(json.dumps(document))
    return path


def coco(annotations: list[dict], **extra) -> dict:
    document = {
        "images": [{"id": 7, "file_name": "image_2/000008.png", "width": 6, "height": 4},
                   {"id": 9, "file_name": "000009.png", "width": 6, "height": 4}],
        "categories": [{"id": 1, "name": "Car"}, {"id": 2, "name": "Pedestrian"}],
        "annotations": annotations,
    }
    document.update(extra)
    return document


def annotation(**fields) -> dict:
    return {"image_id": 7, "category_id": 1, "bbox": [1.0, 2.0, 3.0, 1.5], "score": 0.9} | fields


# --- RLE and polygons ------------------------------------------------------------------------


def test_compressed_rle_string_decodes_to_hand_computed_counts():
    # counts 0, 3, 100, 2: the 100 needs two 5-bit groups ('T', '3'); the 4th count is stored
    # as the difference 2 - 3 = -1 ('O', sign bit set).
    mask = decode_rle({"size": [5, 21], "counts": "03T3O"})
    expected = np.zeros((5, 21), dtype=bool)
    expected[0:3, 0] = True  # the first 3 pixels in column-major order
    expected[3:5, 20] = True  # the last 2
    np.testing.assert_array_equal(mask, expected)
    assert encode_rle(expected) == {"size": [5, 21], "counts": "03T3O"}


def test_rle_with_integer_counts_is_column_major():
    mask = decode_rle({"size": [2, 3], "counts": [1, 2, 3]})
    np.testing.assert_array_equal(mask, [[False, True, False], [True, False, False]])


@pytest.mark.parametrize("shape", [(1, 1), (4, 7), (37, 53), (375, 1242)])
def test_random_masks_round_trip_through_rle(shape):
    rng = np.random.default_rng(shape[0])
    for density in (0.0, 0.05, 0.5, 1.0):
        mask = rng.random(shape) < density
        np.testing.assert_array_equal(decode_rle(encode_rle(mask)), mask)


def test_rle_whose_counts_do_not_fill_the_size_is_rejected():
    with pytest.raises(ValueError, match=r"add up to 5 pixels, but 'size' 2x3 has 6"):
        decode_rle({"size": [2, 3], "counts": [1, 4]})


def test_polygon_rasterises_to_the_pixels_it_covers():
    mask = rasterize_polygons([[1, 0, 4, 0, 4, 2, 1, 2]], 4, 6)
    expected = np.zeros((4, 6), dtype=bool)
    expected[0:3, 1:5] = True
    np.testing.assert_array_equal(mask, expected)


# --- COCO layout -------------------------------------------------------------------------------


def test_coco_layout_gives_xyxy_boxes_keyed_by_file_name(tmp_path):
    path = dump(tmp_path / "d.json", coco([
        annotation(),
        annotation(category_id=2, bbox=[0, 0, 2, 2], score=0.25),
    ]))
    detections = read_detections(path)
    assert set(detections) == {"000008.png", "000009.png"}
    assert detections["000009.png"] == []
    car, person = detections["000008.png"]
    np.testing.assert_array_equal(car.box2d, [1.0, 2.0, 4.0, 3.5])
    assert (car.category, car.score, car.mask) == ("Car", 0.9, None)
    assert (person.category, person.score) == ("Pedestrian", 0.25)


def test_coco_layout_accepts_detections_key_and_no_categories(tmp_path):
    document = coco([], detections=[annotation(category_id=3)])
    del document["annotations"], document["categories"]
    detections = read_detections(dump(tmp_path / "d.json", document))
    assert detections["000008.png"][0].category == "3"


def test_empty_or_null_segmentation_means_no_mask(tmp_path):
    path = dump(tmp_path / "d.json", coco([annotation(segmentation=[]),
                                           annotation(segmentation=None)]))
    assert [d.mask for d in read_detections(path)["000008.png"]] == [None, None]


def test_coco_layout_decodes_rle_and_polygon_segmentations(tmp_path):
    square = np.zeros((4, 6), dtype=bool)
    square[1:3, 2:4] = True
    path = dump(tmp_path / "d.json", coco([
        annotation(segmentation=encode_rle(square)),
        annotation(segmentation={"size": [4, 6], "counts": encode_rle(square)["counts"]}),
        annotation(segmentation=[[2, 1, 3, 1, 3, 2, 2, 2]]),
    ]))
    masks = [d.mask for d in read_detections(path)["000008.png"]]
    np.testing.assert_array_equal(masks[0], square)
    np.testing.assert_array_equal(masks[1], square)
    np.testing.assert_array_equal(masks[2], square)


def test_coco_round_trip_keeps_boxes_scores_categories_and_masks(tmp_path):
    rng = np.random.default_rng(3)
    masks = [rng.random((375, 1242)) < 0.3, None, rng.random((375, 1242)) < 0.01]
    detections = {
        "000001.png": [Detection([10.5, 20.25, 110.0, 95.125], "Car", 0.875, masks[0]),
                       Detection([0, 0, 5, 5], "Cyclist", 0.5)],
        "000002.png": [Detection([100, 150, 300, 350.5], "Car", 0.125, masks[2])],
    }
    sizes = {"000001.png": (375, 1242), "000002.png": (375, 1242), "000003.png": (375, 1242)}
    write_detections_coco(tmp_path / "out" / "d.json", detections, sizes)
    again = read_detections(tmp_path / "out" / "d.json")
    assert again["000003.png"] == []
    for name, expected in detections.items():
        assert len(again[name]) == len(expected)
        for before, after in zip(expected, again[name], strict=True):
            np.testing.assert_allclose(after.box2d, before.box2d, rtol=0, atol=1e-12)
            assert (after.category, after.score) == (before.category, before.score)
            if before.mask is None:
                assert after.mask is None
            else:
                np.testing.assert_array_equal(after.mask, before.mask)


def test_write_detections_coco_requires_a_size_for_every_image(tmp_path):
    with pytest.raises(ValueError, match="no image size given for"):
        write_detections_coco(tmp_path / "d.json", {"a.png": []}, {})


# --- simple layout ---------------------------------------------------------------------------


def test_simple_layout_reads_xyxy_by_default_and_xywh_when_asked(tmp_path):
    path = dump(tmp_path / "d.json", {"000008.png": [
        {"bbox": [1, 2, 4, 6], "category": "Car", "score": 0.5},
        {"bbox": [1, 2, 4, 6], "bbox_format": "xywh", "category": "Car"},
    ]})
    xyxy, xywh = read_detections(path)["000008.png"]
    np.testing.assert_array_equal(xyxy.box2d, [1, 2, 4, 6])
    np.testing.assert_array_equal(xywh.box2d, [1, 2, 5, 8])
    assert xywh.score == 1.0  # score defaults to 1 (e.g. boxes taken from ground truth)


def test_simple_layout_reads_masks_with_the_image_size_given(tmp_path):
    square = np.zeros((4, 6), dtype=bool)
    square[1:3, 2:4] = True
    path = dump(tmp_path / "d.json", {
        "a.png": {"width": 6, "height": 4, "detections": [
            {"bbox": [2, 1, 4, 3], "category": "Car", "mask": [[2, 1, 3, 1, 3, 2, 2, 2]]}]},
        "b.png": [{"bbox": [2, 1, 4, 3], "category": "Car",
                   "mask": {"size": [4, 6], "counts": [9, 2, 2, 2, 9]}}],
    })
    detections = read_detections(path)
    np.testing.assert_array_equal(detections["a.png"][0].mask, square)
    np.testing.assert_array_equal(detections["b.png"][0].mask, square)


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (annotation(bbox=[1, 2, -3, 4]), r"annotations\[1\]: field 'bbox': box width must be "
                                         r"positive, got -3\.0"),
        (annotation(bbox=[1, 2, "three", 4]), r"annotations\[1\]: field 'bbox': expected a "
                                              r"number, got 'three'"),
        (annotation(bbox=[1, 2, float("nan"), 4]), r"annotations\[1\]: field 'bbox': expected "
                                                   r"a finite number, got nan"),
        (annotation(bbox=[1, 2, 3]), r"annotations\[1\]: field 'bbox': expected 4 numbers"),
        (annotation(image_id=8), r"annotations\[1\]: field 'image_id': image_id 8 has no entry "
                                 r"in 'images'"),
        (annotation(category_id=5), r"annotations\[1\]: field 'category_id': category_id 5 is "
                                    r"not in 'categories'"),
        (annotation(score=1.5), r"annotations\[1\]: field 'score': must be in \[0, 1\], got 1\.5"),
        (annotation(segmentation={"size": [5, 6], "counts": [30]}),
         r"annotations\[1\]: field 'segmentation': RLE size \[5, 6\] differs"),
        ({"image_id": 7, "bbox": [0, 0, 1, 1]}, r"annotations\[1\]: field 'category_id': missing"),
    ],
)
def test_bad_coco_annotation_names_file_entry_and_field(tmp_path, entry, message):
    path = dump(tmp_path / "dets.json", coco([annotation(), entry]))
    with pytest.raises(InputError, match=r"dets\.json: " + message):
        read_detections(path)


def test_coco_image_without_file_name_names_the_image_entry(tmp_path):
    document = coco([])
    del document["images"][1]["file_name"]
    with pytest.raises(InputError, match=r"dets\.json: images\[1\]: field 'file_name': missing"):
        read_detections(dump(tmp_path / "dets.json", document))


def test_malformed_json_names_line_and_column(tmp_path):
    path = tmp_path / "dets.json"
    path.write_text('{"a.png": [\n  {"bbox": [1, 2, 3, 4],, "category": "Car"}]}')
    with pytest.raises(InputError, match=r"dets\.json: line 2, column 25: malformed JSON"):
        read_detections(path)


def test_bare_coco_results_list_is_rejected_with_a_hint(tmp_path):
    path = dump(tmp_path / "dets.json", [annotation()])
    with pytest.raises(InputError, match=r"wrap it as \{\"images\""):
        read_detections(path)


def test_simple_image_object_without_detections_names_the_image(tmp_path):
    path = dump(tmp_path / "dets.json", {"a.png": {"width": 6, "height": 4}})
    with pytest.raises(InputError, match=r"dets\.json: a\.png: field 'detections': missing"):
        read_detections(path)


@pytest.mark.parametrize(
    ("detection", "message"),
    [
        ({"bbox": [5, 2, 4, 6], "category": "Car"},
         r"a\.png\[0\]: field 'bbox': box width must be positive, got -1\.0 \(bbox is xyxy\)"),
        ({"bbox": [1, 2, 4, 6], "category": "Car", "bbox_format": "cxcywh"},
         r"a\.png\[0\]: field 'bbox_format': expected one of"),
        ({"bbox": [1, 2, 4, 6]}, r"a\.png\[0\]: field 'category': missing"),
        ({"bbox": [1, 2, 4, 6], "category": "Car", "mask": [[0, 0, 1, 0, 1, 1]]},
         r"a\.png\[0\]: field 'mask': a polygon mask needs the image's width and height"),
    ],
)
def test_bad_simple_detection_names_file_entry_and_field(tmp_path, detection, message):
    path = dump(tmp_path / "dets.json", {"a.png": [detection]})
    with pytest.raises(InputError, match=r"dets\.json: " + message):
        read_detections(path)
