"""Fixtures shared by test files: a local Ray cluster of two CPUs, and the small synthetic
scene (``tests.scenes.SMALL``) with its labels from one process, for the whole session."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray cluster (``ray.init(num_cpus=2)``), started once and shut down at the end;
    the test is skipped where Ray is not installed."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def small_scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four synthetic KITTI frames of one to three cars with LiDAR and detections.json."""
    from tests.scenes import SMALL, SMALL_FRAMES, SMALL_SEED, write_scene

    return write_scene(tmp_path_factory.mktemp("small_scene"), SMALL_SEED, len(SMALL_FRAMES),
                       SMALL)


@pytest.fixture(scope="session")
def labelled_in_one_process(small_scene: Path, tmp_path_factory: pytest.TempPathFactory
                            ) -> Path:
    """The output folder of `autolabel fit` (``tests.scenes.RENDER_OPTIONS``) on the small
    scene with every frame read, prepared and fitted in the command's process."""
    from tests.scenes import RENDER_OPTIONS, fit_scene

    out = tmp_path_factory.mktemp("labelled_in_one_process")
    result = fit_scene(small_scene, out, *RENDER_OPTIONS, "--workers", "0")
    assert result.exit_code == 0, result.output
    assert "worker process" not in result.output
    return out
