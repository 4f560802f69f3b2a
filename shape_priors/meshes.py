"""Procedural car meshes for the shape prior, and loading any folder of meshes.

A car is built as the intersection of three extrusions (the classic way cars are drawn):

* the **side profile** in the x–z plane (bumpers, hood, windscreen, roof, rear window, trunk
  deck or tailgate), extruded across the width;
* the **plan** in the x–y plane (a rectangle with rounded bumper corners and a slightly
  narrower nose), extruded vertically;
* the **cross-section** in the y–z plane (full width up to the window line, then a narrower
  greenhouse that leans inwards towards the roof), extruded along the length.

Wheel-arch recesses are cut into both sides, a pickup's bed is hollowed out, and four wheel
cylinders are added. All booleans run in ``manifold3d``, so every mesh is a closed, oriented
2-manifold by construction. Finally the mesh is scaled per axis to exactly the sampled
length, width and height (the roundings take off a few millimetres) and centred.

Frame: x forward (the front bumper at +x), y left, z up, metres, origin at the centre of the
tight axis-aligned box; so the wheels touch the plane ``z = -height / 2``.

Seeds: every shape is decided by one integer seed. Training shapes use seeds in
``TRAIN_SEEDS`` (0 … 999 999) and held-out shapes use ``HELDOUT_SEEDS`` (1 000 000 …
1 999 999), so the two sets can never overlap; :func:`train_seeds` and :func:`heldout_seeds`
hand out consecutive seeds from the start of each range (plus an offset).

:func:`contact_sheet` ray-casts meshes (any, not only these cars) into a captioned grid of
three-quarter views for a quick look.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import manifold3d
import numpy as np
import trimesh
from PIL import Image, ImageDraw

from autolabel.errors import InputError
from autolabel.extras import require_open3d

TRAIN_SEEDS = range(0, 1_000_000)
HELDOUT_SEEDS = range(1_000_000, 2_000_000)
SPLITS = {"train": TRAIN_SEEDS, "heldout": HELDOUT_SEEDS}

MESH_SUFFIXES = (".ply", ".obj", ".off", ".stl", ".glb", ".gltf")

# Tessellation: segments per rounded corner of a profile, and around wheels and arches.
_FILLET_SEGMENTS = 5
_WHEEL_SEGMENTS = 28


@dataclasses.dataclass(frozen=True)
class BodyRanges:
    """Uniform sampling ranges ``(low, high)`` of one body type; lengths in metres.

    Fractions are of the overall length; ``greenhouse`` is the height of the window area
    (roof minus window line), ``hood_drop`` how far the hood's front edge sits below the window
    line, ``deck_rise`` how far the trunk deck (or tailgate top, or pickup bed rim) sits above
    the window line (negative: below).
    """

    length: tuple[float, float]
    width: tuple[float, float]
    height: tuple[float, float]
    ground_clearance: tuple[float, float]
    wheelbase_fraction: tuple[float, float]
    front_overhang_share: tuple[float, float]
    wheel_radius: tuple[float, float]
    hood_fraction: tuple[float, float]
    windscreen_run: tuple[float, float]
    rear_window_run: tuple[float, float]
    trunk_fraction: tuple[float, float]
    greenhouse: tuple[float, float]
    hood_drop: tuple[float, float]
    deck_rise: tuple[float, float]
    roof_drop: tuple[float, float]
    tumblehome: tuple[float, float]
    bumper_rounding: tuple[float, float]
    bed_depth: tuple[float, float] = (0.0, 0.0)


BODY_TYPES: dict[str, BodyRanges] = {
    "sedan": BodyRanges(
        length=(4.3, 5.2), width=(1.70, 1.95), height=(1.38, 1.55),
        ground_clearance=(0.12, 0.17), wheelbase_fraction=(0.56, 0.62),
        front_overhang_share=(0.42, 0.52), wheel_radius=(0.30, 0.34),
        hood_fraction=(0.22, 0.28), windscreen_run=(0.75, 0.95), rear_window_run=(0.50, 0.75),
        trunk_fraction=(0.17, 0.22), greenhouse=(0.42, 0.52), hood_drop=(0.12, 0.22),
        deck_rise=(0.0, 0.08), roof_drop=(0.0, 0.06), tumblehome=(0.10, 0.16),
        bumper_rounding=(0.10, 0.22)),
    "hatchback": BodyRanges(
        length=(3.4, 4.4), width=(1.55, 1.80), height=(1.40, 1.60),
        ground_clearance=(0.12, 0.16), wheelbase_fraction=(0.60, 0.67),
        front_overhang_share=(0.50, 0.60), wheel_radius=(0.28, 0.32),
        hood_fraction=(0.18, 0.24), windscreen_run=(0.65, 0.90), rear_window_run=(0.30, 0.60),
        trunk_fraction=(0.01, 0.04), greenhouse=(0.45, 0.56), hood_drop=(0.12, 0.22),
        deck_rise=(-0.06, 0.04), roof_drop=(0.02, 0.08), tumblehome=(0.10, 0.16),
        bumper_rounding=(0.12, 0.25)),
    "wagon": BodyRanges(
        length=(4.4, 5.0), width=(1.75, 1.90), height=(1.42, 1.60),
        ground_clearance=(0.12, 0.17), wheelbase_fraction=(0.57, 0.62),
        front_overhang_share=(0.42, 0.50), wheel_radius=(0.30, 0.34),
        hood_fraction=(0.20, 0.25), windscreen_run=(0.70, 0.90), rear_window_run=(0.12, 0.30),
        trunk_fraction=(0.01, 0.03), greenhouse=(0.44, 0.54), hood_drop=(0.12, 0.22),
        deck_rise=(-0.04, 0.04), roof_drop=(0.02, 0.07), tumblehome=(0.10, 0.15),
        bumper_rounding=(0.10, 0.20)),
    "suv": BodyRanges(
        length=(4.2, 5.1), width=(1.80, 2.05), height=(1.60, 1.90),
        ground_clearance=(0.18, 0.25), wheelbase_fraction=(0.57, 0.62),
        front_overhang_share=(0.45, 0.55), wheel_radius=(0.34, 0.40),
        hood_fraction=(0.21, 0.26), windscreen_run=(0.55, 0.80), rear_window_run=(0.10, 0.25),
        trunk_fraction=(0.01, 0.03), greenhouse=(0.50, 0.62), hood_drop=(0.08, 0.16),
        deck_rise=(-0.04, 0.04), roof_drop=(0.0, 0.06), tumblehome=(0.08, 0.13),
        bumper_rounding=(0.10, 0.22)),
    "van": BodyRanges(
        length=(4.4, 5.8), width=(1.80, 2.10), height=(1.80, 2.20),
        ground_clearance=(0.14, 0.19), wheelbase_fraction=(0.58, 0.66),
        front_overhang_share=(0.45, 0.55), wheel_radius=(0.31, 0.36),
        hood_fraction=(0.08, 0.16), windscreen_run=(0.60, 0.95), rear_window_run=(0.03, 0.12),
        trunk_fraction=(0.0, 0.01), greenhouse=(0.72, 0.95), hood_drop=(0.05, 0.12),
        deck_rise=(-0.02, 0.05), roof_drop=(0.0, 0.04), tumblehome=(0.03, 0.07),
        bumper_rounding=(0.10, 0.20)),
    "pickup": BodyRanges(
        length=(4.8, 5.8), width=(1.80, 2.10), height=(1.70, 2.00),
        ground_clearance=(0.20, 0.26), wheelbase_fraction=(0.58, 0.64),
        front_overhang_share=(0.43, 0.52), wheel_radius=(0.36, 0.42),
        hood_fraction=(0.22, 0.27), windscreen_run=(0.55, 0.75), rear_window_run=(0.04, 0.12),
        trunk_fraction=(0.30, 0.36), greenhouse=(0.50, 0.60), hood_drop=(0.04, 0.12),
        deck_rise=(-0.06, 0.0), roof_drop=(0.0, 0.04), tumblehome=(0.07, 0.12),
        bumper_rounding=(0.06, 0.14), bed_depth=(0.42, 0.55)),
}

BODY_TYPE_WEIGHTS = {"sedan": 0.22, "hatchback": 0.22, "wagon": 0.14, "suv": 0.18, "van": 0.12,
                     "pickup": 0.12}

# Face colours (RGBA) for viewing only; they play no part in the geometry.
BODY_COLOURS = {"sedan": (70, 110, 170, 255), "hatchback": (190, 60, 50, 255),
                "wagon": (60, 140, 90, 255), "suv": (200, 140, 40, 255),
                "van": (200, 200, 195, 255), "pickup": (120, 90, 160, 255)}
WHEEL_COLOUR = (35, 35, 38, 255)


@dataclasses.dataclass(frozen=True)
class CarParams:
    """All parameters of one procedural car; metres, in the ground frame of the build.

    ``length``, ``width`` and ``height`` are exactly the tight box of the built mesh (wheels
    on the ground, no mirrors). ``front_overhang`` is the distance from the front bumper to the
    front axle, ``track`` the distance between the left and right wheel centre planes,
    ``arch_gap`` the clearance between tyre and wheel arch. Heights (``hood_height``,
    ``window_line``, ``deck_height``) are measured from the ground. The cabin's position
    along the car follows from ``hood_length`` (bumper to windscreen base) and
    ``trunk_length`` (rear bumper to rear-window base); ``windscreen_run`` and
    ``rear_window_run`` are the horizontal runs of the two glass slopes, ``roof_drop`` how
    much lower the roof's rear edge is than its front, ``tumblehome`` the fraction of the
    width that the greenhouse loses up to the roof, ``bumper_rounding`` the radius of the
    rounded bumper edges, and ``bed_depth`` the depth of a pickup's open bed (0 otherwise).
    """

    seed: int
    body_type: str
    length: float
    width: float
    height: float
    ground_clearance: float
    wheelbase: float
    front_overhang: float
    track: float
    wheel_radius: float
    wheel_width: float
    arch_gap: float
    hood_length: float
    hood_height: float
    windscreen_run: float
    roof_drop: float
    rear_window_run: float
    trunk_length: float
    deck_height: float
    window_line: float
    tumblehome: float
    bumper_rounding: float
    bed_depth: float


class GeneratedCar(NamedTuple):
    """One procedural car: its parameters and its mesh in the object frame."""

    params: CarParams
    mesh: trimesh.Trimesh


def split_seeds(split: str, count: int, offset: int = 0) -> list[int]:
    """``count`` consecutive seeds of a split (``"train"`` or ``"heldout"``) from ``offset``.

    Raises :class:`InputError` for an unknown split or when the seeds would run past the
    split's range.

    >>> split_seeds("heldout", 2, offset=5)
    [1000005, 1000006]
    """
    if split not in SPLITS:
        raise InputError(None, f"unknown split '{split}'; expected one of {sorted(SPLITS)}",
                         field="split")
    seeds = SPLITS[split]
    if count < 0 or offset < 0 or offset + count > len(seeds):
        raise InputError(None, f"{count} seeds from offset {offset} do not fit the {split} "
                         f"split ({len(seeds)} seeds: {seeds.start}..{seeds.stop - 1})",
                         field="seed")
    return list(seeds[offset:offset + count])


def train_seeds(count: int, offset: int = 0) -> list[int]:
    """``count`` training seeds starting at ``offset`` within ``TRAIN_SEEDS``.

    >>> train_seeds(3, offset=10)
    [10, 11, 12]
    """
    return split_seeds("train", count, offset)


def heldout_seeds(count: int, offset: int = 0) -> list[int]:
    """``count`` held-out seeds starting at ``offset`` within ``HELDOUT_SEEDS``.

    >>> heldout_seeds(2)
    [1000000, 1000001]
    """
    return split_seeds("heldout", count, offset)


def sample_car_params(seed: int, body_type: str | None = None) -> CarParams:
    """The parameters of the car that ``seed`` decides, optionally of a forced body type.

    The body type is always drawn first, so forcing the type that the seed would have drawn
    gives the same car as not forcing it.
    """
    rng = np.random.default_rng(seed)
    names = list(BODY_TYPE_WEIGHTS)
    weights = np.array([BODY_TYPE_WEIGHTS[name] for name in names])
    drawn = names[int(rng.choice(len(names), p=weights / weights.sum()))]
    if body_type is None:
        body_type = drawn
    elif body_type not in BODY_TYPES:
        raise InputError(None, f"unknown body type '{body_type}'; expected one of "
                         f"{sorted(BODY_TYPES)}", field="body_type")
    ranges = BODY_TYPES[body_type]

    def draw(name: str) -> float:
        low, high = getattr(ranges, name)
        return float(rng.uniform(low, high))

    length, width, height = draw("length"), draw("width"), draw("height")
    clearance = draw("ground_clearance")
    wheelbase = draw("wheelbase_fraction") * length
    front_overhang = draw("front_overhang_share") * (length - wheelbase)
    wheel_radius = draw("wheel_radius")
    wheel_width = float(rng.uniform(0.58, 0.72)) * wheel_radius
    arch_gap = float(rng.uniform(0.03, 0.08))
    track = width - wheel_width - 2.0 * float(rng.uniform(0.01, 0.035))
    arch_top = 2.0 * wheel_radius + arch_gap
    # The hood clears the front wheel arch and stays below the windscreen's base.
    window_line = max(height - draw("greenhouse"), arch_top + 0.15)
    hood_height = max(window_line - draw("hood_drop"), arch_top + 0.1)
    hood_length, trunk_length = draw("hood_fraction") * length, draw("trunk_fraction") * length
    windscreen_run, rear_window_run = draw("windscreen_run"), draw("rear_window_run")
    # Keep at least 0.6 m of roof by shortening the two glass slopes together.
    glass = length - hood_length - trunk_length - 0.6
    if windscreen_run + rear_window_run > glass:
        shrink = glass / (windscreen_run + rear_window_run)
        windscreen_run, rear_window_run = windscreen_run * shrink, rear_window_run * shrink
    deck_height = window_line + draw("deck_rise")
    # A pickup's bed floor stays above the rear wheel arches.
    bed_depth = min(draw("bed_depth"), deck_height - arch_top - 0.05)
    return CarParams(
        seed=int(seed), body_type=body_type, length=length, width=width, height=height,
        ground_clearance=clearance, wheelbase=wheelbase, front_overhang=front_overhang,
        track=track, wheel_radius=wheel_radius, wheel_width=wheel_width, arch_gap=arch_gap,
        hood_length=hood_length, hood_height=hood_height, windscreen_run=windscreen_run,
        roof_drop=draw("roof_drop"), rear_window_run=rear_window_run,
        trunk_length=trunk_length, deck_height=deck_height, window_line=window_line,
        tumblehome=draw("tumblehome"), bumper_rounding=draw("bumper_rounding"),
        bed_depth=bed_depth)


def build_car_mesh(params: CarParams) -> trimesh.Trimesh:
    """The watertight mesh of a car in the object frame (x forward, y left, z up, centred).

    Faces carry colours for viewing (body by type, wheels dark). A few thousand faces.
    """
    p = params
    body = (_extrude(_side_profile(p), 3.0 * p.width, _SIDE_AXES)
            ^ _extrude(_plan(p), 3.0 * p.height, _PLAN_AXES)
            ^ _extrude(_cross_section(p), 3.0 * p.length, _CROSS_AXES))
    body = body - _wheel_arches(p)
    if p.bed_depth > 0.0:
        body = body - _bed_cavity(p)
    wheels = _wheels(p).as_original()
    car = body + wheels
    if car.status() != manifold3d.Error.NoError:
        raise RuntimeError(f"car of seed {p.seed}: manifold error {car.status()}")
    mesh_gl = car.to_mesh()
    vertices = np.asarray(mesh_gl.vert_properties, dtype=np.float64)[:, :3]
    faces = np.asarray(mesh_gl.tri_verts, dtype=np.int64)
    colours = np.tile(np.array(BODY_COLOURS[p.body_type], dtype=np.uint8), (len(faces), 1))
    run_index = np.asarray(mesh_gl.run_index) // 3
    for run, original in enumerate(mesh_gl.run_original_id):
        if original == wheels.original_id():
            colours[run_index[run]:run_index[run + 1]] = WHEEL_COLOUR
    low, high = vertices.min(axis=0), vertices.max(axis=0)
    target = np.array([p.length, p.width, p.height])
    vertices = (vertices - (low + high) / 2.0) * (target / (high - low))
    mesh = trimesh.Trimesh(vertices, faces, face_colors=colours, process=True)
    mesh.metadata["seed"] = p.seed
    mesh.metadata["body_type"] = p.body_type
    return mesh


def generate_cars(count: int, seed: int = 0, split: str = "train") -> list[GeneratedCar]:
    """``count`` cars of a split from seed offset ``seed`` (see :func:`split_seeds`)."""
    cars = []
    for car_seed in split_seeds(split, count, seed):
        params = sample_car_params(car_seed)
        cars.append(GeneratedCar(params, build_car_mesh(params)))
    return cars


def load_mesh_folder(folder: str | Path) -> list[trimesh.Trimesh]:
    """Every mesh file in ``folder`` (sorted by name), each centred on its tight box.

    Files with the suffixes in ``MESH_SUFFIXES`` are read (multi-part scenes are merged); other
    files are ignored. Meshes are translated only: no rotation or scale is guessed, so they
    must already be in the object frame (x forward, y left, z up, metres). Watertightness is
    not checked here. ``mesh.metadata["file_name"]`` holds each file's name.

    Raises :class:`InputError` for a missing folder, a folder without meshes, or a file that
    cannot be read or holds no triangles.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "mesh folder does not exist")
    files = sorted(path for path in folder.iterdir()
                   if path.is_file() and path.suffix.lower() in MESH_SUFFIXES)
    if not files:
        raise InputError(folder, f"no mesh files ({', '.join(MESH_SUFFIXES)}) in the folder")
    meshes = []
    for path in files:
        try:
            mesh = trimesh.load(path, force="mesh", process=True)
        except Exception as error:  # trimesh raises many types for malformed files
            raise InputError(path, f"cannot read mesh: {error}") from None
        if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
            raise InputError(path, "file holds no triangles")
        mesh.apply_translation(-mesh.bounds.mean(axis=0))
        mesh.metadata["file_name"] = path.name
        meshes.append(mesh)
    return meshes


