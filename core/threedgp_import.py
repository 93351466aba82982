"""Turn an official 3DGP snapshot into a trigan model config and weights (G, G_ema, D, depth adaptor);
the discriminator's config and the run's recipe are `training/official_import.py`'s.

3DGP (snap-research/3dgp) is EpiGRAF plus a learned camera generator, a depth adaptor, depth and
knowledge distillation in D, and EG3D's importance renderer. Its snapshots are read as data by
`epigraf_pickle`, like EpiGRAF's (nothing from the file runs). What differs, and how it is mapped:

* Architecture: from G_ema's constructor arguments and the resolved Hydra config
  (`model.generator`, the top-level `camera` group, `model.discriminator`, `training`,
  `model.loss_kwargs`). Decoder channels are min(cbase * fmaps // r, cmax).
* Cameras: 3DGP puts yaw 0 on +Z, trigan on +X. Every angle of the prior is stored in trigan's
  convention (3DGP yaw + pi/2, look-at yaws too) and `model.camera.yaw_offset` = pi/2 records the
  shift for the parts that read raw yaw numbers (pose conditioning). The camera generator computes
  the same function in either convention (its ranges shift with the values).
* Rendering: the classical ray marcher: raw colours, softplus density, last interval 1e10 (or 1e-3
  without `use_inf_depth`), `last_back` as configured, and no white background whatever
  `dataset.white_back` says (the classical marcher never applies it). Coarse weights that place the
  fine samples measure spacing on [0, 1] (`render.importance_spacing: unit`).
* Weight names: `synthesis.camera_adaptor.*` -> `camera_generator.*`; the depth adaptor
  (`synthesis.depth_adaptor.*`) leaves G for the trainer (`near_plane_offset_raw` [1] ->
  `near_plane_offset` []; `progress_coef`, upstream's schedule state, is dropped: trigan schedules
  by images seen); `mapping.mean_camera_params` becomes `model.camera.mean_pose` (and the mapping's
  `mean_camera_pose`); D's `b4.feat_out.0/1` -> `b4.feat_head.fc/out`.

What trigan does not implement is refused in one line: the mip ray marcher, rays bounded by the
scene box (`use_full_box`), a view-conditioned MLP, camera priors other than upstream's kinds.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

from trigan.core.config import (
    CameraConfig,
    CameraGeneratorConfig,
    MappingConfig,
    ModelConfig,
    RenderConfig,
    TriPlaneConfig,
)
from trigan.core.epigraf_pickle import EpigrafNetwork, EpigrafSnapshot
from trigan.core.errors import CheckpointError

if TYPE_CHECKING:
    import torch

# torch is imported by the functions that build tensors: the config alone (`trigan info` of a
# snapshot, core/epigraf_import.read_snapshot_meta) is read without it.

YAW_OFFSET = math.pi / 2      # a 3DGP yaw y is the trigan yaw y + pi/2 (its yaw 0 is on +Z)


def is_3dgp_snapshot(snap: EpigrafSnapshot) -> bool:
    """3DGP's configs have a camera group with an origin prior, at the top and in the generator's own
    config (EpiGRAF keeps a flat camera inside its dataset config)."""
    if "G_ema" not in snap.networks:
        return False
    generator_cfg = snap.networks["G_ema"].init_kwargs.get("cfg") or {}
    return any(isinstance(cam, dict) and "origin" in cam
               for cam in (snap.config.get("camera"), generator_cfg.get("camera")))


def config_section(node: Any, *keys: str) -> Dict[str, Any]:
    """The mapping at node[keys[0]][keys[1]]...; {} where a key is missing or not a mapping."""
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else {}


# ---------------------------------------------------------------------------------------------------
# Cameras

def _fixed_value(prior: Dict[str, Any], path: str, what: str) -> float:
    """A prior that is one number: `normal` with std 0 (3DGP's way of fixing a value)."""
    if prior.get("dist") == "normal" and float(prior.get("std", 0.0) or 0.0) == 0.0:
        return float(prior["mean"])
    if prior.get("dist") == "uniform" and float(prior["min"]) == float(prior["max"]):
        return float(prior["min"])
    raise CheckpointError.unsupported(path, f"a {prior.get('dist')!r} prior over the camera {what}")


def camera_config(camera: Dict[str, Any], mean_camera_params, path: str) -> CameraConfig:
    """trigan's CameraConfig (trigan's yaw convention) of 3DGP's camera group."""
    ray = config_section(camera, "ray")
    origin = config_section(camera, "origin")
    angles = config_section(origin, "angles")
    dist = str(angles.get("dist", "uniform"))
    if dist not in ("uniform", "normal", "truncnorm", "spherical_uniform", "custom"):
        raise CheckpointError.unsupported(path, f"a {dist!r} prior over the camera angles")
    yaw, pitch = config_section(angles, "yaw"), config_section(angles, "pitch")

    def centre_and_spread(a: Dict[str, Any]) -> Tuple[float, float]:
        if dist in ("normal", "truncnorm") and "mean" in a:
            return float(a["mean"]), float(a.get("std", 0.0) or 0.0)
        lo, hi = float(a.get("min", a.get("mean", 0.0))), float(a.get("max", a.get("mean", 0.0)))
        return (lo + hi) / 2, (hi - lo) / 2

    def bounds(a: Dict[str, Any], shift: float = 0.0) -> Optional[list]:
        return [float(a["min"]) + shift, float(a["max"]) + shift] if "min" in a and "max" in a else None

    yaw_mean, yaw_std = centre_and_spread(yaw)
    pitch_mean, pitch_std = centre_and_spread(pitch)
    fov_prior = config_section(camera, "fov")
    fov_min = fov_max = None
    if fov_prior.get("dist") == "uniform" and float(fov_prior["min"]) < float(fov_prior["max"]):
        fov_min, fov_max = float(fov_prior["min"]), float(fov_prior["max"])
        fov = (fov_min + fov_max) / 2
    else:
        fov = _fixed_value(fov_prior, path, "fov")
    radius = _fixed_value(config_section(origin, "radius"), path, "radius")
    look_at = config_section(camera, "look_at")
    la_radius = config_section(look_at, "radius")
    if la_radius.get("dist", "uniform") == "uniform":
        la_min, la_max = float(la_radius.get("min", 0.0)), float(la_radius.get("max", 0.0))
    else:
        la_min = la_max = _fixed_value(la_radius, path, "look-at radius")
    la_angles = config_section(look_at, "angles")
    if la_max > 0 and la_angles.get("dist", "spherical_uniform") != "spherical_uniform":
        raise CheckpointError.unsupported(path, f"a {la_angles.get('dist')!r} prior over the look-at direction")
    mean = [float(v) for v in (mean_camera_params.tolist() if hasattr(mean_camera_params, "tolist")
                               else (mean_camera_params or []))]
    mean_pose = ([mean[0] + YAW_OFFSET, mean[1], mean[2]] if len(mean) >= 3
                 else [yaw_mean + YAW_OFFSET, pitch_mean, 0.0])
    return CameraConfig(
        fov=fov, radius=radius, ray_start=float(ray["start"]), ray_end=float(ray["end"]),
        cube_scale=float(camera["cube_scale"]), yaw_offset=YAW_OFFSET, dist=dist,
        yaw_mean=yaw_mean + YAW_OFFSET, yaw_std=yaw_std, pitch_mean=pitch_mean, pitch_std=pitch_std,
        yaw_range=bounds(yaw, YAW_OFFSET), pitch_range=bounds(pitch), mean_pose=mean_pose,
        fov_min=fov_min, fov_max=fov_max, look_at_radius_min=la_min, look_at_radius_max=la_max,
        look_at_yaw_range=bounds(config_section(la_angles, "yaw"), YAW_OFFSET),
        look_at_pitch_range=bounds(config_section(la_angles, "pitch")))


def camera_generator_config(adaptor: Dict[str, Any], camera: Dict[str, Any]) -> CameraGeneratorConfig:
    if not adaptor.get("enabled", False):
        return CameraGeneratorConfig(enabled=False)
    adjust = config_section(adaptor, "adjust")
    la_pitch = config_section(camera, "look_at", "angles", "pitch")
    return CameraGeneratorConfig(
        enabled=True, hidden_dim=int(adaptor["hid_dim"]), embed_dim=int(adaptor["embed_dim"]),
        lr_multiplier=float(adaptor.get("lr_multiplier", 0.1)),
        adjust_angles=bool(adjust.get("angles", True)), adjust_fov=bool(adjust.get("fov", True)),
        adjust_look_at=bool(adjust.get("look_at", True)), adjust_radius=bool(adjust.get("radius", False)),
        residual=bool(adaptor.get("residual", False)),
        # upstream maps the look-at radius back from its look-at *pitch* minimum (3dgp.md 3.3)
        look_at_radius_floor=float(la_pitch.get("min", 0.0)))


# ---------------------------------------------------------------------------------------------------
# Networks

def generator_config(snap: EpigrafSnapshot, path: str) -> ModelConfig:
    g = snap.networks["G_ema"]
    kw = g.init_kwargs
    cfg = kw.get("cfg") or {}
    camera = snap.config.get("camera") or cfg.get("camera") or {}
    dataset = cfg.get("dataset") or snap.config.get("dataset") or {}
    tri = cfg.get("tri_plane") or {}
    if cfg.get("ray_marcher_type", "classical") != "classical":
        raise CheckpointError.unsupported(path, f"the {cfg['ray_marcher_type']!r} ray marcher")
    if cfg.get("use_full_box", False):
        raise CheckpointError.unsupported(path, "rays bounded by the scene box (use_full_box)")
    if cfg.get("has_view_cond", False):
        raise CheckpointError.unsupported(path, "a view-direction-conditioned MLP (has_view_cond)")
    mlp = tri.get("mlp") or {}
    if int(mlp.get("n_layers", 2)) < 1:
        raise CheckpointError.unsupported(path, "an identity tri-plane MLP (tri_plane.mlp.n_layers 0)")
    mapping_kw = kw.get("mapping_kwargs") or {}
    conv_clamp = kw.get("conv_clamp", None if cfg.get("fp32_only", False) else 256)
    return ModelConfig(
        name=str(dataset.get("name", "3dgp")), family="3dgp",
        img_resolution=int(kw["img_resolution"]), img_channels=int(kw.get("img_channels", 3)),
        c_dim=int(cfg.get("c_dim", 0)),
        mapping=MappingConfig(z_dim=int(cfg.get("z_dim", 512)), w_dim=int(cfg["w_dim"]),
                              num_layers=int(cfg.get("map_depth", 2)),
                              camera_cond=bool(mapping_kw.get("camera_cond", cfg.get("camera_cond", False))),
                              camera_cond_drop_p=float(mapping_kw.get("camera_cond_drop_p", 0.0))),
        triplane=TriPlaneConfig(resolution=int(tri["res"]), feat_dim=int(tri["feat_dim"]),
                                channel_base=int(float(cfg["cbase"]) * float(cfg.get("fmaps", 1.0))),
                                channel_max=int(cfg["cmax"]), use_noise=bool(cfg.get("use_noise", True)),
                                conv_clamp=None if conv_clamp is None else float(conv_clamp),
                                mlp_hidden=int(mlp.get("hid_dim", 64)), mlp_layers=int(mlp.get("n_layers", 2))),
        # the buffer is what upstream's mapping reads (its init-kwargs copy may differ)
        camera=camera_config(camera, g.state_dict.get("mapping.mean_camera_params",
                                                      mapping_kw.get("mean_camera_params")), path),
        camera_generator=camera_generator_config(cfg.get("camera_adaptor") or {}, camera),
        render=RenderConfig(num_steps=int(cfg.get("num_ray_steps", 32)),
                            density_activation=str(cfg.get("clamp_mode", "softplus")),
                            white_background=False, last_back=bool(dataset.get("last_back", False)),
                            opaque_far_end=bool(cfg.get("use_inf_depth", True)), importance_spacing="unit",
                            nerf_noise_std_init=float(cfg.get("nerf_noise_std_init", 1.0)),
                            nerf_noise_kimg_growth=float(cfg.get("nerf_noise_kimg_growth", 5000))))


# ---------------------------------------------------------------------------------------------------
# Weights

def _mean_camera_pose(model: ModelConfig) -> torch.Tensor:
    """What trigan's mapping keeps as `mean_camera_pose`: the mean pose (trigan's convention; the
    mapping applies the yaw offset itself)."""
    import torch  # noqa: PLC0415 (see the imports)

    return torch.tensor([float(v) for v in model.camera.mean_pose], dtype=torch.float32)


# Upstream name prefixes and their trigan names (G's and D's; G's optimiser covers the depth adaptor).
_RENAMED_PREFIXES = (("synthesis.camera_adaptor.", "camera_generator."),
                     ("synthesis.depth_adaptor.", "depth_adaptor."),
                     ("b4.feat_out.0.", "b4.feat_head.fc."), ("b4.feat_out.1.", "b4.feat_head.out."))
# Upstream's near-plane offset is a [1] vector under this name, trigan's a scalar `near_plane_offset`.
_NEAR_PLANE_OFFSET_RAW = "synthesis.depth_adaptor.near_plane_offset_raw"


def _renamed_parameter(name: str) -> str:
    """An upstream parameter or buffer name as trigan names it."""
    if name == _NEAR_PLANE_OFFSET_RAW:
        return "depth_adaptor.near_plane_offset"
    for old, new in _RENAMED_PREFIXES:
        if name.startswith(old):
            return new + name[len(old):]
    return name


def generator_state(net: EpigrafNetwork, model: ModelConfig) -> "OrderedDict[str, torch.Tensor]":
    """G's or G_ema's state dict under trigan's names (the depth adaptor left out: `depth_adaptor_state`)."""
    out = renamed_generator_weights(net)
    out["mapping.mean_camera_pose"] = _mean_camera_pose(model)
    return out


def renamed_generator_weights(net: EpigrafNetwork) -> "OrderedDict[str, Any]":
    """generator_state without the mean camera pose (a buffer, the one tensor made here): the
    snapshot's own tensors (torch or records) under trigan's names."""
    out: "OrderedDict[str, Any]" = OrderedDict()
    for key, value in net.state_dict.items():
        if key.startswith("synthesis.depth_adaptor.") or key == "mapping.mean_camera_params":
            continue
        out[_renamed_parameter(key)] = value
    return out


def depth_adaptor_state(net: EpigrafNetwork) -> Optional["OrderedDict[str, torch.Tensor]"]:
    """The depth adaptor of G or G_ema under trigan's names (training/depth_adaptor.py), or None."""
    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    for key, value in net.state_dict.items():
        # progress_coef is upstream's schedule state; trigan schedules from the trainer's progress
        if not key.startswith("synthesis.depth_adaptor.") or key == "synthesis.depth_adaptor.progress_coef":
            continue
        if key == _NEAR_PLANE_OFFSET_RAW:
            value = value.reshape(())
        out[_renamed_parameter(key)[len("depth_adaptor."):]] = value
    return out or None


def discriminator_state(net: EpigrafNetwork) -> "OrderedDict[str, torch.Tensor]":
    return OrderedDict((_renamed_parameter(key), value) for key, value in net.state_dict.items())


def optimizer_state(opt: Dict[str, Any]) -> Dict[str, Any]:
    """An optimiser read from the snapshot (keyed by parameter name) under trigan's names."""
    import torch  # noqa: PLC0415 (see the imports)

    groups = [dict(g, params=[_renamed_parameter(p) for p in g["params"]]) for g in opt.get("param_groups", [])]
    state = {}
    for name, entry in opt.get("state", {}).items():
        if name == _NEAR_PLANE_OFFSET_RAW and isinstance(entry, dict):
            # trigan's near-plane offset is a scalar, upstream's a [1] vector
            entry = {k: v.reshape(()) if isinstance(v, torch.Tensor) and v.numel() == 1 and k != "step" else v
                     for k, v in entry.items()}
        state[_renamed_parameter(name)] = entry
    return {"defaults": opt.get("defaults", {}), "param_groups": groups, "state": state}
