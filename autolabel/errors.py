"""The one exception type for bad user input, so the CLI can print it as a single line."""

from __future__ import annotations

from pathlib import Path

# Characters that str.splitlines() breaks at, written as escapes so that a message stays one
# line even when it quotes a file's own text (a JSON key, a class name, a path).
_LINE_BREAKS = {ord(c): c.encode("unicode_escape").decode() for c in
                "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"}


class InputError(ValueError):
    """A file or value supplied by the user is missing or malformed.

    The message always names the file and, where it applies, the entry (line, index, key)
    and the field, e.g. ``calib/000008.txt: line 3: field 'P2': expected 12 numbers, got 11``;
    line breaks in any part are escaped, so the message is one line.

    >>> print(InputError("dets.json", "expected a list", entry="bad\\nkey"))
    dets.json: bad\\nkey: expected a list
    """

    def __init__(self, path: str | Path | None, message: str, entry: str | None = None,
                 field: str | None = None):
        parts = [str(path)] if path is not None else []
        if entry is not None:
            parts.append(entry)
        if field is not None:
            parts.append(f"field '{field}'")
        parts.append(message)
        super().__init__(": ".join(parts).translate(_LINE_BREAKS))
        self.path = None if path is None else Path(path)
        self.entry = entry
        self.field = field


def wrong_format(path: str | Path, payload: object, kind: str, expected: str,
                 command: str) -> InputError:
    """The error for a file that is not ``kind`` (with its article, e.g. "a shape prior"),
    whose format is ``expected``. A training checkpoint (it holds the optimiser's state) is
    named as one, with the file that ``command`` writes as the one to give instead.

    >>> print(wrong_format("a.ckpt", {"optimiser": {}}, "a prior", "p", "train"))
    a.ckpt: a training checkpoint, not a prior: give the file that 'train' writes with --out
    >>> print(wrong_format("x.pt", [], "a shape prior", "prior", "autolabel prior train"))
    x.pt: not a shape prior: expected a file of format 'prior'
    """
    if isinstance(payload, dict) and "optimiser" in payload:
        return InputError(path, f"a training checkpoint, not {kind}: give the file that "
                          f"'{command}' writes with --out")
    return InputError(path, f"not {kind}: expected a file of format '{expected}'")
