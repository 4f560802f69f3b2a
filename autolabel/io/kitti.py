"""KITTI object-detection files: calib, ``label_2``, velodyne scans, images, frame folders.

KITTI's labels place a box by its *bottom-centre* ``location`` and its yaw ``rotation_y``, and
order its dimensions (height, width, length). :class:`~autolabel.label.ObjectLabel` uses the
box *centre*, a full rotation matrix and (length, width, height). The conversion between the
two happens in :func:`read_labels` and :func:`write_labels` and nowhere else::

    centre   = location + rotation @ (0, 0, h / 2)     (object z is up)
             = location - (0, h / 2, 0)                 for an upright box (camera y is down)

See ``docs/formats.md`` for the file layouts and ``autolabel.geometry`` for the frames.
"""

from __future__ import annotations

import dataclasses
import math
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from autolabel.classes import DONT_CARE, kitti_class_name
from autolabel.errors import InputError
from autolabel.io.atomic import write_text_atomic
from autolabel.io.files import IMAGE_SUFFIXES
from autolabel.label import ObjectLabel

# What Pillow raises for a file it cannot decode: besides OSError (and its
# UnidentifiedImageError), its format plugins raise SyntaxError, ValueError (a PPM header cut
# short), struct.error, EOFError and, for a header claiming gigapixels, DecompressionBombError.
PIL_DECODE_ERRORS = (OSError, SyntaxError, ValueError, struct.error, EOFError,
                     Image.DecompressionBombError)

# Calib keys as they appear in KITTI object files, with the spellings of the tracking
# (``R_rect``, ``Tr_velo_cam``) and raw-data (``P_rect_02``, ``R_rect_00``) releases.
_CALIB_KEYS = {
    "P0": "P0", "P1": "P1", "P2": "P2", "P3": "P3",
    "P_rect_00": "P0", "P_rect_01": "P1", "P_rect_02": "P2", "P_rect_03": "P3",
    "R0_rect": "R0_rect", "R_rect": "R0_rect", "R_rect_00": "R0_rect",
    "Tr_velo_to_cam": "Tr_velo_to_cam", "Tr_velo_cam": "Tr_velo_to_cam",
    "Tr_imu_to_velo": "Tr_imu_to_velo", "Tr_imu_velo": "Tr_imu_to_velo",
    # The raw release's calib_velo_to_cam.txt stores Tr_velo_to_cam as a rotation R and a
    # translation T; they are combined when both are present.
    "R": "R", "T": "T",
}
# Accepted number counts per canonical key and the (rows, cols) block they are cut to.
_CALIB_SHAPES = {
    "P0": {12: (3, 4)}, "P1": {12: (3, 4)}, "P2": {12: (3, 4)}, "P3": {12: (3, 4)},
    "R0_rect": {9: (3, 3), 12: (3, 4), 16: (4, 4)},
    "Tr_velo_to_cam": {12: (3, 4), 16: (4, 4)},
    "Tr_imu_to_velo": {12: (3, 4), 16: (4, 4)},
    "R": {9: (3, 3)}, "T": {3: (3, 1)},
}
_CALIB_WRITE_ORDER = ("P0", "P1", "P2", "P3", "R0_rect", "Tr_velo_to_cam", "Tr_imu_to_velo")

# label_2 columns after the type, in file order (KITTI devkit names, dimensions split).
_LABEL_FIELDS = (
    "truncated", "occluded", "alpha", "bbox_left", "bbox_top", "bbox_right", "bbox_bottom",
    "height", "width", "length", "x", "y", "z", "rotation_y",
)
_VELODYNE_COLUMNS = ("x", "y", "z", "reflectance")


