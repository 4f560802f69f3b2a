"""Forward+backward time and peak memory of one render-and-compare iteration vs batch size.

    python benchmarks/speed.py [--prior FILE] [--batches 1 16 64 256] [--device auto]

Each batch holds that many cars in front of a KITTI camera, rendered with the shape prior
into 64x64 windows and compared with targets rendered at perturbed poses. One iteration is
what the fitter's shape stage does: surfels (selecting the camera-facing ones and a Newton
re-projection, differentiable in the latent, with the fitter's surfel settings), rasterisation
(posing, back-face culling, splatting, compositing silhouette and depth), losses (silhouette
and depth) and backward to translation, yaw, log-size and latent. The same cars, with the
targets as mask and depth and the target surfels as LiDAR points, also go through whole
iterations of the fitter (``autolabel.fit._Fit.step``, every loss term, backward and the Adam
step): their median time per stage of the fit, and the number of operator calls one iteration
makes, counted with the torch profiler (``aten::`` events not inside another ``aten::``
event; the calls they make internally are counted separately as ``nested``), eager and with
``FitConfig.compile`` (the loss and its backward pass compiled with ``torch.compile``; the
seconds of its first steps, which compile, are reported apart). Prints a table and writes
``benchmarks/results/speed.json``.
Peak memory is the process's resident high-water mark on CPU (batches run in increasing
order, so each figure includes the smaller ones) and allocated memory on CUDA.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import resource
import statistics
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from autolabel import geometry as g
from autolabel import losses, surfels
from autolabel.fit import FitConfig, ObjectBatch, _Fit
from autolabel.lidar.rays import FreeRayConfig
from autolabel.prior import load_prior
from autolabel.render import RenderSettings, detection_windows, render

RESULTS = Path(__file__).resolve().parent / "results" / "speed.json"
KITTI_P2 = [[721.5377, 0.0, 609.5593, 44.85728], [0.0, 721.5377, 172.854, 0.2163791],
            [0.0, 0.0, 1.0, 0.002745884]]  # P2 of KITTI frame 000008 (published calibration)
STAGES = ("surfels", "rasterise", "losses", "backward")


def _scene(batch: int, latent_size: int, generator: torch.Generator, device):
    """Random cars 8-40 m ahead: centres (B, 3), yaws (B,), sizes (B, 3)."""
    centre = torch.stack([
        torch.empty(batch).uniform_(-6, 6, generator=generator),
        torch.full((batch,), 0.9),
        torch.empty(batch).uniform_(8, 40, generator=generator),
    ], dim=1)
    yaw = torch.empty(batch).uniform_(-3.1, 3.1, generator=generator)
    size = torch.tensor([4.2, 1.75, 1.5]).expand(batch, 3).clone()
    return centre.to(device), yaw.to(device), size.to(device)


def _synchronise(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


def _iteration(prior, params, fixed, settings, surfel_settings, device) -> dict[str, float]:
    """One timed forward+backward pass; returns seconds per stage."""
    times = {}
    start = _synchronise(device)
    rotation = g.yaw_to_rotation(params["yaw"])
    size = params["log_size"].exp()
    projected = surfels.project_facing(
        prior.sdf, params["latent"], fixed["surfels"], params["centre"].detach(),
        rotation.detach(), size.detach(), g.camera_centres(fixed["camera"]),
        FitConfig().facing_cos, surfel_settings)
    times["surfels"] = _synchronise(device) - start

    start = _synchronise(device)
    points, normals = surfels.pose_surfels(projected, params["centre"], rotation, size)
    rendered = render(points, normals, projected.points, projected.valid,
                      surfels.surfel_spacing(size, surfel_settings.count), fixed["camera"],
                      fixed["window"], settings, with_attributes=False)
    times["rasterise"] = _synchronise(device) - start

    start = _synchronise(device)
    loss = (losses.silhouette_loss(rendered.silhouette, fixed["mask"])
            + losses.depth_loss(rendered.depth, rendered.silhouette, fixed["depth"])).sum()
    times["losses"] = _synchronise(device) - start

    start = _synchronise(device)
    loss.backward()
    times["backward"] = _synchronise(device) - start
    return times


def _object_batch(fixed: dict, centre, yaw, size, box2d) -> ObjectBatch:
    """The cars as the fitter's input: the targets as mask and depth, the first 400 target
    surfels (posed) as observed points, the ground plane under the wheels, and as many
    free-ray samples as the fitter's default takes (``FreeRayConfig.count``), in a ring 0.2-1 m
    outside each car's box at half its height."""
    batch = centre.shape[0]
    observed, _ = surfels.pose_surfels(fixed["surfels"], fixed["moved"],
                                       g.yaw_to_rotation(yaw + 0.17), size)
    ground = torch.tensor([0.0, -1.0, 0.0], device=centre.device).expand(batch, 3)
    ground = torch.cat([ground, centre[:, 1:2] + size[:, 2:] / 2], dim=1)
    every = torch.ones(batch, dtype=torch.bool, device=centre.device)
    draws = torch.rand(2, batch, FreeRayConfig().count,
                       generator=torch.Generator().manual_seed(0)).to(centre.device)
    angle = 2 * math.pi * draws[0]
    reach = size[:, :1] / 2 + 0.2 + 0.8 * draws[1]  # (B, F) metres from the centre
    free = centre[:, None, :] + torch.stack([reach * torch.cos(angle),
                                             torch.zeros_like(reach),
                                             reach * torch.sin(angle)], dim=-1)
    return ObjectBatch(
        projection=fixed["camera"], box2d=box2d, free_edges=torch.zeros_like(box2d).bool(),
        window=fixed["window"], points=observed[:, :400],
        points_valid=fixed["surfels"].valid[:, :400], observed_depth=fixed["depth"],
        mask=fixed["mask"], has_mask=every, ground=ground, has_ground=every,
        size_log_mean=size.log(), size_log_std=torch.full_like(size, 0.1),
        center=centre, yaw=yaw, size=size, free_points=free,
        free_valid=torch.ones(free.shape[:2], dtype=torch.bool, device=centre.device))


