import math
from pathlib import Path

import numpy as np
import open3d as o3d
import pytest
import torch
from PIL import Image

from autolabel import geometry as g
from autolabel import losses, shapes
from autolabel import render as rd
from autolabel import surfels as sf
from autolabel.fit import FitConfig
from autolabel.io.kitti import read_calib, read_image, read_labels
from autolabel.pipeline import render_labels
from autolabel.prior import load_prior
from autolabel.verify import box_iou_2d
from autolabel.viz import paint_silhouettes, save_png
from shape_priors.extract import extract_meshes

CAMERA = torch.tensor([[[721.5, 0.0, 609.6, 0.0], [0.0, 721.5, 172.9, 0.0], [0.0, 0.0, 1.0, 0.0]]],
                      dtype=torch.float64)
SETTINGS = rd.RenderSettings()


def _render(shape, latent, center, yaw, size, window=None, surfels=None):
    """Render one analytic shape; returns (Rendered, window, canonical surfels)."""
    rotation = g.yaw_to_rotation(yaw)
    if surfels is None:
        points, valid = sf.extract_surface_points(shape, latent.detach(), size.detach())
        surfels = (points, valid)
    projected = sf.project_to_surface(shape, latent, *surfels)
    points, normals = sf.pose_surfels(projected, center, rotation, size)
    if window is None:
        corners = g.box_corners(center.detach(), rotation.detach(), size.detach())
        window = rd.detection_windows(g.projected_box2d(corners, CAMERA), SETTINGS.window_margin)
    spacing = sf.surfel_spacing(size, projected.points.shape[1])
    rendered = rd.render(points, normals, projected.points, projected.valid, spacing,
                         CAMERA.expand(len(center), -1, -1), window, SETTINGS)
    return rendered, window, surfels


def _window_pixel_rays(window):
    """Unit rays through the window's pixel centres: (S, S, 3)."""
    s = SETTINGS.window_size
    steps = (torch.arange(s, dtype=torch.float64) + 0.5) / s
    u = window[0, 0] + steps * (window[0, 2] - window[0, 0])
    v = window[0, 1] + steps * (window[0, 3] - window[0, 1])
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    pixels = torch.stack([uu, vv, torch.ones_like(uu)], dim=-1)
    rays = pixels @ torch.linalg.inv(CAMERA[0, :, :3]).T
    return torch.nn.functional.normalize(rays, dim=-1)


def test_sphere_silhouette_depth_and_nocs_match_the_exact_projection():
    radius, center = 1.0, torch.tensor([[1.5, 1.0, 12.0]], dtype=torch.float64)
    latent = torch.tensor([[0.5]], dtype=torch.float64)
    size = torch.full((1, 3), 2 * radius, dtype=torch.float64)
    yaw = torch.tensor([0.3], dtype=torch.float64)
    rendered, window, _ = _render(shapes.sphere_sdf, latent, center, yaw, size)

    rays = _window_pixel_rays(window)
    along = rays @ center[0]
    miss = (center[0].pow(2).sum() - along.pow(2)).clamp(min=0)
    exact = miss <= radius**2
    predicted = rendered.silhouette[0].detach() > 0.5
    iou = (predicted & exact).sum() / (predicted | exact).sum()
    assert iou >= 0.95

    # The pixel whose ray passes closest to the sphere centre: depth and NOCS there.
    i, j = divmod(int(miss.argmin()), SETTINGS.window_size)
    hit = rays[i, j] * (along[i, j] - torch.sqrt(radius**2 - miss[i, j]))
    assert abs(float(rendered.depth[0, i, j]) - float(hit[2])) < 0.01
    canonical = (hit - center[0]) @ g.yaw_to_rotation(yaw)[0] / size[0] + 0.5
    assert torch.allclose(rendered.nocs[0, i, j].detach(), canonical, atol=0.02)


def test_rounded_box_extent_matches_projected_corners_within_a_pixel():
    size = torch.tensor([[4.2, 1.8, 1.5]], dtype=torch.float64)
    latent = torch.tensor([[0.5, 0.5, 0.5, 0.03]], dtype=torch.float64)
    center = torch.tensor([[-2.0, 1.6, 14.0]], dtype=torch.float64)
    yaw = torch.tensor([0.6], dtype=torch.float64)
    rendered, window, _ = _render(shapes.rounded_box_sdf, latent, center, yaw, size)
    corners = g.box_corners(center, g.yaw_to_rotation(yaw), size)
    expected = rd.window_projection(CAMERA, window, SETTINGS.window_size)
    expected_box = g.projected_box2d(corners, expected)[0]
    covered = rendered.silhouette[0].detach() > 0.5
    rows, columns = covered.any(1).nonzero()[:, 0], covered.any(0).nonzero()[:, 0]
    measured = torch.stack([columns.min(), rows.min(), columns.max() + 1, rows.max() + 1])
    assert (measured.double() - expected_box).abs().max() <= 1.0


