"""A model's description for people: what `trigan info` prints and the viewer's model panel shows."""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional

from trigan.core.cameras import RANGED_PRIORS, prior_fov_range, prior_pitch_range, prior_yaw_range
from trigan.core.config import Config
from trigan.core.generator import Generator, parameter_counts


def model_summary(config: Config, G: Generator, progress: Optional[dict] = None,
                  metrics: Optional[dict] = None, extra_keys: Optional[List[str]] = None) -> Dict[str, Any]:
    m = config.model
    counts = parameter_counts(G)
    summary: Dict[str, Any] = {
        "name": m.name,
        "family": m.family,
        "image_resolution": m.img_resolution,
        "triplane": {"resolution": m.triplane.resolution, "channels_per_plane": m.triplane.feat_dim,
                     "mlp": f"{m.triplane.feat_dim} -> " + " -> ".join(
                         [str(m.triplane.mlp_hidden)] * (m.triplane.mlp_layers - 1) + ["4"]),
                     "colors": "raw" if m.triplane.color_activation == "none" else m.triplane.color_activation},
        "classes": m.c_dim,
        "class_names": list(m.class_names),
        "latent": {"z_dim": m.mapping.z_dim, "w_dim": m.mapping.w_dim, "num_ws": G.synthesis.num_ws,
                   "pose_conditioning": m.mapping.camera_cond},
        "parameters": counts,
        "camera": {"fov_deg": m.camera.fov, "radius": m.camera.radius,
                   "ray": [m.camera.ray_start, m.camera.ray_end], "cube_scale": m.camera.cube_scale,
                   "distribution": m.camera.dist, "mean_pose": list(m.camera.mean_pose),
                   "fov_range_deg": ([m.camera.fov_min, m.camera.fov_max]
                                     if m.camera.fov_min is not None and m.camera.fov_max is not None else None),
                   "look_at_radius_max": m.camera.look_at_radius_max,
                   "yaw_offset": m.camera.yaw_offset,
                   "prior": _prior(m.camera),
                   # 3DGP's learned camera generator: which parameter groups it moves (None: no generator)
                   "generator_adapts": ([name for name, on in (("angles", m.camera_generator.adjust_angles),
                                                               ("fov", m.camera_generator.adjust_fov),
                                                               ("radius", m.camera_generator.adjust_radius),
                                                               ("look_at", m.camera_generator.adjust_look_at)) if on]
                                        if m.camera_generator.enabled else None),
                   "generator": ({"hidden_dim": m.camera_generator.hidden_dim,
                                  "embed_dim": m.camera_generator.embed_dim,
                                  "residual": m.camera_generator.residual}
                                 if m.camera_generator.enabled else None)},
        "render": {"coarse_steps": m.render.num_steps,
                   "fine_steps": m.render.num_fine_steps if m.render.num_fine_steps is not None else m.render.num_steps,
                   "background": "white" if m.render.white_background else "black/last sample",
                   "background_model": m.background.type or "none",
                   "density_shift": m.render.density_shift},
    }
    if progress:
        # Plain values only: a training checkpoint also keeps RNG states (tensors) to resume exactly.
        summary["progress"] = {k: v for k, v in progress.items() if v is None or isinstance(v, (int, float, str, bool))}
    if metrics:
        summary["metrics"] = dict(metrics)
    if extra_keys:
        summary["also_contains"] = sorted(extra_keys)
    return summary


def _prior(cam) -> Dict[str, Any]:
    """The camera prior's ranges (trigan's convention), as far as they are defined."""
    out: Dict[str, Any] = {"dist": cam.dist}
    if cam.dist == "custom":
        return out
    if cam.dist in ("normal", "gaussian", "truncnorm"):
        out.update(yaw_mean_std=[cam.yaw_mean, cam.yaw_std], pitch_mean_std=[cam.pitch_mean, cam.pitch_std])
    if cam.yaw_range is not None or cam.dist in RANGED_PRIORS:
        out["yaw_range"] = list(prior_yaw_range(cam))
    if cam.pitch_range is not None or cam.dist in RANGED_PRIORS:
        out["pitch_range"] = list(prior_pitch_range(cam))
    out["fov_range_deg"] = list(prior_fov_range(cam))
    if cam.look_at_radius_max > 0:
        out["look_at_radius_range"] = [cam.look_at_radius_min, cam.look_at_radius_max]
    return out


def _millions(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n:,}"


