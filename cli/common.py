"""Helpers shared by the commands: turning user mistakes into one line and an exit code."""

from __future__ import annotations

import contextlib
import enum
import sys
from collections.abc import Iterator

import typer

from autolabel.errors import InputError
from autolabel.extras import MissingExtra

EXIT_BAD_INPUT = 2
_THREADS = {"count": 1}


class Split(str, enum.Enum):
    """The two disjoint seed ranges of the procedural cars."""

    train = "train"
    heldout = "heldout"


def set_threads(count: int) -> None:
    """The torch CPU threads to use once torch loads (0: torch's default); applied now if
    a command module has loaded it already."""
    _THREADS["count"] = count
    if "torch" in sys.modules:
        load_torch()


def thread_count() -> int:
    """The torch CPU threads asked for with ``--threads`` (0: torch's default)."""
    return _THREADS["count"]


def load_torch():
    """Import torch (seconds, the first time) and apply the thread count of ``--threads``."""
    import torch

    if _THREADS["count"]:
        torch.set_num_threads(_THREADS["count"])
    return torch


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Print an :class:`InputError`, a missing file or a missing optional dependency
    (:class:`MissingExtra`) as one line and exit with code 2."""
    try:
        yield
    except (InputError, FileNotFoundError, MissingExtra) as error:
        print(f"error: {error}", file=sys.stderr)
        raise typer.Exit(EXIT_BAD_INPUT) from None
