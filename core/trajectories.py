"""Camera trajectories for videos and multi-view pictures: upstream's named paths, a full orbit, a
dolly zoom, and keyframe files with smooth interpolation.

A `Trajectory` is a sequence of core.cameras.Pose (`pose(i)`), kept as four arrays over frames: yaw
and pitch (radians, trigan's convention: pitch is the polar angle from +Y, pi/2 the horizon; yaw 0
on +X), fov (full angle, degrees) and radius (distance from the pivot, which the camera orbits), plus
one look-at point and one pivot shared by every frame. `cameras()` turns frames into a Camera batch.
Every named trajectory is built around a base pose and takes its look-at point and pivot: the
model's start view (`Pose.for_generator`) unless the user sets its values (`--camera`, or the
viewer's current camera, panned pivot included). For EpiGRAF models the start view is the mean pose
with the configured fov and radius, looking at the origin; for 3DGP models (a learned camera
generator) it is the mean posterior camera, fov, radius and look-at included, and the look-at stays
there on every frame (reference/3dgp.md 9). The named trajectories reproduce EpiGRAF's numbers (reference/epigraf.md 8.3)
exactly when the base pose is the horizon-level (yaw 0, pitch pi/2):

    front_circle  64 frames: yaw = y0 + 0.3 sin(2 pi t), pitch = p0 + 0.2 cos(2 pi t),
                  fov = f0 + 1.0 sin(2 pi t), t = linspace(0, 1, frames): first frame == last frame
    points        3 views: yaw offsets 0, -0.3, 0.3 at the base pitch (upstream's 1.57)
    wiggle        16 frames: yaw = y0 + linspace(-1.57, 1.57), pitch = p0 + 0.5 cos(2 pi t)
    line          16 frames: yaw = y0 + linspace(-1.57, 1.57), pitch fixed at p0 + (0.835 - pi/2)
    orbit         64 frames: yaw = y0 + 2 pi k / frames (a full turn that loops without a repeated frame)
    zoom          64 frames, a dolly zoom that loops: radius = r0 s(t), fov = 2 atan(tan(f0/2) / s(t)),
                  s(t) = 1 + (factor - 1)(1 - cos(2 pi t)) / 2, t = k / frames; radius * tan(fov/2)
                  stays r0 tan(f0/2), so the object keeps its size while the perspective flattens

A keyframe file is JSON: a list of objects with any of `yaw`, `pitch`, `fov`, `radius`, `time`
(or an object {"keyframes": [...]}) — angles in radians, fov in degrees, time in seconds. The
object form may also carry "look_at" and "pivot" (three numbers each, world units): they replace
the base pose's, so a path made around a panned view (the viewer's Camera path tab writes both)
renders the same from `trigan render --trajectory FILE` whatever --camera says. A missing
value repeats the previous keyframe's (the base pose's for the first). Either every keyframe has a
time (strictly increasing) or none does (then they are one second apart). Between keyframes each
value follows a cubic Hermite spline with Catmull-Rom tangents (centred differences over the
neighbouring keyframes, one-sided at the ends): it passes through every keyframe and its first
derivative is continuous (C1). Frames are sampled evenly from the first to the last keyframe time,
both included: round(duration * fps) + 1 frames unless a frame count is given.
"""

from __future__ import annotations

import ast
import json
import math
import operator
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np

from trigan.core.cameras import Camera, Pose, Vec3
from trigan.core.errors import TriganError
from trigan.core.limits import MAX_FRAMES

NAMED = ("front_circle", "points", "wiggle", "line", "orbit", "zoom")
DEFAULT_FRAMES = {"front_circle": 64, "points": 3, "wiggle": 16, "line": 16, "orbit": 64, "zoom": 64}
KEYFRAME_FIELDS = ("yaw", "pitch", "fov", "radius", "time")
# Top-level keys of the {"keyframes": [...]} form: the points every frame shares.
KEYFRAME_FILE_KEYS = ("keyframes", "look_at", "pivot")
# The values a trajectory holds per frame (and a keyframe may set), in keyframe-array order.
FRAME_FIELDS = ("yaw", "pitch", "fov", "radius")
# A keyframe file lists a few dozen poses; 16 MiB is thousands of times that.
MAX_KEYFRAME_FILE_BYTES = 16 * 1024 * 1024


