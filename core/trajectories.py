"""Camera trajectories for videos and multi-view pictures: upstream's named paths, a full orbit, a
dolly zoom, and keyframe files with smooth interpolation.

A `Trajectory` is four arrays over frames: yaw and pitch (radians, trigan's convention: pitch is the
polar angle from +Y, pi/2 the horizon; yaw 0 on +X), fov (full angle, degrees) and radius (distance
from the origin, which the camera orbits), plus one fixed look-at point (the origin for EpiGRAF
models). Every named trajectory is built around a base pose: the model's start view
(`Pose.for_generator`) unless the user sets its values (`--camera`). For EpiGRAF models that is the
mean pose with the configured fov and radius; for 3DGP models (a learned camera generator) it is the
mean posterior camera, fov, radius and look-at included, and the look-at stays there on every frame
(reference/3dgp.md 9). The named trajectories reproduce EpiGRAF's numbers (reference/epigraf.md 8.3)
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
(or an object {"keyframes": [...]}) — angles in radians, fov in degrees, time in seconds. A missing
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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from trigan.core.cameras import Camera
from trigan.core.errors import TriganError
from trigan.core.limits import MAX_FRAMES

NAMED = ("front_circle", "points", "wiggle", "line", "orbit", "zoom")
DEFAULT_FRAMES = {"front_circle": 64, "points": 3, "wiggle": 16, "line": 16, "orbit": 64, "zoom": 64}
KEYFRAME_FIELDS = ("yaw", "pitch", "fov", "radius", "time")
POSE_FIELDS = ("yaw", "pitch", "fov", "radius")
# A keyframe file lists a few dozen poses; 16 MiB is thousands of times that.
MAX_KEYFRAME_FILE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Pose:
    """One camera orbiting the origin: yaw and pitch in radians, fov in degrees (full angle), radius in
    world units, and the point it looks at (kept as three numbers, so a Pose is a flat tuple of floats)."""

    yaw: float = 0.0
    pitch: float = math.pi / 2
    fov: float = 12.0
    radius: float = 1.0
    look_at_x: float = 0.0
    look_at_y: float = 0.0
    look_at_z: float = 0.0

    @property
    def look_at(self) -> Tuple[float, float, float]:
        return (self.look_at_x, self.look_at_y, self.look_at_z)

    @classmethod
    def for_model(cls, camera_cfg) -> "Pose":
        """The configured view of a `CameraConfig`: its mean pose, fov and radius, looking at the origin."""
        mean = list(camera_cfg.mean_pose)
        return cls(float(mean[0]), float(mean[1]), float(camera_cfg.fov), float(camera_cfg.radius))

    @classmethod
    def for_generator(cls, G, class_index: Optional[int] = None) -> "Pose":
        """The start view of a generator, shared by `trigan render`, the exports and the viewer.

        Without a camera generator: `for_model(G.cfg.camera)`. With one (3DGP): the mean posterior
        camera (`G.mean_camera`: the mean of every parameter over 1024 posterior cameras), over random
        classes as 3DGP's inference does, or over `class_index`'s own samples for a conditional model."""
        if getattr(G, "camera_generator", None) is None:
            return cls.for_model(G.cfg.camera)
        labels = G.labels([int(class_index)], 1) if class_index is not None and G.c_dim > 0 else None
        return cls.from_camera(G.mean_camera(labels))

    @classmethod
    def from_camera(cls, camera: Camera, index: int = 0) -> "Pose":
        """Camera `index` of a batch whose pivot is the origin (as every camera of a model is)."""
        yaw, pitch = camera.angles[index, :2].tolist()
        look_at = camera.look_at[index].tolist()
        return cls(yaw, pitch, float(camera.fov[index]), float(camera.radius[index]), *look_at)

    def with_values(self, **values) -> "Pose":
        return replace(self, **{k: float(v) for k, v in values.items()})


@dataclass
class Trajectory:
    """Per-frame camera values, each a float64 array [frames]."""

    name: str
    yaw: np.ndarray
    pitch: np.ndarray
    fov: np.ndarray
    radius: np.ndarray
    look_at: Tuple[float, float, float] = (0.0, 0.0, 0.0)   # the same on every frame

    def __post_init__(self):
        look_at = tuple(float(v) for v in self.look_at)
        if len(look_at) != 3:
            raise ValueError(f"trajectory {self.name}: look_at needs 3 numbers, got {len(look_at)}")
        object.__setattr__(self, "look_at", look_at)
        arrays = [np.atleast_1d(np.asarray(getattr(self, k), dtype=np.float64)) for k in POSE_FIELDS]
        n = max(len(a) for a in arrays)
        for key, a in zip(POSE_FIELDS, arrays, strict=True):
            if len(a) not in (1, n):
                raise ValueError(f"trajectory {self.name}: {key} has {len(a)} values, expected {n}")
            object.__setattr__(self, key, np.broadcast_to(a, (n,)).copy())
        if n < 1:
            raise ValueError(f"trajectory {self.name} has no frames")

    def __len__(self) -> int:
        return len(self.yaw)

    def pose(self, index: int) -> Pose:
        return Pose(*(float(getattr(self, k)[index]) for k in POSE_FIELDS), *self.look_at)

    def cameras(self, index: Optional[Sequence[int]] = None, device=None) -> Camera:
        """The frames (all, or those listed) as a batch of cameras orbiting the origin, looking at `look_at`."""
        idx = np.arange(len(self)) if index is None else np.asarray(index, dtype=np.int64)
        return Camera.from_angles(self.yaw[idx], self.pitch[idx], radius=self.radius[idx],
                                  fov=self.fov[idx], look_at=self.look_at, batch=len(idx), device=device)


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
    return Trajectory("front_circle", base.yaw + yaw_diff * s, base.pitch + pitch_diff * c,
                      base.fov + fov_diff * s, base.radius, base.look_at)


def points(base: Pose, yaws: Sequence[float] = (0.0, -0.3, 0.3)) -> Trajectory:
    return Trajectory("points", base.yaw + np.asarray(yaws, dtype=np.float64), base.pitch, base.fov, base.radius,
                      base.look_at)


def wiggle(base: Pose, frames: Optional[int] = None, yaw_range: float = 1.57, pitch_diff: float = 0.5) -> Trajectory:
    n = _frames(frames, "wiggle")
    t = np.linspace(0.0, 1.0, n)
    return Trajectory("wiggle", base.yaw + np.linspace(-yaw_range, yaw_range, n),
                      base.pitch + pitch_diff * np.cos(2 * np.pi * t), base.fov, base.radius, base.look_at)


def line(base: Pose, frames: Optional[int] = None, yaw_range: float = 1.57, pitch: float = 0.835) -> Trajectory:
    n = _frames(frames, "line")
    return Trajectory("line", base.yaw + np.linspace(-yaw_range, yaw_range, n),
                      base.pitch + (pitch - math.pi / 2), base.fov, base.radius, base.look_at)


def orbit(base: Pose, frames: Optional[int] = None) -> Trajectory:
    n = _frames(frames, "orbit")
    return Trajectory("orbit", base.yaw + 2 * np.pi * np.arange(n) / n, base.pitch, base.fov, base.radius,
                      base.look_at)


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
    return Trajectory("zoom", base.yaw, base.pitch, fov, base.radius * s, base.look_at)


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
        unknown = sorted(set(data) - {"keyframes"})
        if unknown or "keyframes" not in data:
            raise TriganError(f"{source}: expected a list of keyframes or {{\"keyframes\": [...]}}"
                              + (f", found key {unknown[0]!r}" if unknown else ""))
        data = data["keyframes"]
    if not isinstance(data, list):
        raise TriganError(f"{source}: expected a list of keyframes, got {type(data).__name__}")
    if not data:
        raise TriganError(f"{source}: no keyframes")
    current = {k: getattr(base, k) for k in POSE_FIELDS}
    times, values = [], []
    for i, key in enumerate(data):
        where = f"{source}: keyframe {i}"
        if not isinstance(key, dict):
            raise TriganError(f"{where}: expected an object like {{\"yaw\": 0.3, \"time\": 1.0}}, "
                              f"got {json.dumps(key)}")
        for name in key:
            if name not in KEYFRAME_FIELDS:
                raise TriganError(f"{where}: unknown field {name!r} (expected {', '.join(KEYFRAME_FIELDS)})")
        for name in POSE_FIELDS:
            if name in key:
                current[name] = _number(key[name], where, name)
        if not 0 < current["fov"] < 180:
            raise TriganError(f"{where}: 'fov' must be between 0 and 180 degrees, got {current['fov']:g}")
        if current["radius"] <= 0:
            raise TriganError(f"{where}: 'radius' must be positive, got {current['radius']:g}")
        values.append([current[k] for k in POSE_FIELDS])
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


def keyframe_trajectory(times: np.ndarray, values: np.ndarray, frames: Optional[int] = None,
                        fps: float = 30.0, name: str = "keyframes",
                        look_at: Tuple[float, float, float] = (0.0, 0.0, 0.0),
                        source: Optional[str] = None) -> Trajectory:
    """Frames sampled evenly over [first time, last time] from the keyframes' Hermite splines, all
    looking at `look_at`. `source` (the keyframe file) is named in errors."""
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
    return Trajectory(name, yaw, pitch, fov, radius, look_at)


def load_keyframes(path, base: Pose, frames: Optional[int] = None, fps: float = 30.0) -> Trajectory:
    path = Path(path)
    if not path.is_file():
        raise TriganError(f"{path}: no such keyframe file" if not path.exists() else f"{path}: not a file")
    if path.stat().st_size > MAX_KEYFRAME_FILE_BYTES:
        raise TriganError(f"{path}: {path.stat().st_size} bytes; a keyframe file is at most {MAX_KEYFRAME_FILE_BYTES}")
    try:
        data = json.loads(path.read_text())
    except UnicodeDecodeError:
        raise TriganError(f"{path}: not a text (JSON) file") from None
    except json.JSONDecodeError as exc:
        raise TriganError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    except (RecursionError, ValueError):   # nested past Python's stack; an integer of more than 4300 digits
        raise TriganError(f"{path}: not a usable keyframe file (nested too deeply or a number too long)") from None
    times, values = parse_keyframes(data, str(path), base)
    return keyframe_trajectory(times, values, frames, fps, name=path.stem, look_at=base.look_at, source=str(path))


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
CAMERA_KEYS = POSE_FIELDS + LOOK_AT_KEYS + ("look_at",)


def parse_camera(text: str) -> Dict[str, float]:
    """'yaw=0.3,pitch=1.4' -> {'yaw': 0.3, 'pitch': 1.4}; keys yaw, pitch (radians), fov (degrees),
    radius, look_at_x/y/z (the point looked at, world units; look_at=0 puts it at the origin);
    values are numbers or arithmetic with pi. Errors name the bad item."""
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

