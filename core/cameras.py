"""Cameras: batched orbit cameras, camera-to-world matrices, rays for images and patches, priors.

Conventions (EpiGRAF; docs/architecture.md):
* +Y is up. Angles (yaw, pitch, roll) in radians; pitch is the polar angle from +Y (pi/2 is the
  horizon); yaw 0 puts the camera on +X; increasing yaw moves it toward +Z. Roll is carried, unused.
* The camera sits at `pivot + radius * (sin p cos y, cos p, sin p sin y)` and looks at `look_at`
  (3DGP's ball-in-sphere model: pivot at the origin, look-at point inside a small ball).
* OpenGL-style camera frame: x right, y up, looking down -z. `fov` is the full angle in degrees.
* Pixel grid: NDC x from -1 (left) to +1 (right), y from +1 (top) to -1 (bottom), corner-aligned
  (the outermost pixel centres lie on the frustum edges).
* A patch (scale s, offset (ox, oy) in [0, 1], (0, 0) = bottom-left) maps NDC u to (u+1)s - 1 + 2o.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Optional, Sequence, Tuple, Union

import torch

from trigan.core.camera_priors import prior_pitch_range, prior_yaw_range
from trigan.core.config import CameraConfig
from trigan.core.errors import TriganError

PITCH_EPS = 1e-5
Number = Union[float, Sequence[float], torch.Tensor]
Vec3 = Tuple[float, float, float]


def _batched(value, batch: int, width: Optional[int], device, dtype) -> torch.Tensor:
    t = torch.as_tensor(value, dtype=dtype, device=device)
    shape = (batch,) if width is None else (batch, width)
    return t.expand(shape).clone() if t.ndim < len(shape) else t.reshape(shape).clone()


def spherical_to_cartesian(yaw, pitch, radius):
    """Point at (yaw, pitch, radius) in trigan's convention: tensors give [..., 3], plain floats a
    tuple of three floats. The one formula for both, so a Pose (floats, the viewer's) and a Camera
    (tensors, the renderer's) put the camera at the same place."""
    if isinstance(yaw, torch.Tensor):
        sin, cos = torch.sin, torch.cos
    else:
        sin, cos = math.sin, math.cos
    xyz = (radius * sin(pitch) * cos(yaw), radius * cos(pitch), radius * sin(pitch) * sin(yaw))
    return torch.stack(xyz, dim=-1) if isinstance(yaw, torch.Tensor) else tuple(float(v) for v in xyz)


def clamp_polar(pitch):
    """Pitch kept PITCH_EPS away from the poles, where the look-at frame is undefined (floats or a
    tensor; a copy, never in place)."""
    if isinstance(pitch, torch.Tensor):
        return pitch.clamp(PITCH_EPS, math.pi - PITCH_EPS)
    return min(max(float(pitch), PITCH_EPS), math.pi - PITCH_EPS)


@dataclass
class PatchParams:
    """Per-sample patch of the image plane: isotropic scale and (x, y) offset, both in [0, 1]."""

    scale: torch.Tensor   # [B]
    offset: torch.Tensor  # [B, 2]

    def as_vector(self) -> torch.Tensor:
        """[scale, offset_x, offset_y], the discriminator's patch code input."""
        return torch.cat([self.scale[:, None], self.offset], dim=1)


@dataclass
class Camera:
    """A batch of cameras. All fields are tensors with leading dimension B."""

    angles: torch.Tensor   # [B, 3] yaw, pitch, roll
    radius: torch.Tensor   # [B]
    fov: torch.Tensor      # [B] degrees, full angle
    look_at: torch.Tensor  # [B, 3]
    pivot: torch.Tensor    # [B, 3] the point the camera orbits

    @classmethod
    def from_angles(cls, yaw: Number, pitch: Number, radius: Number = 1.0, fov: Number = 12.0,
                    look_at: Number = (0.0, 0.0, 0.0), pivot: Number = (0.0, 0.0, 0.0), roll: Number = 0.0,
                    batch: Optional[int] = None, device=None, dtype=torch.float32) -> "Camera":
        """Build a batch from scalars or per-sample sequences (scalars are broadcast)."""
        if batch is None:
            sizes = [torch.as_tensor(v).numel() for v in (yaw, pitch, radius, fov, roll)]
            batch = max(sizes)
        b = lambda v: _batched(v, batch, None, device, dtype)
        angles = torch.stack([b(yaw), b(pitch), b(roll)], dim=1)
        return cls(angles, b(radius), b(fov), _batched(look_at, batch, 3, device, dtype),
                   _batched(pivot, batch, 3, device, dtype))

    def __len__(self) -> int:
        return self.angles.shape[0]

    def __getitem__(self, index) -> "Camera":
        if isinstance(index, int):
            index = slice(index, index + 1)
        return Camera(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def to(self, device=None, dtype=None) -> "Camera":
        return Camera(**{f.name: getattr(self, f.name).to(device=device, dtype=dtype) for f in fields(self)})

    def repeat(self, n: int) -> "Camera":
        """Each camera repeated n times in place (c0, c0, ..., c1, c1, ...)."""
        return Camera(**{f.name: getattr(self, f.name).repeat_interleave(n, dim=0) for f in fields(self)})

    @property
    def yaw(self) -> torch.Tensor:
        return self.angles[:, 0]

    @property
    def pitch(self) -> torch.Tensor:
        return clamp_polar(self.angles[:, 1])

    def origins(self) -> torch.Tensor:
        return self.pivot + spherical_to_cartesian(self.yaw, self.pitch, self.radius)

    def cam2world(self) -> torch.Tensor:
        """[B, 4, 4] camera-to-world: columns right, up, backward (-forward), position."""
        origin = self.origins()
        forward = torch.nn.functional.normalize(self.look_at - origin, dim=-1)
        world_up = torch.tensor([0.0, 1.0, 0.0], dtype=origin.dtype, device=origin.device).expand_as(forward)
        left = torch.nn.functional.normalize(torch.cross(world_up, forward, dim=-1), dim=-1)
        up = torch.nn.functional.normalize(torch.cross(forward, left, dim=-1), dim=-1)
        mat = torch.eye(4, dtype=origin.dtype, device=origin.device).repeat(len(self), 1, 1)
        mat[:, :3, 0], mat[:, :3, 1], mat[:, :3, 2], mat[:, :3, 3] = -left, up, -forward, origin
        return mat

    def rays(self, resolution: Union[int, Tuple[int, int]], patch: Optional[PatchParams] = None
             ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Ray origins and unit directions, each [B, H*W, 3], rows top to bottom."""
        h, w = (resolution, resolution) if isinstance(resolution, int) else resolution
        dev, dt = self.angles.device, self.angles.dtype
        ys, xs = torch.meshgrid(torch.linspace(1, -1, h, device=dev, dtype=dt),
                                torch.linspace(-1, 1, w, device=dev, dtype=dt), indexing="ij")
        x = xs.reshape(1, -1).expand(len(self), -1)
        y = ys.reshape(1, -1).expand(len(self), -1)
        if patch is not None:
            s = patch.scale.to(dt)[:, None]
            x = (x + 1) * s - 1 + 2 * patch.offset[:, 0:1].to(dt)
            y = (y + 1) * s - 1 + 2 * patch.offset[:, 1:2].to(dt)
        focal = 1.0 / torch.tan(torch.deg2rad(self.fov) / 2)
        dirs_cam = torch.stack([x, y, -focal[:, None].expand_as(x)], dim=-1)
        dirs_cam = torch.nn.functional.normalize(dirs_cam, dim=-1)
        c2w = self.cam2world()
        dirs = dirs_cam @ c2w[:, :3, :3].transpose(1, 2)
        origins = c2w[:, None, :3, 3].expand_as(dirs)
        return origins, dirs


def _vec3(value, name: str) -> Vec3:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise TriganError(f"{name} {value!r}: expected three numbers (x, y, z)") from None
    if len(out) != 3 or not all(math.isfinite(v) for v in out):
        raise TriganError(f"{name} {value!r}: expected three finite numbers (x, y, z)")
    return out


@dataclass(frozen=True, kw_only=True)
class Pose:
    """One camera as plain floats: the pose every part of trigan passes around (the viewer's orbit
    edits it, a trajectory is a list of them, `trigan render --camera` sets its values) and turns
    into a `Camera` only to render (`to_camera`, `cameras_from_poses`).

    yaw and pitch in radians (trigan's convention, above), radius in world units, fov the full angle
    in degrees; the camera sits at pivot + radius * (sin p cos y, cos p, sin p sin y) and looks at
    `look_at`. Immutable and hashable (a viewer request is a cache key). Invalid values raise
    TriganError (one line) when the pose is made."""

    yaw: float = 0.0
    pitch: float = math.pi / 2
    radius: float = 1.0
    fov: float = 12.0
    look_at: Vec3 = (0.0, 0.0, 0.0)
    pivot: Vec3 = (0.0, 0.0, 0.0)      # the point the camera orbits (panning moves it with look_at)

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
    def for_model(cls, camera_cfg: CameraConfig) -> "Pose":
        """The configured view of a model without a camera generator: its mean pose (yaw and pitch),
        fov and radius, looking at the origin."""
        mean = list(camera_cfg.mean_pose)
        return cls(yaw=float(mean[0]), pitch=float(mean[1]), radius=float(camera_cfg.radius),
                   fov=float(camera_cfg.fov))

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
    def from_camera(cls, camera: "Camera", index: int = 0) -> "Pose":
        """The pose of camera `index` of a batch."""
        yaw, pitch = camera.angles[index, :2].tolist()
        return cls(yaw=yaw, pitch=pitch, radius=float(camera.radius[index]), fov=float(camera.fov[index]),
                   look_at=tuple(camera.look_at[index].tolist()), pivot=tuple(camera.pivot[index].tolist()))

    def with_values(self, **values) -> "Pose":
        """This pose with some values replaced (unknown names raise TriganError)."""
        unknown = set(values) - {f.name for f in fields(self)}
        if unknown:
            raise TriganError(f"camera: unknown value {sorted(unknown)[0]!r} "
                              f"(expected {', '.join(f.name for f in fields(self))})")
        return replace(self, **values)

    def to_camera(self, device=None, dtype=torch.float32) -> "Camera":
        """A batch of one Camera."""
        return cameras_from_poses([self], device=device, dtype=dtype)

    # -- geometry (plain floats) --------------------------------------------------------------------
    def origin(self) -> Vec3:
        """Where the camera sits (the formula Camera.origins uses, on floats)."""
        offset = spherical_to_cartesian(self.yaw, clamp_polar(self.pitch), self.radius)
        return tuple(p + o for p, o in zip(self.pivot, offset, strict=True))

    def frame(self) -> Tuple[Vec3, Vec3, Vec3]:
        """(right, up, forward) unit vectors of the camera: the columns of Camera.cam2world, in float64."""
        c2w = self.to_camera(dtype=torch.float64).cam2world()[0]
        right, up, backward = (tuple(c2w[:3, k].tolist()) for k in range(3))
        return right, up, tuple(-v for v in backward)

    def distance(self) -> float:
        """From the camera to the look-at point (the depth panning is exact at)."""
        return math.dist(self.look_at, self.origin())


def cameras_from_poses(poses: Sequence[Pose], device=None, dtype=torch.float32) -> Camera:
    """A batch of cameras, one per pose."""
    poses = list(poses)
    if not poses:
        raise ValueError("no poses to make cameras of")
    column = lambda name: [getattr(p, name) for p in poses]
    return Camera.from_angles(column("yaw"), column("pitch"), radius=column("radius"), fov=column("fov"),
                              look_at=column("look_at"), pivot=column("pivot"), batch=len(poses),
                              device=device, dtype=dtype)


def look_at_angle_ranges(cfg: CameraConfig) -> Tuple[Tuple[float, float], Tuple[float, float]]:
    """Yaw and pitch intervals of the look-at point's direction: the configured ones, else the whole
    sphere (yaw over a full turn about the yaw offset)."""
    yaw = (tuple(cfg.look_at_yaw_range) if cfg.look_at_yaw_range is not None
           else (cfg.yaw_offset - math.pi, cfg.yaw_offset + math.pi))
    pitch = tuple(cfg.look_at_pitch_range) if cfg.look_at_pitch_range is not None else (0.0, math.pi)
    return yaw, pitch


def _truncated_normal(mean: float, std: float, lo: float, hi: float, u: torch.Tensor) -> torch.Tensor:
    """Normal(mean, std) cut to [lo, hi], by inverse CDF of uniforms u in [0, 1)."""
    if std <= 0:
        return torch.full_like(u, min(max(mean, lo), hi))
    cdf = lambda x: 0.5 * (1 + math.erf((x - mean) / (std * math.sqrt(2))))
    a, b = cdf(lo), cdf(hi)
    p = (a + u.double() * (b - a)).clamp(1e-12, 1 - 1e-12)
    return (mean + std * math.sqrt(2) * torch.special.erfinv(2 * p - 1)).clamp(lo, hi).to(u.dtype)


def _spherical_pitch(pitch_range: Tuple[float, float], u: torch.Tensor) -> torch.Tensor:
    """Polar angles uniform on the sphere's band: v uniform over pitch_range / pi, pitch = arccos(1 - 2v)
    (3DGP's spherical_uniform; over [0, pi] the directions are uniform on the whole sphere)."""
    lo, hi = pitch_range
    v = ((lo + u * (hi - lo)) / math.pi).clamp(1e-5, 1 - 1e-5)
    return torch.arccos(1 - 2 * v)


def sample_camera_prior(cfg: CameraConfig, batch: int, generator: Optional[torch.Generator] = None,
                        device=None) -> Camera:
    """Random cameras from the model's prior (EpiGRAF 3.1 distributions, 3DGP's ball-in-sphere).

    `custom` means "the dataset's poses": without a dataset it returns the mean pose.
    """
    rand = lambda *s: torch.rand(*s, generator=generator, device=device)
    randn = lambda *s: torch.randn(*s, generator=generator, device=device)
    yaw_range, pitch_range = prior_yaw_range(cfg), prior_pitch_range(cfg)
    if cfg.dist == "uniform":
        yaw = yaw_range[0] + rand(batch) * (yaw_range[1] - yaw_range[0])
        pitch = pitch_range[0] + rand(batch) * (pitch_range[1] - pitch_range[0])
    elif cfg.dist in ("normal", "gaussian"):
        yaw = cfg.yaw_mean + randn(batch) * cfg.yaw_std
        pitch = cfg.pitch_mean + randn(batch) * cfg.pitch_std
    elif cfg.dist == "truncnorm":
        yaw = _truncated_normal(cfg.yaw_mean, cfg.yaw_std, *yaw_range, rand(batch))
        pitch = _truncated_normal(cfg.pitch_mean, cfg.pitch_std, *pitch_range, rand(batch))
    elif cfg.dist == "spherical_uniform":
        yaw = yaw_range[0] + rand(batch) * (yaw_range[1] - yaw_range[0])
        pitch = _spherical_pitch(pitch_range, rand(batch))
    elif cfg.dist == "custom":
        yaw = torch.full((batch,), cfg.mean_pose[0], device=device)
        pitch = torch.full((batch,), cfg.mean_pose[1], device=device)
    else:
        raise ValueError(f"unknown camera distribution {cfg.dist!r}")
    fov = torch.full((batch,), cfg.fov, device=device)
    if cfg.fov_min is not None and cfg.fov_max is not None:
        fov = cfg.fov_min + rand(batch) * (cfg.fov_max - cfg.fov_min)
    look_at = torch.zeros(batch, 3, device=device)
    if cfg.look_at_radius_max > 0:
        (la_lo, la_hi), la_pitch_range = look_at_angle_ranges(cfg)
        la_yaw = la_lo + rand(batch) * (la_hi - la_lo)
        la_pitch = _spherical_pitch(la_pitch_range, rand(batch))
        la_radius = cfg.look_at_radius_min + rand(batch) * (cfg.look_at_radius_max - cfg.look_at_radius_min)
        look_at = spherical_to_cartesian(la_yaw, la_pitch, la_radius)
    return Camera.from_angles(yaw, pitch, radius=cfg.radius, fov=fov, look_at=look_at, batch=batch,
                              device=device)
