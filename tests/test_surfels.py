"""Tests for autolabel.surfels: re-projection onto the surface and its latent gradient."""

from __future__ import annotations

import torch

from autolabel import shapes
from autolabel import surfels as sf
from autolabel.geometry import rotation_6d_to_matrix
from shape_priors.decoder import SdfDecoder


def _sphere_surfels(radius: float, count: int = 200):
    gen = torch.Generator().manual_seed(0)
    directions = torch.nn.functional.normalize(
        torch.randn(1, count, 3, generator=gen, dtype=torch.float64), dim=-1)
    return directions * radius, directions


def test_chord_steps_along_the_previous_normals_land_on_the_moved_surface():
    points, normals = _sphere_surfels(0.4)
    valid = torch.ones(1, points.shape[1], dtype=torch.bool)
    grown = torch.tensor([[0.46]], dtype=torch.float64)
    settings = sf.SurfelSettings(newton_steps=1, differentiable_normals=False, tolerance=1e-9)
    projected = sf.project_to_surface(shapes.sphere_sdf, grown, points, valid, settings, normals)
    assert bool(projected.valid.all())
    torch.testing.assert_close(projected.points.norm(dim=-1),
                               torch.full((1, points.shape[1]), 0.46, dtype=torch.float64))
    torch.testing.assert_close(projected.normals, normals)


def test_linearised_last_step_gives_the_implicit_gradient_of_the_surface_points():
    """Against the last Newton step taken through the network with its graph."""
    torch.manual_seed(2)
    decoder = SdfDecoder(latent_size=4, widths=(32, 32, 32), reinject=(1,)).double()
    latent = (0.3 * torch.randn(2, 4, dtype=torch.float64)).requires_grad_(True)
    start = 0.3 * torch.randn(2, 50, 3, dtype=torch.float64)
    valid = torch.ones(2, 50, dtype=torch.bool)
    weights = torch.randn(2, 50, 3, dtype=torch.float64)
    settings = sf.SurfelSettings(newton_steps=0, differentiable_normals=False, tolerance=10.0)
    projected = sf.project_to_surface(decoder, latent, start, valid, settings)
    (linearised,) = torch.autograd.grad((projected.points * weights).sum(), latent)

    points = start.clone().requires_grad_(True)
    values = decoder(latent, points)
    (gradient,) = torch.autograd.grad(values.sum(), points, retain_graph=True)
    surface = start - values.unsqueeze(-1) * gradient / gradient.pow(2).sum(-1, keepdim=True)
    (expected,) = torch.autograd.grad((surface * weights).sum(), latent)
    torch.testing.assert_close(projected.points, surface.detach())
    torch.testing.assert_close(linearised, expected)
    assert expected.abs().max() > 1e-3  # the check has something to compare


def test_an_object_re_projects_the_same_alone_and_in_a_batch():
    torch.manual_seed(3)
    decoder = SdfDecoder(latent_size=4, widths=(32, 32, 32), reinject=(1,)).double()
    latent = (0.3 * torch.randn(5, 4, dtype=torch.float64)).requires_grad_(True)
    start = 0.3 * torch.randn(5, 40, 3, dtype=torch.float64)
    normals = torch.nn.functional.normalize(torch.randn(5, 40, 3, dtype=torch.float64), dim=-1)
    valid = torch.rand(5, 40, generator=torch.Generator().manual_seed(0)) > 0.3
    settings = sf.SurfelSettings(differentiable_normals=False, tolerance=10.0)
    whole = sf.project_to_surface(decoder, latent, start, valid, settings, normals)
    (whole_gradient,) = torch.autograd.grad(whole.points.sum(), latent)
    for i in range(5):
        alone = sf.project_to_surface(decoder, latent[i:i + 1], start[i:i + 1], valid[i:i + 1],
                                      settings, normals[i:i + 1])
        (gradient,) = torch.autograd.grad(alone.points.sum(), latent)
        torch.testing.assert_close(alone.points[0], whole.points[i])
        torch.testing.assert_close(alone.valid[0], whole.valid[i])
        torch.testing.assert_close(gradient[i], whole_gradient[i])
    assert not whole.valid.all() and whole.valid.any()


def test_posing_backward_matches_central_finite_differences():
    gen = torch.Generator().manual_seed(0)
    double = {"generator": gen, "dtype": torch.float64}
    points = torch.rand(2, 20, 3, **double) - 0.5
    normals = torch.nn.functional.normalize(torch.randn(2, 20, 3, **double), dim=-1)
    center = torch.randn(2, 3, **double)
    rotation = rotation_6d_to_matrix(torch.randn(2, 6, **double))
    size = 1 + 3 * torch.rand(2, 3, **double)
    inputs = [value.requires_grad_() for value in (points, normals, center, rotation, size)]
    assert torch.autograd.gradcheck(
        lambda p, n, *pose: sf.pose_surfels(sf.Surfels(p, n, None, None), *pose), inputs)
