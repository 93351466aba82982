"""The viewer's camera: an immutable orbit pose and the controller that turns mouse and keys into it.

Angles follow core.cameras: yaw and pitch in radians, pitch the polar angle from +Y (pi/2 = level
with the horizon, smaller = higher up), yaw 0 on +X, increasing yaw moves the camera toward +Z,
which is the camera's own left. fov is the full angle in degrees. The camera sits at
`pivot + radius * (sin p cos y, cos p, sin p sin y)` and looks at `look_at`; for EpiGRAF models both
are the origin, for 3DGP models the look-at point may sit off the pivot.

Mouse mapping (screen pixels, x to the right, y downward, as GUI toolkits report them):

* left drag grabs the object: dragging right by dx pixels turns yaw by +dx * k (the near surface
  follows the cursor), dragging down by dy turns pitch by -dy * k (the camera rises), with
  k = pi / min(viewport width, height): a drag across the shorter side of the view turns half a
  circle. Pitch stays within [PITCH_MIN, pi - PITCH_MIN], short of the poles.
* right or middle drag pans: pivot and look-at move together in the camera's image plane
  (perpendicular to the view direction) so that the point under the cursor at the look-at depth
  follows the cursor exactly.
* the wheel zooms: radius *= ZOOM_STEP ** -steps (positive steps = toward the object); zooming in
  and out by the same number of steps returns the same radius. Radius stays within
  [RADIUS_MIN_FACTOR, RADIUS_MAX_FACTOR] times the model's start radius.

Keys move the camera itself: "left"/"right" walk it around the object to its left/right
(yaw +/- KEY_ORBIT_STEP), "up"/"down" raise/lower it (pitch -/+ KEY_ORBIT_STEP), "plus"/"minus"
zoom in/out by one wheel step, "r" resets to the start pose.

Presets are absolute views relative to the model's front (its start yaw): front = start yaw,
side = start yaw + pi/2, back = start yaw + pi, all level (pitch pi/2); top = start yaw from
straight above (pitch PITCH_MIN). A preset keeps the radius and fov and re-centres pivot and
look-at on the start pose's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Optional, Tuple

from trigan.core.cameras import PITCH_EPS, Camera
from trigan.core.errors import TriganError
from trigan.core.trajectories import Pose

PITCH_MIN = 0.05                       # radians kept away from either pole
ZOOM_STEP = 1.1                        # radius factor per wheel step
RADIUS_MIN_FACTOR, RADIUS_MAX_FACTOR = 0.25, 4.0
KEY_ORBIT_STEP = math.radians(5.0)     # radians per arrow key press
FOV_MIN, FOV_MAX = 1.0, 120.0          # degrees
PRESETS = ("front", "side", "top", "back")
KEYS = ("left", "right", "up", "down", "plus", "minus", "r")
Vec3 = Tuple[float, float, float]


def wrap_angle(angle: float) -> float:
    """The same direction in [-pi, pi) (angles already there are returned unchanged, bit for bit)."""
    angle = float(angle)
    if -math.pi <= angle < math.pi:
        return angle
    return (angle + math.pi) % (2 * math.pi) - math.pi


def clamp_pitch(pitch: float) -> float:
    return min(max(float(pitch), PITCH_MIN), math.pi - PITCH_MIN)


def _vec3(value, name: str) -> Vec3:
    try:
        out = tuple(float(v) for v in value)
    except TypeError:
        raise TriganError(f"{name} {value!r}: expected three numbers (x, y, z)") from None
    if len(out) != 3 or not all(math.isfinite(v) for v in out):
        raise TriganError(f"{name} {value!r}: expected three finite numbers (x, y, z)")
    return out


# Small 3-vector helpers: the controller runs in the GUI thread and must not touch torch.
def _add(a: Vec3, b: Vec3, s: float = 1.0) -> Vec3:
    return (a[0] + s * b[0], a[1] + s * b[1], a[2] + s * b[2])


def _cross(a: Vec3, b: Vec3) -> Vec3:
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def _norm(a: Vec3) -> float:
    return math.sqrt(a[0] * a[0] + a[1] * a[1] + a[2] * a[2])


def _unit(a: Vec3) -> Vec3:
    n = _norm(a)
    return (a[0] / n, a[1] / n, a[2] / n)


@dataclass(frozen=True)
class OrbitState:
    """One camera pose (immutable, hashable: part of a RenderRequest)."""

    yaw: float = 0.0
    pitch: float = math.pi / 2
    radius: float = 1.0
    fov: float = 12.0
    look_at: Vec3 = (0.0, 0.0, 0.0)
    pivot: Vec3 = (0.0, 0.0, 0.0)      # the point the camera orbits (moves with look_at when panning)

    def __post_init__(self):
        for name in ("yaw", "pitch", "radius", "fov"):
            value = getattr(self, name)
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise TriganError(f"camera {name} {value!r}: expected a number") from None
            if not math.isfinite(value):
                raise TriganError(f"camera {name} {value}: expected a finite number")
            object.__setattr__(self, name, value)
        if self.radius <= 0:
            raise TriganError(f"camera radius {self.radius:g}: expected a positive distance")
        if not 0 < self.fov < 180:
            raise TriganError(f"camera fov {self.fov:g}: expected 0..180 degrees")
        object.__setattr__(self, "look_at", _vec3(self.look_at, "camera look_at"))
        object.__setattr__(self, "pivot", _vec3(self.pivot, "camera pivot"))

    # -- construction ------------------------------------------------------------------------------
    @classmethod
    def for_model(cls, cfg, G=None, class_index: Optional[int] = None) -> "OrbitState":
        """The model's start pose: its mean pose, fov and radius (cfg: a ModelConfig or a Config).

        With the generator G (called from the render worker, never the GUI thread): a model with a
        learned camera generator (3DGP) starts at its mean posterior camera for the class
        (core.trajectories.Pose.for_generator; `trigan render` takes the mean over all classes)."""
        cfg = getattr(cfg, "model", cfg)
        cam = cfg.camera
        state = cls(yaw=float(cam.mean_pose[0]), pitch=float(cam.mean_pose[1]), radius=float(cam.radius),
                    fov=float(cam.fov))
        if G is not None and getattr(G, "camera_generator", None) is not None:
            pose = Pose.for_generator(G, class_index)
            state = cls(yaw=pose.yaw, pitch=pose.pitch, radius=pose.radius, fov=pose.fov, look_at=pose.look_at)
        return state

    @classmethod
    def from_camera(cls, camera, index: int = 0) -> "OrbitState":
        """The pose of camera `index` of a core.cameras.Camera batch."""
        angles = camera.angles[index].tolist()
        return cls(yaw=angles[0], pitch=angles[1], radius=float(camera.radius[index]), fov=float(camera.fov[index]),
                   look_at=tuple(camera.look_at[index].tolist()), pivot=tuple(camera.pivot[index].tolist()))

    def with_values(self, **values) -> "OrbitState":
        unknown = set(values) - {f.name for f in fields(self)}
        if unknown:
            raise TriganError(f"camera: unknown value {sorted(unknown)[0]!r} "
                              f"(expected {', '.join(f.name for f in fields(self))})")
        return replace(self, **values)

    def to_camera(self, device=None):
        """A batch of one core.cameras.Camera."""
        return Camera.from_angles(self.yaw, self.pitch, radius=self.radius, fov=self.fov, look_at=self.look_at,
                                  pivot=self.pivot, device=device)

    # -- geometry (plain floats, same formulas as core.cameras) -------------------------------------
    def origin(self) -> Vec3:
        p = min(max(self.pitch, PITCH_EPS), math.pi - PITCH_EPS)   # as Camera.pitch clamps it
        offset = (self.radius * math.sin(p) * math.cos(self.yaw), self.radius * math.cos(p),
                  self.radius * math.sin(p) * math.sin(self.yaw))
        return _add(self.pivot, offset)

    def frame(self) -> Tuple[Vec3, Vec3, Vec3]:
        """(right, up, forward) unit vectors of the camera, as core.cameras.Camera.cam2world builds them."""
        forward = _unit(_add(self.look_at, self.origin(), -1.0))
        left = _unit(_cross((0.0, 1.0, 0.0), forward))
        up = _unit(_cross(forward, left))
        return (-left[0], -left[1], -left[2]), up, forward

    def distance(self) -> float:
        """From the camera to the look-at point (the depth panning is exact at)."""
        return _norm(_add(self.look_at, self.origin(), -1.0))


class OrbitController:
    """Mouse, wheel, keys, presets and numeric fields -> an OrbitState. Used from the GUI thread."""

    def __init__(self, start: OrbitState):
        self._start = start
        self._state = start
        self.version = 0

    @property
    def state(self) -> OrbitState:
        return self._state

    @property
    def start(self) -> OrbitState:
        return self._start

    def _set_state(self, state: OrbitState) -> OrbitState:
        if state != self._state:
            self._state = state
            self.version += 1
        return self._state

    def set_start(self, start: OrbitState, reset: bool = True) -> None:
        """A new model (or class, for 3DGP) brings a new start pose; by default the view jumps to it."""
        self._start = start
        if reset:
            self.reset()

    # -- mouse -------------------------------------------------------------------------------------
    @staticmethod
    def orbit_rate(viewport_size) -> float:
        """Radians per pixel of a left drag: pi across the shorter side of the view."""
        w, h = (float(v) for v in viewport_size)
        return math.pi / max(1.0, min(w, h))

    def drag(self, dx_pixels: float, dy_pixels: float, button: str, viewport_size) -> OrbitState:
        s = self._state
        dx, dy = float(dx_pixels), float(dy_pixels)
        if button == "left":
            k = self.orbit_rate(viewport_size)
            return self._set_state(replace(s, yaw=wrap_angle(s.yaw + k * dx), pitch=clamp_pitch(s.pitch - k * dy)))
        if button in ("right", "middle"):
            w, h = (max(1.0, float(v)) for v in viewport_size)
            # World units per pixel at the look-at depth: NDC spans 2 over the width (height) and one
            # NDC unit is depth * tan(fov / 2) there.
            half = s.distance() * math.tan(math.radians(s.fov) / 2)
            right, up, _ = s.frame()
            # Moving the camera by -t shifts everything at that depth by +t on screen.
            move = _add(_add((0.0, 0.0, 0.0), right, -dx * 2 * half / w), up, dy * 2 * half / h)
            return self._set_state(replace(s, look_at=_add(s.look_at, move), pivot=_add(s.pivot, move)))
        raise ValueError(f"unknown mouse button {button!r} (expected left, right or middle)")

    def wheel(self, steps: float) -> OrbitState:
        s = self._state
        lo, hi = self._start.radius * RADIUS_MIN_FACTOR, self._start.radius * RADIUS_MAX_FACTOR
        radius = min(max(s.radius * ZOOM_STEP ** (-float(steps)), lo), hi)
        return self._set_state(replace(s, radius=radius))

    # -- keys, presets, fields -----------------------------------------------------------------------
    def key(self, name: str) -> OrbitState:
        s = self._state
        if name == "left":
            return self._set_state(replace(s, yaw=wrap_angle(s.yaw + KEY_ORBIT_STEP)))
        if name == "right":
            return self._set_state(replace(s, yaw=wrap_angle(s.yaw - KEY_ORBIT_STEP)))
        if name == "up":
            return self._set_state(replace(s, pitch=clamp_pitch(s.pitch - KEY_ORBIT_STEP)))
        if name == "down":
            return self._set_state(replace(s, pitch=clamp_pitch(s.pitch + KEY_ORBIT_STEP)))
        if name == "plus":
            return self.wheel(1)
        if name == "minus":
            return self.wheel(-1)
        if name == "r":
            return self.reset()
        raise ValueError(f"unknown key {name!r} (expected {', '.join(KEYS)})")

    def reset(self) -> OrbitState:
        return self._set_state(self._start)

    def preset(self, name: str) -> OrbitState:
        yaw0 = self._start.yaw
        angles = {"front": (yaw0, math.pi / 2), "side": (yaw0 + math.pi / 2, math.pi / 2),
                  "back": (yaw0 + math.pi, math.pi / 2), "top": (yaw0, PITCH_MIN)}
        if name not in angles:
            raise ValueError(f"unknown view preset {name!r} (expected {', '.join(PRESETS)})")
        yaw, pitch = angles[name]
        return self._set_state(replace(self._state, yaw=wrap_angle(yaw), pitch=pitch,
                                       look_at=self._start.look_at, pivot=self._start.pivot))

    def set(self, **values) -> OrbitState:
        """Numeric fields: yaw, pitch (radians), radius, fov (degrees), look_at, pivot. Out-of-range
        values are clamped the way the mouse clamps them (pitch short of the poles, fov 1..120,
        radius within the zoom range); non-numbers, radius <= 0 and fov outside (0, 180) raise
        TriganError (the state is unchanged)."""
        s = self._state.with_values(**values)
        lo, hi = self._start.radius * RADIUS_MIN_FACTOR, self._start.radius * RADIUS_MAX_FACTOR
        s = replace(s, yaw=wrap_angle(s.yaw), pitch=clamp_pitch(s.pitch), radius=min(max(s.radius, lo), hi),
                    fov=min(max(s.fov, FOV_MIN), FOV_MAX))
        return self._set_state(s)
