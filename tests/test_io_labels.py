"""Per-frame JSON output: schema, round trips, extras, validation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from autolabel.errors import InputError
from autolabel.geometry import rotation_6d_to_matrix
from autolabel.io.labels import FORMAT, VERSION, read_frame_json, write_frame_json
from autolabel.label import ObjectLabel


def labels() -> list[ObjectLabel]:
    tilted = rotation_6d_to_matrix(torch.tensor([0.9, 0.1, 0.2, -0.1, 0.3, 1.0],
                                                dtype=torch.float64)).numpy()
    return [
        ObjectLabel.upright("Car", [10.1, 20.2, 110.3, 95.4], [1.23456789, 1.5, 20.1], 0.777,
                            [4.1, 1.7, 1.5], truncation=0.1, occlusion=2, score=0.87654321),
        ObjectLabel("Van", np.array([1.0, 2, 3, 4]), np.array([-3.0, 1.0, 9.0]), tilted,
                    np.array([5.0, 2.0, 2.2])),
    ]


def test_frame_json_round_trips_labels_exactly(tmp_path):
    written = labels()
    write_frame_json(tmp_path / "f.json", "000008", written)
    record = read_frame_json(tmp_path / "f.json")
    assert record.frame_id == "000008" and record.frame_extras == {}
    assert record.extras == [{}, {}]
    for before, after in zip(written, record.labels, strict=True):
        assert (after.category, after.score) == (before.category, before.score)
        assert (after.truncation, after.occlusion) == (before.truncation, before.occlusion)
        for name in ("box2d", "center", "rotation", "size"):
            np.testing.assert_array_equal(getattr(after, name), getattr(before, name))


def test_frame_json_has_the_versioned_schema_and_yaw(tmp_path):
    write_frame_json(tmp_path / "f.json", "000008", labels()[:1])
    document = json.loads((tmp_path / "f.json").read_text())
    assert (document["format"], document["version"]) == (FORMAT, VERSION) == ("autolabel-frame", 1)
    obj = document["objects"][0]
    assert set(obj) == {"category", "box2d", "center", "rotation", "yaw", "size", "score",
                        "truncation", "occlusion", "extras"}
    assert obj["yaw"] == pytest.approx(0.777, abs=1e-12)
    assert obj["size"] == [4.1, 1.7, 1.5]


def test_extras_with_arrays_and_tensors_are_written_as_lists(tmp_path):
    extras = [{"latent": torch.arange(3, dtype=torch.float32), "accepted": True,
               "losses": {"silhouette": np.float32(0.25)}, "reasons": ["ok"]},
              {"latent": np.zeros(3), "accepted": False, "reasons": ["too few points"]}]
    write_frame_json(tmp_path / "f.json", "7", labels(), extras, {"seconds": 1.5})
    record = read_frame_json(tmp_path / "f.json")
    assert record.extras[0] == {"latent": [0.0, 1.0, 2.0], "accepted": True,
                                "losses": {"silhouette": 0.25}, "reasons": ["ok"]}
    assert record.extras[1]["accepted"] is False
    assert record.frame_extras == {"seconds": 1.5}


def test_nan_in_extras_is_refused_naming_where(tmp_path):
    extras = [{}, {"losses": {"lidar": float("nan")}}]
    with pytest.raises(ValueError, match=r"objects\[1\]\.extras\.losses\.lidar: nan"):
        write_frame_json(tmp_path / "f.json", "7", labels(), extras)
    assert not (tmp_path / "f.json").exists()


def test_failed_write_leaves_the_previous_file_and_no_temporary(tmp_path):
    write_frame_json(tmp_path / "f.json", "7", labels())
    before = (tmp_path / "f.json").read_text()
    with pytest.raises(TypeError, match=r"objects\[0\]\.extras\.when: object"):
        write_frame_json(tmp_path / "f.json", "7", labels(), [{"when": object()}, {}])
    assert (tmp_path / "f.json").read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_extras_must_match_the_labels_in_number(tmp_path):
    with pytest.raises(ValueError, match="1 extras for 2 labels"):
        write_frame_json(tmp_path / "f.json", "7", labels(), [{}])


def edit(tmp_path, change) -> object:
    write_frame_json(tmp_path / "f.json", "000008", labels())
    document = json.loads((tmp_path / "f.json").read_text())
    change(document)
    (tmp_path / "f.json").write_text(json.dumps(document))
    return tmp_path / "f.json"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(format="coco"), r"field 'format': not an autolabel-frame file"),
        (lambda d: d.update(version=2), r"field 'version': unsupported version 2"),
        (lambda d: d["objects"][1].pop("center"), r"objects\[1\]: field 'center': missing"),
        (lambda d: d["objects"][1].update(size=[1, 2]),
         r"objects\[1\]: field 'size': expected numbers of shape \(3,\)"),
        (lambda d: d["objects"][0].update(box2d=[1, 2, "3", 4]), r"objects\[0\]: field 'box2d'"),
        (lambda d: d["objects"][0]["center"].__setitem__(0, float("nan")),
         r"objects\[0\]: field 'center': NaN or infinite value"),
        (lambda d: d["objects"][0]["rotation"][0].__setitem__(0, 2.0),
         r"objects\[0\]: field 'rotation': not a proper rotation matrix"),
        (lambda d: d["objects"][0].update(size=[4, -1, 1]),
         r"objects\[0\]: field 'size': must be positive"),
        (lambda d: d["objects"][0].pop("extras"), r"objects\[0\]: field 'extras': missing"),
    ],
)
def test_bad_frame_json_names_file_entry_and_field(tmp_path, change, message):
    with pytest.raises(InputError, match=r"f\.json: " + message):
        read_frame_json(edit(tmp_path, change))


def test_malformed_frame_json_names_line_and_column(tmp_path):
    (tmp_path / "f.json").write_text('{"format": "autolabel-frame",\n "version": 1,,}')
    with pytest.raises(InputError, match=r"f\.json: line 2, column 15: malformed JSON"):
        read_frame_json(tmp_path / "f.json")
