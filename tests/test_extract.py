import numpy as np
import pytest
import torch

from shape_priors.decoder import SdfDecoder
from shape_priors.extract import decode_grid, extract_meshes


def octahedron_decoder(radius: float) -> SdfDecoder:
    """A decoder whose SDF is ``|x| + |y| + |z| - radius`` whatever the code (2 dims)."""
    decoder = SdfDecoder(latent_size=2, widths=(6, 6), reinject=(1,), tanh_output=False)
    with torch.no_grad():
        for parameter in decoder.parameters():
            parameter.zero_()
        first, second = decoder.layers
        for axis in range(3):  # relu(x) and relu(-x) per axis, then passed through
            first.weight[2 * axis, 2 + axis] = 1.0
            first.weight[2 * axis + 1, 2 + axis] = -1.0
        second.weight[:, :6] = torch.eye(6)
        decoder.output.weight.fill_(1.0)
        decoder.output.bias.fill_(-radius)
    return decoder.eval()


def test_octahedron_sdf_extracts_to_a_closed_mesh_of_the_right_extent():
    mesh = extract_meshes(octahedron_decoder(0.3), torch.zeros(1, 2), resolution=49)[0]
    assert mesh.is_watertight
    np.testing.assert_allclose(mesh.bounds, [[-0.3] * 3, [0.3] * 3], atol=0.01)
    assert mesh.volume == pytest.approx(4.0 / 3.0 * 0.3**3, rel=0.05)  # positive: outward


def test_meshes_are_scaled_per_axis_by_the_given_size():
    sizes = np.array([[4.0, 2.0, 1.5]])
    mesh = extract_meshes(octahedron_decoder(0.5), torch.zeros(1, 2), resolution=33,
                          sizes=sizes, stride=1)[0]
    np.testing.assert_allclose(mesh.extents, [4.0, 2.0, 1.5], rtol=0.02)


def test_coarse_to_fine_grid_equals_the_dense_grid_near_the_surface():
    torch.manual_seed(0)
    decoder = octahedron_decoder(0.3)
    with torch.no_grad():  # a distorted octahedron that depends on the code
        decoder.layers[0].weight.add_(0.1 * torch.randn_like(decoder.layers[0].weight))
    latents = torch.randn(2, 2)
    dense = decode_grid(decoder, latents, resolution=33, stride=1)
    sparse = decode_grid(decoder, latents, resolution=33, stride=4)
    near = sparse.abs() < 0.1
    assert near.any()
    assert torch.allclose(sparse[near], dense[near], atol=1e-6)
    assert torch.equal(sparse < 0, dense < 0)


def test_grid_that_the_stride_does_not_divide_is_decoded_densely():
    decoder, latents = octahedron_decoder(0.3), torch.zeros(1, 2)
    assert torch.equal(decode_grid(decoder, latents, resolution=34, stride=4),
                       decode_grid(decoder, latents, resolution=34, stride=1))


def test_constant_sdf_without_surface_raises():
    with pytest.raises(ValueError, match="no zero crossing"):
        extract_meshes(octahedron_decoder(-0.5), torch.zeros(1, 2), resolution=17)
