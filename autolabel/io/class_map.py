"""Class map: a JSON object of detector class -> label class, e.g. ``{"vehicle": "Car"}``.

``autolabel fit --class-map FILE`` renames each detection's class before anything else, so
the label class decides the size statistics and is what ``label_2`` and the JSON hold;
classes the map does not name keep their name.
"""

from __future__ import annotations

from pathlib import Path

from autolabel.errors import InputError
from autolabel.io.files import read_json


def read_class_map(path: str | Path) -> dict[str, str]:
    """The detector class -> label class table of a class map file.

    Raises:
        InputError: naming the file and the entry, for a missing or malformed file, a table
            that is not a non-empty object, or a label class that is not a non-empty string
            without white space (KITTI's label files separate fields by spaces).
    """
    table = read_json(path)
    if not isinstance(table, dict) or not table:
        raise InputError(path, 'expected a JSON object of detector class -> label class, '
                         'e.g. {"vehicle": "Car"}')
    for name, label_class in table.items():
        if not isinstance(label_class, str) or not label_class or any(
                c.isspace() for c in label_class):
            raise InputError(path, f"expected a class name without spaces, got "
                             f"{label_class!r}", entry=repr(name))
    return dict(table)
