import pytest
import torch

from shape_priors.decoder import SdfDecoder, clamped_l1


def test_decoder_maps_codes_and_points_to_one_distance_per_point_in_tanh_range():
    torch.manual_seed(0)
    decoder = SdfDecoder(latent_size=8, widths=(32, 32, 32, 32), reinject=(2,))
    sdf = decoder(torch.randn(3, 8), torch.randn(3, 50, 3) * 10)
    assert sdf.shape == (3, 50)
    assert sdf.abs().max() < 1.0


def test_reinjected_layer_sees_the_input_again():
    decoder = SdfDecoder(latent_size=8, widths=(32, 32, 32, 32), reinject=(2,))
    fan_in = [layer.in_features for layer in decoder.layers]
    assert fan_in == [11, 32, 32 + 11, 32]


def test_reinjection_outside_the_hidden_layers_is_rejected():
    with pytest.raises(ValueError, match="reinject"):
        SdfDecoder(latent_size=8, widths=(32, 32), reinject=(2,))


def test_weight_norm_decoder_gives_the_same_shapes_and_passes_gradients_to_inputs():
    decoder = SdfDecoder(latent_size=4, widths=(16, 16), reinject=(1,), weight_norm=True)
    latent = torch.zeros(2, 4, requires_grad=True)
    xyz = torch.rand(2, 7, 3, requires_grad=True)
    decoder(latent, xyz).sum().backward()
    assert latent.grad.abs().sum() > 0 and xyz.grad.shape == (2, 7, 3)


def test_dropout_is_active_in_training_and_off_in_evaluation():
    torch.manual_seed(0)
    decoder = SdfDecoder(latent_size=4, widths=(64, 64), reinject=(1,), dropout=0.5)
    latent, xyz = torch.randn(1, 4), torch.randn(1, 20, 3)
    assert not torch.equal(decoder(latent, xyz), decoder(latent, xyz))
    decoder.eval()
    assert torch.equal(decoder(latent, xyz), decoder(latent, xyz))


def test_decoder_config_rebuilds_an_identical_architecture():
    decoder = SdfDecoder(latent_size=6, widths=(24, 24, 24), reinject=(1,), tanh_output=False)
    clone = SdfDecoder(**decoder.config)
    clone.load_state_dict(decoder.state_dict())
    latent, xyz = torch.randn(2, 6), torch.randn(2, 9, 3)
    assert torch.equal(clone(latent, xyz), decoder(latent, xyz))


def test_clamped_l1_ignores_errors_beyond_delta_on_the_same_side():
    predicted = torch.tensor([0.5, -0.3, 0.05, 0.2])
    target = torch.tensor([0.2, -0.9, 0.0, -0.2])
    assert clamped_l1(predicted, target, delta=0.1).tolist() == pytest.approx(
        [0.0, 0.0, 0.05, 0.2])


def test_a_code_per_point_gives_the_same_distances_as_a_code_per_shape_and_its_derivative():
    torch.manual_seed(1)
    decoder = SdfDecoder(latent_size=4, widths=(16, 16, 16), reinject=(1,)).double()
    latent = torch.randn(2, 4, dtype=torch.float64)
    xyz = torch.rand(2, 5, 3, dtype=torch.float64) - 0.5
    per_point = latent.unsqueeze(1).expand(-1, 5, -1).clone().requires_grad_(True)
    values = decoder(per_point, xyz)
    torch.testing.assert_close(values, decoder(latent, xyz))
    (derivative,) = torch.autograd.grad(values[1, 3], per_point)
    shape_code = latent.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(decoder(shape_code, xyz)[1, 3], shape_code)
    torch.testing.assert_close(derivative[1, 3], expected[1])
    assert derivative[0].abs().max() == 0 and derivative[1, :3].abs().max() == 0
