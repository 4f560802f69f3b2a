"""Synthetic KITTI-format scenes with ground truth: held-out procedural cars on a ground plane,
seen by a KITTI-like camera and a simulated 64-beam LiDAR (``autolabel synth``).

Modules: ``rig`` (calibration), ``scene`` (placing cars), ``lidar``, ``camera`` (image and
instance masks), ``annotate`` (label_2), ``noise`` (detections and depth), ``draw`` (3D boxes
on the image), ``generate`` (one frame from a seed), ``writer`` (the KITTI folder).
"""

from autolabel.io.detections import merge_detections
from autolabel.synth.generate import SynthConfig, SynthFrame, frame_id, generate_frame
from autolabel.synth.writer import write_frame

__all__ = ["SynthConfig", "SynthFrame", "frame_id", "generate_frame", "merge_detections",
           "write_frame"]
