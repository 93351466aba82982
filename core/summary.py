"""A model's description for people: what `trigan info` prints and the viewer's model panel shows."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from trigan.core.camera_priors import RANGED_PRIORS, prior_fov_range, prior_pitch_range, prior_yaw_range
from trigan.core.config import SavedConfig

if TYPE_CHECKING:
    from trigan.core.generator import Generator


def model_summary(config: SavedConfig, G: Generator, progress: Optional[dict] = None,
                  metrics: Optional[dict] = None, extra_keys: Optional[List[str]] = None) -> Dict[str, Any]:
    """What people are shown of a model. Only `config.model` is read, so training's whole Config (a
    preset, `trigan info --preset`) serves as well as a checkpoint's SavedConfig."""
    # G is built, so torch is loaded already; this module itself stays free of it (`trigan info`
    # describes a checkpoint from core.checkpoint_meta without torch, through summary_of).
    from trigan.core.generator import parameter_counts  # noqa: PLC0415

    return summary_of(config, parameter_counts(G), G.synthesis.num_ws, progress, metrics, extra_keys)


def summary_of(config: SavedConfig, counts: Dict[str, int], num_ws: int, progress: Optional[dict] = None,
               metrics: Optional[dict] = None, extra_keys: Optional[List[str]] = None) -> Dict[str, Any]:
    """model_summary from the generator's parameter counts (core.generator.parameter_counts's parts)
    and its synthesis network's number of ws, without the generator."""
    m = config.model
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
        "latent": {"z_dim": m.mapping.z_dim, "w_dim": m.mapping.w_dim, "num_ws": num_ws,
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


def format_duration(seconds: float) -> str:
    """A duration as people read it: "8.2s", "12m05s", "4h34m", "3d07h"."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes}m{int(seconds % 60):02d}s"
    hours = minutes // 60
    if hours < 24:
        return f"{hours}h{minutes % 60:02d}m"
    return f"{hours // 24}d{hours % 24:02d}h"


def readable_number(value: Any) -> str:
    """A value for people: counts with thousands separators, floats to about four significant
    digits and never in e-notation (1.644e+04 reads as 16,443; 2e-05 as 0.00002)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "yes" if value is True else "no" if value is False else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if not math.isfinite(value):
        return str(value)
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value):,}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 1e-3:
        return f"{value:.4g}"
    # Small values: enough decimals for three significant digits, trailing zeros dropped.
    decimals = min(20, 2 - math.floor(math.log10(abs(value))))
    return f"{value:.{decimals}f}".rstrip("0")


# How a checkpoint's progress keys read in the summary (a key not listed: its name, "_" -> " ").
_PROGRESS_LABELS = {"cur_nimg": "images", "seed_offset": "seed offset", "world_size": "processes",
                    "best_metric": "best metric"}


def progress_parts(progress: Dict[str, Any]) -> List[str]:
    """The training progress of a checkpoint as short "label value" phrases: kimg seen, training
    time, then the other plain values (None ones left out; images only when kimg is missing)."""
    parts = []
    kimg = progress.get("kimg")
    if isinstance(kimg, (int, float)) and not isinstance(kimg, bool):
        parts.append(f"{kimg:g} kimg seen")
    seconds = progress.get("train_seconds")
    if isinstance(seconds, (int, float)) and not isinstance(seconds, bool):
        parts.append(f"{format_duration(seconds)} of training")
    shown = {"kimg", "train_seconds"} | ({"cur_nimg"} if parts and "kimg" in parts[0] else set())
    for key, value in progress.items():
        if value is None or key in shown:
            continue
        parts.append(f"{_PROGRESS_LABELS.get(key, key.replace('_', ' '))} {readable_number(value)}")
    return parts


