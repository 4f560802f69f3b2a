"""The throughput benchmark's data: the first frames of a folder, each repeated under new names."""

import numpy as np
import pytest

from autolabel.io.detections import Detection, read_detections, write_detections_coco
from benchmarks.throughput import _first_frames, main


def _folder(root, frames):
    """A KITTI-layout folder whose files hold their frame's name, with one detection a frame
    scored by its index."""
    for index, frame in enumerate(frames):
        for name, suffix in (("image_2", ".png"), ("calib", ".txt"), ("velodyne", ".bin")):
            (root / name).mkdir(parents=True, exist_ok=True)
            (root / name / f"{frame}{suffix}").write_text(frame)
        detection = Detection(np.array([1.0, 2.0, 30.0, 40.0]), "Car", index / 10)
        write_detections_coco(root / "detections" / f"{frame}.json",
                              {f"{frame}.png": [detection]}, {f"{frame}.png": (50, 60)})


def test_first_frames_repeat_each_frame_under_new_names(tmp_path):
    source = tmp_path / "source"
    _folder(source, ["000000", "000001", "000002"])
    scenes = _first_frames(source, 2, 3, tmp_path / "scratch")
    names = [f"{copy:02d}{frame}" for copy in range(3) for frame in ("000000", "000001")]
    assert sorted(p.stem for p in (scenes / "image_2").iterdir()) == sorted(names)
    for name in names:
        for folder, suffix in (("image_2", ".png"), ("calib", ".txt"), ("velodyne", ".bin")):
            assert (scenes / folder / f"{name}{suffix}").read_text() == name[2:]
    merged = read_detections(scenes / "detections.json")
    assert sorted(merged) == sorted(f"{name}.png" for name in names)
    assert [merged[f"02{frame}.png"][0].score for frame in ("000000", "000001")] == [0.0, 0.1]


def test_first_frames_keep_the_names_without_repeats(tmp_path):
    source = tmp_path / "source"
    _folder(source, ["000000", "000001"])
    scenes = _first_frames(source, 2, 1, tmp_path / "scratch")
    assert sorted(read_detections(scenes / "detections.json")) == ["000000.png", "000001.png"]


def test_a_repeat_below_one_is_an_argument_error(tmp_path, capsys):
    source = tmp_path / "source"
    _folder(source, ["000000"])
    with pytest.raises(SystemExit) as stop:
        main(["--scenes", str(source), "--frames", "1", "--repeat", "0",
              "--out", str(tmp_path / "t.json")])
    assert stop.value.code == 2 and "--repeat must be at least 1" in capsys.readouterr().err
