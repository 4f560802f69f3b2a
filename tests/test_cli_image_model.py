"""Tests for cli/image_model.py: `autolabel image-model generate | train`."""

from __future__ import annotations

from typer.testing import CliRunner

from autolabel.image.train import load_image_model
from cli.main import app


def test_generate_then_train_writes_weights_checkpoint_and_contact_sheet(tmp_path):
    runner = CliRunner()
    for split, count in (("train", "6"), ("heldout", "3")):
        result = runner.invoke(app, ["image-model", "generate", "--out", str(tmp_path / split),
                                     "--count", count, "--cars", "2", "--size", "32",
                                     "--split", split])
        assert result.exit_code == 0, result.output
    weights = tmp_path / "model.pt"
    result = runner.invoke(app, ["image-model", "train", "--data", str(tmp_path / "train"),
                                 "--validation", str(tmp_path / "heldout"), "--out",
                                 str(weights), "--steps", "2", "--batch", "4"])
    assert result.exit_code == 0, result.output
    assert "trained 2 steps" in result.output
    model, metadata = load_image_model(weights)
    assert model.config.size == 32 and metadata["data"]["split"] == "train"
    assert (tmp_path / "model.png").is_file() and (tmp_path / "model.pt.ckpt").is_file()


def test_training_on_held_out_crops_is_refused_in_one_line(tmp_path):
    runner = CliRunner()
    runner.invoke(app, ["image-model", "generate", "--out", str(tmp_path / "held"), "--count",
                        "1", "--cars", "1", "--size", "32", "--split", "heldout"])
    result = runner.invoke(app, ["image-model", "train", "--data", str(tmp_path / "held"),
                                 "--out", str(tmp_path / "m.pt")])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "validation only" in result.output