def _scalar_loss(shape, latent, translation, yaw, log_size, window, surfels, weights):
    rendered, _, _ = _render(shape, latent, translation, yaw, log_size.exp(), window, surfels)
    # Depth jumps to 0 where coverage ends; weighted by the silhouette it is continuous.
    depth = rendered.depth * rendered.silhouette
    return (rendered.silhouette * weights).sum() + 0.1 * (depth * weights).sum()


def test_gradients_match_central_finite_differences():
    gen = torch.Generator().manual_seed(3)
    shape = shapes.rounded_box_sdf
    params = {
        "latent": torch.tensor([[0.5, 0.5, 0.5, 0.15]], dtype=torch.float64),
        "translation": torch.tensor([[0.5, 1.2, 9.0]], dtype=torch.float64),
        "yaw": torch.tensor([0.4], dtype=torch.float64),
        "log_size": torch.log(torch.tensor([[3.0, 1.6, 1.4]], dtype=torch.float64)),
    }
    _, window, surfels = _render(shape, params["latent"], params["translation"], params["yaw"],
                                 params["log_size"].exp())
    weights = torch.rand(1, SETTINGS.window_size, SETTINGS.window_size, generator=gen,
                         dtype=torch.float64)

    def loss(p):
        return _scalar_loss(shape, p["latent"], p["translation"], p["yaw"], p["log_size"],
                            window, surfels, weights)

    leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    analytic = torch.autograd.grad(loss(leaves), list(leaves.values()))
    checks = [("translation", (0, 0)), ("translation", (0, 2)), ("yaw", (0,)),
              ("log_size", (0, 0)), ("log_size", (0, 2)), ("latent", (0, 2))]
    eps = 1e-4
    errors = {}
    for name, index in checks:
        plus = {k: v.clone() for k, v in params.items()}
        minus = {k: v.clone() for k, v in params.items()}
        plus[name][index] += eps
        minus[name][index] -= eps
        numeric = (loss(plus) - loss(minus)) / (2 * eps)
        value = analytic[list(params).index(name)][index]
        errors[f"{name}{index}"] = (float(value), float(numeric))
    relative = {k: abs(a - n) / max(abs(n), 1e-6) for k, (a, n) in errors.items()}
    print("relative errors of analytic vs finite-difference gradients:", relative)
    assert max(relative.values()) < 0.05, errors


def test_splat_backward_matches_central_finite_differences(monkeypatch):
    """The per-surfel splat's hand-written backward pass, with discs small and large (capped
    at ``max_radius``), facing the camera and culled. The render resolution is a choice, not
    a function to differentiate: it is held fixed."""
    monkeypatch.setattr(rd, "render_resolution",
                        lambda *args: torch.tensor([1.0, 0.6], dtype=torch.float64))
    gen = torch.Generator().manual_seed(1)
    double = {"generator": gen, "dtype": torch.float64}
    points = (torch.tensor([0.5, 1.2, 9.0], dtype=torch.float64)
              + 3 * torch.rand(2, 30, 3, **double) - 1.5)
    normals = torch.nn.functional.normalize(torch.randn(2, 30, 3, **double), dim=-1)
    spacing = torch.tensor([0.05, 0.3], dtype=torch.float64)
    valid = torch.rand(2, 30, generator=gen) > 0.2
    window = torch.tensor([[450.0, 50.0, 750.0, 350.0], [500.0, 100.0, 700.0, 300.0]],
                          dtype=torch.float64)
    cameras = rd.WindowCameras.of(CAMERA.expand(2, -1, -1), window, SETTINGS.window_size)
    inputs = [value.requires_grad_() for value in (points, normals, spacing)]
    splats = rd._Splat.apply(*inputs, valid, cameras, SETTINGS)
    assert (splats[-1] == 0).any() and (splats[-1] > 0.5).any()  # culled and seen surfels
    # Capped and uncapped discs: the covariance (the conic's inverse) less the filter has its
    # largest eigenvalue at max_radius^2 for the capped ones.
    p, q, r = splats[3].detach().unbind(-1)
    a, b, c = r / (p * r - q * q), -q / (p * r - q * q), p / (p * r - q * q)
    filtered = SETTINGS.softness ** 2
    largest = (a + c) / 2 + (((a - c) / 2) ** 2 + b * b).sqrt() - filtered
    seen = valid & (splats[-1] > 0)
    assert torch.isclose(largest[seen], torch.tensor(SETTINGS.max_radius ** 2,
                                                     dtype=torch.float64)).any()
    assert (largest[seen] < 0.5 * SETTINGS.max_radius ** 2).any()
    assert torch.autograd.gradcheck(lambda *x: rd._Splat.apply(*x, valid, cameras, SETTINGS),
                                    inputs, eps=1e-6, atol=1e-6)


