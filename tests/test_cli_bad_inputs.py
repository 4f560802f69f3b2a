"""`autolabel fit` on bad and unusual input: a one-line message naming the file and field, the
right exit code, every good frame of the run labelled and every finished frame untouched."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from autolabel.io.detections import read_detections, write_detections_coco
from autolabel.io.labels import read_frame_json
from autolabel.synth import SynthConfig
from autolabel.synth.lidar import LidarConfig
from autolabel.synth.noise import DepthNoise, DetectionNoise
from autolabel.synth.scene import SceneConfig
from cli.main import app
from tests.scenes import write_scene

FRAMES = tuple(f"{i:06d}" for i in range(8))
SCENE = SynthConfig(
    scene=SceneConfig(min_cars=1, max_cars=2),
    lidar=LidarConfig(azimuth_step=math.radians(0.4)),
    detections=DetectionNoise(box_jitter=1.0, mask_noise=1, miss_rate=0.0, false_positives=0.0),
    depth=DepthNoise(), viz=False)

runner = CliRunner()


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight synthetic KITTI frames with LiDAR, depth maps and detections.json."""
    return write_scene(tmp_path_factory.mktemp("scene"), 5, len(FRAMES), SCENE)


@pytest.fixture
def copy(scene: Path, tmp_path: Path) -> Path:
    target = tmp_path / "scene"
    shutil.copytree(scene, target)
    return target


def fit(root: Path, out: Path, *extra: str, method: str = "lshape"):
    return runner.invoke(app, ["fit", "--images", str(root / "image_2"), "--detections",
                               str(root / "detections.json"), "--out", str(out), "--method",
                               method, *extra])


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Relative path -> (modification time in ns, content) of every file."""
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line_error(result, *fragments: str) -> str:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


# --- mistakes that stop the run before any work: exit 2, one line --------------------------

def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


WHOLE_RUN: dict[str, tuple[Callable[[Path, Path], list[str]], tuple[str, ...]]] = {
    # kind: (arguments made from (scene copy, tmp folder), fragments of the message)
    "images folder missing": (lambda s, t: ["--images", str(t / "nope")],
                              ("nope", "--images")),
    "images folder without images": (lambda s, t: ["--images", str(s / "calib")],
                                     ("calib", "no images")),
    "detections file missing": (lambda s, t: ["--detections", str(t / "none.json")],
                                ("none.json", "no such file")),
    "detections not JSON": (lambda s, t: ["--detections", str(_write(t / "d.json", "{oops"))],
                            ("d.json", "malformed JSON")),
    "detection of an unknown image": (
        lambda s, t: ["--detections", str(_write(t / "d.json", json.dumps(
            {"999999.png": [{"bbox": [1, 2, 30, 40], "category": "Car", "score": 0.9}]})))],
        ("d.json", "999999.png", "no such image")),
    "detection of an unknown class": (
        lambda s, t: ["--detections", str(_write(t / "d.json", json.dumps(
            {"000000.png": [{"bbox": [1, 2, 30, 40], "category": "Bus", "score": 0.9}]})))],
        ("d.json", "000000.png[0]", "category", "'Bus'")),
    "out is a file": (lambda s, t: ["--out", str(_write(t / "file", ""))],
                      ("file", "is a file", "--out")),
    "out below a file": (lambda s, t: ["--out", str(_write(t / "file", "") / "sub")],
                         ("file/sub", "cannot write here", "--out")),
    "unknown device": (lambda s, t: ["--device", "tpu"], ("--device 'tpu'",)),
    "unknown method": (lambda s, t: ["--method", "magic"], ("--method 'magic'",)),
    "unknown box extent": (lambda s, t: ["--box-extent", "mask"], ("--box-extent 'mask'",)),
    "lidar folder missing": (lambda s, t: ["--lidar", str(t / "scans")],
                             ("scans", "--lidar")),
    "lidar and depth together": (lambda s, t: ["--lidar", str(s / "velodyne"), "--depth",
                                                str(s / "depth")], ("--lidar or --depth",)),
    "depth folder missing": (lambda s, t: ["--depth", str(t / "depths")], ("depths", "--depth")),
    "calib folder missing": (lambda s, t: ["--calib", str(t / "cal")], ("cal", "--calib")),
    "class sizes malformed": (
        lambda s, t: ["--class-sizes", str(_write(t / "sizes.json", '{"Car": [4, -1, 1.5]}'))],
        ("sizes.json", "'Car'", "three positive numbers")),
    "class map malformed": (
        lambda s, t: ["--class-map", str(_write(t / "map.json", '{"car": "big car"}'))],
        ("map.json", "'car'", "without spaces")),
    "prior file missing": (lambda s, t: ["--prior", str(t / "prior.pt")],
                           ("prior.pt", "--prior")),
    "image model file missing": (lambda s, t: ["--image-model", str(t / "model.pt")],
                                 ("model.pt", "--image-model")),
    "image model file foreign": (
        lambda s, t: ["--image-model", str(_write(t / "model.pt", "not torch")), "--method",
                      "render"],
        ("model.pt", "not a readable image model")),
    "ray address malformed": (lambda s, t: ["--ray", "headnode"], ("--ray 'headnode'",)),
    "ray workers without ray": (lambda s, t: ["--ray-workers", "2"],
                                ("--ray-workers needs --ray",)),
}


@pytest.mark.parametrize("kind", sorted(WHOLE_RUN))
def test_a_bad_argument_is_one_line_exit_2_and_no_output(copy, tmp_path, kind):
    make, fragments = WHOLE_RUN[kind]
    extra = make(copy, tmp_path)
    out = tmp_path / "out"
    if "--out" in extra:  # the case names its own output folder
        out = Path(extra.pop(extra.index("--out") + 1))
        extra.remove("--out")
    one_line_error(fit(copy, out, *extra), *fragments)
    assert not (out / "label_2").exists()


def test_a_missing_calibration_file_names_it_before_any_work(copy, tmp_path):
    (copy / "calib" / "000003.txt").unlink()
    one_line_error(fit(copy, tmp_path / "out"), "000003.txt", "no such file")
    assert not (tmp_path / "out" / "label_2").exists()


def test_cuda_without_a_gpu_is_one_line_before_any_work(copy, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    one_line_error(fit(copy, tmp_path / "out", "--device", "cuda"), "--device cuda", "CUDA")
    assert not (tmp_path / "out" / "label_2").exists()


def test_arguments_are_checked_without_loading_torch(tmp_path):
    script = """
