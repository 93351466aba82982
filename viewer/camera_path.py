"""The Camera path tab's keyframe model: a list of camera keyframes, each with the time it takes to
reach the next one, turned into the keyframe JSON that `trigan render --trajectory FILE` reads
(core.trajectories) and back, and sampled along the same Hermite spline for the live preview.

A keyframe holds yaw and pitch (radians), fov (degrees), radius, and `duration`: the seconds from
it to the next keyframe (the last keyframe's duration is kept for when another is added after it,
and does not lengthen the path). Keyframe k's time is the sum of the durations before it, so the
first is at 0 s and the path lasts the sum of all but the last duration.

The whole path shares one look-at point and one pivot (a core Trajectory orbits one point): those
of the camera when the first keyframe was added (or of a loaded file). Saving writes them as the
file's "look_at" and "pivot", so the CLI renders the same panned view.

Yaw is unwrapped along the path (each keyframe's yaw is taken as the turn nearest to the previous
keyframe's), so a path that crosses the orbit's +-180 degree seam goes the short way round, as the
person orbited, instead of spinning back through 0.

Pure Python and numpy: no DearPyGui, no torch (tests/test_camera_path.py).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from trigan.core.atomic import atomic_path
from trigan.core.cameras import Pose, Vec3
from trigan.core.errors import TriganError
from trigan.core.trajectories import (
    FRAME_FIELDS,
    Trajectory,
    hermite_spline,
    keyframe_base,
    keyframe_trajectory,
    parse_keyframes,
    read_keyframe_file,
)

DEFAULT_DURATION = 1.0              # seconds from a new keyframe to the next
MIN_DURATION, MAX_DURATION = 0.05, 600.0
MAX_KEYFRAMES = 200                 # a camera path of a paper video has a handful; 200 is a long tour


@dataclass(frozen=True)
class Keyframe:
    yaw: float
    pitch: float
    fov: float
    radius: float
    duration: float = DEFAULT_DURATION

    @classmethod
    def of_pose(cls, pose: Pose, duration: float = DEFAULT_DURATION) -> "Keyframe":
        return cls(pose.yaw, pose.pitch, pose.fov, pose.radius, check_duration(duration))

    def values(self) -> List[float]:
        """[yaw, pitch, fov, radius]: core.trajectories' keyframe value order (FRAME_FIELDS)."""
        return [getattr(self, k) for k in FRAME_FIELDS]


def check_duration(seconds) -> float:
    """A keyframe's duration in seconds, or a one-line TriganError naming the value."""
    try:
        value = float(seconds)
    except (TypeError, ValueError):
        raise TriganError(f"duration {seconds!r}: expected a number of seconds") from None
    if not (math.isfinite(value) and MIN_DURATION <= value <= MAX_DURATION):
        raise TriganError(f"duration {seconds!r}: expected {MIN_DURATION:g}..{MAX_DURATION:g} seconds")
    return value


def unwrap_yaws(yaws) -> np.ndarray:
    """Each yaw moved by whole turns to lie within half a turn of the previous one."""
    out = np.asarray(yaws, dtype=np.float64).copy()
    for i in range(1, len(out)):
        # whole turns only, so a yaw that needs none comes back bit for bit
        turns = round((out[i - 1] - out[i]) / (2 * math.pi))
        if turns:
            out[i] += 2 * math.pi * turns
    return out


