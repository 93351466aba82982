"""3DGP's learned camera generator: a prior camera (plus z and the class) -> a posterior camera.

Cameras are handled as parameter vectors [B, 7] in the order of `PARAM_NAMES`: yaw, pitch (radians,
trigan's convention), fov (degrees), radius, and the look-at point in spherical coordinates (yaw,
pitch, radius) around the pivot. Every parameter has a range taken from the prior (`prior_ranges`).
The generator computes what upstream 3DGP's camera adaptor computes, with the same layout and
parameter names, so official checkpoints load into it (3dgp.md 3.3):

1. the prior is rescaled to [0, 1] with the ranges (v - min) / (max - min + 1e-8), except roll and
   radius, which stay raw;
2. the origin MLP sees [yaw, pitch, roll, radius] and the class (not z) and gives 4 raw values;
3. the look-at MLP sees [those 3 raw origin values, the prior's fov, the 4th raw origin value, the
   prior's look-at (3)], z and the class, and gives 4 raw values (fov and the look-at point);
4. optionally (`residual`) the rescaled prior is added to the 8 raw values;
5. a sigmoid maps each raw value back into its range (pitch kept 1e-5 inside its ends; roll set to
   0; the radius left raw);
6. groups the config does not adjust keep the prior's values (the radius by default).

Each MLP: FC(params -> hidden, softplus), optional z and class embeddings FC(-> embed, softplus)
rescaled to unit RMS, then FC(hidden + embeddings -> hidden, softplus) -> FC(-> out, linear), all
with equalized learning rate at `lr_multiplier`.

A posterior camera can never leave the prior's support (the radius aside, when adjusted), and the
mapping commutes with a shift of yaw: ranges and values shift together, which is why the same
weights serve 3DGP's yaw convention and trigan's (`CameraConfig.yaw_offset`).
"""

from __future__ import annotations

import math
from typing import Dict, Optional

import torch
from torch import nn

from trigan.core.camera_priors import RANGED_PRIORS, prior_fov_range, prior_pitch_range, prior_yaw_range
from trigan.core.cameras import Camera, look_at_angle_ranges, spherical_to_cartesian
from trigan.core.config import CameraConfig, CameraGeneratorConfig
from trigan.core.errors import ConfigError
from trigan.core.layers import FullyConnectedLayer, normalize_2nd_moment

PARAM_NAMES = ("yaw", "pitch", "fov", "radius", "look_at_yaw", "look_at_pitch", "look_at_radius")
YAW, PITCH, FOV, RADIUS, LA_YAW, LA_PITCH, LA_RADIUS = range(len(PARAM_NAMES))
NUM_PARAMS = len(PARAM_NAMES)
ORIGIN = (YAW, PITCH)
LOOK_AT = (LA_YAW, LA_PITCH, LA_RADIUS)
_RANGE_EPS = 1e-8   # keeps the rescaling finite for single-value ranges (upstream's value)
_PITCH_MARGIN = 1e-5   # posterior pitch stays this far inside its range (off the poles)
ORIGIN_INPUTS = 4      # rescaled yaw, pitch; raw roll, radius
LOOK_AT_INPUTS = 8     # raw origin outputs 0-2, rescaled prior fov, raw origin output 3, rescaled look-at