# --- pictures -------------------------------------------------------------------------------


def contact_sheet(meshes: Sequence[trimesh.Trimesh], captions: Sequence[str], columns: int = 6,
                  tile: tuple[int, int] = (260, 180)) -> Image.Image:
    """A grid of three-quarter views (see :func:`render_views`), each with its caption."""
    if len(captions) != len(meshes):
        raise ValueError(f"{len(meshes)} meshes but {len(captions)} captions")
    views = render_views(meshes, tile)
    rows = max(1, math.ceil(len(meshes) / columns))
    sheet = Image.new("RGB", (columns * tile[0], rows * tile[1]), (250, 250, 250))
    draw = ImageDraw.Draw(sheet)
    for index, (view, caption) in enumerate(zip(views, captions, strict=True)):
        left, top = (index % columns) * tile[0], (index // columns) * tile[1]
        sheet.paste(Image.fromarray(view), (left, top))
        draw.text((left + 6, top + 4), caption, fill=(40, 40, 40))
    return sheet


def render_views(meshes: Sequence[trimesh.Trimesh], tile: tuple[int, int] = (260, 180),
                 view_length: float = 6.0) -> np.ndarray:
    """Ray-cast each mesh in a front three-quarter view, on a floor with its shadow.

    meshes: M meshes centred in the object frame (front at +x, z up); tile: (width, height)
    in pixels; view_length: the car length (m) that about fills a tile, the same for all
    meshes so that their sizes compare. Face colours are used when present, else grey.
    Returns (M, height, width, 3) uint8 images.
    """
    o3d = require_open3d("drawing meshes")
    width_px, height_px = tile
    direction = np.array([math.cos(math.radians(-38.0)), math.sin(math.radians(-38.0)), 0.55])
    direction /= np.linalg.norm(direction)
    eye = direction * view_length * 1.5
    light = np.array([0.35, -0.55, 1.0])
    light /= np.linalg.norm(light)
    rays = o3d.t.geometry.RaycastingScene.create_rays_pinhole(
        fov_deg=42.0, center=o3d.core.Tensor([0.35, 0.0, -0.2], o3d.core.float32),
        eye=o3d.core.Tensor(eye.astype(np.float32)),
        up=o3d.core.Tensor([0.0, 0.0, 1.0], o3d.core.float32),
        width_px=width_px, height_px=height_px).numpy()
    rays = np.ascontiguousarray(rays[::-1, ::-1].reshape(-1, 6))  # open3d's image is turned 180°
    images = []
    for mesh in meshes:
        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(o3d.core.Tensor(np.asarray(mesh.vertices, dtype=np.float32)),
                            o3d.core.Tensor(np.asarray(mesh.faces, dtype=np.uint32)))
        hits = scene.cast_rays(o3d.core.Tensor(rays))
        t_hit = hits["t_hit"].numpy()
        hit = np.isfinite(t_hit)
        image = np.full((len(rays), 3), 250.0)
        # Floor under the car, with the shadow the light casts.
        floor_z = float(mesh.bounds[0, 2])
        t_floor = (floor_z - rays[:, 2]) / np.where(rays[:, 5] < 0, rays[:, 5], -1.0)
        floor_points = rays[:, :3] + t_floor[:, None] * rays[:, 3:]
        on_floor = (rays[:, 5] < 0) & ~hit
        shadow_rays = np.hstack([floor_points + 1e-3 * light, np.tile(light, (len(rays), 1))])
        shadowed = scene.test_occlusions(o3d.core.Tensor(shadow_rays.astype(np.float32))).numpy()
        image[on_floor] = np.where(shadowed[on_floor, None], 170.0, 228.0)
        # Lambert shading of the car, normals turned towards the camera.
        normals = hits["primitive_normals"].numpy()[hit]
        normals *= -np.sign(np.sum(normals * rays[hit, 3:], axis=1, keepdims=True))
        shade = 0.38 + 0.62 * np.clip(normals @ light, 0.0, 1.0)
        face_ids = hits["primitive_ids"].numpy()[hit]
        colours = _face_colours(mesh)[face_ids]
        image[hit] = colours * shade[:, None]
        images.append(image.reshape(height_px, width_px, 3).clip(0, 255).astype(np.uint8))
    return np.stack(images) if images else np.zeros((0, height_px, width_px, 3), np.uint8)


def _face_colours(mesh: trimesh.Trimesh) -> np.ndarray:
    """(F, 3) float RGB per face: the mesh's own face colours, else a neutral grey."""
    if mesh.visual.kind == "face":
        return np.asarray(mesh.visual.face_colors[:, :3], dtype=np.float64)
    return np.full((len(mesh.faces), 3), 170.0)


# --- profiles -------------------------------------------------------------------------------

# Axis maps (3x3, determinant +1) from an extrusion's (u, v, extrusion) axes to (x, y, z).
_SIDE_AXES = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])  # (x, z) ⟂ y
_PLAN_AXES = np.eye(3)  # (x, y) ⟂ z
_CROSS_AXES = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # (y, z) ⟂ x


