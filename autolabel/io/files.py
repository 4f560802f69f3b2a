"""Checks and readers shared by the file formats, with errors that name the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from autolabel.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
POINT_CLOUD_SUFFIXES = (".bin", ".pcd", ".ply")


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
    """The parsed contents of a UTF-8 JSON file.

    Raises:
        InputError: for a missing file, malformed JSON (with its line and column) or a file
            that is not UTF-8 text.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise InputError(path, f"malformed JSON: {error.msg}",
                         f"line {error.lineno}, column {error.colno}") from None
    except UnicodeDecodeError as error:
        raise InputError(path, f"not a UTF-8 text file ({error.reason})") from None
