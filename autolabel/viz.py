"""Pictures of labels: 3D boxes drawn on the image, and a bird's-eye view (BEV) of a frame.

A 3D box is drawn as its 12 projected edges with a cross on its front face (the object's +x
side); edges that pass behind the camera are clipped at a near plane first. The BEV looks
down on the camera frame: camera x to the right, camera z up the picture, one scale in both
directions, a grid line every 10 m. Everything is drawn with PIL and numpy (no screen).

:func:`fit_overview` stacks the two: the image with the fitted labels (green when accepted,
red when rejected, ground truth in thin light grey) and their scores, above a BEV panel of the
same width with the LiDAR points and the labels' footprints. :func:`save_png` writes any of
these pictures atomically.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from autolabel.classes import DONT_CARE
from autolabel.geometry import backproject_pixels, box_corners, project_points
from autolabel.io.atomic import atomic_path
from autolabel.label import ObjectLabel

Colour = tuple[int, int, int]

ACCEPTED_COLOUR: Colour = (40, 220, 60)
REJECTED_COLOUR: Colour = (250, 60, 60)
GROUND_TRUTH_COLOUR: Colour = (225, 225, 225)
OCCLUSION_COLOURS: tuple[Colour, ...] = (
    (40, 220, 60), (240, 220, 40), (250, 140, 30), (250, 60, 60))
DONT_CARE_COLOUR: Colour = (150, 150, 150)

# Corner pairs of the 12 edges (corner order of geometry.box_corners) and the front cross.
_EDGES = ((0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4),
          (0, 4), (1, 5), (2, 6), (3, 7), (0, 7), (3, 4))
_NEAR = 0.1  # metres; edges are clipped to camera z >= _NEAR before projection

_BEV_BACKGROUND: Colour = (22, 24, 28)
_BEV_GRID: Colour = (55, 60, 68)
_BEV_FIELD_OF_VIEW: Colour = (90, 90, 120)
_BEV_TEXT: Colour = (150, 155, 165)
_GRID_STEP = 10.0  # metres
_MAX_POINTS = 200_000  # larger clouds are thinned with a fixed stride


@dataclasses.dataclass(frozen=True)
class BevView:
    """Where the BEV panel looks: metric ranges and one scale for both axes.

    Attributes:
        x_range: (min, max) camera x in metres, left to right edge of the panel.
        z_range: (min, max) camera z in metres, bottom to top edge.
        scale: pixels per metre.
    """

    x_range: tuple[float, float]
    z_range: tuple[float, float]
    scale: float

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the panel in pixels."""
        return (round(self.scale * (self.x_range[1] - self.x_range[0])),
                round(self.scale * (self.z_range[1] - self.z_range[0])))

    def to_pixels(self, x: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Panel pixels (column, row) of camera-frame ground positions.

        Args:
            x, z: (*,) metres in the camera frame.
        Returns:
            (*, 2) float pixels; row 0 is the far edge ``z_range[1]``.

        >>> BevView((-25.0, 25.0), (0.0, 60.0), 20.0).to_pixels(np.array(10.0), np.array(30.0))
        array([700., 600.])
        """
        column = (np.asarray(x, dtype=np.float64) - self.x_range[0]) * self.scale
        row = (self.z_range[1] - np.asarray(z, dtype=np.float64)) * self.scale
        return np.stack([column, row], axis=-1)


def bev_view(labels: Sequence[ObjectLabel], width: int,
             x_range: tuple[float, float] = (-25.0, 25.0),
             z_range: tuple[float, float] = (0.0, 60.0), margin: float = 2.0,
             reach: float = 120.0) -> BevView:
    """The BEV view of ``width`` pixels covering the given ranges and every label's footprint.

    A range grows to include each (non-DontCare) label's footprint plus ``margin`` metres, but
    not past ``reach`` metres from the camera (a label beyond that is wrong: verification
    rejects it, and the panel would be a sliver); the scale makes the x range fill ``width``,
    and the panel's height follows from it.

    >>> view = bev_view([], 1000)
    >>> view.scale, view.size
    (20.0, (1000, 1200))
    """
    corners = footprints(labels)
    x_low, x_high = x_range
    z_low, z_high = z_range
    if len(corners):
        x_low = min(x_low, float(corners[..., 0].min()) - margin)
        x_high = max(x_high, float(corners[..., 0].max()) + margin)
        z_low = min(z_low, float(corners[..., 1].min()) - margin)
        z_high = max(z_high, float(corners[..., 1].max()) + margin)
    x_low, x_high = max(x_low, -reach), min(x_high, reach)
    z_low, z_high = max(z_low, -reach), min(z_high, reach)
    return BevView((x_low, x_high), (z_low, z_high), width / (x_high - x_low))


def draw_boxes(image: np.ndarray, labels: Sequence[ObjectLabel], P2: np.ndarray,
               width: int = 2, colours: Sequence[Colour] | None = None) -> Image.Image:
    """The image with the labels' 3D boxes (and DontCare 2D boxes) drawn on it.

    Args:
        image: (H, W, 3) uint8. labels: boxes in the camera frame.
        P2: (3, 4) projection. width: line width in pixels.
        colours: one RGB colour per label; by default the colour says the occlusion level
            (green 0, yellow 1, orange 2, red 3). DontCare labels are grey 2D boxes.
    """
    if colours is not None and len(colours) != len(labels):
        raise ValueError(f"got {len(colours)} colours for {len(labels)} labels")
    if colours is None:
        colours = [OCCLUSION_COLOURS[min(int(label.occlusion), 3)] for label in labels]
    picture = Image.fromarray(np.asarray(image, dtype=np.uint8))
    _draw_boxes3d(ImageDraw.Draw(picture), labels, P2, colours, width)
    return picture


def fit_overview(image: np.ndarray, labels: Sequence[ObjectLabel], accepted: Sequence[bool],
                 P2: np.ndarray, points: np.ndarray | None,
                 ground_truth: Sequence[ObjectLabel] = ()) -> Image.Image:
    """One picture of a frame's labels: the image with 3D boxes above a bird's-eye view.

    Labels are green when accepted and red when rejected, with their score (when they have
    one) written above the box; ground-truth boxes are thin light-grey lines underneath. The
    BEV (see :func:`bev_view`: x in [-25, 25] m, z in [0, 60] m, grown to fit the labels)
    shows the points as grey dots, brighter the higher they are, the camera's field of view,
    and each label's footprint with a tick from its centre to its front.

    Args:
        image: (H, W, 3) uint8. labels: fitted labels in the camera frame (DontCare ones
            are grey 2D boxes in the image only).
        accepted: one flag per label. P2: (3, 4) projection.
        points: (N, 3) camera-frame points in metres, or None.
        ground_truth: labels drawn for comparison; DontCare entries are skipped.
    Returns:
        RGB image of width W and height H + ``bev_view(labels + ground_truth, W).size[1]``.
    """
    if len(accepted) != len(labels):
        raise ValueError(f"got {len(accepted)} accepted flags for {len(labels)} labels")
    image = np.asarray(image, dtype=np.uint8)
    height, width = image.shape[:2]
    truth = [label for label in ground_truth if label.category != DONT_CARE]
    colours = [ACCEPTED_COLOUR if flag else REJECTED_COLOUR for flag in accepted]
    font = ImageFont.load_default(size=max(12, width // 90))

    top = Image.fromarray(image)
    draw = ImageDraw.Draw(top)
    _draw_boxes3d(draw, truth, P2, [GROUND_TRUTH_COLOUR] * len(truth), 1)
    _draw_boxes3d(draw, labels, P2, colours, 2)
    _draw_scores(draw, (width, height), labels, P2, colours, font)

    view = bev_view(list(labels) + truth, width)
    bottom = _bev_panel(view, points, P2, (width, height), font)
    draw = ImageDraw.Draw(bottom)
    _draw_footprints(draw, view, truth, [GROUND_TRUTH_COLOUR] * len(truth), 1)
    _draw_footprints(draw, view, labels, colours, 2)
    legend = [(ACCEPTED_COLOUR, "accepted"), (REJECTED_COLOUR, "rejected")]
    _draw_legend(draw, width, legend + [(GROUND_TRUTH_COLOUR, "ground truth")] * bool(truth),
                 font)

    overview = Image.new("RGB", (width, height + bottom.height))
    overview.paste(top, (0, 0))
    overview.paste(bottom, (0, height))
    return overview


def save_png(path: str | Path, picture: Image.Image) -> None:
    """Write ``picture`` to ``path`` as PNG, atomically (folders are created)."""
    with atomic_path(path) as temporary:
        picture.save(temporary, format="PNG")


def _boxes_3d(labels: Sequence[ObjectLabel]) -> np.ndarray:
    """(B, 8, 3) corners of the labels' boxes in the camera frame (B may be 0)."""
    if not labels:
        return np.zeros((0, 8, 3))
    center = torch.as_tensor(np.stack([label.center for label in labels]), dtype=torch.float64)
    rotation = torch.as_tensor(np.stack([label.rotation for label in labels]),
                               dtype=torch.float64)
    size = torch.as_tensor(np.stack([label.size for label in labels]), dtype=torch.float64)
    return box_corners(center, rotation, size).numpy()


def footprints(labels: Sequence[ObjectLabel]) -> np.ndarray:
    """(B, 4, 2) ground footprints (x, z) of the non-DontCare labels' boxes, bottom face order
    (corners 0 and 3 are the front face)."""
    boxes = [label for label in labels if label.category != DONT_CARE]
    return _boxes_3d(boxes)[:, :4][..., [0, 2]]


def projected_box_edges(labels: Sequence[ObjectLabel], P2: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of the labels' 3D box edges (12 edges and the front cross), near-plane clipped.

    Args:
        labels: B labels in the camera frame. P2: (3, 4) projection.
    Returns:
        pixels: (B, 14, 2, 2) start and end (u, v) of each edge; visible: (B, 14) bool, False
        for edges entirely behind the near plane.
    """
    return _projected_edges(_boxes_3d(labels), P2)


def _projected_edges(corners: np.ndarray, P2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of box edges clipped to the near plane.

    Args:
        corners: (B, 8, 3) camera frame. P2: (3, 4).
    Returns:
        pixels: (B, 14, 2, 2) start and end (u, v) of the 12 edges and the front cross;
        visible: (B, 14) bool, False for edges entirely behind the near plane.
    """
    ends = corners[:, np.array(_EDGES)]  # (B, 14, 2, 3)
    start, end = ends[..., 0, :], ends[..., 1, :]
    visible = (start[..., 2] >= _NEAR) | (end[..., 2] >= _NEAR)
    dz = end[..., 2] - start[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(dz != 0, (_NEAR - start[..., 2]) / dz, 0.0)[..., None]
    crossing = start + t * (end - start)
    start = np.where((start[..., 2] < _NEAR)[..., None], crossing, start)
    end = np.where((end[..., 2] < _NEAR)[..., None], crossing, end)
    clipped = torch.as_tensor(np.stack([start, end], axis=-2).reshape(-1, 3))
    pixels, _ = project_points(clipped, torch.as_tensor(P2, dtype=torch.float64))
    return pixels.numpy().reshape(ends.shape[:-1] + (2,)), visible


def _draw_boxes3d(draw: ImageDraw.ImageDraw, labels: Sequence[ObjectLabel], P2: np.ndarray,
                  colours: Sequence[Colour], width: int) -> None:
    """Draw 3D boxes (DontCare: 2D boxes) of ``labels`` in ``colours`` onto ``draw``."""
    boxes = [(label, colour) for label, colour in zip(labels, colours, strict=True)
             if label.category != DONT_CARE]
    for label in labels:
        if label.category == DONT_CARE:
            draw.rectangle([float(v) for v in label.box2d], outline=DONT_CARE_COLOUR, width=1)
    pixels, visible = projected_box_edges([label for label, _ in boxes], P2)
    for (_, colour), edges, shown in zip(boxes, pixels.tolist(), visible, strict=True):
        for (start, end), show in zip(edges, shown, strict=True):
            if show:
                draw.line([tuple(start), tuple(end)], fill=colour, width=width)


def _draw_scores(draw: ImageDraw.ImageDraw, image_size: tuple[int, int],
                 labels: Sequence[ObjectLabel], P2: np.ndarray, colours: Sequence[Colour],
                 font: ImageFont.FreeTypeFont) -> None:
    """Each scored label's score on a tag of its colour above its projected box's corner."""
    width, height = image_size
    pixels, visible = projected_box_edges(labels, P2)
    for label, colour, edges, shown in zip(labels, colours, pixels, visible, strict=True):
        if label.score is None or label.category == DONT_CARE or not shown.any():
            continue
        ends = edges[shown].reshape(-1, 2)
        left, top = ends.min(axis=0)
        text = f"{label.score:.2f}"
        x1, y1, x2, y2 = draw.textbbox((0, 0), text, font=font)
        tag_w, tag_h = x2 - x1 + 4, y2 - y1 + 4
        x = float(np.clip(left, 0, width - tag_w))
        y = float(np.clip(top - tag_h, 0, height - tag_h))
        draw.rectangle([x, y, x + tag_w - 1, y + tag_h - 1], fill=colour)
        draw.text((x + 2 - x1, y + 2 - y1), text, fill=(0, 0, 0), font=font)


def _bev_panel(view: BevView, points: np.ndarray | None, P2: np.ndarray,
               image_size: tuple[int, int], font: ImageFont.FreeTypeFont) -> Image.Image:
    """The BEV background: grid with distances, the field of view and the points."""
    width, height = view.size
    canvas = np.empty((height, width, 3), dtype=np.uint8)
    canvas[:] = _BEV_BACKGROUND
    grid_x = np.arange(math.ceil(view.x_range[0] / _GRID_STEP),
                       math.floor(view.x_range[1] / _GRID_STEP) + 1) * _GRID_STEP
    grid_z = np.arange(math.ceil(view.z_range[0] / _GRID_STEP),
                       math.floor(view.z_range[1] / _GRID_STEP) + 1) * _GRID_STEP
    columns = np.round(view.to_pixels(grid_x, np.zeros_like(grid_x))[:, 0]).astype(int)
    rows = np.round(view.to_pixels(np.zeros_like(grid_z), grid_z)[:, 1]).astype(int)
    canvas[:, columns[(columns >= 0) & (columns < width)]] = _BEV_GRID
    canvas[rows[(rows >= 0) & (rows < height)]] = _BEV_GRID
    if points is not None and len(points):
        _splat_points(canvas, view, np.asarray(points)[:: max(1, -(-len(points) // _MAX_POINTS))])
    panel = Image.fromarray(canvas)
    draw = ImageDraw.Draw(panel)
    far = view.z_range[1] - view.z_range[0]
    projection = torch.as_tensor(P2, dtype=torch.float64)
    for column in (0.0, float(image_size[0])):
        pixels = torch.tensor([[column, float(P2[1, 2])]] * 2, dtype=torch.float64)
        ray = backproject_pixels(pixels, torch.tensor([0.0, far], dtype=torch.float64),
                                 projection).numpy()
        ends = view.to_pixels(ray[:, 0], ray[:, 2])
        draw.line([tuple(ends[0]), tuple(ends[1])], fill=_BEV_FIELD_OF_VIEW, width=1)
    for z, row in zip(grid_z, rows, strict=True):
        if z > view.z_range[0] and 0 <= row < height:
            _grid_text(draw, (4, row + 2), f"z {z:.0f} m", "la", font)
    for x, column in zip(grid_x, columns, strict=True):
        if 0 < column < width - 4 * font.size:
            _grid_text(draw, (column + 3, height - 3), f"x {x:.0f} m", "ld", font)
    return panel


def _grid_text(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, anchor: str,
               font: ImageFont.FreeTypeFont) -> None:
    """A grid distance on a background patch, so that points under it do not hide it."""
    x1, y1, x2, y2 = draw.textbbox(xy, text, font=font, anchor=anchor)
    draw.rectangle([x1 - 2, y1 - 1, x2 + 1, y2 + 1], fill=_BEV_BACKGROUND)
    draw.text(xy, text, fill=_BEV_TEXT, font=font, anchor=anchor)


def _draw_legend(draw: ImageDraw.ImageDraw, panel_width: int, entries: Sequence[tuple],
                 font: ImageFont.FreeTypeFont) -> None:
    """A key of (colour, text) entries in the panel's top-right corner."""
    size = font.size
    texts = [text for _, text in entries]
    x = panel_width - 12 - size - max(draw.textlength(text, font=font) for text in texts)
    for row, (colour, text) in enumerate(entries):
        y = 8 + row * (size + 6)
        draw.rectangle([x, y + 2, x + size - 4, y + size - 2], outline=colour, width=2)
        draw.text((x + size + 2, y), text, fill=_BEV_TEXT, font=font)


def _splat_points(canvas: np.ndarray, view: BevView, points: np.ndarray) -> None:
    """Write ``points`` (N, 3) into ``canvas`` (H, W, 3) as one-pixel grey dots.

    Brightness grows with height above the camera's usual ground (camera y of about 1.7 m,
    y points down), so that cars and walls stand out from the road.
    """
    height, width = canvas.shape[:2]
    pixels = np.floor(view.to_pixels(points[:, 0], points[:, 2])).astype(np.int64)
    inside = ((pixels[:, 0] >= 0) & (pixels[:, 0] < width)
              & (pixels[:, 1] >= 0) & (pixels[:, 1] < height))
    elevation = np.clip((1.7 - points[inside, 1]) / 2.0, 0.0, 1.0)
    brightest = np.zeros(height * width, dtype=np.uint8)  # the highest point wins a pixel
    np.maximum.at(brightest, pixels[inside, 1] * width + pixels[inside, 0],
                  (80 + 150 * elevation).astype(np.uint8))
    hit = brightest.reshape(height, width)
    canvas[hit > 0] = hit[hit > 0, None]


def _draw_footprints(draw: ImageDraw.ImageDraw, view: BevView, labels: Sequence[ObjectLabel],
                     colours: Sequence[Colour], width: int) -> None:
    """Each label's footprint outline and a tick from its centre to its front in the BEV."""
    kept = [colour for label, colour in zip(labels, colours, strict=True)
            if label.category != DONT_CARE]
    for footprint, colour in zip(footprints(labels), kept, strict=True):
        corners = view.to_pixels(footprint[:, 0], footprint[:, 1])
        outline = [tuple(p) for p in corners.tolist()]
        draw.line(outline + [outline[0]], fill=colour, width=width, joint="curve")
        center = corners.mean(axis=0)
        front = (corners[0] + corners[3]) / 2  # corners 0 and 3 are the front face
        draw.line([tuple(center), tuple(front)], fill=colour, width=width)


def paint_silhouettes(image: np.ndarray, silhouettes: np.ndarray, windows: np.ndarray,
                      colours: Sequence[tuple[int, int, int]], opacity: float = 0.5
                      ) -> np.ndarray:
    """Tint the image where rendered silhouettes cover it.

    Args:
        image: (H, W, 3) uint8. silhouettes: (B, S, S) coverage in [0, 1] of B render
            windows. windows: (B, 4) their image regions (x0, y0, x1, y1).
        colours: one RGB colour per window. opacity: tint at full coverage.
    Returns:
        (H, W, 3) uint8 copy of the image with the silhouettes blended in.
    """
    result = image.astype(np.float32)
    height, width = image.shape[:2]
    rows, columns = np.mgrid[0:height, 0:width]
    for silhouette, (x0, y0, x1, y1), colour in zip(silhouettes, windows, colours, strict=True):
        size = silhouette.shape[0]
        inside = (columns >= x0) & (columns < x1) & (rows >= y0) & (rows < y1)
        i = ((rows[inside] - y0) / (y1 - y0) * size).astype(int).clip(0, size - 1)
        j = ((columns[inside] - x0) / (x1 - x0) * size).astype(int).clip(0, size - 1)
        alpha = opacity * silhouette[i, j][:, None]
        result[inside] = (1 - alpha) * result[inside] + alpha * np.asarray(colour, np.float32)
    return result.round().clip(0, 255).astype(np.uint8)
