"""Checks and readers shared by the file formats, with errors that name the file."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from autolabel.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
POINT_CLOUD_SUFFIXES = (".bin", ".pcd", ".ply")


def frame_file(folder: Path, frame_id: str, suffixes: tuple[str, ...]) -> Path | None:
    """The file ``<frame_id><suffix>`` in ``folder`` with the first suffix that exists, or
    None."""
    for suffix in suffixes:
        path = folder / f"{frame_id}{suffix}"
        if path.is_file():
            return path
    return None


def require_file(path: str | Path, suffixes: tuple[str, ...], kind: str) -> Path:
    """The path, after checking that it has one of the suffixes and exists.

    Raises:
        InputError: naming the file, for another suffix (listing the accepted ones) or a
            missing file.
    """
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise InputError(path, f"unsupported {kind} suffix {path.suffix!r}; expected one of "
                         f"{', '.join(suffixes)}")
    if not path.is_file():
        raise InputError(path, "no such file")
    return path


def read_json(path: str | Path) -> Any:
    """The parsed contents of a UTF-8 JSON file (a leading byte-order mark is skipped).

    Raises:
        InputError: for a missing file, malformed JSON (with its line and column), JSON
            nested too deeply or with an integer of more than 4300 digits (Python parses
            neither), or a file that is not UTF-8 text.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as error:
        raise InputError(path, f"malformed JSON: {error.msg}",
                         f"line {error.lineno}, column {error.colno}") from None
    except UnicodeDecodeError as error:
        raise InputError(path, f"not a UTF-8 text file ({error.reason})") from None
    except RecursionError:
        raise InputError(path, "JSON nested too deeply to parse") from None
    except ValueError as error:  # json raises it for integers longer than Python parses
        raise InputError(path, f"unreadable JSON ({error})") from None


def json_float(value: Any) -> float | None:
    """A JSON number as a finite float; None for anything else (another type, a bool, NaN,
    infinity, or an integer beyond float's range).

    >>> json_float(2), json_float(True), json_float(float("nan")), json_float(10 ** 400)
    (2.0, None, None, None)
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None
