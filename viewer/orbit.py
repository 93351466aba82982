"""The viewer's camera controller: turns mouse, wheel, keys, presets and numeric fields into a new
core.cameras.Pose (the one camera pose of trigan; this module only edits it, core turns it into
cameras and computes where the camera sits).

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
from dataclasses import replace

from trigan.core.cameras import Pose, Vec3

PITCH_MIN = 0.05                       # radians kept away from either pole
ZOOM_STEP = 1.1                        # radius factor per wheel step
RADIUS_MIN_FACTOR, RADIUS_MAX_FACTOR = 0.25, 4.0
KEY_ORBIT_STEP = math.radians(5.0)     # radians per arrow key press
FOV_MIN, FOV_MAX = 1.0, 120.0          # degrees
PRESETS = ("front", "side", "top", "back")
KEYS = ("left", "right", "up", "down", "plus", "minus", "r")


def wrap_angle(angle: float) -> float:
    """The same direction in [-pi, pi) (angles already there are returned unchanged, bit for bit)."""
    angle = float(angle)
    if -math.pi <= angle < math.pi:
        return angle
    return (angle + math.pi) % (2 * math.pi) - math.pi


def clamp_pitch(pitch: float) -> float:
    return min(max(float(pitch), PITCH_MIN), math.pi - PITCH_MIN)


# Plain-float vector sums: a pan step needs nothing more, and the frame comes from core.
def _add(a: Vec3, b: Vec3, s: float = 1.0) -> Vec3:
    return (a[0] + s * b[0], a[1] + s * b[1], a[2] + s * b[2])


class OrbitController:
    """Mouse, wheel, keys, presets and numeric fields -> a new Pose. Used from the GUI thread.

    `pose` is the current camera, `start` the model's start pose (reset, presets and the zoom range
    are relative to it); `version` counts the changes, so a reader redraws only when it moved."""

    def __init__(self, start: Pose):
        self._start = start
        self._pose = start
        self.version = 0

    @property
    def pose(self) -> Pose:
        return self._pose

    @property
    def start(self) -> Pose:
        return self._start

    def _set_pose(self, pose: Pose) -> Pose:
        if pose != self._pose:
            self._pose = pose
            self.version += 1
        return self._pose

    def set_start(self, start: Pose, reset: bool = True) -> None:
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

    def drag(self, dx_pixels: float, dy_pixels: float, button: str, viewport_size) -> Pose:
        p = self._pose
        dx, dy = float(dx_pixels), float(dy_pixels)
        if button == "left":
            k = self.orbit_rate(viewport_size)
            return self._set_pose(replace(p, yaw=wrap_angle(p.yaw + k * dx), pitch=clamp_pitch(p.pitch - k * dy)))
        if button in ("right", "middle"):
            w, h = (max(1.0, float(v)) for v in viewport_size)
            # World units per pixel at the look-at depth: NDC spans 2 over the width (height) and one
            # NDC unit is depth * tan(fov / 2) there.
            half = p.distance() * math.tan(math.radians(p.fov) / 2)
            right, up, _ = p.frame()
            # Moving the camera by -t shifts everything at that depth by +t on screen.
            move = _add(_add((0.0, 0.0, 0.0), right, -dx * 2 * half / w), up, dy * 2 * half / h)
            return self._set_pose(replace(p, look_at=_add(p.look_at, move), pivot=_add(p.pivot, move)))
        raise ValueError(f"unknown mouse button {button!r} (expected left, right or middle)")

    def wheel(self, steps: float) -> Pose:
        p = self._pose
        lo, hi = self._start.radius * RADIUS_MIN_FACTOR, self._start.radius * RADIUS_MAX_FACTOR
        radius = min(max(p.radius * ZOOM_STEP ** (-float(steps)), lo), hi)
        return self._set_pose(replace(p, radius=radius))

    # -- keys, presets, fields -----------------------------------------------------------------------
    def key(self, name: str) -> Pose:
        p = self._pose
        if name == "left":
            return self._set_pose(replace(p, yaw=wrap_angle(p.yaw + KEY_ORBIT_STEP)))
        if name == "right":
            return self._set_pose(replace(p, yaw=wrap_angle(p.yaw - KEY_ORBIT_STEP)))
        if name == "up":
            return self._set_pose(replace(p, pitch=clamp_pitch(p.pitch - KEY_ORBIT_STEP)))
        if name == "down":
            return self._set_pose(replace(p, pitch=clamp_pitch(p.pitch + KEY_ORBIT_STEP)))
        if name == "plus":
            return self.wheel(1)
        if name == "minus":
            return self.wheel(-1)
        if name == "r":
            return self.reset()
        raise ValueError(f"unknown key {name!r} (expected {', '.join(KEYS)})")

    def reset(self) -> Pose:
        return self._set_pose(self._start)

    def preset(self, name: str) -> Pose:
        yaw0 = self._start.yaw
        angles = {"front": (yaw0, math.pi / 2), "side": (yaw0 + math.pi / 2, math.pi / 2),
                  "back": (yaw0 + math.pi, math.pi / 2), "top": (yaw0, PITCH_MIN)}
        if name not in angles:
            raise ValueError(f"unknown view preset {name!r} (expected {', '.join(PRESETS)})")
        yaw, pitch = angles[name]
        return self._set_pose(replace(self._pose, yaw=wrap_angle(yaw), pitch=pitch,
                                      look_at=self._start.look_at, pivot=self._start.pivot))

    def set(self, **values) -> Pose:
        """Numeric fields: yaw, pitch (radians), radius, fov (degrees), look_at, pivot. Out-of-range
        values are clamped the way the mouse clamps them (pitch short of the poles, fov 1..120,
        radius within the zoom range); non-numbers, radius <= 0 and fov outside (0, 180) raise
        TriganError (the pose is unchanged)."""
        p = self._pose.with_values(**values)
        lo, hi = self._start.radius * RADIUS_MIN_FACTOR, self._start.radius * RADIUS_MAX_FACTOR
        p = replace(p, yaw=wrap_angle(p.yaw), pitch=clamp_pitch(p.pitch), radius=min(max(p.radius, lo), hi),
                    fov=min(max(p.fov, FOV_MIN), FOV_MAX))
        return self._set_pose(p)
