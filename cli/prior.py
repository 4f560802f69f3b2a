"""`autolabel prior ...`: build, train and inspect the learned shape prior."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import typer
from rich.progress import track

from autolabel.errors import InputError
from autolabel.extras import require_open3d
from cli.common import Split, load_torch, user_errors

# The defaults of shape_priors.train.PriorTrainConfig and shape_priors.sdf_samples.SdfSampling
# (a test keeps them equal), spelled out so that arguments are checked before torch loads.
DEFAULT_EPOCHS = 200
DEFAULT_LATENT_SIZE = 16
DEFAULT_WIDTH = 128
DEFAULT_LAYERS = 4
DEFAULT_SAMPLES = 60_000

app = typer.Typer(help="Build, train and inspect the shape prior.", no_args_is_help=True)


@app.command("meshes")
def meshes_command(
    out: Path = typer.Option(..., "--out", help="Folder for car_XXXX.ply, params.json and "
                             "contact_sheet.png (created if missing)."),
    count: int = typer.Option(200, "--count", min=1, help="How many cars to generate."),
    seed: int = typer.Option(0, "--seed", min=0, help="Offset of the first seed within the "
                             "split: car i gets the split's seed number SEED + i."),
    split: Split = typer.Option(Split.train, "--split", help="Seed range: train "
                                "(0..999999) or heldout (1000000..1999999); they never overlap."),
    sheet: int = typer.Option(36, "--sheet", min=0, help="How many of the cars to draw on "
                              "contact_sheet.png (0: no sheet)."),
    force: bool = typer.Option(False, "--force", help="Replace the car_*.ply files of an "
                               "earlier run in the folder."),
) -> None:
    """Generate watertight procedural car meshes (object frame, metres) for the shape prior."""
    with user_errors():
        load_torch()
        from shape_priors import meshes as car_meshes

        if sheet:
            require_open3d("the contact sheet (--sheet 0 skips it)")  # before, not after, the work
        seeds = car_meshes.split_seeds(split.value, count, seed)
        if out.exists() and not out.is_dir():
            raise InputError(out, "exists and is not a folder")
        old = sorted(out.glob("car_*.ply")) if out.is_dir() else []
        if old and not force:
            raise InputError(out, f"already holds {len(old)} car_*.ply files; pass --force to "
                             "replace them")
        for path in old:
            path.unlink()
        out.mkdir(parents=True, exist_ok=True)
        entries, shown, captions = [], [], []
        for index, car_seed in enumerate(track(seeds, description="Building meshes")):
            params = car_meshes.sample_car_params(car_seed)
            mesh = car_meshes.build_car_mesh(params)
            name = f"car_{index:04d}.ply"
            mesh.export(out / name)
            entries.append({"file": name, "faces": len(mesh.faces),
                            "params": dataclasses.asdict(params)})
            if index < sheet:
                shown.append(mesh)
                captions.append(f"{name}  {params.body_type}  seed {car_seed}")
        record = {"format": "autolabel-procedural-cars", "version": 1, "split": split.value,
                  "seed_offset": seed, "frame": "x forward, y left, z up, metres, origin at "
                  "the centre of the tight box", "cars": entries}
        (out / "params.json").write_text(json.dumps(record, indent=1) + "\n")
        if shown:
            car_meshes.contact_sheet(shown, captions).save(out / "contact_sheet.png")
    typer.echo(f"wrote {count} meshes, params.json"
               + (" and contact_sheet.png" if shown else "") + f" to {out}")


@app.command("train")
def train_command(
    meshes: Path = typer.Option(..., "--meshes", help="Folder of watertight meshes in the "
                                "object frame (x forward, y left, z up, metres), e.g. from "
                                "'autolabel prior meshes'."),
    out: Path = typer.Option(..., "--out", help="The prior file to write (.pt)."),
    epochs: int = typer.Option(DEFAULT_EPOCHS, "--epochs", min=1,
                               help="Passes over all shapes."),
    latent_size: int = typer.Option(DEFAULT_LATENT_SIZE, "--latent-size", min=1,
                                    help="Dimension of the shape codes."),
    width: int = typer.Option(DEFAULT_WIDTH, "--width", min=8,
                              help="Width of each decoder layer."),
    layers: int = typer.Option(DEFAULT_LAYERS, "--layers", min=2,
                               help="Hidden layers of the decoder; the input is re-injected "
                               "half-way."),
    samples: int = typer.Option(DEFAULT_SAMPLES, "--samples", min=1000,
                                help="SDF samples computed per mesh."),
    cache: Path = typer.Option(None, "--cache", help="Folder for the SDF sample cache "
                               "(default: MESHES/.sdf_cache)."),
    checkpoint: Path = typer.Option(None, "--checkpoint", help="Checkpoint file, written "
                                    "every few epochs and resumed from when it exists "
                                    "(default: OUT.ckpt)."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present), cpu or "
                               "cuda."),
    seed: int = typer.Option(0, "--seed", help="Seed of sampling, initialisation and "
                             "batches."),
    threads: int = typer.Option(0, "--threads", min=0, help="CPU threads for torch (0: "
                                "torch's default; 1 is often faster on a busy machine)."),
) -> None:
    """Train the auto-decoder shape prior on a folder of meshes and export it to one file."""
    with user_errors():
        torch = load_torch()
        if threads:
            torch.set_num_threads(threads)
        from shape_priors import meshes as car_meshes
        from shape_priors.sdf_samples import SdfSampling, cached_sdf
        from shape_priors.train import PriorTrainConfig, export_prior, train_prior

        shapes = car_meshes.load_mesh_folder(meshes)
        sampling = SdfSampling(count=samples, seed=seed)
        cache_dir = meshes / ".sdf_cache" if cache is None else cache
        sdf = []
        for mesh in track(shapes, description="SDF samples"):
            if not mesh.is_watertight:
                raise InputError(meshes / mesh.metadata["file_name"], "mesh is not watertight, "
                                 "so its inside is not defined")
            sdf.append(cached_sdf(mesh, sampling, cache_dir))
        config = PriorTrainConfig(epochs=epochs, latent_size=latent_size,
                                  widths=(width,) * layers, reinject=(layers // 2,),
                                  seed=seed, device=device)
        trained = train_prior(sdf, config, checkpoint or out.with_name(out.name + ".ckpt"))
        names = [mesh.metadata["file_name"] for mesh in shapes]
        export_prior(trained, sdf, names, sampling, out)
    typer.echo(f"trained on {len(shapes)} shapes for {trained.epochs_done} epochs, final loss "
               f"{trained.history[-1]:.5f}; wrote {out}")


@app.command("show")
def show_command(
    prior: Path = typer.Argument(..., help="A prior file from 'autolabel prior train'."),
    out: Path = typer.Option(..., "--out", help="The PNG contact sheet to write."),
    count: int = typer.Option(6, "--count", min=2, help="Shapes per row."),
    resolution: int = typer.Option(65, "--resolution", min=9, help="Marching-cubes grid "
                                   "points per axis."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random codes."),
) -> None:
    """Draw decoded shapes: training codes, an interpolation between two training codes and
    random codes from the prior's Gaussian, each scaled to a real-world size."""
    with user_errors():
        torch = load_torch()
        from autolabel.prior import load_prior
        from shape_priors import meshes as car_meshes
        from shape_priors.extract import decode_grid, grid_to_mesh

        shape_prior = load_prior(prior)
        names = shape_prior.metadata.get("shape_names") or []
        latents = shape_prior.train_latents
        sizes = shape_prior.train_sizes
        shown = torch.arange(min(count, len(latents)))
        # Interpolate between the first training code and the one farthest from it.
        far = int(torch.cdist(latents[:1], latents)[0].argmax())
        weight = torch.linspace(0.0, 1.0, count)[:, None]
        codes = torch.cat([latents[shown], (1 - weight) * latents[0] + weight * latents[far],
                           shape_prior.sample_latents(count, seed)])
        boxes = torch.cat([sizes[shown], (1 - weight) * sizes[0] + weight * sizes[far],
                           sizes.mean(0).expand(count, -1)])
        captions = ([f"train {names[i] if i < len(names) else i}" for i in shown.tolist()]
                    + [f"interpolate 0 -> {far}: {w:.2f}" for w in weight[:, 0].tolist()]
                    + [f"random code {i} (seed {seed})" for i in range(count)])
        grids = decode_grid(shape_prior.decoder, codes, resolution).numpy()
        meshes = []
        for grid, size, caption in zip(grids, boxes.numpy(), captions, strict=True):
            try:
                meshes.append(grid_to_mesh(grid, size=size))
            except ValueError:
                raise InputError(prior, f"'{caption}' decodes to no surface: the prior is "
                                 "probably not trained enough") from None
        out.parent.mkdir(parents=True, exist_ok=True)
        car_meshes.contact_sheet(meshes, captions, columns=count).save(out)
    typer.echo(f"wrote {out}: rows of training shapes, an interpolation and random samples")
