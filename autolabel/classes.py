"""Object classes: KITTI's names and each class's mean size; light (no torch), so the CLI can
check a detections file's classes before the fitter loads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

DONT_CARE = "DontCare"
KITTI_CLASSES = ("Car", "Van", "Truck", "Pedestrian", "Person_sitting", "Cyclist", "Tram",
                 "Misc", DONT_CARE)

# Mean (length, width, height) in metres of each KITTI class over the KITTI training labels,
# the figures commonly published with frustum-based detectors.
CLASS_MEAN_SIZE: dict[str, tuple[float, float, float]] = {
    "Car": (3.88, 1.63, 1.53),
    "Van": (5.06, 1.90, 2.21),
    "Truck": (10.14, 2.59, 3.25),
    "Pedestrian": (0.84, 0.66, 1.76),
    "Person_sitting": (0.80, 0.60, 1.27),
    "Cyclist": (1.76, 0.60, 1.74),
    "Tram": (16.17, 2.53, 3.53),
    "Misc": (3.64, 1.54, 1.92),
}


def mean_size(category: str, class_sizes: Mapping[str, Sequence[float]] | None = None
              ) -> np.ndarray:
    """The class's mean (length, width, height) in metres; the name compares case-insensitively.

    ``class_sizes`` replaces the KITTI table (:data:`CLASS_MEAN_SIZE`): class statistics are
    a property of a data set (nuScenes cars average 4.6 m, KITTI's 3.9 m).

    >>> mean_size("car").tolist()
    [3.88, 1.63, 1.53]

    Raises:
        ValueError: for a class without statistics, naming the known ones.
    """
    table = CLASS_MEAN_SIZE if class_sizes is None else class_sizes
    for name, size in table.items():
        if name.lower() == category.lower():
            return np.array(size, dtype=np.float64)
    raise ValueError(f"no size statistics for class {category!r}; known classes: "
                     f"{', '.join(table)}")


def kitti_class_name(category: str) -> str:
    """KITTI's spelling of a KITTI class, whatever its case (KITTI tools and the official
    evaluator compare names exactly); other names are kept as they are.

    >>> kitti_class_name("car"), kitti_class_name("PERSON_SITTING"), kitti_class_name("bus")
    ('Car', 'Person_sitting', 'bus')
    """
    for name in KITTI_CLASSES:
        if name.lower() == category.lower():
            return name
    return category