def format_summary(s: Dict[str, Any], source: str) -> str:
    """Readable multi-line text of `model_summary`."""
    p, cam, tp, lat, ren = s["parameters"], s["camera"], s["triplane"], s["latent"], s["render"]
    classes = "unconditional" if s["classes"] == 0 else f"{s['classes']} classes"
    if s["class_names"]:
        classes += " (" + ", ".join(s["class_names"][:8]) + (", ..." if len(s["class_names"]) > 8 else "") + ")"
    lines = [
        f"{source}",
        f"  model        {s['name']} ({s['family']}), {classes}",
        f"  image        {s['image_resolution']}x{s['image_resolution']}",
        f"  tri-planes   3 x {tp['channels_per_plane']} channels at {tp['resolution']}x{tp['resolution']}, "
        f"decoder MLP {tp['mlp']} ({tp['colors']} colours)",
        f"  latent       z {lat['z_dim']}, w {lat['w_dim']} x {lat['num_ws']}"
        + (", pose-conditioned (GPC)" if lat["pose_conditioning"] else ""),
        f"  parameters   {_millions(p['total'])} (mapping {_millions(p['mapping'])}, "
        f"decoder {_millions(p['tri_plane_decoder'])}, MLP {_millions(p['tri_plane_mlp'])}"
        + (f", background {_millions(p['background'])}" if p["background"] else "")
        + (f", camera generator {_millions(p['camera_generator'])}" if p.get("camera_generator") else "") + ")",
        f"  camera       fov {cam['fov_deg']:g} deg, radius {cam['radius']:g}, rays {cam['ray'][0]:g}..{cam['ray'][1]:g}, "
        f"scene box +-{cam['cube_scale']:g}, mean yaw/pitch {cam['mean_pose'][0]:.3f}/{cam['mean_pose'][1]:.3f} rad"
        + (", poses from the dataset" if cam["distribution"] == "custom" else ""),
        f"  rendering    {ren['coarse_steps']} + {ren['fine_steps']} samples per ray, "
        f"{ren['background']} background, background model {ren['background_model']}",
    ]
    prior = cam.get("prior") or {}
    if prior.get("dist") not in (None, "custom"):
        parts = [prior["dist"]]
        for key, label in (("yaw_range", "yaw"), ("pitch_range", "pitch")):
            if key in prior:
                parts.append(f"{label} {prior[key][0]:.3f}..{prior[key][1]:.3f}")
        for key, label in (("yaw_mean_std", "yaw"), ("pitch_mean_std", "pitch")):
            if key in prior:
                parts.append(f"{label} mean {prior[key][0]:.3f} std {prior[key][1]:.3f}")
        lo, hi = prior["fov_range_deg"]
        parts.append(f"fov {lo:g}..{hi:g} deg" if hi > lo else f"fov {lo:g} deg")
        if "look_at_radius_range" in prior:
            parts.append("look-at radius {:g}..{:g}".format(*prior["look_at_radius_range"]))
        lines.append("  camera prior " + ", ".join(parts) + " (radians, yaw 0 on +X)")
    if cam.get("yaw_offset"):
        lines.append(f"  convention   the model's own yaw 0 lies at trigan yaw {cam['yaw_offset']:.4f} "
                     "(3DGP's is on +Z); every angle shown and typed is trigan's")
    if cam.get("generator_adapts") is not None:
        gen = cam.get("generator") or {}
        adapts = ", ".join(cam["generator_adapts"]) or "nothing"
        lines.append("  camera gen   learned, maps each prior camera to a posterior (adapts " + adapts
                     + ("" if "radius" in cam["generator_adapts"] else "; radius fixed")
                     + (f"; MLPs {gen['hidden_dim']} wide, {gen['embed_dim']}-d z/class embeddings" if gen else "")
                     + ("; residual" if gen.get("residual") else "") + ")")
    if "progress" in s:
        prog = s["progress"]
        kimg = prog.get("kimg")
        lines.append("  training     " + (f"{kimg:g} kimg seen" if isinstance(kimg, (int, float)) else "")
                     + "".join(f", {k} {v:.4g}" if isinstance(v, float) else f", {k} {v}"
                               for k, v in prog.items() if k != "kimg"))
    if "metrics" in s:
        lines.append("  metrics      " + ", ".join(
            f"{k} {v:.3f}" if isinstance(v, float) and math.isfinite(v) else f"{k} {v}" for k, v in s["metrics"].items()))
    if "also_contains" in s:
        lines.append("  also holds   " + ", ".join(s["also_contains"]))
    return "\n".join(lines)
