"""How the view shows a frame's geometry: depth and opacity through a colormap, the legend that
says what the colours mean, and the 3-D point under a pixel. Pure functions of a Frame (no GUI).

Depth here is the distance along the pixel's ray to the surface, in world units: the renderer's
depth is the expected distance weighted by the compositing weights (sum w t, core/renderer.py), so
it is divided by the opacity (sum w) first; the camera's rays have unit directions
(core.cameras.Camera.rays), so the point is origin + distance * direction.

Colours: near is the bright end of the colormap (white in gray, yellow in viridis, dark red in
turbo), as `trigan render --output depth` draws it; `invert` swaps the ends. A depth colour is
multiplied by the opacity, so empty space is black and soft edges fade (the gray map over the ray
interval is exactly core.images.depth_image). Opacity maps 0..1 (or the chosen range) to the
colormap, opaque = the bright end.

The object: pixels whose opacity is at least OBJECT_OPACITY and whose distance is short of the
ray interval's far end. Most models make the far end opaque (EpiGRAF's last interval is 1e10 long,
core/compositing.py), so a ray that misses everything still "hits" at ray_end with opacity 1: those
pixels (within FAR_END_MARGIN of the interval's length of it) are background, not object.

The range: `normalize` takes it from the frame (depth: the object's nearest and farthest distance,
over its pixels inside the silhouette, whose distance is not a mix with the background's;
opacity: its smallest and largest value); otherwise, for depth, the typed range_min/range_max when
both are set; otherwise the render's ray interval (depth; frame.stats["ray_interval"]) or 0..1
(opacity). Depth beyond the range takes the colour of its end (the far-end background: the far
colour).
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Optional, Sequence, Tuple

import numpy as np

from trigan.core.cameras import Pose
from trigan.core.colormaps import COLORMAPS, apply_colormap, check_colormap
from trigan.core.errors import TriganError

GEOMETRY_MODES = ("depth", "opacity")
OBJECT_OPACITY = 0.5           # a pixel with at least this much opacity shows the object (its depth means something)
FAR_END_MARGIN = 0.05         # of the ray interval: a distance this close to ray_end is the far end (background);
#                               the far end's own depth spreads over a few sample spacings below ray_end
MIN_SPAN = 1e-6                # a range narrower than this (a flat frame) is widened to it


@dataclass(frozen=True)
class DisplayValues:
    """How depth and opacity frames are coloured (what is rendered does not change)."""

    colormap: str = "gray"
    normalize: bool = True
    invert: bool = False
    range_min: Optional[float] = None      # used when normalize is off and both ends are set
    range_max: Optional[float] = None

    def __post_init__(self):
        check_colormap(self.colormap)
        object.__setattr__(self, "normalize", bool(self.normalize))
        object.__setattr__(self, "invert", bool(self.invert))
        for name in ("range_min", "range_max"):
            value = getattr(self, name)
            if value is None:
                continue
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise TriganError(f"display {name.replace('range_', '')} {value!r}: expected a number") from None
            if not math.isfinite(value):
                raise TriganError(f"display {name.replace('range_', '')} {value}: expected a finite number")
            object.__setattr__(self, name, value)
        if self.range_min is not None and self.range_max is not None and not self.range_min < self.range_max:
            raise TriganError(f"display range {self.range_min:g}..{self.range_max:g}: expected min < max")

    def with_values(self, **values) -> "DisplayValues":
        """These values with some replaced (unknown names and bad values raise a one-line TriganError)."""
        unknown = set(values) - {f.name for f in fields(self)}
        if unknown:
            raise TriganError(f"display: unknown value {sorted(unknown)[0]!r} "
                              f"(expected {', '.join(f.name for f in fields(self))})")
        return replace(self, **values)

    @property
    def manual_range(self) -> Optional[Tuple[float, float]]:
        if self.normalize or self.range_min is None or self.range_max is None:
            return None
        return self.range_min, self.range_max

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values) -> "DisplayValues":
        """Values read back from the settings file: each bad or unknown one falls back to its default."""
        out = cls()
        if not isinstance(values, dict):
            return out
        for f in fields(cls):
            if f.name in values:
                try:
                    out = out.with_values(**{f.name: values[f.name]})
                except (TriganError, TypeError, ValueError):
                    pass
        return out


@dataclass(frozen=True)
class Legend:
    """What a geometry picture's colours mean: `colormap` from `low` (left end of the bar) to `high`."""

    quantity: str                # "depth" or "opacity"
    colormap: str
    low: float
    high: float
    invert: bool
    source: str                  # where the range came from: "frame", "typed", "ray interval", "full"

    def bar(self, width: int = 256) -> np.ndarray:
        """[1, width, 4] float32 RGBA: the colours of low .. high, left to right."""
        values = np.linspace(self.low, self.high, int(width))
        rgb = apply_colormap(colour_position(values, self.quantity, self.low, self.high, self.invert), self.colormap)
        return np.concatenate([rgb, np.ones(rgb.shape[:-1] + (1,), np.float32)], axis=-1)[None]

    @property
    def title(self) -> str:
        near_far = "near .. far" if self.quantity == "depth" else "clear .. opaque"
        unit = " (world units)" if self.quantity == "depth" else ""
        return f"{self.quantity}{unit}, {near_far}, {self.colormap}{' inverted' if self.invert else ''}"

    def as_dict(self) -> dict:
        return {"quantity": self.quantity, "colormap": self.colormap, "min": self.low, "max": self.high,
                "invert": self.invert, "source": self.source}


