"""The image model's network: output shapes and ranges, size, batched prediction."""

import pytest
import torch

from autolabel.image.network import ImageModel, ImageModelConfig, predict, to_input


def test_outputs_have_the_crop_size_and_one_score_and_residual_per_bin():
    model = ImageModel(ImageModelConfig(bins=12))
    output = model(torch.rand(2, 3, 64, 64))
    assert output.mask_logits.shape == (2, 64, 64)
    assert output.nocs.shape == (2, 64, 64, 3)
    assert output.bin_logits.shape == (2, 12) and output.residuals.shape == (2, 12)
    assert output.nocs.min() >= 0 and output.nocs.max() <= 1


def test_other_crop_sizes_work_when_divisible_and_are_refused_otherwise():
    model = ImageModel(ImageModelConfig(size=96))
    assert model(torch.rand(1, 3, 96, 96)).mask_logits.shape == (1, 96, 96)
    with pytest.raises(ValueError, match="multiple of 16"):
        ImageModelConfig(size=72)
    with pytest.raises(ValueError, match="decoder widths"):
        ImageModelConfig(widths=(8, 16), decoder_widths=(8, 8))


def test_default_weights_are_well_under_20_megabytes():
    parameters = sum(p.numel() for p in ImageModel().parameters())
    assert parameters * 4 < 20e6 / 4


def test_prediction_in_batches_is_the_eval_forward_and_keeps_the_mode():
    model = ImageModel().train()
    crops = torch.randint(0, 255, (5, 64, 64, 3), dtype=torch.uint8)
    batched = predict(model, crops, batch=2)
    assert model.training
    with torch.no_grad():
        whole = model.eval()(to_input(crops))
    torch.testing.assert_close(batched.mask_logits, whole.mask_logits)
    torch.testing.assert_close(batched.bin_logits, whole.bin_logits)