@dataclass
class Trajectory:
    """Per-frame camera values, each a float64 array [frames], and the look-at point and pivot that
    every frame shares (the base pose's: a trajectory around a panned view orbits its pivot)."""

    name: str
    yaw: np.ndarray
    pitch: np.ndarray
    fov: np.ndarray
    radius: np.ndarray
    look_at: Vec3 = (0.0, 0.0, 0.0)
    pivot: Vec3 = (0.0, 0.0, 0.0)

    def __post_init__(self):
        for key in ("look_at", "pivot"):
            point = tuple(float(v) for v in getattr(self, key))
            if len(point) != 3:
                raise ValueError(f"trajectory {self.name}: {key} needs 3 numbers, got {len(point)}")
            object.__setattr__(self, key, point)
        arrays = [np.atleast_1d(np.asarray(getattr(self, k), dtype=np.float64)) for k in FRAME_FIELDS]
        n = max(len(a) for a in arrays)
        for key, a in zip(FRAME_FIELDS, arrays, strict=True):
            if len(a) not in (1, n):
                raise ValueError(f"trajectory {self.name}: {key} has {len(a)} values, expected {n}")
            object.__setattr__(self, key, np.broadcast_to(a, (n,)).copy())
        if n < 1:
            raise ValueError(f"trajectory {self.name} has no frames")

    @classmethod
    def around(cls, name: str, base: Pose, yaw=None, pitch=None, fov=None, radius=None) -> "Trajectory":
        """Frames of `base` with the per-frame values given (the others stay the base pose's); look-at
        point and pivot are the base pose's."""
        pick = lambda values, own: own if values is None else values
        return cls(name, pick(yaw, base.yaw), pick(pitch, base.pitch), pick(fov, base.fov), pick(radius, base.radius),
                   base.look_at, base.pivot)

    @classmethod
    def from_poses(cls, name: str, poses: Sequence[Pose]) -> "Trajectory":
        """One frame per pose; the poses share one look-at point and pivot."""
        poses = list(poses)
        if not poses:
            raise ValueError(f"trajectory {name} has no frames")
        shared = {(p.look_at, p.pivot) for p in poses}
        if len(shared) > 1:
            raise ValueError(f"trajectory {name}: its poses look at different points or orbit different pivots")
        column = lambda key: [getattr(p, key) for p in poses]
        return cls(name, *(column(k) for k in FRAME_FIELDS), poses[0].look_at, poses[0].pivot)

    def __len__(self) -> int:
        return len(self.yaw)

    def pose(self, index: int) -> Pose:
        return Pose(**{k: float(getattr(self, k)[index]) for k in FRAME_FIELDS}, look_at=self.look_at,
                    pivot=self.pivot)

    def cameras(self, index: Optional[Sequence[int]] = None, device=None) -> Camera:
        """The frames (all, or those listed) as a batch of cameras: the poses' cameras
        (`cameras_from_poses`), built from the arrays at once."""
        idx = np.arange(len(self)) if index is None else np.asarray(index, dtype=np.int64)
        return Camera.from_angles(self.yaw[idx], self.pitch[idx], radius=self.radius[idx], fov=self.fov[idx],
                                  look_at=self.look_at, pivot=self.pivot, batch=len(idx), device=device)


def _frames(frames: Optional[int], name: str) -> int:
    n = DEFAULT_FRAMES[name] if frames is None else int(frames)
    if n < 1:
        raise TriganError(f"--frames {frames}: a trajectory needs at least one frame")
    return n


# --------------------------------------------------------------------------------------------------
# Named trajectories

def front_circle(base: Pose, frames: Optional[int] = None, yaw_diff: float = 0.3, pitch_diff: float = 0.2,
                 fov_diff: float = 1.0) -> Trajectory:
    t = np.linspace(0.0, 1.0, _frames(frames, "front_circle"))
    s, c = np.sin(2 * np.pi * t), np.cos(2 * np.pi * t)
    return Trajectory.around("front_circle", base, yaw=base.yaw + yaw_diff * s, pitch=base.pitch + pitch_diff * c,
                             fov=base.fov + fov_diff * s)


def points(base: Pose, yaws: Sequence[float] = (0.0, -0.3, 0.3)) -> Trajectory:
    return Trajectory.around("points", base, yaw=base.yaw + np.asarray(yaws, dtype=np.float64))


def wiggle(base: Pose, frames: Optional[int] = None, yaw_range: float = 1.57, pitch_diff: float = 0.5) -> Trajectory:
    n = _frames(frames, "wiggle")
    t = np.linspace(0.0, 1.0, n)
    return Trajectory.around("wiggle", base, yaw=base.yaw + np.linspace(-yaw_range, yaw_range, n),
                             pitch=base.pitch + pitch_diff * np.cos(2 * np.pi * t))


