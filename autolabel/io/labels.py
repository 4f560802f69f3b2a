"""Per-frame JSON output: every label of a frame with its full 9D box and free extras.

Schema (``"format": "autolabel-frame"``, ``"version": 1``; see ``docs/formats.md``)::

    {"format": "autolabel-frame", "version": 1, "frame_id": "000008",
     "objects": [{"category", "box2d", "center", "rotation", "yaw", "size", "score",
                  "truncation", "occlusion", "extras": {...}}, ...],
     "extras": {...}}

``rotation`` is authoritative; ``yaw`` (KITTI ``rotation_y``) is written alongside for readers
that only need the heading. Extras hold anything JSON can carry (latent code, loss terms,
reasons, the accepted flag, timing); numpy arrays and torch tensors are written as lists.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autolabel.classes import DONT_CARE
from autolabel.errors import InputError
from autolabel.io.atomic import write_text_atomic
from autolabel.io.files import read_json
from autolabel.label import ObjectLabel

FORMAT = "autolabel-frame"
VERSION = 1
_ROTATION_TOLERANCE = 1e-6


@dataclasses.dataclass
class FrameRecord:
    """The contents of one per-frame JSON file.

    Attributes:
        frame_id: the frame's id, e.g. ``000008``.
        labels: one label per object.
        extras: one dict per object (same order as ``labels``).
        frame_extras: a dict for the frame as a whole (e.g. timing).
    """

    frame_id: str
    labels: list[ObjectLabel]
    extras: list[dict[str, Any]]
    frame_extras: dict[str, Any]


def write_frame_json(path: str | Path, frame_id: str, labels: Sequence[ObjectLabel],
                     extras: Sequence[Mapping[str, Any]] | None = None,
                     frame_extras: Mapping[str, Any] | None = None) -> None:
    """Write one frame's labels as JSON, atomically (temp file in the folder + rename).

    Args:
        path: destination file; its folder is created.
        frame_id: the frame's id.
        labels: the frame's objects.
        extras: one mapping per label, or None for none.
        frame_extras: a mapping for the whole frame, or None.
    Raises:
        ValueError: if ``extras`` and ``labels`` differ in length, or a value is NaN or
            infinite (the message names where); TypeError for a value JSON cannot hold.
    """
    extras = [{}] * len(labels) if extras is None else list(extras)
    if len(extras) != len(labels):
        raise ValueError(f"{len(extras)} extras for {len(labels)} labels")
    objects = []
    for index, (label, extra) in enumerate(zip(labels, extras, strict=True)):
        record = {
            "category": label.category,
            "box2d": label.box2d,
            "center": label.center,
            "rotation": label.rotation,
            "yaw": label.yaw,
            "size": label.size,
            "score": label.score,
            "truncation": label.truncation,
            "occlusion": int(label.occlusion),
            "extras": extra,
        }
        objects.append(_jsonable(record, f"objects[{index}]"))
    document = {
        "format": FORMAT,
        "version": VERSION,
        "frame_id": str(frame_id),
        "objects": objects,
        "extras": _jsonable(frame_extras or {}, "extras"),
    }
    write_text_atomic(path, json.dumps(document, indent=2, allow_nan=False) + "\n")


def _jsonable(value: Any, where: str) -> Any:
    """``value`` as plain JSON types; arrays and tensors become (nested) lists."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, (np.ndarray, np.generic)):
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where}: {value} cannot be written (NaN or infinite)")
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, Mapping):
        for key in value:
            if not isinstance(key, str):
                raise TypeError(f"{where}: key {key!r} is not a string")
        return {key: _jsonable(item, f"{where}.{key}") for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise TypeError(f"{where}: {type(value).__name__} cannot be written as JSON")


def read_frame_json(path: str | Path) -> FrameRecord:
    """Read a file written by :func:`write_frame_json`.

    Raises:
        InputError: naming the file, the entry (``objects[2]``) and the field, for malformed
            JSON, another format or a newer version, a missing field, a wrong length, a
            non-finite number, a rotation that is not a rotation, a non-positive size, or a
            2D box whose right or bottom edge is left of or above its left or top edge.
    """
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(path, f"not an {FORMAT} file", field="format")
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= VERSION:
        raise InputError(path, f"unsupported version {version!r}; this autolabel reads "
                         f"versions 1 to {VERSION}", field="version")
    frame_id = _get(data, "frame_id", str, path, None)
    objects = _get(data, "objects", list, path, None)
    frame_extras = _get(data, "extras", dict, path, None)
    labels, extras = [], []
    for index, item in enumerate(objects):
        entry = f"objects[{index}]"
        if not isinstance(item, dict):
            raise InputError(path, "expected a JSON object", entry)
        labels.append(_label(item, path, entry))
        extras.append(_get(item, "extras", dict, path, entry))
    return FrameRecord(frame_id, labels, extras, frame_extras)


def _get(item: Mapping[str, Any], name: str, kind: type, path: Path, entry: str | None) -> Any:
    if name not in item:
        raise InputError(path, "missing", entry, name)
    value = item[name]
    if not isinstance(value, kind):
        raise InputError(path, f"expected {kind.__name__}, got {type(value).__name__}", entry,
                         name)
    return value


def _numbers(item: Mapping[str, Any], name: str, shape: tuple[int, ...], path: Path,
             entry: str) -> np.ndarray:
    if name not in item:
        raise InputError(path, "missing", entry, name)
    value = item[name]
    try:
        array = np.array(value, dtype=np.float64) if _numeric(value) else None
    except (ValueError, OverflowError):  # ragged lists, integers beyond float64
        array = None
    if array is None or array.shape != shape:
        raise InputError(path, f"expected numbers of shape {shape}, got {value!r}", entry, name)
    if not np.isfinite(array).all():
        raise InputError(path, "NaN or infinite value", entry, name)
    return array


def _numeric(value: Any) -> bool:
    """Whether ``value`` is a JSON number or a (nested) list of them."""
    if isinstance(value, list):
        return all(_numeric(item) for item in value)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _label(item: Mapping[str, Any], path: Path, entry: str) -> ObjectLabel:
    category = _get(item, "category", str, path, entry)
    rotation = _numbers(item, "rotation", (3, 3), path, entry)
    with np.errstate(over="ignore", invalid="ignore"):  # huge entries: refused just below
        orthogonality = np.abs(rotation.T @ rotation - np.eye(3)).max()
    if orthogonality > _ROTATION_TOLERANCE or np.linalg.det(rotation) < 0:
        raise InputError(path, "not a proper rotation matrix", entry, "rotation")
    size = _numbers(item, "size", (3,), path, entry)
    if category != DONT_CARE and (size <= 0).any():
        raise InputError(path, f"must be positive, got {size.tolist()}", entry, "size")
    score = _get(item, "score", object, path, entry)
    if score is not None:
        score = float(_numbers(item, "score", (), path, entry))
    box2d = _numbers(item, "box2d", (4,), path, entry)
    if box2d[2] < box2d[0] or box2d[3] < box2d[1]:
        raise InputError(path, f"the right or bottom edge is left of or above the left or top "
                         f"edge: {box2d.tolist()}", entry, "box2d")
    occlusion = _get(item, "occlusion", object, path, entry)
    if not isinstance(occlusion, int) or isinstance(occlusion, bool):
        raise InputError(path, f"expected an integer, got {occlusion!r}", entry, "occlusion")
    return ObjectLabel(
        category=category,
        box2d=box2d,
        center=_numbers(item, "center", (3,), path, entry),
        rotation=rotation,
        size=size,
        truncation=float(_numbers(item, "truncation", (), path, entry)),
        occlusion=occlusion,
        score=score,
    )
