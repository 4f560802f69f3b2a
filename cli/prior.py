"""`autolabel prior ...`: build, train and inspect the learned shape prior."""

from __future__ import annotations

import typer

app = typer.Typer(help="Build, train and inspect the shape prior.", no_args_is_help=True)
