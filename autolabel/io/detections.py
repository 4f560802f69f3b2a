"""2D detections in, as JSON: the COCO results layout and a simple per-image mapping.

Both layouts are described with examples in ``docs/formats.md``. In short:

* COCO layout: ``{"images": [{id, file_name, width, height}], "categories": [{id, name}],
  "annotations": [{image_id, category_id, bbox: [x, y, w, h], score, segmentation?}]}``
  (``"detections"`` is accepted in place of ``"annotations"``, ``categories`` is optional);
* simple layout: ``{"000008.png": [{bbox: [x1, y1, x2, y2], category, score, mask?}]}``,
  where an image's value may also be ``{"width", "height", "detections": [...]}``.

Masks are COCO run-length encodings (counts as a list of integers or COCO's compressed
string) or polygons. The RLE codec here is a small re-implementation of COCO's, so that
pycocotools is not needed.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from autolabel.errors import InputError
from autolabel.io.atomic import write_text_atomic
from autolabel.io.files import json_float, read_json

BBOX_FORMATS = ("xyxy", "xywh")
# The merged detections of a KITTI-layout folder (:func:`merge_detections`).
DETECTIONS_FILE = "detections.json"
# The largest mask (pixels) decoded or drawn: Pillow's limit for the images it opens.
MAX_MASK_PIXELS = 2 * Image.MAX_IMAGE_PIXELS


@dataclasses.dataclass(frozen=True, eq=False)
class Detection:
    """One 2D detection in one image.

    Attributes:
        box2d: (4,) float64 pixels (x1, y1, x2, y2): left, top, right, bottom edges.
        category: class name, e.g. ``Car``.
        score: detector confidence in [0, 1].
        mask: (H, W) bool instance mask over the full image, or None.
    """

    box2d: np.ndarray
    category: str
    score: float
    mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        box = np.array(self.box2d, dtype=np.float64)
        if box.shape != (4,):
            raise ValueError(f"Detection.box2d must have shape (4,), got {box.shape}")
        object.__setattr__(self, "box2d", box)
        object.__setattr__(self, "score", float(self.score))
        if self.mask is not None:
            mask = np.asarray(self.mask, dtype=bool)
            if mask.ndim != 2:
                raise ValueError(f"Detection.mask must have shape (H, W), got {mask.shape}")
            object.__setattr__(self, "mask", mask)


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO's compressed run-length encoding of a mask.

    Args:
        mask: (H, W) bool.
    Returns:
        ``{"size": [H, W], "counts": str}``: run lengths of the column-major pixel order,
        starting with a (possibly empty) run of zeros, in COCO's compressed string form.

    >>> encode_rle(np.array([[0, 1], [1, 1]], dtype=bool))
    {'size': [2, 2], 'counts': '13'}
    """
    mask = np.asarray(mask, dtype=bool)
    flat = mask.ravel(order="F")
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    counts = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    if flat.size and flat[0]:
        counts.insert(0, 0)
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": _compress(counts)}


def _compress(counts: list[int]) -> str:
    """COCO's string form: each count (after the second, as a difference to the count two
    places before) in 5-bit groups, low first, 0x20 flags another group, 0x10 of the last
    group is the sign; each group is offset by 48 into printable ASCII."""
    chars = []
    for index, count in enumerate(counts):
        value = count - counts[index - 2] if index > 2 else count
        more = True
        while more:
            group = value & 0x1F
            value >>= 5
            more = value != -1 if group & 0x10 else value != 0
            chars.append(chr(48 + (group | 0x20 if more else group)))
    return "".join(chars)


def _decompress(text: str) -> list[int]:
    """Inverse of :func:`_compress`."""
    counts: list[int] = []
    position = 0
    while position < len(text):
        value, shift, more = 0, 0, True
        while more:
            if position == len(text):
                raise ValueError("compressed RLE string ends in the middle of a count")
            group = ord(text[position]) - 48
            if not 0 <= group < 64:
                raise ValueError(f"invalid character {text[position]!r} in compressed RLE")
            value |= (group & 0x1F) << shift
            more = bool(group & 0x20)
            position += 1
            shift += 5
            if shift > 65:  # 13 groups: 64 bits and the sign
                raise ValueError("a count of the compressed RLE is longer than 64 bits")
            if not more and group & 0x10:
                value -= 1 << shift
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


