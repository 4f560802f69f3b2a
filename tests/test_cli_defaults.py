"""The command line spells out some library defaults (so that it checks arguments before torch
loads): they must stay the library's."""

from autolabel import evaluate
from autolabel.fit import FitConfig
from cli import eval as eval_cli
from cli import fit as fit_cli
from cli import prior as prior_cli
from shape_priors.sdf_samples import SdfSampling
from shape_priors.train import PriorTrainConfig


def test_fit_iterations_default_is_the_fitters():
    assert fit_cli.DEFAULT_ITERATIONS == FitConfig().iterations


def test_fit_box_extents_are_the_fitters():
    from autolabel.fit import BOX_EXTENTS

    assert fit_cli.BOX_EXTENTS == BOX_EXTENTS


def test_fit_image_and_camera_defaults_are_the_pipelines():
    from autolabel.fit import LossWeights
    from autolabel.image.evidence import ImageEvidenceConfig
    from autolabel.init import InitConfig

    assert fit_cli.DEFAULT_VIEWPOINT_WEIGHT == ImageEvidenceConfig().viewpoint_weight
    assert fit_cli.DEFAULT_NOCS_WEIGHT == LossWeights().nocs and ImageEvidenceConfig().nocs
    assert fit_cli.DEFAULT_CAMERA_HEIGHT == InitConfig().camera_height
    assert not ImageEvidenceConfig.off().enabled


def test_eval_recall_positions_are_the_evaluators():
    assert eval_cli.RECALL_POSITIONS == evaluate.RECALL_POSITIONS


def test_prior_training_defaults_are_the_training_configs():
    config = PriorTrainConfig()
    assert prior_cli.DEFAULT_EPOCHS == config.epochs
    assert prior_cli.DEFAULT_LATENT_SIZE == config.latent_size
    assert (prior_cli.DEFAULT_WIDTH,) * prior_cli.DEFAULT_LAYERS == config.widths
    assert prior_cli.DEFAULT_SAMPLES == SdfSampling().count


def test_default_batch_is_small_on_a_cpu_large_on_a_gpu_and_a_given_one_is_kept():
    import dataclasses

    from cli.fit import FitJob
    from cli.fit_run import CPU_BATCH_OBJECTS, GPU_BATCH_OBJECTS, with_batch_default

    assert CPU_BATCH_OBJECTS < GPU_BATCH_OBJECTS
    fields = {field.name: None for field in dataclasses.fields(FitJob)}
    job = FitJob(**{**fields, "batch_objects": 0})
    assert with_batch_default(job, gpu=False).batch_objects == CPU_BATCH_OBJECTS
    assert with_batch_default(job, gpu=True).batch_objects == GPU_BATCH_OBJECTS
    given = dataclasses.replace(job, batch_objects=5)
    assert with_batch_default(given, gpu=True).batch_objects == 5


def test_image_model_defaults_are_the_librarys():
    from autolabel.image.generate import CropConfig
    from autolabel.image.network import ImageModelConfig
    from autolabel.image.shards import DatasetSpec
    from autolabel.image.train import ImageTrainConfig
    from autolabel.render import RenderSettings
    from cli import image_model as image_cli

    train = ImageTrainConfig()
    assert image_cli.DEFAULT_CARS == DatasetSpec(count=1).cars
    assert image_cli.DEFAULT_SIZE == CropConfig().size == ImageModelConfig().size
    assert (image_cli.DEFAULT_STEPS, image_cli.DEFAULT_BATCH, image_cli.DEFAULT_LR) == (
        train.steps, train.batch, train.lr)
    # The crop is the fitter's render window, so predictions line up with its renders.
    assert CropConfig().margin == RenderSettings().window_margin


def test_fit_options_reach_the_pipeline_config():
    import dataclasses

    from autolabel.image.evidence import ImageEvidenceConfig
    from cli.fit import FitJob
    from cli.fit_batch import pipeline_config

    fields = {field.name: None for field in dataclasses.fields(FitJob)}
    job = FitJob(**{**fields, "iterations": 7, "class_sizes": {}, "batch_objects": 8,
                    "compile": True, "accept_weak": True, "camera_height": 1.4,
                    "image_model": "weights.pt", "viewpoint_weight": 0.2,
                    "nocs_weight": 0.3, "box_extent": "box"})
    config = pipeline_config(job, "cpu")
    assert (config.fit.iterations, config.fit.compile, config.verify.accept_weak,
            config.init.camera_height, config.fit.box_extent) == (7, True, True, 1.4, "box")
    assert (config.image.model, config.image.viewpoint_weight) == ("weights.pt", 0.2)
    assert (config.image.nocs, config.fit.weights.nocs) == (True, 0.3)
    assert not pipeline_config(dataclasses.replace(job, nocs_weight=0.0), "cpu").image.nocs
    off = pipeline_config(dataclasses.replace(job, image_model="none"), "cpu")
    assert off.image == ImageEvidenceConfig.off()
