import dataclasses

import numpy as np
import pytest
import torch
import trimesh

from autolabel.errors import InputError
from autolabel.prior import DEFAULT_PRIOR, load_prior
from shape_priors.sdf_samples import SdfSampling, sample_sdf
from shape_priors.train import PRIOR_FORMAT, PriorTrainConfig, export_prior, train_prior

SAMPLING = SdfSampling(count=2000)
CONFIG = PriorTrainConfig(latent_size=3, widths=(24, 24), reinject=(1,), epochs=15,
                          shapes_per_batch=4, points_per_shape=512, device="cpu")


@pytest.fixture(scope="module")
def trained_file(tmp_path_factory):
    meshes = [trimesh.creation.box(extents=(4.0 + i * 0.3, 1.8, 1.5)) for i in range(3)]
    meshes.append(trimesh.creation.capsule(height=3.0, radius=0.8))
    samples = [sample_sdf(mesh, SAMPLING) for mesh in meshes]
    trained = train_prior(samples, CONFIG, show_progress=False)
    path = tmp_path_factory.mktemp("prior") / "tiny.pt"
    export_prior(trained, samples, [f"shape_{i}" for i in range(4)], SAMPLING, path)
    return trained, samples, path


def test_export_and_load_round_trip_bit_exactly(trained_file):
    trained, samples, path = trained_file
    prior = load_prior(path)
    saved = trained.decoder.state_dict()
    for name, tensor in prior.decoder.state_dict().items():
        assert torch.equal(tensor, saved[name]), name
    assert torch.equal(prior.train_latents, trained.latents)
    xyz = torch.rand(4, 100, 3) - 0.5
    assert torch.equal(prior.sdf(trained.latents, xyz), trained.decoder(trained.latents, xyz))


def test_loaded_prior_carries_statistics_sizes_frame_and_normalisation(trained_file):
    trained, samples, path = trained_file
    prior = load_prior(path)
    np.testing.assert_allclose(prior.latent_mean, trained.latents.mean(0), atol=1e-6)
    assert prior.latent_cov.shape == (3, 3) and prior.latent_size == 3
    np.testing.assert_allclose(prior.train_sizes[3], samples[3].extent, rtol=1e-6)
    assert prior.metadata["object_frame"].startswith("x forward, y left, z up")
    assert "[-0.5, 0.5]^3" in prior.metadata["normalisation"]["description"]
    assert prior.metadata["shape_names"] == ["shape_0", "shape_1", "shape_2", "shape_3"]
    assert prior.metadata["training"]["epochs_done"] == 15


def test_mahalanobis_is_zero_at_the_mean_and_grows_with_the_precision(trained_file):
    prior = load_prior(trained_file[2])
    step = torch.zeros(1, 3)
    step[0, 0] = 0.1
    latent = prior.latent_mean[None] + step
    expected = 0.01 * prior.latent_precision[0, 0]
    assert prior.mahalanobis(prior.latent_mean[None]).item() == pytest.approx(0.0, abs=1e-9)
    assert prior.mahalanobis(latent).item() == pytest.approx(expected.item(), rel=1e-5)


def test_sampled_latents_repeat_for_a_seed_and_follow_the_covariance(trained_file):
    prior = load_prior(trained_file[2])
    first, again = prior.sample_latents(4000, seed=3), prior.sample_latents(4000, seed=3)
    assert torch.equal(first, again)
    np.testing.assert_allclose(torch.cov(first.T), prior.latent_cov,
                               atol=0.1 * prior.latent_cov.diagonal().max().item())


def test_inferred_latent_explains_samples_better_than_the_mean(trained_file):
    _, samples, path = trained_file
    prior = load_prior(path)
    xyz = torch.from_numpy(samples[3].points[None])
    sdf = torch.from_numpy(samples[3].sdf[None])
    latent = prior.infer_latents(xyz, sdf, iterations=30)

    def error(code):
        return (prior.sdf(code, xyz) - sdf).abs().clamp(max=0.1).mean().item()

    assert error(latent) < error(prior.latent_mean[None])


def test_missing_prior_file_is_reported_with_its_name(tmp_path):
    with pytest.raises(InputError, match=r"nothere\.pt: shape prior file not found"):
        load_prior(tmp_path / "nothere.pt")


def test_truncated_prior_file_is_rejected_with_its_name(trained_file, tmp_path):
    truncated = tmp_path / "cut.pt"
    truncated.write_bytes(trained_file[2].read_bytes()[:3000])
    with pytest.raises(InputError, match=r"cut\.pt: not a readable shape prior"):
        load_prior(truncated)


def test_foreign_files_are_rejected_with_their_names(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(InputError, match=r"notes\.pt: not a readable shape prior"):
        load_prior(text)
    other = tmp_path / "model.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, other)
    with pytest.raises(InputError, match=rf"model\.pt: not a shape prior.*'{PRIOR_FORMAT}'"):
        load_prior(other)


def test_a_training_checkpoint_is_named_as_one(trained_file, tmp_path):
    _, samples, _ = trained_file
    checkpoint = tmp_path / "run.ckpt"
    train_prior(samples, dataclasses.replace(CONFIG, epochs=1, checkpoint_every=1),
                checkpoint=checkpoint, show_progress=False)
    with pytest.raises(InputError, match=r"run\.ckpt: a training checkpoint, not a shape "
                       r"prior: give the file that 'autolabel prior train' writes with --out"):
        load_prior(checkpoint)


def test_prior_of_another_version_or_incomplete_is_rejected(tmp_path):
    future = tmp_path / "future.pt"
    torch.save({"format": PRIOR_FORMAT, "version": 99}, future)
    with pytest.raises(InputError, match=r"future\.pt: field 'version': .*version 99"):
        load_prior(future)
    partial = tmp_path / "partial.pt"
    torch.save({"format": PRIOR_FORMAT, "version": 1}, partial)
    with pytest.raises(InputError, match=r"partial\.pt: field 'decoder_config': missing"):
        load_prior(partial)


@pytest.mark.skipif(not DEFAULT_PRIOR.exists(), reason="the shipped prior is not built yet")
def test_shipped_car_prior_loads_by_default_and_is_solid_at_the_centre():
    prior = load_prior()
    sdf = prior.sdf(prior.train_latents, torch.zeros(len(prior.train_latents), 1, 3))
    outside = prior.sdf(prior.train_latents, torch.full((len(prior.train_latents), 1, 3), 0.58))
    assert (sdf < 0).float().mean() > 0.95
    assert (outside > 0).all()
    assert prior.train_sizes[:, 0].min() >= 3.3 and prior.train_sizes[:, 0].max() <= 5.9