def _side_profile(p: CarParams) -> np.ndarray:
    """The side silhouette in the (x, z) plane, counter-clockwise, ground at z = 0: (N, 2)."""
    front, rear = p.length / 2.0, -p.length / 2.0
    lip = p.ground_clearance + 0.06
    bumper = min(0.5 * (lip + p.hood_height), lip + 0.3)
    windscreen_base = front - p.hood_length
    rear_window_base = rear + p.trunk_length
    round_ = p.bumper_rounding
    deck_end = rear + min(0.5 * p.trunk_length, 0.08) if p.trunk_length > 0.1 else rear + 0.02
    corners = [
        # (x, z, fillet radius)
        (front - 0.10, p.ground_clearance, 0.05),
        (front - 0.03, lip, 0.05),
        (front, bumper, 0.06),
        (front - 0.06, p.hood_height - 0.02, round_),
        (front - 0.30, p.hood_height, 0.4),
        (windscreen_base, p.window_line, 0.08),
        (windscreen_base - p.windscreen_run, p.height, 0.18),
        (rear_window_base + p.rear_window_run, p.height - p.roof_drop, 0.14),
        (rear_window_base, p.deck_height, 0.06),
        (deck_end, p.deck_height - 0.03, round_ * 0.7),
        (rear, bumper, 0.06),
        (rear + 0.04, lip, 0.05),
        (rear + 0.12, p.ground_clearance, 0.05),
    ]
    points = np.array([(x, z) for x, z, _ in corners])
    radii = np.array([r for _, _, r in corners])
    return _fillet(points, radii)


