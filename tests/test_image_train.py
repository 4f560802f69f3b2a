"""Training the image model: the loss falls, mirroring is consistent, resuming is exact, the
weights file round-trips and foreign files are refused."""

import dataclasses

import numpy as np
import pytest
import torch

from autolabel.errors import InputError
from autolabel.image import train as train_module
from autolabel.image.cars import build_pool
from autolabel.image.generate import CropConfig, generate_crop
from autolabel.image.network import ImageModel, ImageModelConfig, to_input
from autolabel.image.train import (
    ImageTrainConfig,
    batch_tensors,
    export_image_model,
    jitter_colours,
    load_image_model,
    losses,
    mirror,
    total_loss,
    train_image_model,
)

SMALL = ImageModelConfig(size=32, widths=(8, 16, 16), decoder_widths=(16, 8), hidden=16,
                         bins=8)
FAST = ImageTrainConfig(steps=60, batch=16, lr=3e-3, warmup=5, mirror=False,
                        checkpoint_every=10, validate_every=10)


@pytest.fixture(scope="module")
def crops():
    """16 crops of 32 px, stacked as a shard's fields."""
    pool = build_pool(range(3))
    rng = np.random.default_rng(0)
    made = [generate_crop(rng, pool, CropConfig(size=32)) for _ in range(16)]
    data = {name: np.stack([np.asarray(getattr(c, name)) for c in made])
            for name in made[0]._fields}
    data["nocs"] = np.round(data["nocs"] * 255).astype(np.uint8)
    return data


def _loss(model, data) -> float:
    batch = batch_tensors(data, np.arange(len(data["alpha"])))
    with torch.no_grad():
        return float(total_loss(losses(model(to_input(batch["image"])), batch), FAST))


def test_a_few_training_steps_lower_the_loss(crops):
    torch.manual_seed(FAST.seed)
    before = _loss(ImageModel(SMALL).train(), crops)
    trained = train_image_model(crops, FAST, SMALL, show_progress=False)
    after = _loss(trained.model.train(), crops)
    assert after < 0.7 * before
    assert [entry["step"] for entry in trained.history] == [10, 20, 30, 40, 50, 60]


def test_mirroring_twice_is_the_identity_and_flips_nocs_y_on_the_mask(crops):
    batch = batch_tensors(crops, np.arange(4))
    which = torch.tensor([True, False, True, True])
    once = mirror(batch, which)
    twice = mirror(once, which)
    for name in batch:
        torch.testing.assert_close(twice[name], batch[name])
    mask = once["mask"][0]
    torch.testing.assert_close(once["nocs"][0][..., 1][mask],
                               1.0 - batch["nocs"][0].flip(1)[..., 1][mask])
    assert torch.equal(once["image"][1], batch["image"][1])


def test_colour_jitter_stays_in_range_keeps_black_black_and_follows_the_generator():
    images = torch.rand(6, 3, 16, 16)
    images[:, :, :4] = 0.0  # outside the image
    first = jitter_colours(images, torch.Generator().manual_seed(5))
    again = jitter_colours(images, torch.Generator().manual_seed(5))
    assert torch.equal(first, again) and first.min() >= 0 and first.max() <= 1
    assert (first[:, :, :4] == 0).all() and not torch.equal(first, images)


def test_an_interrupted_and_resumed_run_ends_where_an_uninterrupted_one_does(
        crops, tmp_path, monkeypatch):
    config = dataclasses.replace(FAST, steps=20)
    whole = train_image_model(crops, config, SMALL, show_progress=False)
    save = train_module._save_checkpoint

    def save_then_stop(*args):
        save(*args)
        raise KeyboardInterrupt

    checkpoint = tmp_path / "run.ckpt"
    monkeypatch.setattr(train_module, "_save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train_image_model(crops, config, SMALL, checkpoint=checkpoint, show_progress=False)
    monkeypatch.setattr(train_module, "_save_checkpoint", save)
    resumed = train_image_model(crops, config, SMALL, checkpoint=checkpoint,
                                show_progress=False)
    for key, value in whole.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value)
    assert resumed.steps_done == 20 and resumed.history == whole.history


def test_a_checkpoint_of_other_settings_is_refused(crops, tmp_path):
    checkpoint = tmp_path / "run.ckpt"
    train_image_model(crops, dataclasses.replace(FAST, steps=10), SMALL,
                      checkpoint=checkpoint, show_progress=False)
    with pytest.raises(InputError, match=r"settings \['lr'\] differ"):
        train_image_model(crops, dataclasses.replace(FAST, steps=20, lr=1e-3), SMALL,
                          checkpoint=checkpoint, show_progress=False)


def test_weights_file_round_trips_and_foreign_files_are_refused(crops, tmp_path):
    checkpoint = tmp_path / "run.ckpt"
    trained = train_image_model(crops, dataclasses.replace(FAST, steps=10), SMALL,
                                checkpoint=checkpoint, show_progress=False)
    path = tmp_path / "model.pt"
    export_image_model(trained, path, {"count": 16})
    model, metadata = load_image_model(path)
    assert model.config == SMALL and metadata["data"] == {"count": 16}
    image = to_input(torch.from_numpy(crops["image"][:2]))
    torch.testing.assert_close(model(image).bin_logits, trained.model.eval()(image).bin_logits)
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="not an image model"):
        load_image_model(tmp_path / "other.pt")
    with pytest.raises(InputError, match=r"run\.ckpt: a training checkpoint, not an image "
                       r"model: give the file that 'autolabel image-model train' writes"):
        load_image_model(checkpoint)
    with pytest.raises(InputError, match="not found"):
        load_image_model(tmp_path / "missing.pt")
