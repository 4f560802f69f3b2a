"""The `autolabel` command line: one module per command, registered here."""

from __future__ import annotations

import typer

from cli import demo, fit, prior, synth
from cli import eval as eval_cli

app = typer.Typer(
    name="autolabel",
    help="3D labels from 2D detections by differentiable render-and-compare.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def main() -> None:
    """3D labels from 2D detections by differentiable render-and-compare."""


app.command("fit")(fit.fit_command)
app.command("synth")(synth.synth_command)
app.command("eval")(eval_cli.eval_command)
app.add_typer(prior.app, name="prior")
app.command("demo")(demo.demo_command)

if __name__ == "__main__":
    app()