def prior_ranges(cfg: CameraConfig) -> torch.Tensor:
    """[7, 2] (min, max) of each camera parameter under the model's prior, in trigan's convention.

    Explicit ranges (`yaw_range`, ...) qualify any prior; otherwise only priors whose spread is a
    range do (uniform: mean +/- std; spherical_uniform: pitch over [0, pi]). A fixed fov or radius
    is a range of one value."""
    for what, explicit in (("yaw", cfg.yaw_range), ("pitch", cfg.pitch_range)):
        if explicit is not None:
            if len(explicit) != 2 or not float(explicit[0]) <= float(explicit[1]):
                raise ConfigError(f"model.camera.{what}_range={list(explicit)}: expected [min, max] with min <= max")
        elif cfg.dist not in RANGED_PRIORS:
            raise ConfigError(f"model.camera_generator needs a camera prior with ranges (model.camera.dist "
                              f"{' or '.join(RANGED_PRIORS)}, or model.camera.{what}_range), "
                              f"got model.camera.dist={cfg.dist!r}")
    fov = prior_fov_range(cfg)
    if fov[0] > fov[1]:
        raise ConfigError(f"model.camera.fov_min={fov[0]:g} is above model.camera.fov_max={fov[1]:g}")
    la_yaw, la_pitch = look_at_angle_ranges(cfg)
    la_radius = (cfg.look_at_radius_min, cfg.look_at_radius_max)
    if la_radius[0] > la_radius[1]:
        raise ConfigError(f"model.camera.look_at_radius_min={la_radius[0]:g} is above "
                          f"model.camera.look_at_radius_max={la_radius[1]:g}")
    rows = [prior_yaw_range(cfg), prior_pitch_range(cfg), fov, (cfg.radius, cfg.radius), la_yaw, la_pitch, la_radius]
    return torch.tensor([[float(lo), float(hi)] for lo, hi in rows], dtype=torch.float32, device="cpu")


def prior_mean_angles(cfg: CameraConfig) -> torch.Tensor:
    """[2] the prior's mean (yaw, pitch): the centres of its ranges (3DGP's mean camera; for pitch
    uniform on the sphere the mean polar angle is the centre too)."""
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
    """An MLP over a few camera parameters, optionally told z and the class through small
    embeddings (each rescaled to unit RMS so that neither drowns the other)."""

    def __init__(self, in_dim: int, out_dim: int, z_dim: int, c_dim: int, hidden_dim: int, embed_dim: int,
                 lr_multiplier: float):
        super().__init__()
        fc = lambda i, o, act: FullyConnectedLayer(i, o, activation=act, lr_multiplier=lr_multiplier)
        self.project_params = fc(in_dim, hidden_dim, "softplus")
        self.project_z = fc(z_dim, embed_dim, "softplus") if z_dim > 0 else None
        self.project_c = fc(c_dim, embed_dim, "softplus") if c_dim > 0 else None
        joint = hidden_dim + embed_dim * ((self.project_z is not None) + (self.project_c is not None))
        self.main = nn.Sequential(fc(joint, hidden_dim, "softplus"), fc(hidden_dim, out_dim, "linear"))

    def forward(self, x: torch.Tensor, z: Optional[torch.Tensor], c: Optional[torch.Tensor]) -> torch.Tensor:
        parts = [self.project_params(x)]
        if self.project_z is not None:
            parts.append(normalize_2nd_moment(self.project_z(z)))
        if self.project_c is not None:
            parts.append(normalize_2nd_moment(self.project_c(c)))
        return self.main(torch.cat(parts, dim=1))