def decode_rle(rle: Mapping[str, Any]) -> np.ndarray:
    """Decode a COCO RLE, counts given as a list of integers or as a compressed string.

    Args:
        rle: ``{"size": [H, W], "counts": list[int] | str}``.
    Returns:
        (H, W) bool.
    Raises:
        ValueError: with a message saying what is malformed.

    >>> decode_rle({"size": [2, 2], "counts": [1, 3]}).astype(int).tolist()
    [[0, 1], [1, 1]]
    """
    if not isinstance(rle, Mapping) or "size" not in rle or "counts" not in rle:
        raise ValueError("an RLE mask needs 'size' [height, width] and 'counts'")
    size = rle["size"]
    if (not isinstance(size, list) or len(size) != 2
            or not all(_is_integer(x) and x >= 0 for x in size)):
        raise ValueError(f"RLE 'size' must be [height, width] of non-negative integers, "
                         f"got {size!r}")
    height, width = size
    _check_mask_size(height, width)
    counts = rle["counts"]
    if isinstance(counts, str):
        counts = _decompress(counts)
    elif not isinstance(counts, list) or not all(_is_integer(x) for x in counts):
        raise ValueError("RLE 'counts' must be a list of integers or a compressed string")
    if any(count < 0 for count in counts):
        raise ValueError("RLE 'counts' has a negative run length")
    if sum(counts) != height * width:
        raise ValueError(f"RLE run lengths add up to {sum(counts)} pixels, but 'size' "
                         f"{height}x{width} has {height * width}")
    values = np.arange(len(counts)) % 2 == 1
    flat = np.repeat(values, counts)
    return flat.reshape(width, height).T.copy()


def rasterize_polygons(polygons: list, height: int, width: int) -> np.ndarray:
    """Fill COCO polygons (flat ``[x1, y1, x2, y2, ...]`` lists in pixels) into a mask.

    Args:
        polygons: one or more polygons of at least 3 points; their union is filled.
        height, width: mask size in pixels.
    Returns:
        (H, W) bool.
    Raises:
        ValueError: for a polygon that is not a flat list of an even number (at least 6) of
            finite numbers.

    >>> rasterize_polygons([[1, 1, 3, 1, 3, 2, 1, 2]], 4, 5).astype(int).tolist()
    [[0, 0, 0, 0, 0], [0, 1, 1, 1, 0], [0, 1, 1, 1, 0], [0, 0, 0, 0, 0]]
    """
    if not isinstance(polygons, list) or not polygons:
        raise ValueError("polygons must be a non-empty list of [x1, y1, x2, y2, ...] lists")
    _check_mask_size(height, width)
    image = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(image)
    for index, polygon in enumerate(polygons):
        if (not isinstance(polygon, list) or len(polygon) < 6 or len(polygon) % 2
                or not all(json_float(x) is not None for x in polygon)):
            raise ValueError(f"polygon {index} must be a flat list of an even number (at "
                             "least 6) of finite numbers x1, y1, x2, y2, ...")
        points = np.array(polygon, dtype=np.float64).reshape(-1, 2)
        draw.polygon([(x, y) for x, y in points.tolist()], fill=1, outline=1)
    return np.asarray(image, dtype=bool)