import sys
import typer.main
from cli.main import app
try:
    typer.main.get_command(app).main(["fit", "--images", "nope", "--detections", "d.json",
                                      "--out", "o"])
except SystemExit as stop:
    print("exit", stop.code)
print("torch loaded" if "torch" in sys.modules else "no torch")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=tmp_path, check=False)
    assert done.stdout.split() == ["exit", "2", "no", "torch"], done.stdout + done.stderr
    assert "nope: no such folder" in done.stderr


def test_ray_when_it_is_not_installed_is_one_line_naming_the_extra(tmp_path):
    script = """
import sys
sys.modules["ray"] = None  # as if Ray were not installed
import typer.main
from cli.main import app
try:
    typer.main.get_command(app).main(["fit", "--images", "nope", "--detections", "d.json",
                                      "--out", "o", "--ray", "local"])
except SystemExit as stop:
    print("exit", stop.code)
print("torch loaded" if "torch" in sys.modules else "no torch")
"""
    this_checkout = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=tmp_path, env=this_checkout, check=False)
    assert done.stdout.split() == ["exit", "2", "no", "torch"], done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: --ray needs Ray, which is not installed: pip install autolabel[ray]"]


# --- bad frames: reported on one line each, recorded, the others labelled -------------------

def _garbage_image(root: Path, frame: str) -> Path:
    path = root / "image_2" / f"{frame}.png"
    path.write_bytes(b"\x89PNG not really")
    return path


def _truncated_scan(root: Path, frame: str) -> Path:
    path = root / "velodyne" / f"{frame}.bin"
    path.write_bytes(path.read_bytes()[:-5])
    return path


