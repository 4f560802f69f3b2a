"""Depth maps: 16-bit PNG (KITTI's depth benchmark convention by default) and ``.npy``.

KITTI's depth devkit stores ``round(depth_in_metres * 256)`` as uint16 with 0 meaning "no
measurement", so the default ``scale`` is 256 units per metre. Maps stored in millimetres
(e.g. from RGB-D sensors) are read with ``scale=MILLIMETRES``.
"""

from __future__ import annotations

from pathlib import Path
from tokenize import TokenError

import numpy as np
from PIL import Image

from autolabel.errors import InputError
from autolabel.io.atomic import atomic_path
from autolabel.io.files import require_file
from autolabel.io.kitti import PIL_DECODE_ERRORS

KITTI_DEPTH_SCALE = 256.0  # PNG units per metre in KITTI's depth benchmark
MILLIMETRES = 1000.0  # PNG units per metre for maps stored in millimetres
DEPTH_SUFFIXES = (".png", ".npy")
_UINT16_MAX = 65535


def read_depth(path: str | Path, scale: float = KITTI_DEPTH_SCALE) -> np.ndarray:
    """Read a depth map in metres.

    Args:
        path: a single-channel 16-bit ``.png`` (value / ``scale`` = metres, 0 = no value) or
            a 2D ``.npy`` array in metres (NaN, infinity and values beyond float32's range,
            about 3.4e38, mean no value and become 0).
        scale: PNG units per metre; ignored for ``.npy``.
    Returns:
        (H, W) float32 metres; 0 where there is no value.
    Raises:
        InputError: naming the file, for a missing or undecodable file, an unsupported
            suffix, a PNG that is not 16-bit single-channel, an array that is not 2D and
            real-valued, or a negative depth (naming the first such pixel).
    """
    path = require_file(path, DEPTH_SUFFIXES, "depth map")
    suffix = path.suffix.lower()
    if suffix == ".png":
        return _read_png(path, scale)
    return _read_npy(path)


def _read_png(path: Path, scale: float) -> np.ndarray:
    try:
        with Image.open(path) as image:
            mode = image.mode
            values = np.asarray(image)
    except PIL_DECODE_ERRORS as error:
        raise InputError(path, f"cannot decode the image ({error})") from None
    # Pillow opens 16-bit grayscale PNGs as 'I;16' (older versions as 32-bit 'I').
    if not mode.startswith("I") or values.ndim != 2:
        raise InputError(path, f"expected a single-channel 16-bit PNG, got mode {mode!r}")
    if values.min(initial=0) < 0 or values.max(initial=0) > _UINT16_MAX:
        raise InputError(path, "values outside the 16-bit range")
    return (values.astype(np.float64) / scale).astype(np.float32)


def _read_npy(path: Path) -> np.ndarray:
    try:
        # Mapped, not read: a header that promises more data than the file holds is refused
        # instead of allocated.
        values = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError, SyntaxError, TokenError, TypeError) as error:
        # numpy parses the header with Python's tokenizer and ast: hence SyntaxError and
        # TokenError; a header dict with a bytes key (b'shape') fails its sort with TypeError.
        raise InputError(path, f"cannot read the array ({error})") from None
    if not isinstance(values, np.ndarray):
        values.close()
        raise InputError(path, "an .npz archive of arrays, not one .npy array")
    if values.ndim != 2 or not (np.issubdtype(values.dtype, np.floating)
                                or np.issubdtype(values.dtype, np.integer)):
        raise InputError(path, f"expected a 2D real-valued array (H, W) in metres, got "
                         f"shape {values.shape} and dtype {values.dtype}")
    with np.errstate(over="ignore", invalid="ignore"):  # beyond float32's range: infinite
        depth = np.array(values, dtype=np.float32)
    depth[~np.isfinite(depth)] = 0
    negative = np.argwhere(depth < 0)
    if len(negative):
        row, col = negative[0]
        raise InputError(path, f"negative depth {depth[row, col]} m "
                         f"({len(negative)} pixel(s) in all)", f"pixel (row {row}, col {col})")
    return depth


def write_depth_png(path: str | Path, depth: np.ndarray, scale: float = KITTI_DEPTH_SCALE) -> None:
    """Write a depth map as a 16-bit PNG, atomically; :func:`read_depth` reads it back.

    Args:
        path: destination ``.png``; its folder is created.
        depth: (H, W) metres, 0 for no value.
        scale: PNG units per metre (KITTI: 256, i.e. steps of 1/256 m up to 256 m).
    Raises:
        ValueError: for NaN, negative depths, or depths beyond 65535 / ``scale`` metres.
    """
    depth = np.asarray(depth, dtype=np.float64)
    if depth.ndim != 2:
        raise ValueError(f"depth must have shape (H, W), got {depth.shape}")
    if not np.isfinite(depth).all() or (depth < 0).any():
        raise ValueError("depth must be finite and non-negative (0 = no value)")
    units = np.round(depth * scale)
    if units.max(initial=0) > _UINT16_MAX:
        raise ValueError(f"depth {depth.max()} m is beyond the 16-bit PNG range "
                         f"({_UINT16_MAX / scale:.2f} m at scale {scale})")
    with atomic_path(path) as temporary:
        Image.fromarray(units.astype(np.uint16)).save(temporary, format="PNG")