def line(base: Pose, frames: Optional[int] = None, yaw_range: float = 1.57, pitch: float = 0.835) -> Trajectory:
    n = _frames(frames, "line")
    return Trajectory.around("line", base, yaw=base.yaw + np.linspace(-yaw_range, yaw_range, n),
                             pitch=base.pitch + (pitch - math.pi / 2))


def orbit(base: Pose, frames: Optional[int] = None) -> Trajectory:
    n = _frames(frames, "orbit")
    return Trajectory.around("orbit", base, yaw=base.yaw + 2 * np.pi * np.arange(n) / n)


def zoom(base: Pose, frames: Optional[int] = None, factor: float = 2.0) -> Trajectory:
    """Dolly zoom: the camera backs away to `factor` times the base radius and returns while the fov
    narrows so that radius * tan(fov / 2) stays constant."""
    if factor <= 0:
        raise ValueError(f"zoom factor must be positive, got {factor}")
    n = _frames(frames, "zoom")
    t = np.arange(n) / n
    s = 1.0 + (factor - 1.0) * (1.0 - np.cos(2 * np.pi * t)) / 2
    half = math.tan(math.radians(base.fov) / 2)
    fov = np.degrees(2 * np.arctan(half / s))
    return Trajectory.around("zoom", base, fov=fov, radius=base.radius * s)


# --------------------------------------------------------------------------------------------------
# Keyframes

