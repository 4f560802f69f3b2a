"""Optional dependencies: fitting runs without open3d, and what needs it says how to get it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from autolabel.extras import MissingExtra, require_open3d
from autolabel.io.pointcloud import read_points

ROOT = Path(__file__).resolve().parents[1]
# Runs the `autolabel` command line in a fresh interpreter that cannot import open3d.
WITHOUT_OPEN3D = ("import sys; sys.modules['open3d'] = None; "
                  "import autolabel.pipeline, cli.fit; from cli.main import app; app()")


def autolabel_without_open3d(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WITHOUT_OPEN3D, *arguments], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_require_open3d_names_the_feature_and_the_extra_when_open3d_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "open3d", None)
    with pytest.raises(MissingExtra, match=r"^scene synthesis needs open3d.*"
                       r"pip install 'autolabel\[synth\]'$"):
        require_open3d("scene synthesis")


def test_reading_a_pcd_file_without_open3d_says_which_extra_to_install(monkeypatch, tmp_path):
    path = tmp_path / "scan.pcd"
    path.write_text("# .PCD v0.7\n")
    monkeypatch.setitem(sys.modules, "open3d", None)
    with pytest.raises(MissingExtra, match=r"reading \.pcd point clouds needs open3d"):
        read_points(path)


def test_the_fit_command_and_the_pipeline_import_and_run_without_open3d():
    result = autolabel_without_open3d("fit", "--help")
    assert result.returncode == 0, result.stderr
    assert "--detections" in result.stdout


def test_synth_without_open3d_stops_with_one_line_that_names_the_extra(tmp_path):
    result = autolabel_without_open3d("synth", "--out", str(tmp_path / "scene"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "error: scene synthesis needs open3d" in result.stderr
    assert "pip install 'autolabel[synth]'" in result.stderr
    assert not (tmp_path / "scene").exists()
