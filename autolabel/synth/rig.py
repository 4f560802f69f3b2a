"""The simulated sensor rig: KITTI's published calibration numbers and the image size.

The numbers are those of KITTI's object-detection calibration for the 2011-09-26 recordings
(e.g. ``calib/000008.txt`` of the training split), typed in here so that ``autolabel synth``
runs without any KITTI files. The scene is built in the *rectified camera frame* (x right,
y down, z forward) and the ground is the horizontal plane ``y = ground_y`` in that frame, placed
so that the LiDAR origin is ``LIDAR_HEIGHT`` above it, as on KITTI's car (the camera then sits
about 1.65 m above the ground, as KITTI states).
"""

from __future__ import annotations

import numpy as np

from autolabel.io.kitti import Calib

IMAGE_HEIGHT = 375
IMAGE_WIDTH = 1242
LIDAR_HEIGHT = 1.73  # metres above the ground (KITTI's Velodyne HDL-64E mounting)

# KITTI's published calibration of the 2011-09-26 drives (left colour camera P2, rectifying
# rotation and LiDAR-to-camera transform), row-major.
_KITTI_P2 = (
    (7.215377e02, 0.0, 6.095593e02, 4.485728e01),
    (0.0, 7.215377e02, 1.728540e02, 2.163791e-01),
    (0.0, 0.0, 1.0, 2.745884e-03),
)
_KITTI_R0_RECT = (
    (9.999239e-01, 9.837760e-03, -7.445048e-03),
    (-9.869795e-03, 9.999421e-01, -4.278459e-03),
    (7.402527e-03, 4.351614e-03, 9.999631e-01),
)
_KITTI_TR_VELO_TO_CAM = (
    (7.533745e-03, -9.999714e-01, -6.166020e-04, -4.069766e-03),
    (1.480249e-02, 7.280733e-04, -9.998902e-01, -7.631618e-02),
    (9.998621e-01, 7.523790e-03, 1.480755e-02, -2.717806e-01),
)


def kitti_calib() -> Calib:
    """The calibration every synthetic frame uses (KITTI's published 2011-09-26 numbers)."""
    return Calib(P2=np.array(_KITTI_P2), R0_rect=np.array(_KITTI_R0_RECT),
                 Tr_velo_to_cam=np.array(_KITTI_TR_VELO_TO_CAM))


def ground_y(calib: Calib, lidar_height: float = LIDAR_HEIGHT) -> float:
    """Camera-frame y of the ground plane: ``lidar_height`` below the LiDAR (y points down).

    >>> round(ground_y(kitti_calib()), 3)
    1.655
    """
    return float(calib.lidar_origin()[1] + lidar_height)