class CameraGenerator(nn.Module):
    """Prior camera parameters -> posterior camera parameters inside the prior's ranges."""

    def __init__(self, cfg: CameraGeneratorConfig, camera: CameraConfig, z_dim: int, c_dim: int):
        super().__init__()
        self.cfg, self.z_dim, self.c_dim = cfg, z_dim, c_dim
        ranges = prior_ranges(camera).tolist()   # plain numbers: the model may be built on the meta device
        # Where the look-at radius maps back to (upstream's own formula for converted models).
        self.look_at_radius_floor = float(ranges[LA_RADIUS][0] if cfg.look_at_radius_floor is None
                                          else cfg.look_at_radius_floor)
        adjusted = [False] * NUM_PARAMS
        for flag, group in ((cfg.adjust_angles, ORIGIN), (cfg.adjust_fov, (FOV,)), (cfg.adjust_radius, (RADIUS,)),
                            (cfg.adjust_look_at, LOOK_AT)):
            for i in group:
                adjusted[i] = bool(flag)
        # What the camera regularisers may act on: adjusted parameters that can move (a range of one
        # value, or a look-at direction at radius 0, cannot).
        movable = [adjusted[i] and (i == RADIUS or ranges[i][1] > ranges[i][0]) for i in range(NUM_PARAMS)]
        if not movable[LA_RADIUS]:
            for i in LOOK_AT:
                movable[i] = False
        # Derived from the config, so not saved with the weights (and checkpoints stay valid).
        self.register_buffer("ranges", torch.tensor(ranges, dtype=torch.float32), persistent=False)
        self.register_buffer("adjusted", torch.tensor(adjusted, dtype=torch.bool), persistent=False)
        self.register_buffer("adapted", torch.tensor(movable, dtype=torch.bool), persistent=False)
        args = dict(c_dim=c_dim, hidden_dim=cfg.hidden_dim, embed_dim=cfg.embed_dim, lr_multiplier=cfg.lr_multiplier)
        self.origin_adaptor = ParamsAdaptor(ORIGIN_INPUTS, ORIGIN_INPUTS, z_dim=0, **args)
        self.look_at_adaptor = ParamsAdaptor(LOOK_AT_INPUTS, 1 + len(LOOK_AT), z_dim=z_dim, **args)

    # -- the rescaling ------------------------------------------------------------------------------
    def _bounds(self, dtype):
        return self.ranges[:, 0].to(dtype), self.ranges[:, 1].to(dtype)

    def normalize(self, params: torch.Tensor) -> torch.Tensor:
        """[B, 7] -> [B, 7] in [0, 1] over the ranges; the radius stays raw. The look-at yaw is first
        wrapped into the turn its range starts (camera_to_params reads it in [-pi, pi])."""
        lo, hi = self._bounds(params.dtype)
        params = params.clone()
        params[:, LA_YAW] = lo[LA_YAW] + torch.remainder(params[:, LA_YAW] - lo[LA_YAW], 2 * math.pi)
        u = (params - lo) / (hi - lo + _RANGE_EPS)
        u[:, RADIUS] = params[:, RADIUS]
        return u

    def denormalize(self, raw: torch.Tensor) -> torch.Tensor:
        """[B, 7] raw outputs -> parameters inside the ranges (the radius left raw)."""
        lo, hi = self._bounds(raw.dtype)
        s = torch.sigmoid(raw)
        out = lo + s * (hi - lo)
        out[:, PITCH] = lo[PITCH] + _PITCH_MARGIN + s[:, PITCH] * (hi[PITCH] - lo[PITCH] - 2 * _PITCH_MARGIN)
        floor = self.look_at_radius_floor
        out[:, LA_RADIUS] = floor + s[:, LA_RADIUS] * (hi[LA_RADIUS] - floor)
        out[:, RADIUS] = raw[:, RADIUS]
        return out

    def _labels(self, c: Optional[torch.Tensor], batch: int, like: torch.Tensor) -> Optional[torch.Tensor]:
        if self.c_dim == 0:
            return None
        if c is None or c.shape[1] == 0:   # a conditional model trained without labels
            return like.new_zeros(batch, self.c_dim)
        return c.to(like.dtype)

    def raw_outputs(self, prior: torch.Tensor, z: torch.Tensor, c: Optional[torch.Tensor] = None) -> torch.Tensor:
        """[B, 8] what the two MLPs give (plus the rescaled prior when `residual`) before it is mapped
        back into the ranges, in upstream's order: yaw, pitch, roll, fov, radius, look-at (3)."""
        u = self.normalize(prior)
        c = self._labels(c, prior.shape[0], prior)
        roll = prior.new_zeros(prior.shape[0], 1)     # cameras carry no roll (upstream's is always 0)
        origin_in = torch.cat([u[:, [YAW, PITCH]], roll, u[:, [RADIUS]]], dim=1)
        o = self.origin_adaptor(origin_in, None, c)                          # yaw, pitch, roll, radius
        look_at_in = torch.cat([o[:, :3], u[:, [FOV]], o[:, 3:], u[:, list(LOOK_AT)]], dim=1)
        la = self.look_at_adaptor(look_at_in, z.to(prior.dtype), c)          # fov, look-at (3)
        raw = torch.cat([o[:, :3], la[:, :1], o[:, 3:], la[:, 1:]], dim=1)
        if self.cfg.residual:
            raw = raw + torch.cat([u[:, [YAW, PITCH]], roll, u[:, [FOV, RADIUS]], u[:, list(LOOK_AT)]], dim=1)
        return raw

    def forward(self, prior: torch.Tensor, z: torch.Tensor, c: Optional[torch.Tensor] = None) -> torch.Tensor:
        """[B, 7] prior parameters, z [B, z_dim], one-hot c [B, c_dim] -> [B, 7] posterior parameters."""
        raw = self.raw_outputs(prior, z, c)[:, [0, 1, 3, 4, 5, 6, 7]]      # roll dropped: PARAM_NAMES order
        return torch.where(self.adjusted, self.denormalize(raw), prior)

    def posterior(self, prior: Camera, z: torch.Tensor, c: Optional[torch.Tensor] = None) -> Camera:
        """The posterior of a batch of prior cameras (roll and pivot carried over)."""
        return params_to_camera(self(camera_to_params(prior), z, c), like=prior)


