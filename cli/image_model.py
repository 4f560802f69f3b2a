"""`autolabel image-model ...`: make training crops and train the image model on them."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.progress import Progress, track

from autolabel.errors import InputError
from cli.common import Split, load_torch, user_errors

# Defaults of autolabel.image's DatasetSpec, CropConfig and ImageTrainConfig (a test keeps
# them equal), spelled out so that arguments are checked before torch loads.
DEFAULT_CARS = 256
DEFAULT_SIZE = 64
DEFAULT_STEPS = 4_000
DEFAULT_BATCH = 64
DEFAULT_LR = 2e-3
SHEET_CROPS = 36

app = typer.Typer(help="Make training crops and train the image model (mask, NOCS and "
                  "viewpoint from a detection crop).", no_args_is_help=True)


@app.command("generate")
def generate_command(
    out: Path = typer.Option(..., "--out", help="Folder for the crop shards and dataset.json "
                             "(created if missing; a run with the same options resumes)."),
    count: int = typer.Option(40_000, "--count", min=1, help="How many crops to make."),
    split: Split = typer.Option(Split.train, "--split", help="Seed range of the cars: train "
                                "for training data, heldout for validation crops only."),
    cars: int = typer.Option(DEFAULT_CARS, "--cars", min=1, help="Cars in the pool: the "
                             "split's first CARS seeds (train seeds 0..255 are the shipped "
                             "prior's shapes, so their crops carry shape codes)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Data-set seed: crop i depends only on "
                             "(SEED, i) and the options."),
    size: int = typer.Option(DEFAULT_SIZE, "--size", min=16, help="Crop side, pixels."),
    backgrounds: Path = typer.Option(None, "--backgrounds", help="Folder of your own "
                                     "unlabelled pictures (.png, .jpg) to use as backgrounds "
                                     "of some crops; never an evaluation set."),
    prior: Path = typer.Option(None, "--prior", help="Shape prior whose training codes label "
                               "the crops (default: the shipped car prior)."),
    shard_size: int = typer.Option(1000, "--shard-size", min=1, help="Crops per npz shard."),
) -> None:
    """Render training crops of procedural cars with their mask, NOCS map, viewpoint and shape
    code, into npz shards."""
    with user_errors():
        if out.exists() and not out.is_dir():
            raise InputError(out, "exists and is not a folder (given as --out)")
        load_torch()
        from autolabel.image.backgrounds import load_images
        from autolabel.image.cars import build_pool
        from autolabel.image.generate import CropConfig
        from autolabel.image.shards import DatasetSpec, write_dataset
        from autolabel.prior import load_prior
        from shape_priors.meshes import split_seeds

        images = None if backgrounds is None else load_images(backgrounds)
        shape_prior = load_prior(prior)
        spec = DatasetSpec(count=count, seed=seed, split=split.value, cars=cars,
                           shard_size=shard_size, crop=CropConfig(size=size),
                           backgrounds=None if backgrounds is None else str(backgrounds))
        pool = build_pool(track(split_seeds(split.value, cars), description="Building cars"),
                          shape_prior.train_sizes.numpy(), shape_prior.train_latents.numpy())
        with Progress() as progress:
            task = progress.add_task("Rendering crops", total=count)
            write_dataset(out, spec, pool, images, lambda done: progress.advance(task, done))
    typer.echo(f"wrote {count} crops of {cars} {split.value} cars to {out}")


@app.command("train")
def train_command(
    data: Path = typer.Option(..., "--data", help="Crop folder of the train split from "
                              "'autolabel image-model generate'."),
    out: Path = typer.Option(..., "--out", help="The weights file to write (.pt)."),
    validation: Path = typer.Option(None, "--validation", help="Crop folder of the heldout "
                                    "split, scored during training and drawn on the contact "
                                    "sheet."),
    steps: int = typer.Option(DEFAULT_STEPS, "--steps", min=1, help="Optimisation steps."),
    batch: int = typer.Option(DEFAULT_BATCH, "--batch", min=1, help="Crops per step."),
    lr: float = typer.Option(DEFAULT_LR, "--lr", min=0.0, help="Peak learning rate."),
    seed: int = typer.Option(0, "--seed", help="Seed of the initial weights and the batches."),
    checkpoint: Path = typer.Option(None, "--checkpoint", help="Checkpoint file, written every "
                                    "500 steps and resumed from when it exists (default: "
                                    "OUT.ckpt)."),
    sheet: Path = typer.Option(None, "--sheet", help="Contact sheet of predictions on "
                               "validation crops (default: OUT with .png)."),
) -> None:
    """Train the image model on cached crops; writes the weights, a checkpoint and a contact
    sheet."""
    with user_errors():
        torch = load_torch()
        from autolabel.image.network import ImageModelConfig, predict
        from autolabel.image.shards import read_dataset
        from autolabel.image.sheet import contact_sheet
        from autolabel.image.train import ImageTrainConfig, export_image_model, train_image_model

        spec, crops = read_dataset(data)
        if spec["split"] != Split.train.value:
            raise InputError(data, "holds crops of held-out cars, which are for validation "
                             "only; generate training crops with --split train")
        held_out = None
        if validation is not None:
            held_spec, held_out = read_dataset(validation)
            if held_spec["split"] != Split.heldout.value:
                raise InputError(validation, "validation crops must be of the heldout split")
        config = ImageTrainConfig(steps=steps, batch=batch, lr=lr, seed=seed)
        model_config = ImageModelConfig(size=int(crops["image"].shape[1]))
        trained = train_image_model(crops, config, model_config, held_out,
                                    checkpoint or out.with_name(out.name + ".ckpt"))
        export_image_model(trained, out, spec)
        shown = held_out if held_out is not None else crops
        images = shown["image"][:SHEET_CROPS]
        contact_sheet(images, predict(trained.model, torch.from_numpy(images)),
                      shown["alpha"][:SHEET_CROPS]).save(sheet or out.with_suffix(".png"))
    last = trained.history[-1] if trained.history else {}
    typer.echo(f"trained {trained.steps_done} steps; last losses "
               f"{json.dumps({k: round(v, 4) for k, v in last.items() if k != 'validation'})}"
               + (f"; held-out {json.dumps(last['validation'])}" if "validation" in last
                  else "") + f"; wrote {out}")