def colour_position(values: np.ndarray, quantity: str, low: float, high: float, invert: bool) -> np.ndarray:
    """Where values fall on the colormap (0..1, not clipped): depth near (low) -> 1, opacity high -> 1."""
    span = max(high - low, MIN_SPAN)
    t = (high - values) / span if quantity == "depth" else (values - low) / span
    return 1.0 - t if invert else t


def surface_distance(depth: np.ndarray, opacity: np.ndarray) -> np.ndarray:
    """The distance to the surface along each ray: the renderer's sum w t over sum w (where sum w > 0)."""
    return depth / np.maximum(opacity, 1e-4)


def ray_interval(frame) -> Optional[Tuple[float, float]]:
    interval = frame.stats.get("ray_interval") if isinstance(frame.stats, dict) else None
    return None if interval is None else (float(interval[0]), float(interval[1]))


def far_end_cut(interval: Tuple[float, float]) -> float:
    """The distance from which on a pixel counts as the far end of this ray interval."""
    near, far = interval
    return far - FAR_END_MARGIN * (far - near)


def _cells(frame):
    cells = frame.stats.get("cells") if isinstance(frame.stats, dict) else None
    return cells if isinstance(cells, list) else []


def _far_cuts(frame):
    """The far-end distance of every pixel (an array), of the whole frame (a float), or None when
    the frame does not say its ray interval. A compare grid's cells may each carry their own
    ("ray_interval" in a cell: cells of different models); the gaps between cells have none."""
    per_cell = [(c, c.get("ray_interval")) for c in _cells(frame) if isinstance(c, dict) and c.get("ray_interval")]
    if per_cell:
        cuts = np.full(frame.depth.shape, np.inf)
        for cell, interval in per_cell:
            x, y, w, h = (int(v) for v in cell["box"])
            cuts[y:y + h, x:x + w] = far_end_cut((float(interval[0]), float(interval[1])))
        return cuts
    interval = ray_interval(frame)
    return None if interval is None else far_end_cut(interval)


def object_mask(frame) -> np.ndarray:
    """[H, W] bool: the pixels that show the object (see the module docstring)."""
    opacity = np.nan_to_num(frame.opacity, nan=0.0)
    mask = opacity >= OBJECT_OPACITY
    cuts = _far_cuts(frame)
    if cuts is not None:
        with np.errstate(invalid="ignore", over="ignore"):
            mask &= surface_distance(frame.depth, opacity) < cuts
    return mask


