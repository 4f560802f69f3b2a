"""Crop folders: written shard by shard, read back whole, resumed, and never mixed."""

import dataclasses
import json

import numpy as np
import pytest

from autolabel.errors import InputError
from autolabel.image.cars import build_pool
from autolabel.image.generate import CropConfig
from autolabel.image.shards import DatasetSpec, read_dataset, shard_path, write_dataset

SPEC = DatasetSpec(count=5, seed=3, cars=2, shard_size=2, crop=CropConfig(size=32))


@pytest.fixture(scope="module")
def pool():
    return build_pool(range(2))


def test_a_folder_reads_back_every_crop_in_order(pool, tmp_path):
    write_dataset(tmp_path, SPEC, pool, None)
    spec, data = read_dataset(tmp_path)
    assert spec["count"] == 5 and spec["crop"]["size"] == 32
    assert data["image"].shape == (5, 32, 32, 3) and data["mask"].shape == (5, 32, 32)
    assert data["nocs"].dtype == np.uint8 and len(data["alpha"]) == 5
    assert json.loads((tmp_path / "dataset.json").read_text())["spec"] == SPEC.to_json()


def test_a_resumed_generation_keeps_the_finished_shards_and_makes_the_same_crops(pool,
                                                                                tmp_path):
    write_dataset(tmp_path / "whole", SPEC, pool, None)
    partial = tmp_path / "partial"
    write_dataset(partial, SPEC, pool, None)
    shard_path(partial, 2).unlink()
    kept = shard_path(partial, 0).stat().st_mtime_ns
    write_dataset(partial, SPEC, pool, None)
    assert shard_path(partial, 0).stat().st_mtime_ns == kept
    for name, value in read_dataset(tmp_path / "whole")[1].items():
        np.testing.assert_array_equal(read_dataset(partial)[1][name], value)


def test_a_folder_of_other_settings_or_missing_shards_is_refused(pool, tmp_path):
    write_dataset(tmp_path, SPEC, pool, None)
    with pytest.raises(InputError, match="other settings"):
        write_dataset(tmp_path, dataclasses.replace(SPEC, seed=4), pool, None)
    shard_path(tmp_path, 1).unlink()
    with pytest.raises(InputError, match="1 shards missing"):
        read_dataset(tmp_path)
    with pytest.raises(InputError, match="not a crop folder"):
        read_dataset(tmp_path / "nowhere")