class CameraPath:
    """The keyframes of a camera path and the look-at point and pivot they share."""

    def __init__(self, keyframes=(), look_at: Vec3 = (0.0, 0.0, 0.0), pivot: Vec3 = (0.0, 0.0, 0.0)):
        self.keyframes: List[Keyframe] = list(keyframes)
        self.look_at, self.pivot = tuple(look_at), tuple(pivot)

    def __len__(self) -> int:
        return len(self.keyframes)

    # -- editing ---------------------------------------------------------------------------------------
    def add(self, pose: Pose, duration: float = DEFAULT_DURATION) -> Optional[str]:
        """Append the camera `pose`. The first keyframe sets the path's look-at point and pivot; a
        later pose panned elsewhere is added with its angles, fov and radius, and the note returned
        says that the path keeps its own centre (None when there is nothing to say)."""
        if len(self.keyframes) >= MAX_KEYFRAMES:
            raise TriganError(f"{len(self.keyframes)} keyframes: a path holds at most {MAX_KEYFRAMES}")
        keyframe = Keyframe.of_pose(pose, duration)
        if not self.keyframes:
            self.look_at, self.pivot = pose.look_at, pose.pivot
        self.keyframes.append(keyframe)
        if (pose.look_at, pose.pivot) != (self.look_at, self.pivot):
            return (f"keyframe {len(self.keyframes) - 1} was added from a panned view; the path keeps "
                    "keyframe 0's centre (one pivot per path): Clear to start around the new one")
        return None

    def _index(self, index: int) -> int:
        if not 0 <= int(index) < len(self.keyframes):
            raise TriganError(f"keyframe {index}: the path has keyframes 0..{len(self.keyframes) - 1}")
        return int(index)

    def move(self, index: int, step: int) -> int:
        """Move keyframe `index` up (step -1) or down (+1); returns its new index (unchanged at an end)."""
        i = self._index(index)
        j = min(max(i + int(step), 0), len(self.keyframes) - 1)
        self.keyframes[i], self.keyframes[j] = self.keyframes[j], self.keyframes[i]
        return j

    def delete(self, index: int) -> None:
        del self.keyframes[self._index(index)]

    def clear(self) -> None:
        self.keyframes.clear()

    def set_duration(self, index: int, seconds) -> None:
        i = self._index(index)
        self.keyframes[i] = replace(self.keyframes[i], duration=check_duration(seconds))

    # -- the path --------------------------------------------------------------------------------------
    def times(self) -> np.ndarray:
        """Each keyframe's time in seconds: 0, then the running sum of the durations before it."""
        durations = [k.duration for k in self.keyframes[:-1]]
        return np.concatenate([[0.0], np.cumsum(durations)]) if self.keyframes else np.zeros(0)

    def values(self) -> np.ndarray:
        """[K, 4] yaw (unwrapped along the path), pitch, fov, radius."""
        values = np.asarray([k.values() for k in self.keyframes], dtype=np.float64).reshape(-1, 4)
        if len(values):
            values[:, 0] = unwrap_yaws(values[:, 0])
        return values

    @property
    def duration(self) -> float:
        return float(self.times()[-1]) if self.keyframes else 0.0

    def base(self) -> Pose:
        """A pose carrying the path's look-at point and pivot (its other values are the first keyframe's)."""
        first = self.keyframes[0] if self.keyframes else Keyframe(0.0, math.pi / 2, 12.0, 1.0)
        return Pose(yaw=first.yaw, pitch=first.pitch, fov=first.fov, radius=first.radius, look_at=self.look_at,
                    pivot=self.pivot)

    def pose_at(self, seconds: float) -> Pose:
        """The camera at `seconds` along the path (clamped to its ends): the Hermite spline of
        core.trajectories, the one `trigan render --trajectory` samples."""
        if not self.keyframes:
            raise TriganError("the path has no keyframes: add the current camera first")
        yaw, pitch, fov, radius = hermite_spline(self.times(), self.values(), np.asarray([float(seconds)]))[0]
        return Pose(yaw=yaw, pitch=pitch, fov=fov, radius=radius, look_at=self.look_at, pivot=self.pivot)

    def trajectory(self, fps: float = 30.0, name: str = "camera-path") -> Trajectory:
        """The frames `trigan render --trajectory FILE --fps fps` renders from this path's file."""
        if len(self.keyframes) < 2:
            raise TriganError(f"{len(self.keyframes)} keyframe(s): a path needs at least two")
        return keyframe_trajectory(self.times(), self.values(), None, fps, name=name, base=self.base())

    # -- files -----------------------------------------------------------------------------------------
    def to_json(self) -> dict:
        """The {"keyframes": [...], "look_at", "pivot"} document: every keyframe with all four values
        and its time, so the file means the same whatever base pose reads it."""
        keys = [dict(zip(FRAME_FIELDS, map(float, row), strict=True), time=float(t))
                for row, t in zip(self.values(), self.times(), strict=True)]
        return {"look_at": list(self.look_at), "pivot": list(self.pivot), "keyframes": keys}

    def save(self, path) -> Path:
        """Write the keyframe file (atomically: a failed write leaves any older file whole)."""
        if len(self.keyframes) < 2:
            raise TriganError(f"{len(self.keyframes)} keyframe(s): a path needs at least two to save")
        path = Path(path)
        if path.suffix.lower() != ".json":
            raise TriganError(f"{path}: a keyframe file ends in .json")
        text = json.dumps(self.to_json(), indent=1) + "\n"
        with atomic_path(path) as tmp:
            Path(tmp).write_text(text)
        return path

    @classmethod
    def from_json(cls, data, source: str, base: Pose) -> "CameraPath":
        """A path from a decoded keyframe document, checked as `trigan render` checks it (values a
        keyframe leaves out come from the previous one, the first's from `base`; look-at point and
        pivot from the file, else `base`'s). Durations are the gaps between times; the last keyframe
        gets the default."""
        base = keyframe_base(data, source, base)
        times, values = parse_keyframes(data, source, base)
        if len(times) > MAX_KEYFRAMES:
            raise TriganError(f"{source}: {len(times)} keyframes; the viewer edits at most {MAX_KEYFRAMES}")
        gaps = list(np.diff(times)) + [DEFAULT_DURATION]
        keyframes = [Keyframe(*map(float, row), duration=float(gap)) for row, gap in zip(values, gaps, strict=True)]
        return cls(keyframes, base.look_at, base.pivot)

    @classmethod
    def load(cls, path, base: Pose) -> "CameraPath":
        path = Path(path)
        return cls.from_json(read_keyframe_file(path), str(path), base)

    def rows(self) -> List[Tuple[int, float, float, float, float, float]]:
        """(index, yaw deg, pitch deg, radius, fov, duration) per keyframe: what the list shows."""
        return [(i, math.degrees(k.yaw), math.degrees(k.pitch), k.radius, k.fov, k.duration)
                for i, k in enumerate(self.keyframes)]
