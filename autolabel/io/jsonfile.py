"""Reading a JSON file with errors that name the file, the line and the column."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from autolabel.errors import InputError


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
