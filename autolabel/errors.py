"""The one exception type for bad user input, so the CLI can print it as a single line."""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """A file or value supplied by the user is missing or malformed.

    The message always names the file and, where it applies, the entry (line, index, key)
    and the field, e.g. ``calib/000008.txt: line 3: field 'P2': expected 12 numbers, got 11``.
    """

    def __init__(self, path: str | Path | None, message: str, entry: str | None = None,
                 field: str | None = None):
        parts = [str(path)] if path is not None else []
        if entry is not None:
            parts.append(entry)
        if field is not None:
            parts.append(f"field '{field}'")
        parts.append(message)
        super().__init__(": ".join(parts))
        self.path = None if path is None else Path(path)
        self.entry = entry
        self.field = field