@dataclasses.dataclass(frozen=True, eq=False)
class Calib:
    """One frame's camera and LiDAR calibration in KITTI's conventions.

    Attributes:
        P2: (3, 4) projection of the left colour camera, from the rectified camera frame to
            pixels (``autolabel.geometry.project_points`` takes it as is).
        R0_rect: (3, 3) rectifying rotation; identity when the file had none.
        Tr_velo_to_cam: (3, 4) LiDAR-to-reference-camera transform, or None when the file
            had none (camera-only data); :meth:`velo_to_rect` then raises InputError.
        P0, P1, P3: (3, 4) projections of the other cameras, or None.
        Tr_imu_to_velo: (3, 4) IMU-to-LiDAR transform, or None.
        source: the file it was read from, named in error messages; None if built in code.
    """

    P2: np.ndarray
    R0_rect: np.ndarray = dataclasses.field(default_factory=lambda: np.eye(3))
    Tr_velo_to_cam: np.ndarray | None = None
    P0: np.ndarray | None = None
    P1: np.ndarray | None = None
    P3: np.ndarray | None = None
    Tr_imu_to_velo: np.ndarray | None = None
    source: Path | None = None

    def __post_init__(self) -> None:
        shapes = {"P0": (3, 4), "P1": (3, 4), "P2": (3, 4), "P3": (3, 4), "R0_rect": (3, 3),
                  "Tr_velo_to_cam": (3, 4), "Tr_imu_to_velo": (3, 4)}
        for name, shape in shapes.items():
            value = getattr(self, name)
            if value is None:
                continue
            array = np.array(value, dtype=np.float64)
            if array.shape != shape:
                raise ValueError(f"Calib.{name} must have shape {shape}, got {array.shape}")
            object.__setattr__(self, name, array)

    def velo_to_rect_matrix(self) -> np.ndarray:
        """(4, 4) homogeneous transform from LiDAR to the rectified camera frame."""
        if self.Tr_velo_to_cam is None:
            raise InputError(self.source, "no LiDAR-to-camera transform in this calibration",
                             field="Tr_velo_to_cam")
        rect = np.eye(4)
        rect[:3, :3] = self.R0_rect
        velo = np.eye(4)
        velo[:3] = self.Tr_velo_to_cam
        return rect @ velo

    def lidar_origin(self) -> np.ndarray:
        """(3,) the LiDAR's origin in the rectified camera frame; the camera's own origin when
        the calibration has no LiDAR transform (points then come in the camera frame)."""
        if self.Tr_velo_to_cam is None:
            return np.zeros(3)
        return self.velo_to_rect(np.zeros(3))

    def velo_to_rect(self, points: np.ndarray) -> np.ndarray:
        """LiDAR points in the rectified camera frame: ``x_rect = R0_rect @ Tr_velo_to_cam @ x``.

        Args:
            points: (*, 3) metres in the LiDAR frame (x forward, y left, z up).
        Returns:
            (*, 3) metres in the rectified camera frame, in the input's float dtype (float64
            for integer input).

        >>> calib = Calib(np.eye(3, 4), Tr_velo_to_cam=[[0, -1, 0, 0], [0, 0, -1, 0],
        ...                                             [1, 0, 0, 0]])
        >>> calib.velo_to_rect(np.array([[10.0, 1.0, 2.0]])).tolist()  # ahead, left, up
        [[-1.0, -2.0, 10.0]]
        """
        return _apply(self.velo_to_rect_matrix(), points)

    def rect_to_velo(self, points: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`velo_to_rect`.

        Args:
            points: (*, 3) metres in the rectified camera frame.
        Returns:
            (*, 3) metres in the LiDAR frame, in the input's float dtype.
        """
        return _apply(np.linalg.inv(self.velo_to_rect_matrix()), points)


def _apply(transform: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``transform`` (4, 4) applied to ``points`` (*, 3), computed in float64."""
    points = np.asarray(points)
    if points.shape[-1:] != (3,):
        raise ValueError(f"points must have shape (*, 3), got {points.shape}")
    result = points.astype(np.float64) @ transform[:3, :3].T + transform[:3, 3]
    dtype = points.dtype if np.issubdtype(points.dtype, np.floating) else np.float64
    return result.astype(dtype, copy=False)


def _number(token: str, path: Path, entry: str, field: str) -> float:
    """A finite float parsed from ``token``, or an InputError naming file, entry and field."""
    try:
        value = float(token)
    except ValueError:
        raise InputError(path, f"expected a number, got {token!r}", entry, field) from None
    if not math.isfinite(value):
        raise InputError(path, f"expected a finite number, got {token!r}", entry, field)
    return value


def _read_lines(path: str | Path) -> tuple[Path, list[str]]:
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    try:
        return path, path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as error:
        raise InputError(path, f"not a text file ({error.reason})") from None


def read_calib(path: str | Path) -> Calib:
    """Read a KITTI calib file.

    Accepts the object-detection layout (``P2: 12 numbers``), the tracking spellings
    (``R_rect``, ``Tr_velo_cam``, with or without a colon) and the raw-data keys
    (``P_rect_02``, ``R_rect_00``, and ``R``/``T`` for the LiDAR transform) when they sit in
    one file. ``R0_rect`` may be given as 9 (3x3), 12 (3x4) or 16 (4x4) numbers. Lines with
    other keys are ignored.

    Raises:
        InputError: naming the file, line and field, for a missing or singular ``P2`` (or
            one whose determinant overflows), a wrong number of values, a non-numeric or
            non-finite value, a key given twice, or a ``Tr_velo_to_cam`` without
            ``R0_rect``.
    """
    path, lines = _read_lines(path)
    matrices: dict[str, np.ndarray] = {}
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        tokens = line.split()
        if not tokens:
            continue
        key = _CALIB_KEYS.get(tokens[0].rstrip(":"))
        if key is None:
            continue
        entry = f"line {number}"
        if key in seen:
            raise InputError(path, f"given twice (first on line {seen[key]})", entry, key)
        seen[key] = number
        values = [_number(token, path, entry, key) for token in tokens[1:]]
        shape = _CALIB_SHAPES[key].get(len(values))
        if shape is None:
            expected = " or ".join(str(count) for count in _CALIB_SHAPES[key])
            raise InputError(path, f"expected {expected} numbers, got {len(values)}", entry, key)
        rows, cols = shape
        matrices[key] = np.array(values).reshape(rows, cols)
    if "P2" not in matrices:
        raise InputError(path, "missing (the left colour camera's projection matrix)",
                         field="P2")
    with np.errstate(over="ignore", invalid="ignore"):
        determinant = np.linalg.det(matrices["P2"][:3, :3])
    if not np.isfinite(determinant):
        raise InputError(path, "its left 3 x 3 block's determinant is beyond the float range",
                         field="P2")
    if abs(determinant) < 1e-9:
        raise InputError(path, "singular: its left 3 x 3 block cannot be inverted", field="P2")
    if "Tr_velo_to_cam" not in matrices and "R" in matrices and "T" in matrices:
        matrices["Tr_velo_to_cam"] = np.hstack([matrices["R"], matrices["T"]])
    if "Tr_velo_to_cam" in matrices and "R0_rect" not in matrices:
        raise InputError(path, "missing, but Tr_velo_to_cam is given", field="R0_rect")
    fields = {name: matrices[name][:3, :4] for name in _CALIB_WRITE_ORDER if name in matrices}
    if "R0_rect" in fields:
        fields["R0_rect"] = fields["R0_rect"][:3, :3]
    return Calib(**fields, source=path)


def write_calib(path: str | Path, calib: Calib) -> None:
    """Write ``calib`` in the KITTI object layout, atomically.

    Lines come in KITTI's order (P0, P1, P2, P3, R0_rect, Tr_velo_to_cam, Tr_imu_to_velo);
    matrices that are None are left out. Numbers are written with Python's shortest exact
    representation, so :func:`read_calib` gives back the same float64 values.
    """
    lines = []
    for name in _CALIB_WRITE_ORDER:
        value = getattr(calib, name)
        if value is not None:
            lines.append(f"{name}: " + " ".join(repr(float(x)) for x in value.ravel()))
    write_text_atomic(path, "\n".join(lines) + "\n")


def read_labels(path: str | Path) -> list[ObjectLabel]:
    """Read a KITTI ``label_2`` file: one object per line, 15 fields and an optional score.

    Every class is returned, ``DontCare`` included (its 3D fields are KITTI's placeholders:
    size -1, location -1000, rotation_y -10, converted like any other box). Blank lines are
    skipped; an empty file gives an empty list.

    Returns:
        One :class:`ObjectLabel` per line with ``center`` = KITTI location raised by half the
        height, ``rotation`` from ``rotation_y``, ``size`` = (length, width, height) and
        ``score`` from the 16th column (None when absent). KITTI's ``alpha`` is not kept: it
        follows from the centre and yaw (``ObjectLabel.alpha``).

    Raises:
        InputError: naming the file, line and field, for a wrong field count, a non-numeric
            or non-finite value, a box whose right/bottom edge is left of/above its left/top
            edge, (except for DontCare) a dimension that is not positive, an occlusion level
            other than -1 .. 3, or a centre beyond the float range.
    """
    path, lines = _read_lines(path)
    labels = []
    for number, line in enumerate(lines, start=1):
        tokens = line.split()
        if tokens:
            labels.append(_parse_label(tokens, path, f"line {number}"))
    return labels


def _parse_label(tokens: list[str], path: Path, entry: str) -> ObjectLabel:
    if len(tokens) not in (15, 16):
        raise InputError(path, f"expected 15 fields (16 with a score), got {len(tokens)}", entry)
    category = tokens[0]
    values = {field: _number(token, path, entry, field)
              for token, field in zip(tokens[1:15], _LABEL_FIELDS, strict=True)}
    score = _number(tokens[15], path, entry, "score") if len(tokens) == 16 else None
    for low, high in (("bbox_left", "bbox_right"), ("bbox_top", "bbox_bottom")):
        if values[high] < values[low]:
            raise InputError(path, f"{values[high]} is less than {low} {values[low]} "
                             "(the box has negative size)", entry, high)
    if category != DONT_CARE:
        for name in ("height", "width", "length"):
            if values[name] <= 0:
                raise InputError(path, f"must be positive, got {values[name]}", entry, name)
    if values["occluded"] not in (-1, 0, 1, 2, 3):
        raise InputError(path, f"expected an occlusion level -1 (DontCare), 0 (visible) .. 3 "
                         f"(unknown), got {values['occluded']}", entry, "occluded")
    height = values["height"]
    label = ObjectLabel.upright(
        category,
        box2d=[values[name] for name in ("bbox_left", "bbox_top", "bbox_right", "bbox_bottom")],
        center=[values["x"], values["y"], values["z"]],
        yaw=values["rotation_y"],
        size=[values["length"], values["width"], height],
        truncation=values["truncated"],
        occlusion=int(values["occluded"]),
        score=score,
    )
    with np.errstate(over="ignore"):
        label.center = label.center + label.rotation[:, 2] * (height / 2)
    if not np.isfinite(label.center).all():
        raise InputError(path, "the box centre (y minus half the height) is beyond the float "
                         "range", entry, "y")
    return label


def write_labels(path: str | Path, labels: Sequence[ObjectLabel], decimals: int = 2) -> None:
    """Write labels as a KITTI ``label_2`` file, atomically.

    Each label's centre goes back to KITTI's bottom-centre location, its rotation to
    ``rotation_y`` (the heading of its forward axis; pitch and roll cannot be stored) and
    ``alpha`` is computed from the centre and yaw. A label with a score gets a 16th column.
    KITTI classes are written in KITTI's spelling (:func:`kitti_class_name`: a detector's
    ``car`` becomes ``Car``).
    DontCare labels are written with KITTI's placeholders (-1 -1 -10, size -1, location -1000,
    rotation_y -10) and only their 2D box and score.

    Args:
        path: destination file; its folder is created.
        labels: the objects of one frame.
        decimals: digits after the point for every real-valued field; the score gets at least
            4. :func:`read_labels` reproduces the written values exactly to this precision.
    """
    score_decimals = max(decimals, 4)

    def fmt(value: float, digits: int = decimals) -> str:
        return f"{round(float(value), digits) + 0.0:.{digits}f}"  # + 0.0 turns -0.0 into 0.0

    lines = []
    for label in labels:
        box = " ".join(fmt(x) for x in label.box2d)
        if label.category == DONT_CARE:
            fields = [DONT_CARE, "-1", "-1", "-10", box, "-1 -1 -1 -1000 -1000 -1000 -10"]
        else:
            length, width, height = (float(x) for x in label.size)
            location = np.asarray(label.center) - np.asarray(label.rotation)[:, 2] * (height / 2)
            fields = [
                kitti_class_name(label.category), fmt(label.truncation), str(int(label.occlusion)),
                fmt(label.alpha), box, " ".join(fmt(x) for x in (height, width, length)),
                " ".join(fmt(x) for x in location), fmt(label.yaw),
            ]
        if label.score is not None:
            fields.append(fmt(label.score, score_decimals))
        lines.append(" ".join(fields))
    write_text_atomic(path, "".join(line + "\n" for line in lines))


def read_velodyne(path: str | Path) -> np.ndarray:
    """Read a KITTI velodyne scan: little-endian float32 records (x, y, z, reflectance).

    Returns:
        (N, 4) float32; x, y, z in metres in the LiDAR frame (x forward, y left, z up).

    Raises:
        InputError: naming the file, for a missing file, a size that is not a multiple of
            16 bytes, or points with NaN or infinite values (naming the first point and field).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    size = path.stat().st_size
    if size % 16:
        raise InputError(path, f"size {size} bytes is not a multiple of 16 "
                         "(4 float32 values x, y, z, reflectance per point)")
    points = np.fromfile(path, dtype="<f4").reshape(-1, 4).astype(np.float32, copy=False)
    finite = np.isfinite(points)
    if not finite.all():
        row, column = np.argwhere(~finite)[0]
        count = int((~finite.all(axis=1)).sum())
        raise InputError(path, f"{count} point(s) have NaN or infinite values",
                         f"point {row}", _VELODYNE_COLUMNS[column])
    return points


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as RGB.

    Returns:
        (H, W, 3) uint8; grayscale images are repeated over the three channels and an alpha
        channel is dropped.

    Raises:
        InputError: naming the file, when it is missing or cannot be decoded.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such image file")
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except PIL_DECODE_ERRORS as error:
        raise InputError(path, f"cannot decode the image ({error})") from None


def list_frames(root: str | Path) -> list[str]:
    """Frame ids (file stems, e.g. ``000008``) of a KITTI-layout folder, sorted.

    A frame is an image in ``root/image_2`` (``.png``, ``.jpg`` or ``.jpeg``); its other
    files are ``calib/<id>.txt``, ``velodyne/<id>.bin`` and ``label_2/<id>.txt``.

    Raises:
        InputError: naming the folder, when ``root/image_2`` does not exist.
    """
    images = Path(root) / "image_2"
    if not images.is_dir():
        raise InputError(root, "not a KITTI-layout folder: it has no image_2/ folder")
    return sorted(p.stem for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
