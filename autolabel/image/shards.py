"""Crops cached on disk: a folder of npz shards and a ``dataset.json`` that describes them.

Crop ``i`` of a data set with seed ``S`` draws every random choice from
``numpy.random.SeedSequence([S, i])``, so a crop depends only on ``(S, i)``, the split's car
pool, the settings and the generator's version (all recorded in ``dataset.json``), and an
interrupted generation resumes with the first missing shard.
The ``train`` split draws its cars from the first ``cars`` training seeds (the shipped prior's
training shapes are train seeds 0..255, so their crops carry shape codes), the ``heldout`` split
from the held-out seeds; held-out crops serve validation only.

A shard holds, per crop: ``image`` (S, S, 3) uint8, ``mask`` (S, S) bool, ``nocs`` (S, S, 3)
uint8 (NOCS times 255, rounded), ``alpha``, ``latent`` (D,), ``seed``, ``box``, ``window``,
``center``, ``yaw``, ``size``, ``visible``, ``truncation``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from autolabel.errors import InputError
from autolabel.image.generate import (
    GENERATOR_VERSION,
    Crop,
    CropConfig,
    generate_crop,
    kitti_camera,
)
from autolabel.io.atomic import atomic_path, write_text_atomic

DATASET_FORMAT = "autolabel-image-crops"
DATASET_VERSION = 1
_FIELDS = Crop._fields


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """What a crop folder holds.

    Attributes:
        count: number of crops. seed: the data set's seed. split: ``train`` or ``heldout``
        (which seed range the cars come from). cars: size of the car pool. shard_size: crops
        per shard. crop: the crop settings. backgrounds: the user's background folder, or
        None.
    """

    count: int
    seed: int = 0
    split: str = "train"
    cars: int = 256
    shard_size: int = 1000
    crop: CropConfig = CropConfig()
    backgrounds: str | None = None

    def to_json(self) -> dict:
        """The spec as plain JSON values (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


def crop_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of crop ``index`` of a data set with seed ``seed``."""
    return np.random.default_rng(np.random.SeedSequence([seed, index]))


def shard_path(folder: Path, shard: int) -> Path:
    """The file of shard number ``shard``."""
    return folder / f"crops_{shard:05d}.npz"


def write_dataset(folder: Path, spec: DatasetSpec, pool: list, images: list[np.ndarray] | None,
                  advance: Callable[[int], None] = lambda count: None) -> None:
    """Generate the crops of ``spec`` into ``folder``, shard by shard, skipping shards that
    exist (a resumed run). ``advance(n)`` is called after each shard of n crops.

    Raises :class:`InputError` when the folder holds a data set of another spec.
    """
    folder.mkdir(parents=True, exist_ok=True)
    description = folder / "dataset.json"
    record = {"format": DATASET_FORMAT, "version": DATASET_VERSION,
              "generator": GENERATOR_VERSION, "spec": spec.to_json()}
    if description.exists():
        if json.loads(description.read_text()) != record:
            raise InputError(description, "the folder holds crops of other settings or of "
                             "another generator version; choose another --out or delete it")
    else:
        write_text_atomic(description, json.dumps(record, indent=1) + "\n")
    camera = kitti_camera()
    for shard, start in enumerate(range(0, spec.count, spec.shard_size)):
        stop = min(start + spec.shard_size, spec.count)
        path = shard_path(folder, shard)
        if not path.exists():
            crops = [generate_crop(crop_rng(spec.seed, index), pool, spec.crop, images, camera)
                     for index in range(start, stop)]
            _write_shard(path, crops)
        advance(stop - start)


def _write_shard(path: Path, crops: list[Crop]) -> None:
    """Save crops as one compressed npz, atomically."""
    arrays = {name: np.stack([np.asarray(getattr(crop, name)) for crop in crops])
              for name in _FIELDS}
    arrays["nocs"] = np.round(arrays["nocs"] * 255).astype(np.uint8)
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        np.savez_compressed(handle, **arrays)


def read_dataset(folder: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    """The spec (JSON) and all crops of a folder, each field concatenated over the shards.

    Raises :class:`InputError` for a folder without ``dataset.json``, of another format, or
    with shards missing.
    """
    folder = Path(folder)
    description = folder / "dataset.json"
    if not description.is_file():
        raise InputError(folder, "not a crop folder (no dataset.json); make one with "
                         "'autolabel image-model generate'")
    record = json.loads(description.read_text())
    if record.get("format") != DATASET_FORMAT or record.get("version") != DATASET_VERSION:
        raise InputError(description, f"not a crop folder of format {DATASET_FORMAT} "
                         f"version {DATASET_VERSION}")
    spec = record["spec"]
    shards = range(-(-spec["count"] // spec["shard_size"]))
    missing = [shard_path(folder, shard).name for shard in shards
               if not shard_path(folder, shard).is_file()]
    if missing:
        raise InputError(folder, f"{len(missing)} shards missing (first {missing[0]}); "
                         "re-run 'autolabel image-model generate' with the same options")
    parts = []
    for shard in shards:
        with np.load(shard_path(folder, shard)) as data:
            parts.append({name: data[name] for name in _FIELDS})
    return spec, {name: np.concatenate([part[name] for part in parts]) for name in _FIELDS}