def _operator_calls(function) -> dict[str, int]:
    """aten operator calls made by ``function()``: top-level ones and nested ones."""
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        function()
    events = [e for e in profiler.events() if e.name.startswith("aten::")]
    nested = sum(1 for e in events
                 if e.cpu_parent is not None and e.cpu_parent.name.startswith("aten::"))
    return {"operators": len(events) - nested, "nested": nested}


def measure_fit(prior, batch: ObjectBatch, repeats: int, device: torch.device,
                compiled: bool = False) -> dict:
    """Median seconds and operator calls of fitter iterations in its pose and shape stages;
    with ``compiled``, also the seconds of each stage's first step (which compiles)."""
    run = _Fit(prior, batch, dataclasses.replace(FitConfig(), compile=compiled))
    seconds, operators, first = {}, {}, {}
    for stage, shape_stage in (("pose", False), ("shape", True)):
        start = _synchronise(device)
        run.step(shape_stage)  # the first step of a stage sets up Adam's state for it
        first[stage] = _synchronise(device) - start
        times = []
        for _ in range(repeats):
            start = _synchronise(device)
            run.step(shape_stage)
            times.append(_synchronise(device) - start)
        seconds[stage] = statistics.median(times)
        operators[stage] = _operator_calls(lambda shape_stage=shape_stage:
                                           run.step(shape_stage))
    if compiled:
        return {"compiled_fit_seconds_per_iteration": seconds,
                "compiled_fit_operators_per_iteration": operators,
                "compiled_fit_first_step_seconds": first}
    return {"fit_seconds_per_iteration": seconds, "fit_operators_per_iteration": operators}


