"""Synthetic KITTI folders for the command-line tests."""

from __future__ import annotations

from pathlib import Path

from autolabel.synth import SynthConfig, generate_frame, merge_detections, write_frame


def write_scene(root: Path, seed: int, frames: int, config: SynthConfig) -> Path:
    """Frames ``0 .. frames-1`` of the data set ``seed`` written to ``root`` as a KITTI folder
    (image_2, velodyne, calib, label_2, ...) with all detections in ``detections.json``."""
    for index in range(frames):
        write_frame(root, generate_frame(seed, index, config), viz=False)
    merge_detections(root, [f"{index:06d}" for index in range(frames)])
    return root