def geometry_range(frame, quantity: str, display: DisplayValues) -> Tuple[float, float, str]:
    """(low, high, source) of the colours of `frame`'s depth or opacity (see the module docstring)."""
    if quantity == "depth":
        if display.normalize:
            visible = object_mask(frame)
            inner = _eroded(visible)
            # the silhouette's pixels mix the object with what lies behind it (the far end): their
            # distance is neither's, so the range comes from the object's inner pixels when it has any
            visible = inner if inner.any() else visible
            if visible.any():
                dist = surface_distance(frame.depth[visible], frame.opacity[visible])
                return _widened(float(dist.min()), float(dist.max())) + ("frame",)
        if display.manual_range is not None:
            return display.manual_range + ("typed",)
        interval = ray_interval(frame)
        if interval is not None:
            return float(interval[0]), float(interval[1]), "ray interval"
        dist = surface_distance(frame.depth, frame.opacity)
        finite = dist[np.isfinite(dist)]
        return (_widened(float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)) + ("frame",)
    if display.normalize:
        finite = frame.opacity[np.isfinite(frame.opacity)]
        if finite.size:
            return _widened(float(finite.min()), float(finite.max())) + ("frame",)
    return 0.0, 1.0, "full"            # a typed range is a depth range


def _eroded(mask: np.ndarray) -> np.ndarray:
    """The mask's pixels whose four neighbours are in it too."""
    inner = np.zeros_like(mask)
    inner[1:-1, 1:-1] = (mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:])
    return inner


def _widened(low: float, high: float) -> Tuple[float, float]:
    if high - low < MIN_SPAN:
        middle = (low + high) / 2
        return middle - MIN_SPAN / 2, middle + MIN_SPAN / 2
    return low, high


def shows_geometry(frame) -> bool:
    """True when the frame is a depth or opacity picture whose raw geometry came with it."""
    return (frame is not None and getattr(frame.request, "mode", None) in GEOMETRY_MODES
            and frame.depth is not None and frame.opacity is not None)


def coloured(frame, display: DisplayValues) -> Tuple[np.ndarray, Legend]:
    """[H, W, 4] float32 RGBA of a depth or opacity frame through the display values, and its legend.
    Pixels outside every cell of a compare grid (depth +inf, opacity 0) come out black."""
    quantity = frame.request.mode
    low, high, source = geometry_range(frame, quantity, display)
    opacity = np.nan_to_num(frame.opacity.astype(np.float32), nan=0.0).clip(0.0, 1.0)
    rgba = np.ones(opacity.shape + (4,), np.float32)
    if quantity == "depth":
        with np.errstate(invalid="ignore", over="ignore"):
            dist = surface_distance(frame.depth.astype(np.float32), opacity)
            t = colour_position(dist, quantity, np.float32(low), np.float32(high), display.invert)
        rgba[..., :3] = _colours(t, display.colormap) * opacity[..., None]
    else:
        rgba[..., :3] = _colours(colour_position(opacity, quantity, np.float32(low), np.float32(high), display.invert),
                                 display.colormap)
    return rgba, Legend(quantity, display.colormap, low, high, display.invert, source)


LUT_SIZE = 4096                # colours a frame is coloured with: 1/8190 of the range apart at most


@functools.lru_cache(maxsize=None)
def _lut(name: str) -> np.ndarray:
    return apply_colormap(np.linspace(0.0, 1.0, LUT_SIZE), name)