def measure(prior, batch: int, repeats: int, device: torch.device,
            surfel_settings: surfels.SurfelSettings, seed: int = 0,
            compiled: bool = True) -> dict:
    """Median stage times of ``repeats`` iterations for one batch size (and, with
    ``compiled``, those of the compiled fit)."""
    settings = RenderSettings()
    generator = torch.Generator().manual_seed(seed)
    centre, yaw, size = _scene(batch, prior.latent_size, generator, device)
    latent = prior.latent_mean.expand(batch, -1).clone()
    camera = torch.tensor(KITTI_P2, device=device).expand(batch, 3, 4)
    points, valid = surfels.extract_surface_points(prior.sdf, latent, size, seed=seed)
    box2d = g.projected_box2d(g.box_corners(centre, g.yaw_to_rotation(yaw), size), camera)
    window = detection_windows(box2d, settings.window_margin)
    with torch.no_grad():  # targets: the same cars 0.3 m further and 10 degrees turned
        target_surfels = surfels.project_to_surface(prior.sdf, latent, points, valid)
        moved = centre + torch.tensor([0.0, 0.0, 0.3], device=device)
        target_points, target_normals = surfels.pose_surfels(
            target_surfels, moved, g.yaw_to_rotation(yaw + 0.17), size)
        target = render(target_points, target_normals, target_surfels.points,
                        target_surfels.valid, surfels.surfel_spacing(size, points.shape[1]),
                        camera, window, settings)
    fixed = {"surfels": target_surfels, "camera": camera, "window": window, "moved": moved,
             "mask": (target.silhouette > 0.5).float(), "depth": target.depth}
    params = {"centre": centre, "yaw": yaw, "log_size": size.log(), "latent": latent}
    params = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    runs = [_iteration(prior, params, fixed, settings, surfel_settings, device)
            for _ in range(repeats + 1)][1:]
    stages = {stage: statistics.median(run[stage] for run in runs) for stage in STAGES}
    total = statistics.median(sum(run.values()) for run in runs)
    if device.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    objects = _object_batch(fixed, centre, yaw, size, box2d)
    return {"batch": batch, "seconds_per_iteration": total,
            "milliseconds_per_object": 1000 * total / batch, "stages_seconds": stages,
            "peak_memory_mb": peak_mb, **measure_fit(prior, objects, repeats, device),
            **(measure_fit(prior, objects, repeats, device, compiled=True) if compiled else {})}


def _compiled_columns(row: dict) -> str:
    """The table's columns of the compiled fit: seconds and operators per iteration and the
    seconds of the first steps (pose, shape); empty when it was not measured."""
    if "compiled_fit_seconds_per_iteration" not in row:
        return ""
    seconds = row["compiled_fit_seconds_per_iteration"]
    operators = row["compiled_fit_operators_per_iteration"]
    first = row["compiled_fit_first_step_seconds"]
    return (f" {seconds['pose']:>8.3f} {seconds['shape']:>8.3f}"
            f" {operators['pose']['operators']:>4} {operators['shape']['operators']:>5}"
            f" {first['pose']:>6.1f} {first['shape']:>7.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior", type=Path, default=None, help="shape prior file")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64, 256])
    parser.add_argument("--repeats", type=int, default=5, help="timed iterations per batch")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--differentiable-normals", action="store_true",
                        help="keep the normals' graph to the latent (the fitter detaches them)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (0: torch's default)")
    parser.add_argument("--no-compiled", action="store_true",
                        help="skip the compiled fit's columns (compiling takes minutes)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    prior = load_prior(args.prior, device=device)
    surfel_settings = dataclasses.replace(FitConfig().surfels,
                                          differentiable_normals=args.differentiable_normals)
    rows = [measure(prior, batch, args.repeats, device, surfel_settings,
                    compiled=not args.no_compiled) for batch in sorted(args.batches)]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    print(f"device: {device.type} ({name or platform.machine()}), "
          f"torch threads: {torch.get_num_threads()}, window 64x64, "
          f"{RenderSettings().footprint}x{RenderSettings().footprint} splats, "
          f"differentiable normals: {surfel_settings.differentiable_normals}")
    print(f"{'batch':>6} {'s/iter':>8} {'ms/obj':>8} " + " ".join(f"{s:>10}" for s in STAGES)
          + f" {'peak MB':>8} {'fit s/iter pose, shape':>23} {'operators pose, shape':>22}"
          + (f" {'compiled: s/iter':>17} {'operators':>10} {'first steps s':>14}"
             if not args.no_compiled else ""))
    for row in rows:
        fit_seconds = row["fit_seconds_per_iteration"]
        operators = row["fit_operators_per_iteration"]
        print(f"{row['batch']:>6} {row['seconds_per_iteration']:>8.3f} "
              f"{row['milliseconds_per_object']:>8.2f} "
              + " ".join(f"{row['stages_seconds'][s]:>10.3f}" for s in STAGES)
              + f" {row['peak_memory_mb']:>8.0f}"
              + f" {fit_seconds['pose']:>11.3f} {fit_seconds['shape']:>11.3f}"
              + f" {operators['pose']['operators']:>11} {operators['shape']['operators']:>10}"
              + _compiled_columns(row))
    result = {"device": device.type, "device_name": name, "threads": torch.get_num_threads(),
              "surfels_per_object": surfel_settings.count,
              "newton_steps": surfel_settings.newton_steps,
              "differentiable_normals": surfel_settings.differentiable_normals,
              "decoder": prior.decoder.config, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
