"""Tests for shape_priors/meshes.py: the procedural cars, the seed split, loading, the CLI."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import open3d as o3d
import pytest
import trimesh
from PIL import Image
from typer.testing import CliRunner

from autolabel.errors import InputError
from cli.main import app
from shape_priors.meshes import (
    BODY_TYPES,
    HELDOUT_SEEDS,
    TRAIN_SEEDS,
    WHEEL_COLOUR,
    build_car_mesh,
    contact_sheet,
    generate_cars,
    heldout_seeds,
    load_mesh_folder,
    sample_car_params,
    split_seeds,
    train_seeds,
)

SEEDS_PER_TYPE = 4


@pytest.fixture(scope="module")
def cars() -> dict[str, list[tuple]]:
    """A few cars of every body type: {body_type: [(params, mesh), ...]}."""
    out = {}
    for body_type in BODY_TYPES:
        params = [sample_car_params(seed, body_type) for seed in range(SEEDS_PER_TYPE)]
        out[body_type] = [(p, build_car_mesh(p)) for p in params]
    return out


def _wheel_faces(mesh: trimesh.Trimesh) -> np.ndarray:
    return np.all(mesh.visual.face_colors == np.array(WHEEL_COLOUR, dtype=np.uint8), axis=1)


@pytest.mark.parametrize("body_type", sorted(BODY_TYPES))
def test_every_body_type_gives_watertight_volumes(cars, body_type):
    for _, mesh in cars[body_type]:
        assert mesh.is_watertight
        assert mesh.is_volume
        assert mesh.volume > 0.0


@pytest.mark.parametrize("body_type", sorted(BODY_TYPES))
def test_tight_box_is_the_sampled_size_centred_on_the_origin(cars, body_type):
    for params, mesh in cars[body_type]:
        half = np.array([params.length, params.width, params.height]) / 2.0
        np.testing.assert_allclose(mesh.bounds, np.stack([-half, half]), atol=1e-9)


def test_sampled_sizes_stay_in_their_body_type_ranges_and_real_world_proportions():
    seen = set()
    for seed in range(300):
        params = sample_car_params(seed)
        ranges = BODY_TYPES[params.body_type]
        seen.add(params.body_type)
        for name in ("length", "width", "height"):
            low, high = getattr(ranges, name)
            assert low <= getattr(params, name) <= high, (seed, name)
        assert 3.4 <= params.length <= 5.8
        assert 1.5 <= params.width <= 2.1
        assert 1.3 <= params.height <= 2.2
        assert params.track + params.wheel_width < params.width
        assert params.ground_clearance < params.wheel_radius
        arch_top = 2.0 * params.wheel_radius + params.arch_gap
        assert arch_top < params.hood_height < params.window_line
        assert (params.bed_depth > 0.0) == (params.body_type == "pickup")
        assert params.deck_height - params.bed_depth > arch_top  # a bed floor clears the wheels
    assert seen == set(BODY_TYPES)


def test_meshes_have_at_most_a_few_thousand_faces(cars):
    counts = [len(mesh.faces) for group in cars.values() for _, mesh in group]
    assert max(counts) < 3000


def _top_heights(mesh: trimesh.Trimesh, xs: list[float]) -> np.ndarray:
    """Height of the mesh's top surface along the centre line y = 0 at each x: (len(xs),)."""
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(mesh.vertices.astype(np.float32)),
                        o3d.core.Tensor(mesh.faces.astype(np.uint32)))
    rays = np.array([[x, 0.0, 5.0, 0.0, 0.0, -1.0] for x in xs], dtype=np.float32)
    return 5.0 - scene.cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy()


@pytest.mark.parametrize("body_type", ["sedan", "hatchback", "wagon", "suv", "van"])
def test_hood_at_plus_x_is_lower_than_the_rear_and_the_cabin_is_highest(cars, body_type):
    for params, mesh in cars[body_type]:
        half = params.length / 2.0
        front, rear, middle, nose = _top_heights(mesh, [0.9 * half, -0.9 * half, 0.0,
                                                        half - 0.3])
        assert front + 0.02 < rear < middle
        assert middle == pytest.approx(params.height / 2.0, abs=0.1)
        assert nose == pytest.approx(params.hood_height - params.height / 2.0, abs=0.03)