def hermite_spline(times: np.ndarray, values: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Cubic Hermite interpolation with Catmull-Rom tangents (non-uniform times).

    times [K] strictly increasing, values [K, D], query [F] -> [F, D]. The tangent at keyframe k is
    (v[k+1] - v[k-1]) / (t[k+1] - t[k-1]), one-sided at the two ends; queries outside [t0, tK-1]
    clamp to the end values. Two keyframes give a straight line, one a constant.
    """
    times = np.asarray(times, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    query = np.asarray(query, dtype=np.float64)
    if values.ndim == 1:
        return hermite_spline(times, values[:, None], query)[:, 0]
    k = len(times)
    if k == 1:
        return np.repeat(values, len(query), axis=0)
    if np.any(np.diff(times) <= 0):
        raise ValueError("keyframe times must increase strictly")
    tangents = np.empty_like(values)
    tangents[0] = (values[1] - values[0]) / (times[1] - times[0])
    tangents[-1] = (values[-1] - values[-2]) / (times[-1] - times[-2])
    if k > 2:
        tangents[1:-1] = (values[2:] - values[:-2]) / (times[2:] - times[:-2])[:, None]
    q = np.clip(query, times[0], times[-1])
    seg = np.clip(np.searchsorted(times, q, side="right") - 1, 0, k - 2)
    t0, t1 = times[seg], times[seg + 1]
    h = (t1 - t0)[:, None]
    u = ((q - t0) / (t1 - t0))[:, None]
    h00 = 2 * u ** 3 - 3 * u ** 2 + 1
    h10 = u ** 3 - 2 * u ** 2 + u
    h01 = -2 * u ** 3 + 3 * u ** 2
    h11 = u ** 3 - u ** 2
    return h00 * values[seg] + h10 * h * tangents[seg] + h01 * values[seg + 1] + h11 * h * tangents[seg + 1]


def _number(value, where: str, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TriganError(f"{where}: {key!r} must be a finite number, got {json.dumps(value)}")
    return float(value)


def parse_keyframes(data, source: str, base: Pose) -> tuple:
    """JSON data (already decoded) -> (times [K], values [K, 4] yaw, pitch, fov, radius)."""
    if isinstance(data, dict):
        unknown = sorted(set(data) - set(KEYFRAME_FILE_KEYS))
        if unknown or "keyframes" not in data:
            raise TriganError(f"{source}: expected a list of keyframes or {{\"keyframes\": [...]}}"
                              + (f", found key {unknown[0]!r} (expected {', '.join(KEYFRAME_FILE_KEYS)})"
                                 if unknown else ""))
        data = data["keyframes"]
    if not isinstance(data, list):
        raise TriganError(f"{source}: expected a list of keyframes, got {type(data).__name__}")
    if not data:
        raise TriganError(f"{source}: no keyframes")
    current = {k: getattr(base, k) for k in FRAME_FIELDS}
    times, values = [], []
    for i, key in enumerate(data):
        where = f"{source}: keyframe {i}"
        if not isinstance(key, dict):
            raise TriganError(f"{where}: expected an object like {{\"yaw\": 0.3, \"time\": 1.0}}, "
                              f"got {json.dumps(key)}")
        for name in key:
            if name not in KEYFRAME_FIELDS:
                raise TriganError(f"{where}: unknown field {name!r} (expected {', '.join(KEYFRAME_FIELDS)})")
        for name in FRAME_FIELDS:
            if name in key:
                current[name] = _number(key[name], where, name)
        if not 0 < current["fov"] < 180:
            raise TriganError(f"{where}: 'fov' must be between 0 and 180 degrees, got {current['fov']:g}")
        if current["radius"] <= 0:
            raise TriganError(f"{where}: 'radius' must be positive, got {current['radius']:g}")
        values.append([current[k] for k in FRAME_FIELDS])
        times.append(_number(key["time"], where, "time") if "time" in key else None)
    timed = [t is not None for t in times]
    if any(timed) and not all(timed):
        missing = timed.index(False)
        raise TriganError(f"{source}: keyframe {missing}: no 'time' (either every keyframe has one or none)")
    if not any(timed):
        times = [float(i) for i in range(len(values))]
    for i in range(1, len(times)):
        if times[i] <= times[i - 1]:
            raise TriganError(f"{source}: keyframe {i}: 'time' {times[i]:g} does not come after {times[i - 1]:g}")
    return np.asarray(times), np.asarray(values)


def _point(value, source: str, key: str) -> Vec3:
    if (not isinstance(value, list) or len(value) != 3
            or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in value)):
        shown = json.dumps(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise TriganError(f"{source}: {key!r} must be three finite numbers [x, y, z], got {shown}")
    return tuple(float(v) for v in value)


def keyframe_base(data, source: str, base: Pose) -> Pose:
    """`base` with the file's own "look_at" and "pivot" (the {"keyframes": [...]} form may carry
    them; a plain list keeps the base pose's)."""
    if not isinstance(data, dict):
        return base
    points = {key: _point(data[key], source, key) for key in ("look_at", "pivot") if key in data}
    return base.with_values(**points) if points else base


def read_keyframe_file(path) -> object:
    """The decoded JSON of a keyframe file, its size bounded before it is read; one-line
    TriganError for a missing, huge, binary or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise TriganError(f"{path}: no such keyframe file" if not path.exists() else f"{path}: not a file")
    if path.stat().st_size > MAX_KEYFRAME_FILE_BYTES:
        raise TriganError(f"{path}: {path.stat().st_size} bytes; a keyframe file is at most {MAX_KEYFRAME_FILE_BYTES}")
    try:
        return json.loads(path.read_text())
    except UnicodeDecodeError:
        raise TriganError(f"{path}: not a text (JSON) file") from None
    except json.JSONDecodeError as exc:
        raise TriganError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    except (RecursionError, ValueError):   # nested past Python's stack; an integer of more than 4300 digits
        raise TriganError(f"{path}: not a usable keyframe file (nested too deeply or a number too long)") from None


def keyframe_trajectory(times: np.ndarray, values: np.ndarray, frames: Optional[int] = None,
                        fps: float = 30.0, name: str = "keyframes", base: Optional[Pose] = None,
                        source: Optional[str] = None) -> Trajectory:
    """Frames sampled evenly over [first time, last time] from the keyframes' Hermite splines, all
    with the look-at point and pivot of `base` (default: the origin's). `source` (the keyframe file) is
    named in errors."""
    base = Pose() if base is None else base
    duration = float(times[-1] - times[0])
    if frames is None:
        # A keyframe file's times set the length: bound it before a 'time' of 1e9 asks for a billion frames.
        if not (math.isfinite(duration) and math.isfinite(fps) and duration * fps + 1 <= MAX_FRAMES):
            raise TriganError(f"{source or name}: the keyframes span {duration:g} s, {duration * fps + 1:.0f} frames at "
                              f"{fps:g} fps; at most {MAX_FRAMES} (shorten the times or pass --frames)")
        n = max(1, int(round(duration * fps)) + 1)
    else:
        n = int(frames)
    if not 1 <= n <= MAX_FRAMES:
        raise TriganError(f"--frames {frames}: a trajectory has 1..{MAX_FRAMES} frames")
    query = np.linspace(times[0], times[-1], n) if n > 1 else np.asarray([times[0]])
    yaw, pitch, fov, radius = hermite_spline(times, values, query).T
    return Trajectory(name, yaw, pitch, fov, radius, base.look_at, base.pivot)


def load_keyframes(path, base: Pose, frames: Optional[int] = None, fps: float = 30.0) -> Trajectory:
    """The trajectory of a keyframe file around `base` (whose look-at point and pivot the file's own
    replace, when it has them)."""
    path = Path(path)
    data = read_keyframe_file(path)
    base = keyframe_base(data, str(path), base)
    times, values = parse_keyframes(data, str(path), base)
    return keyframe_trajectory(times, values, frames, fps, name=path.stem, base=base, source=str(path))


def make_trajectory(spec: str, base: Pose, frames: Optional[int] = None, fps: float = 30.0) -> Trajectory:
    """A named trajectory (see NAMED) or a keyframe file (a path ending in .json, or an existing file)."""
    spec = str(spec)
    if spec in NAMED:
        if spec == "points":
            return points(base)
        return {"front_circle": front_circle, "wiggle": wiggle, "line": line, "orbit": orbit,
                "zoom": zoom}[spec](base, frames)
    if spec.lower().endswith(".json") or Path(spec).is_file():
        return load_keyframes(spec, base, frames, fps)
    raise TriganError(f"--trajectory {spec}: unknown trajectory (expected {', '.join(NAMED)} or a keyframe FILE.json)")


# --------------------------------------------------------------------------------------------------
# `--camera yaw=0.3,pitch=pi/2,fov=18,radius=1.2`

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def _eval_number(text: str) -> float:
    """A number, or simple arithmetic with `pi` ("pi/2", "-0.25*pi", "1.57"); nothing else is run."""
    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return float(node.value)
        if isinstance(node, ast.Name) and node.id == "pi":
            return math.pi
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            v = ev(node.operand)
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.left), ev(node.right))
        raise ValueError(text)
    value = ev(ast.parse(text.strip(), mode="eval"))
    if not math.isfinite(value):
        raise ValueError(text)
    return value


LOOK_AT_KEYS = ("look_at_x", "look_at_y", "look_at_z")
CAMERA_KEYS = FRAME_FIELDS + LOOK_AT_KEYS + ("look_at",)


def parse_camera(text: str) -> Dict[str, float]:
    """'yaw=0.3,pitch=1.4' -> {'yaw': 0.3, 'pitch': 1.4}; keys yaw, pitch (radians), fov (degrees),
    radius, look_at_x/y/z (the point looked at, world units; look_at=0 puts it at the origin);
    values are numbers or arithmetic with pi. Errors name the bad item. Parsed before the model is
    loaded; `apply_camera_values` puts them on the model's start view."""
    out: Dict[str, float] = {}
    if text is None or not str(text).strip():
        raise TriganError("--camera: expected key=value pairs like yaw=0.3,pitch=1.4")
    for item in str(text).split(","):
        if "=" not in item:
            raise TriganError(f"--camera {text}: {item.strip()!r} is not key=value (keys: {', '.join(CAMERA_KEYS)})")
        key, value = (s.strip() for s in item.split("=", 1))
        if key not in CAMERA_KEYS:
            raise TriganError(f"--camera {text}: unknown key {key!r} (expected {', '.join(CAMERA_KEYS)})")
        keys = LOOK_AT_KEYS if key == "look_at" else (key,)
        if any(k in out for k in keys):
            raise TriganError(f"--camera {text}: {key} given twice")
        try:
            number = _eval_number(value)
        except (ValueError, SyntaxError, ZeroDivisionError, TypeError):
            raise TriganError(f"--camera {text}: {key}={value!r} is not a number (radians; pi allowed, e.g. pi/2)") from None
        if key == "look_at" and number != 0:
            raise TriganError(f"--camera {text}: look_at={value} (only look_at=0, the origin; give other points "
                              "as look_at_x, look_at_y, look_at_z)")
        out.update({k: number for k in keys})
    if "fov" in out and not 0 < out["fov"] < 180:
        raise TriganError(f"--camera {text}: fov must be between 0 and 180 degrees, got {out['fov']:g}")
    if "radius" in out and out["radius"] <= 0:
        raise TriganError(f"--camera {text}: radius must be positive, got {out['radius']:g}")
    return out


def apply_camera_values(base: Pose, values: Dict[str, float]) -> Pose:
    """`base` with parse_camera's values: each look_at_x/y/z replaces one coordinate of its look-at
    point (the pivot stays), the others replace the pose's own values."""
    look_at = tuple(values.get(key, own) for key, own in zip(LOOK_AT_KEYS, base.look_at, strict=True))
    return base.with_values(look_at=look_at, **{k: v for k, v in values.items() if k not in LOOK_AT_KEYS})
