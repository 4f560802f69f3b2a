"""autolabel: 3D labels from 2D detections by differentiable render-and-compare."""

__version__ = "0.1.0"
