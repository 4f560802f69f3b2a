from dataclasses import replace

import numpy as np
import pytest
import torch
import trimesh

from autolabel.errors import InputError
from shape_priors.sdf_samples import SdfSampling, sample_sdf
from shape_priors.train import (
    PriorTrainConfig,
    latent_statistics,
    learning_rate,
    resolve_device,
    train_prior,
)

TINY = PriorTrainConfig(latent_size=4, widths=(32, 32, 32), reinject=(1,), epochs=40,
                        shapes_per_batch=2, points_per_shape=512, lr_decay_every=1000,
                        checkpoint_every=1, device="cpu")


@pytest.fixture(scope="module")
def shapes():
    meshes = [trimesh.creation.icosphere(subdivisions=3),
              trimesh.creation.box(extents=(2.0, 1.0, 1.0)),
              trimesh.creation.capsule(height=1.0, radius=0.3)]
    return [sample_sdf(mesh, SdfSampling(count=3000)) for mesh in meshes]


def test_tiny_training_run_lowers_the_loss_by_more_than_half(shapes):
    trained = train_prior(shapes, TINY, show_progress=False)
    assert trained.epochs_done == 40 and trained.latents.shape == (3, 4)
    assert trained.history[-1] < 0.5 * trained.history[0]
    assert not trained.decoder.training


def test_training_with_the_same_seed_is_reproducible(shapes):
    config = replace(TINY, epochs=3)
    first = train_prior(shapes, config, show_progress=False)
    again = train_prior(shapes, config, show_progress=False)
    assert first.history == again.history and torch.equal(first.latents, again.latents)


def test_resumed_training_continues_the_epoch_count_of_the_checkpoint(shapes, tmp_path):
    checkpoint = tmp_path / "run.ckpt"
    interrupted = train_prior(shapes, replace(TINY, epochs=2), checkpoint, show_progress=False)
    resumed = train_prior(shapes, replace(TINY, epochs=5), checkpoint, show_progress=False)
    assert resumed.epochs_done == 5
    assert resumed.history[:2] == interrupted.history
    assert len(torch.load(checkpoint, weights_only=True)["history"]) == 5


def test_resume_refuses_a_checkpoint_from_other_settings(shapes, tmp_path):
    checkpoint = tmp_path / "run.ckpt"
    train_prior(shapes, replace(TINY, epochs=1), checkpoint, show_progress=False)
    with pytest.raises(InputError, match=r"run.ckpt: checkpoint is from another training run "
                                         r"\(settings \['latent_size'\] differ\)"):
        train_prior(shapes, replace(TINY, epochs=2, latent_size=5), checkpoint,
                    show_progress=False)


def test_resume_refuses_a_checkpoint_of_other_training_shapes(shapes, tmp_path):
    checkpoint = tmp_path / "run.ckpt"
    train_prior(shapes[:2], replace(TINY, epochs=1), checkpoint, show_progress=False)
    with pytest.raises(InputError, match=r"\(the training shapes differ\)"):
        train_prior(shapes[1:], replace(TINY, epochs=2), checkpoint, show_progress=False)


def test_resume_reports_a_damaged_checkpoint_with_its_name(shapes, tmp_path):
    checkpoint = tmp_path / "broken.ckpt"
    checkpoint.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="broken.ckpt: cannot resume from this checkpoint"):
        train_prior(shapes, TINY, checkpoint, show_progress=False)


def test_learning_rate_halves_every_decay_interval():
    config = PriorTrainConfig(lr_decay=0.5, lr_decay_every=100)
    assert [learning_rate(1.0, epoch, config) for epoch in (0, 99, 100, 250)] == [
        1.0, 1.0, 0.5, 0.25]


def test_latent_statistics_match_numpy_mean_and_covariance():
    latents = torch.from_numpy(np.random.default_rng(0).normal(size=(50, 3))).float()
    mean, cov = latent_statistics(latents, ridge=0.0)
    np.testing.assert_allclose(mean, latents.numpy().mean(0), atol=1e-6)
    np.testing.assert_allclose(cov, np.cov(latents.numpy().T), atol=1e-5)


def test_auto_device_is_cuda_only_when_available():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu").type == "cpu"
