"""Point clouds from KITTI ``.bin`` scans, ``.pcd`` and ``.ply`` files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from autolabel.errors import InputError
from autolabel.extras import require_open3d
from autolabel.io.files import POINT_CLOUD_SUFFIXES, require_file
from autolabel.io.kitti import read_velodyne


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
        with np.errstate(over="ignore"):  # beyond float32's range is infinite, dropped below
            points = _read_open3d(path).astype(np.float32)
        points = points[np.isfinite(points).all(axis=1)]
    if len(points) == 0:
        raise InputError(path, "the point cloud has no points with finite coordinates")
    return np.ascontiguousarray(points)


# open3d's PLY reader (RPly) aborts the whole process on a header line this long.
_PLY_LINE_LIMIT = 1024
# Its longest word; a longer number in ASCII data is read as garbage.
_ASCII_VALUE_LIMIT = 256
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
    """A header's count: at most 18 decimal digits (Python's int() also takes '1_0' and '+1',
    which open3d reads otherwise: a PCD with COUNT 1_0 crashed it)."""
    if not word.isdigit() or len(word) > 18:
        shown = word if len(word) <= 40 else word[:40] + b"..."
        raise InputError(path, f"expected a count, got {shown!r}", field=field)
    return int(word)


def _lines(data: bytes) -> int:
    return sum(1 for line in data.split(b"\n") if line.strip())


def _check_ascii_values(path: Path, data: bytes) -> None:
    """Refuse ASCII point data with a value that is not a number, or one longer than open3d's
    PLY reader reads: open3d returns such points as zeros or as uninitialised memory."""
    values = data.split()
    longest = max(map(len, values), default=0)
    if longest >= _ASCII_VALUE_LIMIT:
        raise InputError(path, f"a value of {longest} characters; at most "
                         f"{_ASCII_VALUE_LIMIT - 1} are read")
    try:
        np.array(values, dtype=np.float64)
    except ValueError as error:
        raise InputError(path, f"a point value that is not a number ({error})") from None


def _truncated(path: Path, declared: int, field: str) -> InputError:
    """open3d allocates the points a header declares and leaves the ones a truncated file
    lacks at (0, 0, 0), so such a file is refused before open3d reads it."""
    return InputError(path, f"the header declares {declared} points but the file ends "
                      "before the last one (truncated?)", field=field)


def _check_pcd(path: Path, content: bytes) -> None:
    """Refuse a .pcd file whose header is malformed, that holds fewer points than its
    header's POINTS, or whose ASCII data has a value that is not a number or a row of
    another length than a point's (open3d reads such a row as zeros)."""
    lines, data = _header(content, b"DATA")
    header = {words[0].upper(): words[1:] for words in lines}
    for key in (b"POINTS", b"SIZE", b"DATA"):
        if not header.get(key):
            raise InputError(path, "missing from the PCD header", field=key.decode())
    declared = _count_of(path, header[b"POINTS"][0], "POINTS")
    sizes = [_count_of(path, size, "SIZE") for size in header[b"SIZE"]]
    counts = [_count_of(path, count, "COUNT")
              for count in header.get(b"COUNT", [b"1"] * len(sizes))]
    point_size = sum(size * count for size, count in zip(sizes, counts, strict=False))
    encoding = header[b"DATA"][0].lower()
    if encoding == b"ascii":
        _check_ascii_values(path, data)
        values = sum(counts)
        rows = [line for line in data.split(b"\n") if line.strip()]
        ragged = next((n for n, row in enumerate(rows) if len(row.split()) != values), None)
        if ragged is not None:
            raise InputError(path, f"data row {ragged} holds {len(rows[ragged].split())} "
                             f"values, not the {values} its header's COUNT adds up to")
        held = len(rows)
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
    """Refuse a .ply file whose header is malformed (or has a line that open3d's PLY reader
    aborts the process on, such as a property line without its type or name), that ends
    before its last vertex, or whose ASCII data has a value that is not a number.

    Elements are stored in header order, one line (ascii) or one record (binary) each; list
    properties count as empty lists, so a binary file's length is checked from below.
    """
    longest = max(map(len, content.partition(b"end_header")[0].split(b"\n")))
    if longest >= _PLY_LINE_LIMIT:
        raise InputError(path, f"a header line of {longest} bytes; at most "
                         f"{_PLY_LINE_LIMIT - 1} are read")
    lines, data = _header(content, b"end_header")
    formats = [words[1] for words in lines if words[0] == b"format" and len(words) > 1]
    if not formats:
        raise InputError(path, "missing from the PLY header", field="format")
    ascii_data = formats[0] == b"ascii"
    if ascii_data:
        _check_ascii_values(path, data)
    for words in lines:  # 'property TYPE NAME' or 'property list COUNT_TYPE TYPE NAME'
        if words[0] == b"property" and len(words) != (5 if words[1:2] == [b"list"] else 3):
            raise InputError(path, f"a malformed header line {b' '.join(words)!r}",
                             field="property")
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
    raise InputError(path, "missing from the PLY header", field="element vertex")


def _read_open3d(path: Path) -> np.ndarray:
    """(N, 3) float64 points of a .pcd or .ply file; empty when open3d cannot parse it."""
    o3d = require_open3d(f"reading {path.suffix} point clouds")  # here: only they need it
    check = _check_pcd if path.suffix.lower() == ".pcd" else _check_ply
    check(path, path.read_bytes())
    # open3d reports parse failures as warnings and returns an empty cloud; the caller
    # turns the empty cloud into an InputError, so the warnings are silenced.
    with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):
        cloud = o3d.io.read_point_cloud(str(path))
    return np.asarray(cloud.points)