def _plan(p: CarParams) -> np.ndarray:
    """The top view in the (x, y) plane: rounded corners, slightly narrower nose: (N, 2)."""
    front, rear, half = p.length / 2.0, -p.length / 2.0, p.width / 2.0
    nose = half * (0.95 - 0.3 * p.bumper_rounding)
    front_axle = front - p.front_overhang
    front_radius = min(0.15 + 1.5 * p.bumper_rounding, 0.45 * p.width)
    rear_radius = 0.08 if p.bed_depth > 0.0 else 0.08 + 1.2 * p.bumper_rounding
    corners = [(rear, -half, rear_radius), (front_axle, -half, 1.0), (front, -nose, front_radius),
               (front, nose, front_radius), (front_axle, half, 1.0), (rear, half, rear_radius)]
    return _fillet(np.array([(x, y) for x, y, _ in corners]), np.array([r for *_, r in corners]))


def _cross_section(p: CarParams) -> np.ndarray:
    """The front view in the (y, z) plane: body, shoulder, leaning greenhouse: (N, 2)."""
    half = p.width / 2.0 + 0.001  # the plan, not this section, sets the width
    shoulder = half - 0.03
    roof = half * (1.0 - p.tumblehome)
    top = p.height + 0.001  # the side profile sets the roof height
    corners = [(-half, p.ground_clearance, 0.06), (half, p.ground_clearance, 0.06),
               (half, p.window_line - 0.04, 0.05), (shoulder, p.window_line, 0.02),
               (roof, top, 0.16), (-roof, top, 0.16), (-shoulder, p.window_line, 0.02),
               (-half, p.window_line - 0.04, 0.05)]
    return _fillet(np.array([(y, z) for y, z, _ in corners]), np.array([r for *_, r in corners]))


