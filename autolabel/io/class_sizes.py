"""Class size statistics of a data set: a JSON object of class name -> mean (l, w, h) metres.

    {"Car": [4.6, 1.95, 1.73], "Pedestrian": [0.8, 0.7, 1.75]}

``autolabel fit --class-sizes FILE`` reads it; the classes it names override KITTI's means
(:data:`autolabel.classes.CLASS_MEAN_SIZE`), the others keep them.
"""

from __future__ import annotations

from pathlib import Path

from autolabel.errors import InputError
from autolabel.io.files import json_float, read_json


def read_class_sizes(path: str | Path) -> dict[str, tuple[float, float, float]]:
    """The class -> (length, width, height) table of a class sizes file.

    Raises:
        InputError: naming the file and the class, for a missing or malformed file, an empty
            table, or a size that is not three positive finite numbers.
    """
    table = read_json(path)
    if not isinstance(table, dict) or not table:
        raise InputError(path, 'expected a JSON object of class name -> [length, width, '
                         'height] in metres, e.g. {"Car": [4.6, 1.95, 1.73]}')
    sizes = {}
    for name, size in table.items():
        numbers = [json_float(v) for v in size] if isinstance(size, list) else []
        if len(numbers) != 3 or not all(v is not None and v > 0 for v in numbers):
            raise InputError(path, f"expected [length, width, height], three positive numbers "
                             f"in metres, got {size!r}", entry=repr(name))
        sizes[name] = (numbers[0], numbers[1], numbers[2])
    return sizes