# ---------------------------------------------------------------------------------------------------
# Weights of the first layout (trigan before it took upstream's): 2 origin inputs and outputs, 6
# look-at inputs, other names. They convert exactly: the new inputs and outputs get zero weights and
# the kept columns are rescaled for the new fan-in of the equalized learning rate.

_OLD_NAMES = {"params_in": "project_params", "z_embed": "project_z", "c_embed": "project_c",
              "hidden": "main.0", "out": "main.1"}


def has_first_layout(state: Dict[str, torch.Tensor], prefix: str = "camera_generator.") -> bool:
    return f"{prefix}origin_adaptor.params_in.weight" in state


def migrate_first_layout(state: Dict[str, torch.Tensor], prefix: str = "camera_generator.") -> Dict[str, torch.Tensor]:
    """A state dict with its camera generator in the current layout (others are returned as they are).

    Old origin MLP: inputs (yaw, pitch), outputs (yaw, pitch). Old look-at MLP inputs: (origin yaw,
    origin pitch, fov, look-at (3)). New inputs add roll and radius (origin) and the origin's roll
    and radius outputs (look-at), all with zero weights; new origin outputs roll and radius get zero
    weights and biases. Equalized lr scales a layer's weights by 1/sqrt(fan-in), so kept input
    columns are multiplied by sqrt(new fan-in / old fan-in) to compute what they computed."""
    if not has_first_layout(state, prefix):
        return state
    out = {k: v for k, v in state.items() if not k.startswith(prefix)}
    for key, value in state.items():
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix):]
        net, layer, param = rest.split(".", 2)
        out[f"{prefix}{net}.{_OLD_NAMES[layer]}.{param}"] = value
    o, la = f"{prefix}origin_adaptor.", f"{prefix}look_at_adaptor."

    def widen_inputs(key, columns, fan_in):
        w = out[key]
        new = w.new_zeros(w.shape[0], fan_in)
        new[:, columns] = w * math.sqrt(fan_in / w.shape[1])
        out[key] = new

    def widen_outputs(stem, rows, count):
        for param in ("weight", "bias"):
            v = out[f"{stem}.{param}"]
            new = v.new_zeros((count,) + tuple(v.shape[1:]))
            new[rows] = v
            out[f"{stem}.{param}"] = new

    widen_inputs(f"{o}project_params.weight", [0, 1], ORIGIN_INPUTS)            # + roll, radius
    widen_outputs(f"{o}main.1", [0, 1], ORIGIN_INPUTS)                          # + roll, radius
    # old look-at inputs: origin yaw, pitch, fov, look-at (3) -> new positions 0, 1, 3, 5, 6, 7
    widen_inputs(f"{la}project_params.weight", [0, 1, 3, 5, 6, 7], LOOK_AT_INPUTS)
    return out