def test_rasterise_backward_matches_central_finite_differences():
    """The rasteriser's hand-written backward pass, for objects kept at full resolution and
    objects stretched from a lower one; depth is channel 0 of the blended values."""
    gen = torch.Generator().manual_seed(0)
    settings = rd.RenderSettings(window_size=8, footprint=5)
    batch = (2, 12)  # objects, surfels

    def uniform(*shape):
        return torch.rand(*batch, *shape, generator=gen, dtype=torch.float64)

    a, c, b = 1 + uniform(), 1 + uniform(), (uniform() - 0.5) / 2
    splats = {"centre": 9 * uniform(2) - 0.5,  # some splats reach past the window
              "conic": torch.stack([c, -b, a], -1) / (a * c - b * b).unsqueeze(-1),
              "opacity": 0.9 * uniform(),
              "values": torch.cat([5 + 0.3 * uniform(1), uniform(2)], -1)}
    inputs = [value.requires_grad_() for value in splats.values()]
    for scale in ([1.0, 1.0], [0.7, 0.55]):
        resolution = torch.tensor(scale, dtype=torch.float64)
        assert torch.autograd.gradcheck(
            lambda *x, resolution=resolution: rd._Rasterise.apply(*x, resolution, settings),
            inputs, eps=1e-6, atol=1e-5)


def test_a_culled_splat_in_front_neither_covers_nor_hides_the_splat_behind_it():
    """Back-facing surfels get opacity 0: they must not set the front depth either, or the
    visible surface behind them would be faded out as if hidden."""
    settings = rd.RenderSettings(window_size=8, footprint=5)
    centre = torch.tensor([[[4.0, 4.0], [4.0, 4.0]]], dtype=torch.float64)
    conic = torch.tensor([[[0.5, 0.0, 0.5]] * 2], dtype=torch.float64)
    values = torch.tensor([[[3.0, 0.2, 0.2], [5.0, 0.7, 0.7]]], dtype=torch.float64)
    resolution = torch.ones(1, dtype=torch.float64)
    culled = torch.tensor([[0.0, 0.9]], dtype=torch.float64)
    alone = torch.tensor([[0.9]], dtype=torch.float64)
    both = rd._Rasterise.apply(centre, conic, culled, values, resolution, settings)
    single = rd._Rasterise.apply(centre[:, 1:], conic[:, 1:], alone, values[:, 1:],
                                 resolution, settings)
    for rendered, expected in zip(both, single, strict=True):
        assert torch.allclose(rendered, expected)
    assert both[0][0, 4, 4] > 0.5  # the splat behind is drawn, at its own depth
    assert torch.isclose(both[1][0, 4, 4, 0], torch.tensor(5.0, dtype=torch.float64))


def test_silhouette_and_depth_descent_recovers_a_pose_half_a_metre_and_15_degrees_off():
    shape = shapes.rounded_box_sdf
    latent = torch.tensor([[0.5, 0.5, 0.5, 0.1]], dtype=torch.float64)
    size = torch.tensor([[4.0, 1.7, 1.5]], dtype=torch.float64)
    true_center = torch.tensor([[1.0, 1.5, 12.0]], dtype=torch.float64)
    true_yaw = torch.tensor([0.5], dtype=torch.float64)
    target, window, surfels = _render(shape, latent, true_center, true_yaw, size)
    target_silhouette, target_depth = target.silhouette.detach(), target.depth.detach()

    center = (true_center + torch.tensor([[0.3, 0.0, 0.4]], dtype=torch.float64)).requires_grad_()
    yaw = (true_yaw + math.radians(15)).requires_grad_()
    optimizer = torch.optim.Adam([{"params": [center], "lr": 0.03}, {"params": [yaw], "lr": 0.02}])
    for _ in range(150):
        optimizer.zero_grad()
        rendered, _, _ = _render(shape, latent, center, yaw, size, window, surfels)
        both = (rendered.silhouette > 0.5) & (target_silhouette > 0.5)
        depth_error = torch.where(both, rendered.depth - target_depth, 0.0)
        loss = (rendered.silhouette - target_silhouette).pow(2).mean() + depth_error.abs().mean()
        loss.backward()
        optimizer.step()
    assert float((center - true_center).detach().norm()) < 0.05
    assert abs(math.degrees(float((yaw - true_yaw).detach()))) < 2.0


