"""3DGP's learned camera generator: a prior camera (plus z and the class) -> a posterior camera.

The camera is handled as a parameter vector [B, 7] in the order of `PARAM_NAMES`:
yaw, pitch (radians, trigan's convention), fov (degrees), radius, and the look-at point in
spherical coordinates (yaw, pitch, radius) around the pivot. Every parameter has a range taken
from the prior (`prior_ranges`); the generator rescales the prior sample to [0, 1] with those
ranges, runs two small MLPs, and maps their outputs back into the same ranges with a sigmoid, so
a posterior camera can never leave the prior's support (3dgp.md 3.3):

* the origin MLP sees the normalised yaw and pitch and the class (not z): where the camera sits
  depends on what is photographed, not on the instance;
* the look-at MLP sees the origin MLP's raw outputs, the normalised prior fov and look-at, z and
  the class, and gives fov and look-at.

The radius always keeps the prior's value (upstream adapts it by default neither), roll and pivot
are carried over from the prior camera. Groups with `adjust_* = false`, or whose prior range is a
single value, keep the prior's value too.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from trigan.core.cameras import Camera, spherical_to_cartesian
from trigan.core.config import CameraConfig, CameraGeneratorConfig
from trigan.core.errors import ConfigError
from trigan.core.layers import FullyConnectedLayer, normalize_2nd_moment

PARAM_NAMES = ("yaw", "pitch", "fov", "radius", "look_at_yaw", "look_at_pitch", "look_at_radius")
YAW, PITCH, FOV, RADIUS, LA_YAW, LA_PITCH, LA_RADIUS = range(len(PARAM_NAMES))
NUM_PARAMS = len(PARAM_NAMES)
ORIGIN = (YAW, PITCH)
LOOK_AT = (LA_YAW, LA_PITCH, LA_RADIUS)
_RANGE_EPS = 1e-8   # keeps the normalisation finite for single-value ranges
PRIOR_DISTS = ("uniform", "spherical_uniform")


def prior_ranges(cfg: CameraConfig) -> torch.Tensor:
    """[7, 2] (min, max) of each camera parameter under the model's prior.

    Only priors with bounded ranges qualify (uniform and spherical_uniform); a fixed fov or radius
    is a range of one value, and the look-at direction always spans the whole sphere."""
    if cfg.dist not in PRIOR_DISTS:
        raise ConfigError(f"model.camera_generator needs a camera prior with ranges (model.camera.dist "
                          f"{' or '.join(PRIOR_DISTS)}), got model.camera.dist={cfg.dist!r}")
    yaw = (cfg.yaw_mean - cfg.yaw_std, cfg.yaw_mean + cfg.yaw_std)
    pitch = (0.0, math.pi) if cfg.dist == "spherical_uniform" else (cfg.pitch_mean - cfg.pitch_std,
                                                                    cfg.pitch_mean + cfg.pitch_std)
    fov = (cfg.fov_min, cfg.fov_max) if cfg.fov_min is not None and cfg.fov_max is not None else (cfg.fov, cfg.fov)
    if fov[0] > fov[1]:
        raise ConfigError(f"model.camera.fov_min={fov[0]:g} is above model.camera.fov_max={fov[1]:g}")
    rows = [yaw, pitch, fov, (cfg.radius, cfg.radius), (-math.pi, math.pi), (0.0, math.pi),
            (0.0, cfg.look_at_radius_max)]
    return torch.tensor([[float(lo), float(hi)] for lo, hi in rows], dtype=torch.float32, device="cpu")


def prior_mean_angles(cfg: CameraConfig) -> torch.Tensor:
    """[2] the prior's mean (yaw, pitch): the centres of its ranges (uniform in yaw, and in pitch
    either uniform or uniform on the sphere, whose mean polar angle is pi/2 too)."""
    r = prior_ranges(cfg)
    return r[list(ORIGIN)].mean(dim=1)


def camera_to_params(camera: Camera) -> torch.Tensor:
    """[B, 7] parameter vector of cameras (look-at relative to the pivot, in spherical coordinates;
    a look-at point at the pivot reads as yaw 0, pitch pi/2, radius 0)."""
    rel = camera.look_at - camera.pivot
    la_radius = rel.norm(dim=-1)
    la_pitch = torch.arccos((rel[:, 1] / la_radius.clamp_min(1e-12)).clamp(-1.0, 1.0))
    la_pitch = torch.where(la_radius > 0, la_pitch, torch.full_like(la_pitch, math.pi / 2))
    la_yaw = torch.atan2(rel[:, 2], rel[:, 0])
    return torch.stack([camera.angles[:, 0], camera.angles[:, 1], camera.fov, camera.radius,
                        la_yaw, la_pitch, la_radius], dim=1)


def params_to_camera(params: torch.Tensor, like: Optional[Camera] = None) -> Camera:
    """Cameras from [B, 7] parameter vectors; roll and pivot come from `like` (default 0)."""
    b = params.shape[0]
    roll = like.angles[:, 2] if like is not None else params.new_zeros(b)
    pivot = like.pivot if like is not None else params.new_zeros(b, 3)
    look_at = pivot + spherical_to_cartesian(params[:, LA_YAW], params[:, LA_PITCH], params[:, LA_RADIUS])
    angles = torch.stack([params[:, YAW], params[:, PITCH], roll], dim=1)
    return Camera(angles=angles, radius=params[:, RADIUS], fov=params[:, FOV], look_at=look_at, pivot=pivot)


class ParamsAdaptor(nn.Module):
    """An MLP over a few normalised camera parameters, optionally told z and the class through
    small embeddings (each rescaled to unit RMS so neither drowns the other)."""

    def __init__(self, in_dim: int, out_dim: int, z_dim: int, c_dim: int, hidden_dim: int, embed_dim: int,
                 lr_multiplier: float):
        super().__init__()
        fc = lambda i, o, act: FullyConnectedLayer(i, o, activation=act, lr_multiplier=lr_multiplier)
        self.params_in = fc(in_dim, hidden_dim, "softplus")
        self.z_embed = fc(z_dim, embed_dim, "softplus") if z_dim > 0 else None
        self.c_embed = fc(c_dim, embed_dim, "softplus") if c_dim > 0 else None
        joint = hidden_dim + embed_dim * ((self.z_embed is not None) + (self.c_embed is not None))
        self.hidden = fc(joint, hidden_dim, "softplus")
        self.out = fc(hidden_dim, out_dim, "linear")

    def forward(self, x: torch.Tensor, z: Optional[torch.Tensor], c: Optional[torch.Tensor]) -> torch.Tensor:
        parts = [self.params_in(x)]
        if self.z_embed is not None:
            parts.append(normalize_2nd_moment(self.z_embed(z)))
        if self.c_embed is not None:
            parts.append(normalize_2nd_moment(self.c_embed(c)))
        return self.out(self.hidden(torch.cat(parts, dim=1)))


class CameraGenerator(nn.Module):
    """Prior camera parameters -> posterior camera parameters inside the prior's ranges."""

    def __init__(self, cfg: CameraGeneratorConfig, camera: CameraConfig, z_dim: int, c_dim: int):
        super().__init__()
        self.cfg, self.z_dim, self.c_dim = cfg, z_dim, c_dim
        ranges = prior_ranges(camera).tolist()   # plain numbers: the model may be built on the meta device
        adapted = [False] * NUM_PARAMS
        for flag, group in ((cfg.adjust_angles, ORIGIN), (cfg.adjust_fov, (FOV,)), (cfg.adjust_look_at, LOOK_AT)):
            for i in group:
                adapted[i] = bool(flag) and ranges[i][1] > ranges[i][0]
        if not adapted[LA_RADIUS]:   # a look-at point fixed at the pivot has no direction to adapt
            for i in LOOK_AT:
                adapted[i] = False
        # Derived from the config, so not saved with the weights (and old checkpoints stay valid).
        self.register_buffer("ranges", torch.tensor(ranges, dtype=torch.float32), persistent=False)
        self.register_buffer("adapted", torch.tensor(adapted, dtype=torch.bool), persistent=False)
        args = dict(c_dim=c_dim, hidden_dim=cfg.hidden_dim, embed_dim=cfg.embed_dim, lr_multiplier=cfg.lr_multiplier)
        self.origin_adaptor = ParamsAdaptor(len(ORIGIN), len(ORIGIN), z_dim=0, **args)
        self.look_at_adaptor = ParamsAdaptor(len(ORIGIN) + 1 + len(LOOK_AT), 1 + len(LOOK_AT), z_dim=z_dim, **args)

    def normalize(self, params: torch.Tensor) -> torch.Tensor:
        lo, hi = self.ranges[:, 0].to(params.dtype), self.ranges[:, 1].to(params.dtype)
        return (params - lo) / (hi - lo + _RANGE_EPS)

    def denormalize(self, raw: torch.Tensor) -> torch.Tensor:
        lo, hi = self.ranges[:, 0].to(raw.dtype), self.ranges[:, 1].to(raw.dtype)
        return lo + torch.sigmoid(raw) * (hi - lo)

    def _labels(self, c: Optional[torch.Tensor], batch: int, like: torch.Tensor) -> Optional[torch.Tensor]:
        if self.c_dim == 0:
            return None
        if c is None or c.shape[1] == 0:   # a conditional model trained without labels
            return like.new_zeros(batch, self.c_dim)
        return c.to(like.dtype)

    def forward(self, prior: torch.Tensor, z: torch.Tensor, c: Optional[torch.Tensor] = None) -> torch.Tensor:
        """[B, 7] prior parameters, z [B, z_dim], one-hot c [B, c_dim] -> [B, 7] posterior parameters."""
        u = self.normalize(prior)
        c = self._labels(c, prior.shape[0], prior)
        origin_raw = self.origin_adaptor(u[:, list(ORIGIN)], None, c)
        la_in = torch.cat([origin_raw, u[:, [FOV, *LOOK_AT]]], dim=1)
        la_raw = self.look_at_adaptor(la_in, z.to(prior.dtype), c)
        raw = prior.new_zeros(prior.shape)
        raw = raw.index_copy(1, torch.tensor(ORIGIN, device=prior.device), origin_raw)
        raw = raw.index_copy(1, torch.tensor([FOV, *LOOK_AT], device=prior.device), la_raw)
        return torch.where(self.adapted, self.denormalize(raw), prior)

    def posterior(self, prior: Camera, z: torch.Tensor, c: Optional[torch.Tensor] = None) -> Camera:
        """The posterior of a batch of prior cameras (roll and pivot carried over)."""
        return params_to_camera(self(camera_to_params(prior), z, c), like=prior)
