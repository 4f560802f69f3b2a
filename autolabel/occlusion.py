"""Which parts of a detection's image region nearer objects hide.

An instance mask covers only the visible part of its object, and the detected box ends where
the object disappears behind a nearer one, not where the object ends. Fitted to them as they
are, an occluded car shrinks and slides away from its occluder. The fitter therefore ignores
the silhouette over the pixels of nearer objects' masks and lets box edges that border them
go free (:mod:`autolabel.pipeline`). Which object is nearer comes from the initial hypotheses
(the LiDAR cluster, the depth map or the box-only distance).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from autolabel.io.detections import Detection


def occluder_masks(detections: Sequence[Detection], distances: Sequence[float]
                   ) -> list[np.ndarray | None]:
    """Per detection, the pixels of nearer detections' masks that its own mask lacks.

    Args:
        detections: one frame's detections; those without a mask occlude nothing here.
        distances: (D,) metres from the camera to each detection's initial hypothesis.
    Returns:
        Per detection an (H, W) bool mask, or None when no nearer detection has a mask.

    >>> a = np.zeros((2, 4), dtype=bool); a[:, :2] = True
    >>> b = np.zeros((2, 4), dtype=bool); b[:, 1:] = True
    >>> near, far = (Detection(np.array([0.0, 0, 3, 1]), "Car", 1.0, m) for m in (a, b))
    >>> masks = occluder_masks([near, far], [5.0, 9.0])
    >>> masks[0] is None, masks[1].astype(int).tolist()
    (True, [[1, 0, 0, 0], [1, 0, 0, 0]])
    """
    occluders: list[np.ndarray | None] = []
    for index, detection in enumerate(detections):
        nearer = [other.mask for other, distance in zip(detections, distances, strict=True)
                  if other is not detection and other.mask is not None
                  and distance < distances[index]]
        if not nearer:
            occluders.append(None)
            continue
        union = np.logical_or.reduce(nearer)
        occluders.append(union & ~detection.mask if detection.mask is not None else union)
    return occluders


def occluded_edges(box2d: np.ndarray, occluder: np.ndarray | None, strip: int = 3,
                   share: float = 0.3) -> np.ndarray:
    """Which edges of a detected box lie against a nearer object.

    An edge counts as occluded when at least ``share`` of the ``strip`` pixels wide band just
    outside it, along the box's extent, belongs to ``occluder``.

    Args:
        box2d: (4,) as (x1, y1, x2, y2) pixels. occluder: (H, W) bool, or None.
    Returns:
        (4,) bool for the edges x1, y1, x2, y2.

    >>> occluder = np.zeros((20, 20), dtype=bool); occluder[:, 12:] = True
    >>> occluded_edges(np.array([4.0, 5.0, 11.5, 15.0]), occluder).tolist()
    [False, False, True, False]
    """
    edges = np.zeros(4, dtype=bool)
    if occluder is None:
        return edges
    height, width = occluder.shape
    x1, y1, x2, y2 = np.round(np.asarray(box2d, dtype=np.float64)).astype(int)
    x1, x2 = np.clip([x1, x2], 0, width - 1)
    y1, y2 = np.clip([y1, y2], 0, height - 1)
    bands = [occluder[y1:y2 + 1, max(x1 - strip, 0):x1],
             occluder[max(y1 - strip, 0):y1, x1:x2 + 1],
             occluder[y1:y2 + 1, x2 + 1:x2 + 1 + strip],
             occluder[y2 + 1:y2 + 1 + strip, x1:x2 + 1]]
    for index, band in enumerate(bands):
        edges[index] = band.size > 0 and band.mean() >= share
    return edges