def _colours(t: np.ndarray, name: str) -> np.ndarray:
    """apply_colormap for whole frames, in float32 and through a table (a frame of 1024^2 is coloured
    in milliseconds on the GUI thread); gray is exact. NaN and -inf count as 0, +inf as 1."""
    t = np.clip(np.nan_to_num(t.astype(np.float32, copy=False), nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
    if name == "gray":
        return np.repeat(t[..., None], 3, axis=-1)
    return _lut(name)[(t * (LUT_SIZE - 1) + 0.5).astype(np.int32)]


# -- the point under the cursor ----------------------------------------------------------------------
def pixel_direction(pose: Pose, size: Tuple[int, int], row: float, col: float) -> Tuple[float, float, float]:
    """The unit direction (world) of the ray through pixel (row, col) of an image of size (h, w) seen
    from `pose`: Camera.rays' grid (pixel centres corner-aligned on the frustum: NDC x = -1 + 2 col /
    (w - 1), y = 1 - 2 row / (h - 1)), in float64."""
    h, w = size
    x = -1.0 + 2.0 * col / max(w - 1, 1)
    y = 1.0 - 2.0 * row / max(h - 1, 1)
    focal = 1.0 / math.tan(math.radians(pose.fov) / 2)
    right, up, forward = pose.frame()
    d = [x * r + y * u + focal * f for r, u, f in zip(right, up, forward, strict=True)]
    norm = math.sqrt(sum(v * v for v in d))
    return tuple(v / norm for v in d)


def point_at_pixel(pose: Pose, size: Tuple[int, int], row: float, col: float, distance: float):
    """The 3-D point `distance` along the ray of pixel (row, col): origin + distance * direction."""
    origin = pose.origin()
    direction = pixel_direction(pose, size, row, col)
    return tuple(o + distance * d for o, d in zip(origin, direction, strict=True))


def project_point(pose: Pose, size: Tuple[int, int], point: Sequence[float]) -> Tuple[float, float]:
    """(row, col), fractional, of the pixel whose ray passes through `point` (the inverse of
    pixel_direction; for checks and tests)."""
    h, w = size
    right, up, forward = pose.frame()
    d = [p - o for p, o in zip(point, pose.origin(), strict=True)]
    dot = lambda a, b: sum(x * y for x, y in zip(a, b, strict=True))
    focal = 1.0 / math.tan(math.radians(pose.fov) / 2)
    z = dot(d, forward)
    x, y = focal * dot(d, right) / z, focal * dot(d, up) / z
    return (1.0 - y) * (h - 1) / 2.0, (x + 1.0) * (w - 1) / 2.0


@dataclass(frozen=True)
class Readout:
    """What lies under the cursor: text for the view, the frame pixel, and, over the object, its
    distance and 3-D point."""

    text: str
    pixel: Optional[Tuple[int, int]] = None          # (row, col) in the frame image
    depth: Optional[float] = None
    point: Optional[Tuple[float, float, float]] = None
    cell: Optional[str] = None                       # the compare cell's label

    def as_dict(self) -> dict:
        return {"text": self.text, "pixel": None if self.pixel is None else list(self.pixel), "depth": self.depth,
                "point": None if self.point is None else list(self.point), "cell": self.cell}


def cell_at(frame, row: int, col: int):
    """(label, (y, x, h, w), its ray interval or None) of the compare cell holding image pixel
    (row, col), None between cells; a frame without cells is one cell of the whole image."""
    cells = _cells(frame)
    h, w = frame.image.shape[:2]
    if not cells:
        return None, (0, 0, h, w), None
    for cell in cells:
        try:
            x, y, cw, ch = (int(v) for v in cell["box"])
        except (KeyError, TypeError, ValueError):
            continue
        if x <= col < x + cw and y <= row < y + ch:
            return str(cell.get("label", "")), (y, x, ch, cw), cell.get("ray_interval")
    return None


def readout_number(value: float) -> str:
    """A coordinate with three decimals, and never "-0.000"."""
    text = f"{value:.3f}"
    return "0.000" if text == "-0.000" else text


def readout_at(frame, row: int, col: int) -> Readout:
    """The readout of image pixel (row, col) of `frame` (grid-aware: the pixel's cell's own camera
    grid; every cell shares frame.request.pose)."""
    if frame is None or frame.depth is None or frame.opacity is None or frame.error:
        return Readout("")
    h, w = frame.depth.shape
    if not (0 <= row < h and 0 <= col < w):
        return Readout("")
    found = cell_at(frame, row, col)
    if found is None:
        return Readout("between cells", pixel=(row, col))
    label, (y0, x0, ch, cw), interval = found
    prefix = f"{label}: " if label else ""
    opacity = float(frame.opacity[row, col])
    distance = float(frame.depth[row, col]) / max(opacity, 1e-4)
    interval = interval or ray_interval(frame)
    if not opacity >= OBJECT_OPACITY:
        return Readout(f"{prefix}background", pixel=(row, col), cell=label)
    if interval is not None and not distance < far_end_cut((float(interval[0]), float(interval[1]))):
        return Readout(f"{prefix}background (far end)", pixel=(row, col), cell=label)
    point = point_at_pixel(frame.request.pose, (ch, cw), row - y0, col - x0, distance)
    text = f"{prefix}depth {distance:.3f}  point ({', '.join(readout_number(v) for v in point)})"
    return Readout(text, pixel=(row, col), depth=distance, point=point, cell=label)


__all__ = ["COLORMAPS", "DisplayValues", "Legend", "Readout", "coloured", "geometry_range", "point_at_pixel",
           "project_point", "pixel_direction", "readout_at", "shows_geometry", "surface_distance"]
