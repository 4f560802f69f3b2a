import numpy as np
import pytest
import trimesh

from shape_priors import sdf_samples
from shape_priors.sdf_samples import (
    SdfSampling,
    cached_sdf,
    normalise_mesh,
    sample_sdf,
    signed_distance,
)

SMALL = SdfSampling(count=4000)


def unit_cube_sdf(points: np.ndarray) -> np.ndarray:
    """Exact signed distance to the cube [-0.5, 0.5]^3."""
    excess = np.abs(points) - 0.5
    outside = np.linalg.norm(np.maximum(excess, 0.0), axis=1)
    return outside + np.minimum(excess.max(axis=1), 0.0)


def test_signed_distance_of_sphere_matches_distance_to_its_radius():
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=0.4)
    points = np.random.default_rng(0).uniform(-0.8, 0.8, size=(3000, 3))
    expected = np.linalg.norm(points, axis=1) - 0.4
    # The facetted sphere lies at most 0.4 * (1 - cos(edge angle / 2)) < 1e-3 inside.
    np.testing.assert_allclose(signed_distance(sphere, points), expected, atol=1e-3)


def test_signed_distance_of_box_matches_analytic_box_distance():
    box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    points = np.random.default_rng(1).uniform(-1.0, 1.0, size=(3000, 3))
    np.testing.assert_allclose(signed_distance(box, points), unit_cube_sdf(points), atol=1e-5)


def test_signs_on_axis_aligned_grid_around_box_edges_are_correct():
    box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    axis = np.linspace(-0.74, 0.74, 38)  # rays from these points graze edges and vertices
    points = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)
    points = points[np.abs(np.abs(points).max(axis=1) - 0.5) > 1e-6]  # not on the surface
    inside = np.abs(points).max(axis=1) < 0.5
    assert np.array_equal(signed_distance(box, points) < 0, inside)


def test_point_in_hole_of_torus_is_outside_and_point_in_tube_is_inside():
    torus = trimesh.creation.torus(major_radius=1.0, minor_radius=0.3)
    distance = signed_distance(torus, np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]))
    np.testing.assert_allclose(distance, [0.7, -0.3], atol=0.01)


def test_normalise_mesh_maps_an_offset_tight_box_onto_the_unit_cube():
    box = trimesh.creation.box(extents=(4.2, 1.8, 1.5))
    box.apply_translation((1.0, -2.0, 0.75))
    unit, centre, extent = normalise_mesh(box)
    np.testing.assert_allclose(unit.bounds, [[-0.5] * 3, [0.5] * 3], atol=1e-12)
    np.testing.assert_allclose(centre, [1.0, -2.0, 0.75])
    np.testing.assert_allclose(extent, [4.2, 1.8, 1.5])


def test_samples_of_a_box_carry_exact_distances_in_the_normalised_frame():
    box = trimesh.creation.box(extents=(4.0, 2.0, 1.5))
    samples = sample_sdf(box, SMALL)
    assert samples.points.shape == (4000, 3) and samples.sdf.shape == (4000,)
    np.testing.assert_allclose(samples.sdf, unit_cube_sdf(samples.points), atol=1e-5)
    np.testing.assert_allclose(samples.extent, [4.0, 2.0, 1.5])


def test_most_samples_lie_near_the_surface_and_a_tenth_are_uniform_in_the_cube():
    samples = sample_sdf(trimesh.creation.capsule(height=1.0, radius=0.4), SMALL)
    assert np.mean(np.abs(samples.sdf) < 0.05) > 0.6
    uniform = samples.points[-400:]
    assert np.all(np.abs(uniform) <= SMALL.bound)
    assert np.mean(np.abs(samples.sdf[-400:]) > 0.1) > 0.3


def test_same_mesh_and_seed_give_the_same_samples_and_another_seed_differs():
    mesh = trimesh.creation.box(extents=(2.0, 1.0, 1.0))
    first, again = sample_sdf(mesh, SMALL), sample_sdf(mesh, SMALL)
    other = sample_sdf(mesh, SdfSampling(count=4000, seed=1))
    assert np.array_equal(first.points, again.points)
    assert not np.array_equal(first.points, other.points)


def test_open_mesh_is_rejected_as_not_watertight():
    open_box = trimesh.creation.box()
    open_box.update_faces(np.arange(len(open_box.faces)) > 0)
    with pytest.raises(ValueError, match="not watertight"):
        sample_sdf(open_box, SMALL)


def test_cached_sdf_reuses_the_file_and_resamples_when_settings_change(tmp_path, monkeypatch):
    mesh = trimesh.creation.icosphere(subdivisions=2)
    first = cached_sdf(mesh, SMALL, tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 1

    def fail(*args):
        raise AssertionError("sampled again instead of reading the cache")

    monkeypatch.setattr(sdf_samples, "sample_sdf", fail)
    again = cached_sdf(mesh, SMALL, tmp_path)
    assert np.array_equal(first.sdf, again.sdf) and np.array_equal(first.extent, again.extent)
    monkeypatch.undo()
    cached_sdf(mesh, SdfSampling(count=3000), tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 2
