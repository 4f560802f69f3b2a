"""How well the shape prior represents unseen cars, from full and from partial observations.

For held-out procedural cars (seeds the prior never saw) a latent code is inferred with the
decoder fixed (``ShapePrior.infer_latents``), from

- full observations: the car's DeepSDF samples (near-surface and uniform, with distances);
- partial observations: what a roof-mounted LiDAR sees of the car from one side, i.e. the
  ray hits (zero-SDF points) and free-space points along the rays in front of the hits.

The decoded shape is scaled by the car's true size (the prior models shape, the fitter
estimates size) and compared with the true mesh at real-world scale: symmetric Chamfer-L1
distance in cm (mean of the two directed mean nearest-surface distances) and volumetric IoU.

    .venv/bin/python benchmarks/prior.py [--prior FILE] [--count 50]

prints a table and writes benchmarks/results/prior.json.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import open3d as o3d
import torch
import trimesh
from scipy.spatial import cKDTree

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autolabel.prior import ShapePrior, load_prior  # noqa: E402
from shape_priors.extract import extract_meshes  # noqa: E402
from shape_priors.meshes import generate_cars  # noqa: E402
from shape_priors.sdf_samples import SdfSampling, cached_sdf, signed_distance  # noqa: E402

LIDAR_HEIGHT = 1.73  # metres above the ground, as KITTI's Velodyne
AZIMUTH_STEP = math.radians(0.17)  # HDL-64E horizontal resolution
ELEVATION_STEP = math.radians(0.42)  # about 26.9 degrees over 64 beams
BATCH = 8  # cars per latent inference; larger batches spend their time in page faults


def lidar_view(mesh: trimesh.Trimesh, rng: np.random.Generator, range_noise: float
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Simulate one LiDAR sweep over a car standing on the ground (object frame, metres).

    The sensor is 6–20 m away at a random azimuth, LIDAR_HEIGHT above the car's lowest point.
    Returns the sensor origin (3,), the hit points (H, 3) (with Gaussian range noise of
    ``range_noise`` m) and the unit directions (H, 3) of the rays that hit.
    """
    distance, azimuth = rng.uniform(6.0, 20.0), rng.uniform(0.0, 2.0 * math.pi)
    ground = mesh.bounds[0, 2]
    origin = np.array([distance * math.cos(azimuth), distance * math.sin(azimuth),
                       ground + LIDAR_HEIGHT])
    corners = np.array(trimesh.bounds.corners(mesh.bounds)) - origin
    yaw = np.arctan2(corners[:, 1], corners[:, 0])
    yaw = np.unwrap(yaw - yaw[0]) + yaw[0]
    pitch = np.arctan2(corners[:, 2], np.linalg.norm(corners[:, :2], axis=1))
    yaws = np.arange(yaw.min(), yaw.max(), AZIMUTH_STEP)
    pitches = np.arange(pitch.min(), pitch.max(), ELEVATION_STEP) + rng.uniform(0, ELEVATION_STEP)
    yy, pp = np.meshgrid(yaws, pitches, indexing="ij")
    directions = np.stack([np.cos(pp) * np.cos(yy), np.cos(pp) * np.sin(yy), np.sin(pp)],
                          axis=-1).reshape(-1, 3)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(np.asarray(mesh.vertices, dtype=np.float32)),
                        o3d.core.Tensor(np.asarray(mesh.faces, dtype=np.uint32)))
    rays = np.hstack([np.tile(origin, (len(directions), 1)), directions]).astype(np.float32)
    t_hit = scene.cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy()
    hit = np.isfinite(t_hit)
    t_hit = t_hit[hit] + rng.normal(0.0, range_noise, hit.sum()) if range_noise else t_hit[hit]
    return origin, origin + t_hit[:, None] * directions[hit], directions[hit]