def _empty_scan(root: Path, frame: str) -> Path:
    path = root / "velodyne" / f"{frame}.bin"
    path.write_bytes(b"")
    return path


def _missing_scan(root: Path, frame: str) -> Path:
    path = root / "velodyne" / f"{frame}.bin"
    path.unlink()
    return root / "velodyne"


def _calib_without_p2(root: Path, frame: str) -> Path:
    path = root / "calib" / f"{frame}.txt"
    path.write_text("".join(line + "\n" for line in path.read_text().splitlines()
                            if not line.startswith("P2:")))
    return path


def _calib_singular_p2(root: Path, frame: str) -> Path:
    path = root / "calib" / f"{frame}.txt"
    path.write_text("".join(("P2: " + " ".join(["0"] * 12) if line.startswith("P2:") else line)
                            + "\n" for line in path.read_text().splitlines()))
    return path


BAD_FRAMES = {"000002": _garbage_image, "000003": _truncated_scan, "000004": _empty_scan,
              "000005": _missing_scan, "000006": _calib_without_p2, "000007": _calib_singular_p2}


def test_bad_frames_fail_one_line_each_the_others_are_labelled_and_finished_ones_untouched(
        copy, tmp_path):
    out = tmp_path / "out"
    first = tmp_path / "first"  # frames 0 and 1 are labelled first
    (first / "image_2").mkdir(parents=True)
    for frame in FRAMES[:2]:
        shutil.copy(copy / "image_2" / f"{frame}.png", first / "image_2")
    shutil.copytree(copy / "calib", first / "calib")
    shutil.copytree(copy / "velodyne", first / "velodyne")
    every = read_detections(copy / "detections.json")
    write_detections_coco(first / "detections.json",
                          {f"{f}.png": every[f"{f}.png"] for f in FRAMES[:2]},
                          {f"{f}.png": (375, 1242) for f in FRAMES[:2]})
    assert fit(first, out).exit_code == 0
    finished = snapshot(out)
    named = {frame: str(spoil(copy, frame)) for frame, spoil in BAD_FRAMES.items()}
    result = fit(copy, out, "--batch", "3")
    assert result.exit_code == 1, result.output
    failed = [line for line in result.output.splitlines() if line.startswith("failed frame ")]
    assert len(failed) == len(BAD_FRAMES), result.output
    for frame, path in named.items():
        line = next(line for line in failed if line.startswith(f"failed frame {frame}:"))
        assert path in line, line
    assert "P2" in next(line for line in failed if "000006" in line)
    assert sorted(json.loads((out / "failures.json").read_text())) == sorted(BAD_FRAMES)
    assert {k: v for k, v in snapshot(out).items() if k in finished} == finished
    labelled = sorted(p.stem for p in (out / "json").glob("*.json"))
    assert labelled == list(FRAMES[:2])


def test_batch_of_one_over_eight_frames_with_two_corrupt_labels_the_other_six(copy, tmp_path):
    bad = {"000001": str(_garbage_image(copy, "000001")),
           "000005": str(_calib_singular_p2(copy, "000005"))}
    out = tmp_path / "out"
    result = fit(copy, out, "--batch", "1", "--iterations", "3", method="render")
    assert result.exit_code == 1, result.output
    for frame, path in bad.items():
        assert f"failed frame {frame}" in result.output and path in result.output
    assert f"failed frames: {', '.join(sorted(bad))}" in result.output
    labelled = sorted(p.stem for p in (out / "json").glob("*.json"))
    assert labelled == [f for f in FRAMES if f not in bad]


