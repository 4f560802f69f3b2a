"""autolabel: 3D labels from 2D detections by differentiable render-and-compare.

The frame-level API (imported lazily, so that ``import autolabel`` stays light)::

    results = autolabel.label_frame(image, calib, detections, points=lidar_points)
    for frame_result in autolabel.label_dataset(frames, batch=4): ...
"""

__version__ = "0.1.0"
__all__ = ["label_frame", "label_frames", "label_dataset"]


def __getattr__(name: str):
    if name in __all__:
        from autolabel import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'autolabel' has no attribute {name!r}")