def _check_mask_size(height: int, width: int) -> None:
    if height * width > MAX_MASK_PIXELS:
        raise ValueError(f"a {height} x {width} mask is larger than the {MAX_MASK_PIXELS} "
                         "pixels of the largest image read")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Reader:
    """Validation helpers bound to one file, so every error names it."""

    def __init__(self, path: Path):
        self.path = path

    def error(self, message: str, entry: str | None = None, field: str | None = None):
        return InputError(self.path, message, entry, field)

    def obj(self, value: Any, entry: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.error(f"expected a JSON object, got {type(value).__name__}", entry)
        return value

    def field(self, item: Mapping[str, Any], name: str, entry: str | None) -> Any:
        if name not in item:
            raise self.error("missing", entry, name)
        return item[name]

    def identifier(self, item: Mapping[str, Any], name: str, entry: str) -> int | str:
        """An id field: an integer or a string, as COCO exporters write them."""
        value = self.field(item, name, entry)
        if not (_is_integer(value) or isinstance(value, str)):
            raise self.error(f"expected an integer or string id, got {value!r}", entry, name)
        return value

    def number(self, value: Any, entry: str, field: str) -> float:
        if not _is_number(value):
            raise self.error(f"expected a number, got {value!r}", entry, field)
        number = json_float(value)
        if number is None:
            raise self.error(f"expected a finite number, got {value!r}", entry, field)
        return number

    def score(self, item: Mapping[str, Any], entry: str) -> float:
        score = self.number(item.get("score", 1.0), entry, "score")
        if not 0.0 <= score <= 1.0:
            raise self.error(f"must be in [0, 1], got {score}", entry, "score")
        return score

    def box(self, value: Any, layout: str, entry: str, field: str = "bbox") -> np.ndarray:
        """(4,) x1, y1, x2, y2 from a box in ``layout`` ('xyxy' or 'xywh')."""
        if not isinstance(value, list) or len(value) != 4:
            raise self.error(f"expected 4 numbers ({layout}), got {value!r}", entry, field)
        a, b, c, d = (self.number(x, entry, field) for x in value)
        width, height = (c, d) if layout == "xywh" else (c - a, d - b)
        box = np.array([a, b, a + width, b + height])
        for name, extent in (("width", width), ("height", height)):
            if extent <= 0:
                raise self.error(f"box {name} must be positive, got {extent} "
                                 f"(bbox is {layout})", entry, field)
        if not np.isfinite([width, height, *box]).all():
            raise self.error(f"box coordinates beyond the float range (bbox is {layout})",
                             entry, field)
        if box[2] <= box[0] or box[3] <= box[1]:
            raise self.error(f"box too small for its coordinates, {box.tolist()} has no "
                             f"extent in floating point (bbox is {layout})", entry, field)
        return box

    def mask(self, value: Any, size: tuple[int, int] | None, entry: str,
             field: str) -> np.ndarray:
        """(H, W) bool from an RLE object or a polygon list; ``size`` is the image's (H, W)."""
        try:
            if isinstance(value, Mapping):
                mask = decode_rle(value)
                if size is not None and mask.shape != size:
                    raise ValueError(f"RLE size {list(mask.shape)} differs from the image's "
                                     f"[height, width] {list(size)}")
                return mask
            if size is None:
                raise ValueError("a polygon mask needs the image's width and height")
            return rasterize_polygons(value, *size)
        except ValueError as error:
            raise self.error(str(error), entry, field) from None

    def image_size(self, item: Mapping[str, Any], entry: str) -> tuple[int, int] | None:
        """(height, width) of an image entry, or None when it gives neither."""
        if "width" not in item and "height" not in item:
            return None
        sizes = []
        for name in ("height", "width"):
            value = self.field(item, name, entry)
            if not _is_integer(value) or value <= 0:
                raise self.error(f"expected a positive integer, got {value!r}", entry, name)
            sizes.append(value)
        return sizes[0], sizes[1]


def read_detections(path: str | Path) -> dict[str, list[Detection]]:
    """Read a detections JSON file in either layout (see the module docstring).

    Returns:
        Detections per image, keyed by the image's file name without folders
        (``"000008.png"``); an image listed with no detections maps to an empty list.

    Raises:
        InputError: naming the file, the entry (``annotations[3]``, ``000008.png[1]``, or
            the line and column of malformed JSON) and the field, for malformed JSON, a
            missing field, a non-numeric, NaN or wrongly sized bbox, a box with non-positive
            width or height, a score outside [0, 1], an image_id with no entry in
            ``images``, an unknown category_id, or a malformed mask.
    """
    path = Path(path)
    data = read_json(path)
    reader = _Reader(path)
    if isinstance(data, list):
        raise reader.error("a bare list of COCO results cannot be mapped to image files; "
                           'wrap it as {"images": [{"id", "file_name", ...}], '
                           '"annotations": [...]}')
    if not isinstance(data, dict):
        raise reader.error(f"expected a JSON object, got {type(data).__name__}")
    if "images" in data:
        return _read_coco(reader, data)
    return _read_simple(reader, data)


def _read_coco(reader: _Reader, data: Mapping[str, Any]) -> dict[str, list[Detection]]:
    if "annotations" in data and "detections" in data:
        raise reader.error("has both 'annotations' and 'detections'; keep one")
    key = "detections" if "detections" in data else "annotations"
    images, sizes, result = {}, {}, {}
    for index, item in enumerate(_list(reader, data, "images")):
        entry = f"images[{index}]"
        item = reader.obj(item, entry)
        image_id = reader.identifier(item, "id", entry)
        name = reader.field(item, "file_name", entry)
        if not isinstance(name, str) or not name:
            raise reader.error(f"expected a file name, got {name!r}", entry, "file_name")
        name = Path(name).name
        if image_id in images:
            raise reader.error(f"id {image_id!r} is used twice", entry, "id")
        if name in result:
            raise reader.error(f"file name {name!r} is used twice", entry, "file_name")
        images[image_id] = name
        sizes[image_id] = reader.image_size(item, entry)
        result[name] = []
    categories = None
    if "categories" in data:
        categories = {}
        for index, item in enumerate(_list(reader, data, "categories")):
            entry = f"categories[{index}]"
            item = reader.obj(item, entry)
            name = reader.field(item, "name", entry)
            if not isinstance(name, str) or not name or not name.isprintable():
                raise reader.error(f"expected a class name (printable characters), got "
                                   f"{name!r}", entry, "name")
            categories[reader.identifier(item, "id", entry)] = name
    for index, item in enumerate(_list(reader, data, key, required=False)):
        entry = f"{key}[{index}]"
        item = reader.obj(item, entry)
        image_id = reader.identifier(item, "image_id", entry)
        if image_id not in images:
            raise reader.error(f"image_id {image_id!r} has no entry in 'images'", entry,
                               "image_id")
        category_id = reader.identifier(item, "category_id", entry)
        if categories is None:
            category = str(category_id)
        elif category_id in categories:
            category = categories[category_id]
        else:
            raise reader.error(f"category_id {category_id!r} is not in 'categories'", entry,
                               "category_id")
        box = reader.box(reader.field(item, "bbox", entry), "xywh", entry)
        mask = None
        if item.get("segmentation"):  # absent, null and [] all mean "no mask"
            mask = reader.mask(item["segmentation"], sizes[image_id], entry, "segmentation")
        result[images[image_id]].append(
            Detection(box, category, reader.score(item, entry), mask))
    return result


def _list(reader: _Reader, data: Mapping[str, Any], key: str, required: bool = True,
          entry: str | None = None) -> list:
    if key not in data and not required:
        return []
    value = reader.field(data, key, entry)
    if not isinstance(value, list):
        raise reader.error(f"expected a list, got {type(value).__name__}", entry, key)
    return value


def _read_simple(reader: _Reader, data: Mapping[str, Any]) -> dict[str, list[Detection]]:
    result: dict[str, list[Detection]] = {}
    for name, value in data.items():
        size = None
        if isinstance(value, Mapping):
            size = reader.image_size(value, name)
            value = _list(reader, value, "detections", entry=name)
        if not isinstance(value, list):
            raise reader.error("expected a list of detections or an object with "
                               f"'detections', got {type(value).__name__}", name)
        key = Path(name).name
        if key in result:
            raise reader.error(f"file name {key!r} is used twice", name)
        result[key] = [_simple_detection(reader, item, size, f"{name}[{index}]")
                       for index, item in enumerate(value)]
    return result


def _simple_detection(reader: _Reader, item: Any, size: tuple[int, int] | None,
                      entry: str) -> Detection:
    item = reader.obj(item, entry)
    layout = item.get("bbox_format", "xyxy")
    if layout not in BBOX_FORMATS:
        raise reader.error(f"expected one of {BBOX_FORMATS}, got {layout!r}", entry,
                           "bbox_format")
    box = reader.box(reader.field(item, "bbox", entry), layout, entry)
    category = reader.field(item, "category", entry)
    if not isinstance(category, str) or not category or not category.isprintable():
        raise reader.error(f"expected a class name (printable characters), got {category!r}",
                           entry, "category")
    mask = None
    if item.get("mask"):  # absent, null and [] all mean "no mask"
        mask = reader.mask(item["mask"], size, entry, "mask")
    return Detection(box, category, reader.score(item, entry), mask)


def write_detections_coco(path: str | Path, detections_by_image: Mapping[str, list[Detection]],
                          image_sizes: Mapping[str, tuple[int, int]]) -> None:
    """Write detections in the COCO layout that :func:`read_detections` reads, atomically.

    Images are numbered from 1 in file-name order, categories from 1 in name order; masks
    are written as compressed RLE, boxes as [x, y, w, h].

    Args:
        path: destination file; its folder is created.
        detections_by_image: detections per image file name.
        image_sizes: (height, width) in pixels per image file name; every image with
            detections needs one, and images listed here without detections are written too.
    Raises:
        ValueError: for an image without a size or a mask whose shape is not that size.
    """
    missing = sorted(set(detections_by_image) - set(image_sizes))
    if missing:
        raise ValueError(f"no image size given for {missing}")
    names = sorted(image_sizes)
    categories = sorted({d.category for dets in detections_by_image.values() for d in dets})
    category_ids = {name: index for index, name in enumerate(categories, start=1)}
    annotations = []
    for image_id, name in enumerate(names, start=1):
        height, width = image_sizes[name]
        for detection in detections_by_image.get(name, []):
            x1, y1, x2, y2 = (float(v) for v in detection.box2d)
            annotation = {"id": len(annotations) + 1, "image_id": image_id,
                          "category_id": category_ids[detection.category],
                          "bbox": [x1, y1, x2 - x1, y2 - y1], "score": detection.score}
            if detection.mask is not None:
                if detection.mask.shape != (height, width):
                    raise ValueError(f"{name}: mask shape {detection.mask.shape} differs from "
                                     f"the image size {(height, width)}")
                annotation["segmentation"] = encode_rle(detection.mask)
            annotations.append(annotation)
    document = {
        "images": [{"id": image_id, "file_name": name, "height": int(image_sizes[name][0]),
                    "width": int(image_sizes[name][1])}
                   for image_id, name in enumerate(names, start=1)],
        "categories": [{"id": category_ids[name], "name": name} for name in categories],
        "annotations": annotations,
    }
    write_text_atomic(path, json.dumps(document, allow_nan=False) + "\n")


def merge_detections(root: str | Path, frame_ids: Sequence[str]) -> Path:
    """Gather ``detections/<id>.json`` of the frames into ``root/detections.json``.

    Images are numbered from 1 in the given order and named ``<id>.png`` after their frame
    (so a file linked under another name is read as that frame), categories from 1 in name
    order, annotations from 1; masks are copied as they are (already RLE-encoded).

    Returns:
        The path of the merged file.
    """
    root = Path(root)
    documents = [json.loads((root / "detections" / f"{frame}.json").read_text("utf-8"))
                 for frame in frame_ids]
    names = sorted({c["name"] for document in documents for c in document["categories"]})
    category_ids = {name: index for index, name in enumerate(names, start=1)}
    images, annotations = [], []
    for image_id, (frame, document) in enumerate(zip(frame_ids, documents, strict=True),
                                                 start=1):
        (image,) = document["images"]
        images.append({**image, "id": image_id, "file_name": f"{frame}.png"})
        local = {c["id"]: c["name"] for c in document["categories"]}
        for annotation in document["annotations"]:
            annotations.append({**annotation, "id": len(annotations) + 1, "image_id": image_id,
                                "category_id": category_ids[local[annotation["category_id"]]]})
    merged = {"images": images,
              "categories": [{"id": index, "name": name} for name, index in category_ids.items()],
              "annotations": annotations}
    path = root / DETECTIONS_FILE
    write_text_atomic(path, json.dumps(merged, allow_nan=False) + "\n")
    return path