def test_depth_maps_of_the_wrong_size_missing_or_corrupt_fail_their_frame(copy, tmp_path):
    depth = copy / "depth"
    small = depth / "000001.png"
    Image.fromarray(np.full((10, 20), 2560, np.uint16)).save(small)
    (depth / "000002.png").unlink()
    (depth / "000003.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    result = fit(copy, out, "--depth", str(depth))
    assert result.exit_code == 1, result.output
    assert "failed frame 000001" in result.output
    assert "field 'size'" in result.output and "20 x 10 px" in result.output
    assert f"failed frame 000002: {depth}: no depth map 000002" in result.output
    assert "failed frame 000003" in result.output and "000003.png" in result.output
    done = sorted(p.stem for p in (out / "json").glob("*.json"))
    assert done == [f for f in FRAMES if f not in ("000001", "000002", "000003")]
    assert read_frame_json(out / "json" / "000000.json").frame_extras["evidence"] == "depth"


def test_missing_evidence_may_be_allowed_and_is_then_a_warning_and_box_only(copy, tmp_path):
    _missing_scan(copy, "000002")
    out = tmp_path / "out"
    result = fit(copy, out, "--allow-missing-evidence")
    assert result.exit_code == 0, result.output
    assert "warning:" in result.output and "no point cloud 000002" in result.output
    assert "evidence: box 1 frame(s) (000002), lidar 7 frame(s)" in result.output
    record = read_frame_json(out / "json" / "000002.json")
    assert record.frame_extras["evidence"] == "box"
    assert all(extra["source"] == "box" for extra in record.extras)


def test_lidar_none_labels_from_boxes_and_says_so(copy, tmp_path):
    result = fit(copy, tmp_path / "out", "--lidar", "none")
    assert result.exit_code == 0, result.output
    assert "no LiDAR (not used)" in result.output
    record = read_frame_json(tmp_path / "out" / "json" / "000000.json")
    assert record.frame_extras["evidence"] == "box"


def test_lidar_beside_the_images_is_used_and_announced(copy, tmp_path):
    result = fit(copy, tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert f"LiDAR from {copy / 'velodyne'} (found beside the images" in result.output


# --- bad detections: left out with a reason, the others labelled ----------------------------

def test_tiny_and_outside_detections_are_left_out_with_a_reason(copy, tmp_path):
    detections = json.loads((copy / "detections.json").read_text())
    image = next(i for i in detections["images"] if i["file_name"] == "000000.png")
    ours = [d for d in detections["annotations"] if d["image_id"] == image["id"]]
    template = ours[0]
    detections["annotations"] += [
        {**template, "id": 90001, "bbox": [100.0, 100.0, 1.5, 1.0]},
        {**template, "id": 90002, "bbox": [5000.0, 100.0, 40.0, 30.0]}]
    (copy / "detections.json").write_text(json.dumps(detections))
    out = tmp_path / "out"
    result = fit(copy, out)
    assert result.exit_code == 0, result.output
    record = read_frame_json(out / "json" / "000000.json")
    assert len(record.labels) == len(ours)
    reasons = [entry["reason"] for entry in record.frame_extras["left_out"]]
    assert any("less than 4 px across" in r for r in reasons)
    assert any("lies outside the 1242 x 375 image" in r for r in reasons)


def test_class_map_renames_detector_classes_before_sizes_and_labels(copy, tmp_path):
    detections = json.loads((copy / "detections.json").read_text())
    for category in detections["categories"]:
        category["name"] = "vehicle"
    (copy / "detections.json").write_text(json.dumps(detections))
    mapping = _write(tmp_path / "map.json", '{"vehicle": "car"}')
    out = tmp_path / "out"
    result = fit(copy, out, "--class-map", str(mapping), "--lidar", "none")
    assert result.exit_code == 0, result.output
    lines = (out / "label_2" / "000000.txt").read_text().splitlines()
    assert lines and all(line.startswith("Car ") for line in lines)
    unmapped = fit(copy, tmp_path / "out2", "--lidar", "none")
    one_line_error(unmapped, "'vehicle'", "--class-sizes")


def test_temporary_files_of_an_interrupted_run_are_removed_at_start(copy, tmp_path):
    out = tmp_path / "out"
    (out / "viz").mkdir(parents=True)
    stale = out / "viz" / ".000000.png.abc123.tmp"
    stale.write_bytes(b"half a picture")
    result = fit(copy, out)
    assert result.exit_code == 0, result.output
    assert not stale.exists() and "removed 1 temporary file" in result.output