def partial_observation(mesh: trimesh.Trimesh, centre: np.ndarray, extent: np.ndarray,
                        rng: np.random.Generator, range_noise: float, free_per_ray: int = 4
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Normalised LiDAR hits (H, 3) and free-space points (F, 3) in front of them.

    Free-space points lie on the hit rays 2 cm to 1.5 m before the hit, kept when they fall
    in the normalised cube ``[-0.6, 0.6]^3``.
    """
    origin, hits, directions = lidar_view(mesh, rng, range_noise)
    before = rng.uniform(0.02, 1.5, size=(len(hits), free_per_ray))
    free = (hits[:, None, :] - before[..., None] * directions[:, None, :]).reshape(-1, 3)
    hits_unit, free_unit = (hits - centre) / extent, (free - centre) / extent
    free_unit = free_unit[np.all(np.abs(free_unit) < 0.6, axis=1)]
    return hits_unit, free_unit


def surface_points(mesh: trimesh.Trimesh, count: int, seed: int) -> np.ndarray:
    """Area-uniform points (count, 3) on a mesh, seeded."""
    points, _ = trimesh.sample.sample_surface(mesh, count, seed=seed)
    return np.asarray(points)


def chamfer_l1(a: np.ndarray, b: np.ndarray) -> float:
    """Symmetric Chamfer-L1 of point sets a (N, 3), b (M, 3): mean of both directed means."""
    return 0.5 * (cKDTree(b).query(a)[0].mean() + cKDTree(a).query(b)[0].mean())


def volumetric_iou(prior: ShapePrior, latent: torch.Tensor, mesh: trimesh.Trimesh,
                   centre: np.ndarray, extent: np.ndarray, count: int, seed: int) -> float:
    """IoU of decoded and true solids from uniform points in the 10 % enlarged tight box."""
    rng = np.random.default_rng(seed)
    unit = rng.uniform(-0.55, 0.55, size=(count, 3))
    inside_true = signed_distance(mesh, centre + unit * extent) < 0
    with torch.no_grad():
        decoded = prior.sdf(latent[None], torch.as_tensor(unit, dtype=torch.float32)[None])[0]
    inside_pred = decoded.numpy() < 0
    union = np.logical_or(inside_true, inside_pred).sum()
    return float(np.logical_and(inside_true, inside_pred).sum() / max(union, 1))


def evaluate(prior: ShapePrior, latents: torch.Tensor, cars: list, boxes: list,
             resolution: int, seed: int) -> list[dict]:
    """Chamfer-L1 (cm) and IoU of each decoded code against its true car."""
    sizes = np.stack([extent for _, extent in boxes])
    decoded = extract_meshes(prior.decoder, latents, resolution, sizes=sizes)
    rows = []
    for index, (car, (centre, extent)) in enumerate(zip(cars, boxes, strict=True)):
        mesh = decoded[index]
        mesh.apply_translation(centre)
        truth = surface_points(car.mesh, 30_000, seed + index)
        predicted = surface_points(mesh, 30_000, seed + index)
        rows.append({
            "seed": car.params.seed, "body_type": car.params.body_type,
            "chamfer_cm": 100.0 * chamfer_l1(truth, predicted),
            "iou": volumetric_iou(prior, latents[index], car.mesh, centre, extent, 100_000,
                                  seed + index),
        })
    return rows


def summary(rows: list[dict]) -> dict:
    chamfer = np.array([row["chamfer_cm"] for row in rows])
    iou = np.array([row["iou"] for row in rows])
    return {"chamfer_cm_median": float(np.median(chamfer)),
            "chamfer_cm_p90": float(np.percentile(chamfer, 90)),
            "iou_median": float(np.median(iou)), "iou_mean": float(iou.mean()),
            "iou_p10": float(np.percentile(iou, 10))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prior", type=Path, default=None, help="prior file "
                        "[default: the shipped shape_priors/weights/car.pt]")
    parser.add_argument("--count", type=int, default=50, help="held-out cars")
    parser.add_argument("--seed", type=int, default=0, help="offset into the held-out seeds; "
                        "also seeds the LiDAR views and the evaluation points")
    parser.add_argument("--points", type=int, default=2048, help="SDF samples per car for the "
                        "full observation; LiDAR hits and free-space points for the partial one")
    parser.add_argument("--iterations", type=int, default=200, help="latent optimisation steps")
    parser.add_argument("--range-noise", type=float, default=0.0,
                        help="LiDAR range noise (m, standard deviation)")
    parser.add_argument("--resolution", type=int, default=97,
                        help="marching-cubes grid points per axis (4k + 1)")
    parser.add_argument("--cache", type=Path, default=ROOT / "benchmarks" / "cache" / "sdf")
    parser.add_argument("--out", type=Path,
                        default=ROOT / "benchmarks" / "results" / "prior.json")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    prior = load_prior(args.prior)
    start = time.perf_counter()
    cars = generate_cars(args.count, args.seed, split="heldout")
    rng = np.random.default_rng(args.seed)
    sampling = SdfSampling()
    full_xyz, full_sdf, hits, free, boxes = [], [], [], [], []
    for car in cars:
        samples = cached_sdf(car.mesh, sampling, args.cache)
        pick = rng.choice(len(samples.sdf), size=args.points, replace=False)
        full_xyz.append(samples.points[pick])
        full_sdf.append(samples.sdf[pick])
        boxes.append((samples.centre, samples.extent))
        car_hits, car_free = partial_observation(car.mesh, samples.centre, samples.extent, rng,
                                                 args.range_noise)
        hits.append(car_hits)
        free.append(car_free)
    full = torch.cat([
        prior.infer_latents(torch.as_tensor(np.stack(full_xyz[i:i + BATCH])),
                            torch.as_tensor(np.stack(full_sdf[i:i + BATCH])),
                            iterations=args.iterations)
        for i in range(0, len(cars), BATCH)])
    partial = torch.cat([
        _infer_partial(prior, hits[i:i + BATCH], free[i:i + BATCH], rng, args.points,
                       args.iterations)
        for i in range(0, len(cars), BATCH)])
    inferred = time.perf_counter()
    results = {}
    for name, latents in (("full", full), ("partial", partial)):
        rows = evaluate(prior, latents, cars, boxes, args.resolution, args.seed)
        results[name] = {"summary": summary(rows), "shapes": rows}
    mean_rows = evaluate(prior, prior.latent_mean.expand(len(cars), -1), cars, boxes,
                         args.resolution, args.seed)
    results["mean_shape"] = {"summary": summary(mean_rows), "shapes": mean_rows}
    record = {
        "benchmark": "shape prior on held-out procedural cars",
        "prior": str(args.prior or "shape_priors/weights/car.pt"),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "hits_per_car_median": float(np.median([len(h) for h in hits])),
        "seconds": {"inference": inferred - start,
                    "evaluation": time.perf_counter() - inferred},
        **results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    _print_table(record)
    print(f"wrote {args.out}")


def _infer_partial(prior: ShapePrior, hits: list[np.ndarray], free: list[np.ndarray],
                   rng: np.random.Generator, points: int, iterations: int) -> torch.Tensor:
    """Codes from LiDAR hits (zero SDF) and free space, each resampled to ``points`` per car."""
    hit_xyz = np.stack([h[rng.choice(len(h), points, replace=len(h) < points)] for h in hits])
    free_xyz = np.stack([f[rng.choice(len(f), points, replace=len(f) < points)] for f in free])
    return prior.infer_latents(torch.as_tensor(hit_xyz, dtype=torch.float32),
                               torch.zeros(hit_xyz.shape[:2]),
                               free=torch.as_tensor(free_xyz, dtype=torch.float32),
                               iterations=iterations)


def _print_table(record: dict) -> None:
    print(f"{'observation':<12} {'Chamfer-L1 median':>18} {'p90':>8} {'IoU median':>11} "
          f"{'IoU mean':>9}")
    for name in ("full", "partial", "mean_shape"):
        s = record[name]["summary"]
        print(f"{name:<12} {s['chamfer_cm_median']:>15.2f} cm {s['chamfer_cm_p90']:>5.2f} cm "
              f"{s['iou_median']:>11.3f} {s['iou_mean']:>9.3f}")
    targets = "targets: Chamfer-L1 median <= 3 cm (full), <= 6 cm (partial); IoU >= 0.85"
    print(targets)


if __name__ == "__main__":
    main()
