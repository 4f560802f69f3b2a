"""`autolabel.evaluate` against the official KITTI devkit's own numbers.

``../shared/data/eval_reference/official_devkit_ap.json`` holds, for each prediction folder,
the Car AP that the official devkit (evaluate_object.cpp, 2019; a second build for IoU 0.5)
computed: ``official -> r40|r11 -> bev|3d -> "0.7"|"0.5" -> easy|moderate|hard``, in percent.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autolabel.evaluate import DIFFICULTIES, evaluate
from autolabel.io.kitti import read_labels

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "eval_reference"
TABLE = REFERENCE / "official_devkit_ap.json"
SETS = sorted(json.loads(TABLE.read_text())) if TABLE.is_file() else []

pytestmark = pytest.mark.skipif(not TABLE.is_file(),
                                reason=f"devkit reference numbers not found at {TABLE}")


def read_folder(folder: Path) -> dict:
    return {path.stem: read_labels(path) for path in sorted(folder.glob("*.txt"))}


@pytest.mark.parametrize("prediction_set", SETS)
def test_evaluate_reproduces_every_number_of_the_official_devkit(prediction_set):
    entry = json.loads(TABLE.read_text())[prediction_set]
    car = evaluate(read_folder(REFERENCE / entry["gt"]),
                   read_folder(REFERENCE / prediction_set)).classes["Car"]
    expected, computed = {}, {}
    for recall, metrics in entry["official"].items():
        for metric, thresholds in metrics.items():
            for iou, levels in thresholds.items():
                for level in DIFFICULTIES:
                    key = f"{recall} {metric} {iou} {level}"
                    expected[key] = levels[level]
                    computed[key] = car.ap_at(metric, float(iou), level,
                                              recall_positions=int(recall.removeprefix("r")))
    assert len(expected) == 24
    assert computed == pytest.approx(expected, abs=0.01)


def test_reference_covers_both_data_sets_and_their_perturbations():
    assert {name.split("/")[0] for name in SETS} == {"kitti_dev", "synth30"}
    assert len(SETS) == 14