def test_an_object_renders_the_same_alone_and_in_a_batch():
    """One batched pass over all objects: no object's images depend on the others'."""
    latent = torch.tensor([[0.5]] * 4, dtype=torch.float64)
    size = torch.full((4, 3), 2.0, dtype=torch.float64)
    points, valid = sf.extract_surface_points(shapes.sphere_sdf, latent, size)
    projected = sf.project_to_surface(shapes.sphere_sdf, latent, points, valid)
    centers = torch.tensor([[x, 1.0, 10.0 + 9 * x] for x in range(4)], dtype=torch.float64)
    rotation = g.yaw_to_rotation(torch.zeros(4, dtype=torch.float64))
    cam_points, normals = sf.pose_surfels(projected, centers, rotation, size)
    box = g.projected_box2d(g.box_corners(centers, rotation, size), CAMERA)
    # Wide windows for two of them: fewer pixels per surfel, rendered at full resolution.
    window = torch.cat([rd.detection_windows(box[:2], 0.1), rd.detection_windows(box[2:], 1.0)])
    spacing = sf.surfel_spacing(size, points.shape[1])
    args = (cam_points, normals, projected.points, projected.valid, spacing,
            CAMERA.expand(4, -1, -1), window)
    cameras = rd.WindowCameras.of(CAMERA.expand(4, -1, -1), window, SETTINGS.window_size)
    _, depth = g.project_points(cam_points, cameras.matrix)
    resolution = rd.render_resolution(depth, projected.valid, spacing, cameras, SETTINGS)
    assert resolution.min() < 1 and resolution.max() == 1  # both paths of the stretch
    whole = rd.render(*args, SETTINGS)
    for i in range(4):
        alone = rd.render(*(a[i:i + 1] for a in args), SETTINGS)
        for name in ("silhouette", "depth", "nocs", "normals"):
            torch.testing.assert_close(getattr(alone, name)[0], getattr(whole, name)[i])


KITTI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kitti_dev"


@pytest.mark.skipif(not KITTI.is_dir(), reason="../shared/data/kitti_dev is not there")
def test_learned_prior_at_labelled_kitti_poses_covers_the_2d_boxes(tmp_path):
    prior = load_prior()
    frame = "000003"  # one unoccluded, untruncated car 13 m ahead
    calib = read_calib(KITTI / "calib" / f"{frame}.txt")
    cars = [label for label in read_labels(KITTI / "label_2" / f"{frame}.txt")
            if label.category == "Car" and label.occlusion == 0 and label.truncation == 0]
    latents = prior.latent_mean[None].expand(len(cars), -1).numpy()
    rendered = render_labels(prior, latents, cars, calib.P2)
    for car, silhouette, window in zip(cars, rendered.silhouette, rendered.window, strict=True):
        covered = silhouette > 0.5
        rows, columns = covered.any(1).nonzero()[:, 0], covered.any(0).nonzero()[:, 0]
        scale = float(window[2] - window[0]) / SETTINGS.window_size
        box = torch.stack([columns.min(), rows.min(), columns.max() + 1, rows.max() + 1])
        box = (box * scale + window[[0, 1, 0, 1]]).double()[None]
        iou = float(box_iou_2d(box, torch.as_tensor(car.box2d)[None])[0])
        assert iou >= 0.7, (iou, box, car.box2d)
    image = read_image(KITTI / "image_2" / f"{frame}.png")
    overlay = paint_silhouettes(image, rendered.silhouette.numpy(), rendered.window.numpy(),
                                [(0, 255, 0)] * len(cars))
    save_png(tmp_path / "overlay.png", Image.fromarray(overlay))
    assert (overlay != image).any()


def test_a_car_seen_from_behind_renders_without_holes():
    """A car's back fills the window with one small face: too few surfels for 64 x 64, so it
    is rendered at a lower resolution and stretched; its interior must be covered."""
    prior = load_prior()
    latent = prior.latent_mean[None].double()
    size = torch.tensor([[5.2, 1.8, 1.8]], dtype=torch.float64)
    center = torch.tensor([[-0.5, 0.75, 25.0]], dtype=torch.float64)
    yaw = torch.tensor([math.pi / 2], dtype=torch.float64)  # heading away from the camera
    rendered, _, _ = _render(lambda z, x: prior.sdf(z.float(), x.float()).double(), latent,
                             center, yaw, size)
    covered = rendered.silhouette[0] > 0.5
    rows, columns = covered.any(1).nonzero()[:, 0], covered.any(0).nonzero()[:, 0]
    inner = rendered.silhouette[0, rows.min() + 4: rows.max() - 3, columns.min() + 4:
                                columns.max() - 3]
    assert (inner > 0.5).double().mean() >= 0.98