def _fillet(points: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Round the corners of a closed polygon with circular arcs.

    points: (N, 2) corners; radii: (N,) arc radius per corner (0 keeps it sharp). A radius is
    reduced where the arc would need more than 45 % of either adjacent edge. Returns (M, 2).
    """
    out = []
    count = len(points)
    for i in range(count):
        corner, before, after = points[i], points[i - 1], points[(i + 1) % count]
        to_before, to_after = before - corner, after - corner
        len_before, len_after = np.linalg.norm(to_before), np.linalg.norm(to_after)
        a, b = to_before / len_before, to_after / len_after
        half_angle = 0.5 * math.acos(float(np.clip(a @ b, -1.0, 1.0)))
        if radii[i] <= 0.0 or half_angle > math.radians(89.0):
            out.append(corner)
            continue
        tangent = min(radii[i] / math.tan(half_angle), 0.45 * min(len_before, len_after))
        radius = tangent * math.tan(half_angle)
        start, end = corner + a * tangent, corner + b * tangent
        bisector = (a + b) / np.linalg.norm(a + b)
        centre = corner + bisector * radius / math.sin(half_angle)
        angle0 = math.atan2(*(start - centre)[::-1])
        sweep = math.atan2(*(end - centre)[::-1]) - angle0
        sweep = (sweep + math.pi) % (2.0 * math.pi) - math.pi
        angles = angle0 + sweep * np.linspace(0.0, 1.0, _FILLET_SEGMENTS + 1)
        out.extend(centre + radius * np.stack([np.cos(angles), np.sin(angles)], axis=1))
    return np.array(out)


# --- solids ---------------------------------------------------------------------------------


def _extrude(polygon: np.ndarray, depth: float, axes: np.ndarray) -> manifold3d.Manifold:
    """Extrude a 2D polygon (N, 2) symmetrically by ``depth`` and map its axes by ``axes``."""
    section = manifold3d.CrossSection([polygon])
    solid = manifold3d.Manifold.extrude(section, depth).translate((0.0, 0.0, -depth / 2.0))
    return solid.transform(np.hstack([axes, np.zeros((3, 1))]))


def _cylinder_y(radius: float, width: float, x: float, y: float, z: float,
                segments: int = _WHEEL_SEGMENTS) -> manifold3d.Manifold:
    """A cylinder with its axis along y, centred at (x, y, z)."""
    cylinder = manifold3d.Manifold.cylinder(width, radius, radius, segments, True)
    return cylinder.transform(np.hstack([_SIDE_AXES, np.array([[x], [y], [z]])]))


def axles_x(p: CarParams) -> tuple[float, float]:
    """Object-frame x of the front and the rear axle, metres (wheel centres sit
    ``wheel_radius`` above the ground)."""
    front_axle = p.length / 2.0 - p.front_overhang
    return front_axle, front_axle - p.wheelbase


def _wheel_arches(p: CarParams) -> manifold3d.Manifold:
    """Recesses around the wheels, cut into both sides down to inside the tyres' inner faces."""
    outer = p.width / 2.0
    depth = (outer - p.track / 2.0) + 0.2 * p.wheel_width  # wheel stays joined to the body
    recesses = [
        _cylinder_y(p.wheel_radius + p.arch_gap, depth + 0.2, x, side * (outer - depth / 2.0
                    + 0.1), p.wheel_radius, 2 * _WHEEL_SEGMENTS)
        for x in axles_x(p) for side in (-1.0, 1.0)]
    return manifold3d.Manifold.batch_boolean(recesses, manifold3d.OpType.Add)


def _wheels(p: CarParams) -> manifold3d.Manifold:
    wheels = [_cylinder_y(p.wheel_radius, p.wheel_width, x, side * p.track / 2.0, p.wheel_radius)
              for x in axles_x(p) for side in (-1.0, 1.0)]
    return manifold3d.Manifold.batch_boolean(wheels, manifold3d.OpType.Add)


def _bed_cavity(p: CarParams) -> manifold3d.Manifold:
    """The open load bed of a pickup: a box from the bed floor upwards behind the cab."""
    wall = 0.06
    rear = -p.length / 2.0
    x0, x1 = rear + wall + 0.02, rear + p.trunk_length - 0.08
    floor = p.deck_height - p.bed_depth
    size = (x1 - x0, p.width - 2.0 * wall - 0.04, p.height)
    return manifold3d.Manifold.cube(size).translate((x0, -size[1] / 2.0, floor))