def summary_rows(s: Dict[str, Any]) -> List[Tuple[str, List[str]]]:
    """`model_summary` as (label, phrases) rows: format_summary joins each row's phrases with ", ";
    the viewer lays them out as a table, where a phrase wraps as a whole."""
    p, cam, tp, lat, ren = s["parameters"], s["camera"], s["triplane"], s["latent"], s["render"]
    classes = "unconditional" if s["classes"] == 0 else f"{s['classes']} classes"
    if s["class_names"]:
        classes += " (" + ", ".join(s["class_names"][:8]) + (", ..." if len(s["class_names"]) > 8 else "") + ")"
    params = [f"{_millions(p['total'])} (mapping {_millions(p['mapping'])}",
              f"decoder {_millions(p['tri_plane_decoder'])}", f"MLP {_millions(p['tri_plane_mlp'])}"]
    if p["background"]:
        params.append(f"background {_millions(p['background'])}")
    if p.get("camera_generator"):
        params.append(f"camera generator {_millions(p['camera_generator'])}")
    params[-1] += ")"
    camera = [f"fov {cam['fov_deg']:g} deg", f"radius {cam['radius']:g}", f"rays {cam['ray'][0]:g}..{cam['ray'][1]:g}",
              f"scene box +-{cam['cube_scale']:g}",
              f"mean yaw/pitch {cam['mean_pose'][0]:.3f}/{cam['mean_pose'][1]:.3f} rad"]
    if cam["distribution"] == "custom":
        camera.append("poses from the dataset")
    rows: List[Tuple[str, List[str]]] = [
        ("model", [f"{s['name']} ({s['family']})", classes]),
        ("image", [f"{s['image_resolution']}x{s['image_resolution']}"]),
        ("tri-planes", [f"3 x {tp['channels_per_plane']} channels at {tp['resolution']}x{tp['resolution']}",
                        f"decoder MLP {tp['mlp']} ({tp['colors']} colours)"]),
        ("latent", [f"z {lat['z_dim']}", f"w {lat['w_dim']} x {lat['num_ws']}"]
         + (["pose-conditioned (GPC)"] if lat["pose_conditioning"] else [])),
        ("parameters", params),
        ("camera", camera),
        ("rendering", [f"{ren['coarse_steps']} + {ren['fine_steps']} samples per ray",
                       f"{ren['background']} background", f"background model {ren['background_model']}"]),
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
        parts[-1] += " (radians, yaw 0 on +X)"
        rows.append(("camera prior", parts))
    if cam.get("yaw_offset"):
        rows.append(("convention", [f"the model's own yaw 0 lies at trigan yaw {cam['yaw_offset']:.4f} "
                                    "(3DGP's is on +Z); every angle shown and typed is trigan's"]))
    if cam.get("generator_adapts") is not None:
        gen = cam.get("generator") or {}
        adapts = ", ".join(cam["generator_adapts"]) or "nothing"
        rows.append(("camera gen", ["learned", "maps each prior camera to a posterior (adapts " + adapts
                                    + ("" if "radius" in cam["generator_adapts"] else "; radius fixed")
                                    + (f"; MLPs {gen['hidden_dim']} wide" if gen else "")]
                     + ([f"{gen['embed_dim']}-d z/class embeddings" + ("; residual" if gen.get("residual") else "")]
                        if gen else [])))
        rows[-1][1][-1] += ")"
    if s.get("progress"):
        rows.append(("training", progress_parts(s["progress"])))
    if s.get("metrics"):
        rows.append(("metrics", [f"{k} {v:.3f}" if isinstance(v, float) and math.isfinite(v) else f"{k} {v}"
                                 for k, v in s["metrics"].items()]))
    if s.get("also_contains"):
        rows.append(("also holds", [", ".join(s["also_contains"])]))
    return rows


def format_summary(s: Dict[str, Any], source: str) -> str:
    """Readable multi-line text of `model_summary` (what `trigan info` prints)."""
    return "\n".join([source] + [f"  {label:<12} " + ", ".join(parts) for label, parts in summary_rows(s)])
