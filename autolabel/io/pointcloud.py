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
    infinite coordinates are dropped (organised clouds use them for missing returns).
    Coordinates are returned as stored: for KITTI scans that is the LiDAR frame, which
    :meth:`autolabel.io.kitti.Calib.velo_to_rect` maps to the camera frame.

    Returns:
        (N, 3) float32 metres, N >= 1.

    Raises:
        InputError: naming the file, for a missing file, an unsupported suffix, a file
            open3d cannot parse, or a cloud with no finite points.
        MissingExtra: for a ``.pcd`` or ``.ply`` file when open3d is not installed.
    """
    path = require_file(path, POINT_CLOUD_SUFFIXES, "point cloud")
    suffix = path.suffix.lower()
    if suffix == ".bin":
        points = read_velodyne(path)[:, :3]
    else:
        points = _read_open3d(path)
        points = points[np.isfinite(points).all(axis=1)]
    if len(points) == 0:
        raise InputError(path, "the point cloud has no points with finite coordinates")
    return np.ascontiguousarray(points, dtype=np.float32)


def _read_open3d(path: Path) -> np.ndarray:
    """(N, 3) float64 points of a .pcd or .ply file; empty when open3d cannot parse it."""
    o3d = require_open3d(f"reading {path.suffix} point clouds")  # here: only they need it

    # open3d reports parse failures as warnings and returns an empty cloud; the caller
    # turns the empty cloud into an InputError, so the warnings are silenced.
    with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):
        cloud = o3d.io.read_point_cloud(str(path))
    return np.asarray(cloud.points)
