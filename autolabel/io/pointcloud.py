"""Point clouds from KITTI ``.bin`` scans, ``.pcd`` and ``.ply`` files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from autolabel.errors import InputError
from autolabel.extras import require_open3d
from autolabel.io.files import require_file
from autolabel.io.kitti import read_velodyne

POINT_CLOUD_SUFFIXES = (".bin", ".pcd", ".ply")


def read_points(path: str | Path) -> np.ndarray:
    """Read the xyz coordinates of a point cloud, choosing the reader by the file suffix.

    ``.bin`` is a KITTI velodyne scan (see :func:`autolabel.io.kitti.read_velodyne`, which
    rejects NaN values); ``.pcd`` and ``.ply`` are read with open3d and rows with NaN or
    infinite coordinates are dropped (organised clouds use them for missing returns), as are
    rows beyond float32's range (about 3.4e38).
    Coordinates are returned as stored: for KITTI scans that is the LiDAR frame, which
    :meth:`autolabel.io.kitti.Calib.velo_to_rect` maps to the camera frame.

    Returns:
        (N, 3) float32 metres, N >= 1.

    Raises:
        InputError: naming the file, for a missing file, an unsupported suffix, a file
            open3d cannot parse, a file that holds fewer points than its header declares
            (truncated), or a cloud with no finite points.
        MissingExtra: for a ``.pcd`` or ``.ply`` file when open3d is not installed.
    """
    path = require_file(path, POINT_CLOUD_SUFFIXES, "point cloud")
    suffix = path.suffix.lower()
    if suffix == ".bin":
        points = read_velodyne(path)[:, :3]
    else:
        check = _check_pcd if suffix == ".pcd" else _check_ply
        check(path, path.read_bytes())
        with np.errstate(over="ignore"):  # beyond float32's range is infinite, dropped below
            points = _read_open3d(path).astype(np.float32)
        points = points[np.isfinite(points).all(axis=1)]
    if len(points) == 0:
        raise InputError(path, "the point cloud has no points with finite coordinates")
    return np.ascontiguousarray(points)


# Bytes of the scalar types of PLY properties.
_PLY_SIZES = {name: size for size, names in (
    (1, ("char", "int8", "uchar", "uint8")), (2, ("short", "int16", "ushort", "uint16")),
    (4, ("int", "int32", "uint", "uint32", "float", "float32")), (8, ("double", "float64")))
    for name in names}


def _header(content: bytes, end: bytes) -> tuple[list[list[bytes]], bytes]:
    """The words of each header line up to the line that starts with ``end`` (included), and
    the bytes after that line; comment lines are left out."""
    lines, rest = [], content
    while rest:
        line, _, rest = rest.partition(b"\n")
        words = line.split()
        if words and not words[0].startswith(b"#") and words[0] not in (b"comment",
                                                                         b"obj_info"):
            lines.append(words)
            if words[0] == end:
                break
    return lines, rest


def _count_of(path: Path, word: bytes, field: str) -> int:
    try:
        count = int(word)
    except ValueError:
        raise InputError(path, f"expected a count, got {word!r}", field=field) from None
    if count < 0:
        raise InputError(path, f"expected a count, got {count}", field=field)
    return count


def _lines(data: bytes) -> int:
    return sum(1 for line in data.split(b"\n") if line.strip())


def _truncated(path: Path, declared: int, field: str) -> InputError:
    """open3d allocates the points a header declares and leaves the ones a truncated file
    lacks at (0, 0, 0), so such a file is refused before open3d reads it."""
    return InputError(path, f"the header declares {declared} points but the file ends "
                      "before the last one (truncated?)", field=field)


def _check_pcd(path: Path, content: bytes) -> None:
    """Refuse a .pcd file whose header is malformed or that holds fewer points than its
    header's POINTS."""
    lines, data = _header(content, b"DATA")
    header = {words[0].upper(): words[1:] for words in lines}
    for key in (b"POINTS", b"SIZE", b"DATA"):
        if not header.get(key):
            raise InputError(path, "missing from the PCD header", field=key.decode())
    declared = _count_of(path, header[b"POINTS"][0], "POINTS")
    counts = header.get(b"COUNT", [b"1"] * len(header[b"SIZE"]))
    point_size = sum(_count_of(path, size, "SIZE") * _count_of(path, count, "COUNT")
                     for size, count in zip(header[b"SIZE"], counts, strict=False))
    encoding = header[b"DATA"][0].lower()
    if encoding == b"ascii":
        held = _lines(data)
    elif point_size == 0:
        raise InputError(path, "points of 0 bytes", field="SIZE")
    elif encoding == b"binary":
        held = len(data) // point_size
    elif encoding == b"binary_compressed" and len(data) >= 8:
        stored, unpacked = np.frombuffer(data[:8], dtype="<u4").tolist()
        held = unpacked // point_size if stored <= len(data) - 8 else 0
    else:
        held = 0
    if held < declared:
        raise _truncated(path, declared, "POINTS")


def _check_ply(path: Path, content: bytes) -> None:
    """Refuse a .ply file whose header is malformed or that ends before its last vertex.

    Elements are stored in header order, one line (ascii) or one record (binary) each; list
    properties count as empty lists, so a binary file's length is checked from below.
    """
    lines, data = _header(content, b"end_header")
    formats = [words[1] for words in lines if words[0] == b"format" and len(words) > 1]
    if not formats:
        raise InputError(path, "missing from the PLY header", field="format")
    ascii_data = formats[0] == b"ascii"
    needed = 0  # lines (ascii) or bytes (binary) up to the last vertex
    for index, words in enumerate(lines):
        if words[0] != b"element" or len(words) != 3:
            continue
        field = f"element {words[1].decode(errors='replace')}"
        count = _count_of(path, words[2], field)
        record = 0
        for line in lines[index + 1:]:
            if line[0] != b"property" or len(line) < 2:
                break
            kind = line[2] if line[1] == b"list" and len(line) > 2 else line[1]
            record += _PLY_SIZES.get(kind.decode(errors="replace"), 1)
        needed += count if ascii_data else count * record
        if words[1] == b"vertex":
            if (_lines(data) if ascii_data else len(data)) < needed:
                raise _truncated(path, count, field)
            return


def _read_open3d(path: Path) -> np.ndarray:
    """(N, 3) float64 points of a .pcd or .ply file; empty when open3d cannot parse it."""
    o3d = require_open3d(f"reading {path.suffix} point clouds")  # here: only they need it

    # open3d reports parse failures as warnings and returns an empty cloud; the caller
    # turns the empty cloud into an InputError, so the warnings are silenced.
    with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):
        cloud = o3d.io.read_point_cloud(str(path))
    return np.asarray(cloud.points)
