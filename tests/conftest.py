"""Fixtures shared by test files: a local Ray cluster of two CPUs for the whole session."""

from __future__ import annotations

import logging

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