def test_rendering_at_half_resolution_and_stretching_matches_full_resolution(monkeypatch):
    radius, center = 1.0, torch.tensor([[0.5, 1.0, 30.0]], dtype=torch.float64)
    latent = torch.tensor([[0.5]], dtype=torch.float64)
    size = torch.full((1, 3), 2 * radius, dtype=torch.float64)
    yaw = torch.tensor([0.3], dtype=torch.float64)
    full, window, surfels = _render(shapes.sphere_sdf, latent, center, yaw, size)
    monkeypatch.setattr(rd, "render_resolution",
                        lambda *args: torch.full((1,), 0.5, dtype=torch.float64))
    half, _, _ = _render(shapes.sphere_sdf, latent, center, yaw, size, window, surfels)
    a, b = full.silhouette[0] > 0.5, half.silhouette[0] > 0.5
    assert float((a & b).sum() / (a | b).sum()) >= 0.9
    # The stretch must not shift the image: the centroids agree to a fraction of a pixel.
    shift = b.nonzero().double().mean(0) - a.nonzero().double().mean(0)
    assert float(shift.abs().max()) < 0.25, shift
    middle = SETTINGS.window_size // 2
    assert abs(float(half.depth[0, middle, middle] - full.depth[0, middle, middle])) < 0.01
    assert torch.allclose(half.nocs[0, middle, middle], full.nocs[0, middle, middle], atol=0.03)


def test_silhouette_loss_against_the_widened_mask_is_lowest_at_the_true_size():
    """The splats' soft edge reaches past the true outline of a car; the fitter compares it
    with the mask widened by a ring at ``FitConfig.silhouette_halo`` coverage, so that the
    loss does not pull cars smaller (docs/decisions.md). The exact mask is the decoded mean
    car's mesh ray-cast through the window's pixel centres."""
    prior = load_prior()
    latent = prior.latent_mean[None].double()
    mesh = extract_meshes(prior.decoder, prior.latent_mean[None], resolution=65)[0]
    size = torch.tensor([[4.5, 1.8, 1.55]], dtype=torch.float64)

    def sdf(z, x):
        return prior.sdf(z.float(), x.float()).double()

    scales = [0.97, 0.985, 1.0, 1.015, 1.03]
    widened, plain = np.zeros(len(scales)), np.zeros(len(scales))
    for center, yaw in (((2.0, 0.9, 14.0), 1.2), ((-3.0, 0.9, 28.0), 2.5),
                        ((1.0, 0.9, 20.0), -1.57), ((4.0, 0.9, 35.0), 0.4)):
        center = torch.tensor([center], dtype=torch.float64)
        yaw = torch.tensor([yaw], dtype=torch.float64)
        rotation = g.yaw_to_rotation(yaw)[0]
        _, window, surfels = _render(sdf, latent, center, yaw, size)
        vertices = (np.asarray(mesh.vertices) * size.numpy()) @ rotation.numpy().T
        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(o3d.core.Tensor((vertices + center.numpy()).astype(np.float32)),
                            o3d.core.Tensor(np.asarray(mesh.faces).astype(np.uint32)))
        rays = _window_pixel_rays(window).reshape(-1, 3).numpy()
        cast = scene.cast_rays(o3d.core.Tensor(
            np.concatenate([np.zeros_like(rays), rays], 1).astype(np.float32)))
        exact = torch.as_tensor(np.isfinite(cast["t_hit"].numpy()).reshape(1, 64, 64),
                                dtype=torch.float64)
        for k, scale in enumerate(scales):
            rendered, _, _ = _render(sdf, latent, center, yaw, size * scale, window, surfels)
            for total, halo in ((widened, FitConfig().silhouette_halo), (plain, 0.0)):
                total[k] += float(losses.silhouette_loss(rendered.silhouette,
                                                         losses.widen_mask(exact, halo)))
    print("silhouette loss by scale, widened:", widened, "plain:", plain)
    assert abs(scales[int(np.argmin(widened))] - 1.0) <= 0.015
    assert scales[int(np.argmin(plain))] < 0.985
