import torch

from autolabel import losses


def test_silhouette_loss_is_one_minus_iou_of_two_half_overlapping_squares():
    a = torch.zeros(1, 4, 4)
    b = torch.zeros(1, 4, 4)
    a[:, :, :2] = 1
    b[:, :, 1:3] = 1
    assert torch.isclose(losses.silhouette_loss(a, b), torch.tensor([1 - 4 / 12]))


def test_point_sdf_loss_is_quadratic_near_zero_linear_far_and_ignores_padding():
    distance = torch.tensor([[0.05, 5.0], [1.0, 0.0]])
    valid = torch.tensor([[True, False], [True, True]])
    value = losses.point_sdf_loss(distance, valid, huber=0.1)
    assert torch.allclose(value, torch.tensor([0.05**2 / 2 / 0.1, (1.0 - 0.05) / 2]))


def test_free_space_penalises_only_surface_in_front_of_returns_up_to_the_cap():
    depth = torch.tensor([[[10.0, 10.0, 10.0, 10.0]]])
    silhouette = torch.ones(1, 1, 4)
    observed = torch.tensor([[[10.05, 10.3, 30.0, 0.0]]])  # noise, 0.2 m, far, no return
    value = losses.free_space_loss(depth, silhouette, observed, margin=0.1, cap=0.5)
    assert torch.isclose(value, torch.tensor([(0.0 + 0.2 + 0.5) / 3]))


def test_box_loss_at_a_free_edge_counts_only_a_shape_short_of_it():
    box = torch.tensor([[20.0, 0.0, 100.0, 50.0]])
    free = torch.tensor([[True, False, False, False]])  # cut on the left
    past = torch.tensor([[0.0, 0.0, 100.0, 50.0]])  # reaches 20 px past the cut
    assert losses.box_loss(past, box, free).item() == 0.0
    assert losses.box_loss(past, box, torch.zeros_like(free)).item() > 0
    # Within the tolerance (huber, 0.05 of the longer side: 4 px) short of it: no error.
    assert losses.box_loss(torch.tensor([[23.0, 0.0, 100.0, 50.0]]), box, free).item() == 0.0
    # 10 px short of the cut: the error of a bound edge 10 - 4 px off, over 3 bound edges.
    short = torch.tensor([[30.0, 0.0, 100.0, 50.0]], requires_grad=True)
    value = losses.box_loss(short, box, free)
    assert torch.isclose(value, torch.tensor([(6 / 80 - 0.05 / 2) / 3]))
    value.sum().backward()
    assert short.grad[0, 0] > 0  # descending moves the edge out towards the cut


def test_ground_loss_is_zero_without_a_plane_and_grows_with_height():
    heights = torch.tensor([0.5, 0.5, 0.0])
    value = losses.ground_loss(heights, torch.tensor([False, True, True]), huber=0.1)
    assert value[0] == 0 and value[2] == 0 and torch.isclose(value[1], torch.tensor(0.45))


def test_size_prior_is_zero_at_the_mean_and_one_at_one_standard_deviation():
    mean, std = torch.log(torch.tensor([[4.0, 1.7, 1.5]])), torch.tensor([[0.1, 0.1, 0.1]])
    assert losses.size_prior_loss(mean, mean, std).item() == 0
    assert torch.isclose(losses.size_prior_loss(mean + 0.1, mean, std), torch.tensor([1.0]))


def test_nocs_loss_weights_by_coverage_and_validity():
    nocs = torch.zeros(1, 1, 2, 3)
    target = torch.ones(1, 1, 2, 3)
    valid = torch.tensor([[[True, False]]])
    value = losses.nocs_loss(nocs, torch.ones(1, 1, 2), target, valid)
    assert torch.isclose(value, torch.tensor([3.0]))


def test_points_inside_the_shape_count_with_their_weight():
    distance = torch.tensor([[-0.05, 0.05]])
    valid = torch.ones(1, 2, dtype=torch.bool)
    full = losses.point_sdf_loss(distance, valid)
    third = losses.point_sdf_loss(distance, valid, inside_weight=0.3)
    # Each point alone costs 0.0125 m (0.05^2 / (2 * 0.1)); the inside one counts 0.3 times.
    assert torch.allclose(full, torch.tensor([0.0125]))
    assert torch.allclose(third, torch.tensor([(0.3 * 0.0125 + 0.0125) / 2]))


def _footprint_overlap(parameters: torch.Tensor, obstacles: torch.Tensor) -> torch.Tensor:
    from autolabel.geometry import yaw_to_rotation

    x, z, yaw, length, width = parameters
    center = torch.stack([x, torch.zeros_like(x), z])[None]
    size = torch.stack([length, width, torch.ones_like(x)])[None]
    return losses.footprint_overlap_loss(center, yaw_to_rotation(yaw[None]), size, obstacles,
                                         torch.ones(1, obstacles.shape[1], dtype=torch.bool))


def test_footprint_overlap_gradient_matches_finite_differences_and_pushes_apart():
    obstacles = torch.tensor([[[0.0, 12.0, 4.0, 1.8, 0.3], [3.5, 9.0, 4.2, 1.7, -0.2]]],
                             dtype=torch.float64)
    parameters = torch.tensor([1.2, 10.5, 0.1, 4.0, 1.7], dtype=torch.float64,
                              requires_grad=True)
    assert torch.autograd.gradcheck(lambda p: _footprint_overlap(p, obstacles), (parameters,))
    before = _footprint_overlap(parameters, obstacles)
    (gradient,) = torch.autograd.grad(before.sum(), parameters)
    after = _footprint_overlap(parameters.detach() - 0.05 * gradient, obstacles)
    assert before.item() > 0.05 and after.item() < before.item()
    apart = torch.tensor([8.0, 30.0, 0.1, 4.0, 1.7], dtype=torch.float64)
    assert _footprint_overlap(apart, obstacles).item() == 0.0


def test_free_ray_loss_counts_samples_well_inside_and_pushes_the_surface_back():
    valid = torch.tensor([[True, True, True, True, False]])
    # Outside, just inside (within the tolerance), 0.2 m inside, 1 m inside, padding.
    distance = torch.tensor([[0.3, -0.02, -0.2, -1.0, -5.0]], requires_grad=True)
    value = losses.free_ray_loss(distance, valid)
    counted = torch.sigmoid(-(torch.tensor([0.3, -0.02, -0.2, -1.0]) + 0.05) / 0.02)
    assert torch.allclose(value, counted.mean().unsqueeze(0))
    assert counted[0] < 1e-6 and counted[1] < 0.2 and counted[2] > 0.99  # a count, not a depth
    value.sum().backward()
    # Less swallowed (a larger distance) lowers it; padding has no say.
    assert distance.grad[0, 1] < 0 and distance.grad[0, 4] == 0
    assert losses.free_ray_loss(torch.zeros(1, 3), torch.zeros(1, 3, dtype=torch.bool)) == 0
