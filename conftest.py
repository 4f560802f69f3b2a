"""Doctests see ``torch`` and ``np`` without importing them in every example; tests run torch
on one thread (on a busy 2-core machine two threads spin and run many times slower)."""

import numpy as np
import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace):
    doctest_namespace["torch"] = torch
    doctest_namespace["np"] = np
