"""Doctests see ``torch`` and ``np`` without importing them in every example."""

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace):
    doctest_namespace["torch"] = torch
    doctest_namespace["np"] = np
