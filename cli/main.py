"""The `autolabel` command line: one module per command, registered here."""

from __future__ import annotations

import typer

from cli import demo, fit, image_model, prior, synth
from cli import eval as eval_cli
from cli.common import set_threads

app = typer.Typer(
    name="autolabel",
    help="3D labels from 2D detections by differentiable render-and-compare.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def main(
    threads: int = typer.Option(1, "--threads", min=0, help="CPU threads for torch (0: torch's "
                                "default, one per core). One is fastest for this workload on "
                                "small or busy machines; more help large batches."),
) -> None:
    """3D labels from 2D detections by differentiable render-and-compare."""
    set_threads(threads)


app.command("fit")(fit.fit_command)
app.command("synth")(synth.synth_command)
app.command("eval")(eval_cli.eval_command)
app.add_typer(prior.app, name="prior")
app.add_typer(image_model.app, name="image-model")
app.command("demo")(demo.demo_command)

if __name__ == "__main__":
    app()