@pytest.mark.parametrize("body_type", sorted(BODY_TYPES))
def test_wheels_stand_on_the_ground_at_the_axles_below_the_body(cars, body_type):
    for params, mesh in cars[body_type]:
        wheel = _wheel_faces(mesh)
        ground = -params.height / 2.0
        assert mesh.vertices[mesh.faces[wheel]].reshape(-1, 3)[:, 2].min() == pytest.approx(
            ground, abs=1e-9)
        body_bottom = mesh.vertices[mesh.faces[~wheel]].reshape(-1, 3)[:, 2].min()
        assert body_bottom == pytest.approx(ground + params.ground_clearance, abs=0.01)
        front_axle = params.length / 2.0 - params.front_overhang
        axles = np.array([front_axle, front_axle - params.wheelbase])
        contact = mesh.vertices[mesh.vertices[:, 2] < ground + 1e-9]
        nearest = np.abs(contact[:, :1] - axles[None, :])
        assert nearest.min(axis=1).max() < 0.01
        assert set(nearest.argmin(axis=1)) == {0, 1}
        assert np.abs(contact[:, 1]).min() > params.track / 2.0 - params.wheel_width / 2.0 - 1e-6


def test_pickup_bed_is_open_down_to_its_floor(cars):
    for params, mesh in cars["pickup"]:
        x_bed = -params.length / 2.0 + params.trunk_length / 2.0
        floor = params.deck_height - params.bed_depth - params.height / 2.0
        assert _top_heights(mesh, [x_bed])[0] == pytest.approx(floor, abs=0.02)


def test_same_seed_gives_the_identical_mesh():
    first, second = build_car_mesh(sample_car_params(17)), build_car_mesh(sample_car_params(17))
    np.testing.assert_array_equal(first.vertices, second.vertices)
    np.testing.assert_array_equal(first.faces, second.faces)


def test_different_seeds_give_different_shapes():
    first, second = sample_car_params(3, "sedan"), sample_car_params(4, "sedan")
    assert first != second
    assert build_car_mesh(first).volume != pytest.approx(build_car_mesh(second).volume)


def test_forcing_the_body_type_a_seed_draws_gives_the_same_car():
    for seed in range(20):
        drawn = sample_car_params(seed)
        assert sample_car_params(seed, drawn.body_type) == drawn


def test_unknown_body_type_is_rejected_by_name():
    with pytest.raises(InputError, match="unknown body type 'limousine'.*sedan"):
        sample_car_params(0, "limousine")


def test_train_and_heldout_seeds_never_overlap():
    assert TRAIN_SEEDS.stop <= HELDOUT_SEEDS.start
    last_train = train_seeds(10, offset=len(TRAIN_SEEDS) - 10)
    assert max(last_train) < min(heldout_seeds(10))
    assert not set(train_seeds(500)) & set(heldout_seeds(500))
    assert split_seeds("heldout", 3, offset=7) == [1_000_007, 1_000_008, 1_000_009]


def test_seeds_past_the_end_of_a_split_are_rejected():
    with pytest.raises(InputError, match="field 'seed'.*train split"):
        train_seeds(5, offset=len(TRAIN_SEEDS) - 4)
    with pytest.raises(InputError, match="unknown split 'test'"):
        split_seeds("test", 1)


def test_generate_cars_builds_consecutive_seeds_of_the_split():
    generated = generate_cars(2, seed=3, split="heldout")
    assert [car.params.seed for car in generated] == [1_000_003, 1_000_004]
    expected = build_car_mesh(sample_car_params(1_000_004))
    np.testing.assert_array_equal(generated[1].mesh.vertices, expected.vertices)


def test_load_mesh_folder_centres_meshes_on_their_tight_box_without_rotating(tmp_path):
    box = trimesh.creation.box(extents=(4.0, 1.8, 1.5))
    box.apply_translation((10.0, -3.0, 0.75))
    box.export(tmp_path / "b_box.ply")
    cylinder = trimesh.creation.cylinder(radius=0.5, height=2.0)
    cylinder.apply_translation((0.0, 0.0, 1.0))
    cylinder.export(tmp_path / "a_cylinder.obj")
    (tmp_path / "params.json").write_text("{}")
    Image.new("RGB", (4, 4)).save(tmp_path / "contact_sheet.png")

    loaded = load_mesh_folder(tmp_path)

    assert [mesh.metadata["file_name"] for mesh in loaded] == ["a_cylinder.obj", "b_box.ply"]
    np.testing.assert_allclose(loaded[1].bounds, [[-2.0, -0.9, -0.75], [2.0, 0.9, 0.75]],
                               atol=1e-6)  # PLY stores float32
    np.testing.assert_allclose(loaded[0].bounds.mean(axis=0), 0.0, atol=1e-9)
    np.testing.assert_allclose(loaded[0].extents, [1.0, 1.0, 2.0], atol=1e-6)


