"""One synthetic frame from a seed: scene, LiDAR scan, image, labels, detections, depth.

Frame ``i`` of a data set with seed ``S`` draws all its random choices from
``numpy.random.SeedSequence([S, i])``, split into independent streams for the scene, the LiDAR,
the camera, the detections and the depth map. A frame therefore depends only on ``(S, i)``
and the configuration, and switching the depth map on or off changes nothing else.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from autolabel.io.detections import Detection
from autolabel.synth.annotate import AnnotateConfig, Annotation, annotate
from autolabel.synth.camera import CameraConfig, CameraRender, render_camera
from autolabel.synth.lidar import LidarConfig, LidarScan, simulate_lidar
from autolabel.synth.noise import DepthNoise, DetectionNoise, noisy_depth, noisy_detections
from autolabel.synth.scene import Scene, SceneConfig, build_raycaster, sample_scene

_STREAMS = ("scene", "lidar", "camera", "detections", "depth")


@dataclasses.dataclass(frozen=True)
class SynthConfig:
    """Everything that shapes a synthetic frame; each part documents its defaults.

    Attributes:
        depth: the depth error model, or None to make no depth map.
        viz: whether to draw the picture with the 3D boxes.
    """

    scene: SceneConfig = SceneConfig()
    lidar: LidarConfig = LidarConfig()
    camera: CameraConfig = CameraConfig()
    annotate: AnnotateConfig = AnnotateConfig()
    detections: DetectionNoise = DetectionNoise()
    depth: DepthNoise | None = None
    viz: bool = True


@dataclasses.dataclass(frozen=True, eq=False)
class SynthFrame:
    """One generated frame.

    Attributes:
        frame_id: file stem, the index as six digits (``000007``).
        scene: the cars and the rig. render: image, instance map, true depth.
        scan: the LiDAR points. annotations: the ground-truth labels and their cars.
        detections: the noisy detections. depth: (H, W) noisy depth in metres, or None.
    """

    frame_id: str
    scene: Scene
    render: CameraRender
    scan: LidarScan
    annotations: list[Annotation]
    detections: list[Detection]
    depth: np.ndarray | None


def frame_id(index: int) -> str:
    """The file stem of frame ``index``.

    >>> frame_id(7)
    '000007'
    """
    return f"{index:06d}"


def frame_rngs(seed: int, index: int) -> dict[str, np.random.Generator]:
    """Independent generators of frame ``index`` of a data set with seed ``seed``."""
    children = np.random.SeedSequence([seed, index]).spawn(len(_STREAMS))
    return {name: np.random.default_rng(child) for name, child in zip(_STREAMS, children,
                                                                     strict=True)}


def generate_frame(seed: int, index: int, config: SynthConfig = SynthConfig()) -> SynthFrame:
    """Frame ``index`` of the data set with seed ``seed`` (see the module docstring)."""
    rngs = frame_rngs(seed, index)
    scene = sample_scene(rngs["scene"], config.scene)
    raycaster = build_raycaster(scene)
    scan = simulate_lidar(scene, raycaster, rngs["lidar"], config.lidar)
    render = render_camera(scene, raycaster, rngs["camera"], config.camera)
    annotations = annotate(scene, render, config.annotate)
    detections = noisy_detections(annotations, render.instance, rngs["detections"],
                                  config.detections)
    depth = None
    if config.depth is not None:
        depth = noisy_depth(render.depth, rngs["depth"], config.depth)
    return SynthFrame(frame_id(index), scene, render, scan, annotations, detections, depth)