def test_load_mesh_folder_names_the_missing_folder_the_empty_folder_and_the_bad_file(tmp_path):
    with pytest.raises(InputError, match="nowhere: mesh folder does not exist"):
        load_mesh_folder(tmp_path / "nowhere")
    with pytest.raises(InputError, match="no mesh files"):
        load_mesh_folder(tmp_path)
    (tmp_path / "broken.ply").write_text("ply\nformat ascii 1.0\nelement vertex 3\nend_header\n")
    with pytest.raises(InputError, match="broken.ply"):
        load_mesh_folder(tmp_path)


def test_contact_sheet_draws_each_car_in_its_tile():
    meshes = [build_car_mesh(sample_car_params(seed)) for seed in range(3)]
    sheet = np.asarray(contact_sheet(meshes, ["a", "b", "c"], columns=2, tile=(120, 80)))
    assert sheet.shape == (160, 240, 3)
    for top, left in [(0, 0), (0, 120), (80, 0)]:
        tile = sheet[top + 15:top + 80, left:left + 120]
        assert (tile.max(axis=2) - tile.min(axis=2) > 60).sum() > 300  # coloured car pixels
    assert np.ptp(sheet[80:, 120:]) == 0  # the fourth tile stays empty


def test_cli_writes_meshes_params_and_contact_sheet(tmp_path):
    out = tmp_path / "cars"
    result = CliRunner().invoke(app, ["prior", "meshes", "--count", "3", "--seed", "5",
                                      "--out", str(out), "--sheet", "2"])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "params.json").read_text())
    assert record["split"] == "train"
    assert [car["file"] for car in record["cars"]] == ["car_0000.ply", "car_0001.ply",
                                                       "car_0002.ply"]
    assert [car["params"]["seed"] for car in record["cars"]] == [5, 6, 7]
    for car in record["cars"]:
        mesh = trimesh.load(out / car["file"], force="mesh")
        assert mesh.is_watertight
        assert len(mesh.faces) == car["faces"]
        params = car["params"]
        np.testing.assert_allclose(mesh.extents, [params["length"], params["width"],
                                                  params["height"]], atol=1e-5)
        assert params == dataclasses.asdict(sample_car_params(params["seed"]))
    assert Image.open(out / "contact_sheet.png").size == (6 * 260, 180)


def test_cli_heldout_split_uses_heldout_seeds_and_sheet_zero_skips_the_picture(tmp_path):
    result = CliRunner().invoke(app, ["prior", "meshes", "--count", "2", "--split", "heldout",
                                      "--out", str(tmp_path), "--sheet", "0"])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "params.json").read_text())
    assert [car["params"]["seed"] for car in record["cars"]] == [1_000_000, 1_000_001]
    assert not (tmp_path / "contact_sheet.png").exists()


def test_cli_replaces_an_earlier_run_only_with_force(tmp_path):
    runner = CliRunner()
    arguments = ["prior", "meshes", "--out", str(tmp_path), "--sheet", "0", "--count"]
    assert runner.invoke(app, [*arguments, "3"]).exit_code == 0
    refused = runner.invoke(app, [*arguments, "1"])
    assert refused.exit_code == 2
    assert "already holds 3 car_*.ply files; pass --force" in refused.output
    assert runner.invoke(app, [*arguments, "1", "--force"]).exit_code == 0
    assert sorted(path.name for path in tmp_path.glob("car_*.ply")) == ["car_0000.ply"]


def test_cli_rejects_seeds_past_the_split_in_one_line(tmp_path):
    result = CliRunner().invoke(app, ["prior", "meshes", "--count", "2", "--seed", "999999",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.strip().startswith("error:")
    assert "do not fit the train split" in result.output
    assert len(result.output.strip().splitlines()) == 1
