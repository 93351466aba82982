"""Inversion quality and time: generated images with known latents, and "real" images the model
never saw, each inverted with the default settings and compared with the truth from other views.

Generated: `--generated` latents of the model (seeds 1000, 1001, ..., classes in turn, psi
`--psi`), each rendered once from a random camera (yaw uniform over the circle, pitch from the
model's prior), written as PNG and read back as a user's file would be (training.inversion_inputs).
Each is inverted twice: with the camera given and with it unknown (estimated); the class is never
given (every class is tried). The result is rendered at +60, +120, 180 and -90 degrees of yaw from
its camera and compared with the true latent from the same offsets of the true camera: PSNR and
silhouette IoU (opacity > 0.5), for the latent-only result and the tuned model.

Real: `--real` objects from `trigan dataset synth`'s renderer with a seed the demo model's data
never used (`--real-seed`), each seen from its dataset camera; the same object drawn from the four
offsets is the ground truth (its silhouette: pixels that are not the white background). Inverted
with the camera given, as a dataset user has it (and with `--real-unknown`, also estimated).

Prints one progress line per inversion on stderr and ends with one JSON object on stdout: medians
over the images (keys in the issue: input_psnr_tuned, novel_psnr_latent, novel_psnr_tuned,
novel_iou_tuned, pose_error_deg_median, real_novel_iou, real_novel_psnr, seconds_per_image, and
more) and every image's figures under "per_image".

    python benchmarks/inversion.py                                  # demo model, 16 + 16 images
    python benchmarks/inversion.py --generated 2 --real 2 --steps 40 --pti-steps 10   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from trigan.core.cameras import Camera, Pose, sample_camera_prior
from trigan.core.image_metrics import psnr, silhouette_iou
from trigan.core.model_io import open_model
from trigan.core.rendering import field_renderer
from trigan.core.views import LatentMapper, options_at_distance
from trigan.training import synth
from trigan.training.inversion import InversionSettings, generator_with, invert
from trigan.training.inversion_inputs import load_target, model_backdrop

NOVEL_OFFSETS_DEG = (60.0, 120.0, 180.0, -90.0)


def render_view(G, ws: torch.Tensor, pose: Pose, resolution: int):
    """rgb [3, R, R] in [-1, 1] and opacity [1, R, R] of ws from pose (the accelerated exact path)."""
    opts = options_at_distance(G.render_options(deterministic=True, density_noise_std=0.0), pose.radius,
                               float(G.cfg.camera.radius))
    with torch.no_grad():
        out = field_renderer("accelerated", G.field_from_ws(ws), opts).render(pose.to_camera().to(G.device), resolution)
    return out.rgb[0].clamp(-1, 1).cpu(), out.opacity[0].clamp(0, 1).cpu()


def save_png(rgb: torch.Tensor, path: Path) -> Path:
    array = ((rgb.permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
    Image.fromarray(array).save(path)
    return path


def wrap_deg(a: float) -> float:
    return math.degrees(math.atan2(math.sin(a), math.cos(a)))


def view_angle_deg(a: Pose, b: Pose) -> float:
    """The angle between two cameras' directions from the centre (yaw and pitch together)."""
    va, vb = np.array(a.origin()) - np.array(a.pivot), np.array(b.origin()) - np.array(b.pivot)
    cos = float(va @ vb / (np.linalg.norm(va) * np.linalg.norm(vb)))
    return math.degrees(math.acos(max(-1.0, min(1.0, cos))))


def novel_scores(G, result, truth) -> dict:
    """Mean PSNR and IoU over the four offsets: latent-only and tuned, against `truth(offset_rad)`."""
    G_latent = generator_with(G, result, tuned=False)
    G_tuned = generator_with(G, result, tuned=True)
    scores = {"psnr_latent": [], "psnr_tuned": [], "iou_latent": [], "iou_tuned": []}
    for deg in NOVEL_OFFSETS_DEG:
        ref_rgb, ref_opacity = truth(math.radians(deg))
        pose = replace(result.pose, yaw=result.pose.yaw + math.radians(deg))
        for name, model in (("latent", G_latent), ("tuned", G_tuned)):
            rgb, opacity = render_view(model, result.ws.to(G.device), pose, G.cfg.img_resolution)
            scores[f"psnr_{name}"].append(psnr(rgb, ref_rgb))
            scores[f"iou_{name}"].append(silhouette_iou(opacity, ref_opacity))
    return {k: float(np.mean(v)) for k, v in scores.items()}


def run_one(G, png: Path, settings, pose, log_name: str) -> tuple:
    target = load_target(png, G.cfg.img_resolution, backdrop=model_backdrop(G))
    start = time.perf_counter()
    result = invert(G, target, settings, pose=pose)
    seconds = time.perf_counter() - start
    return result, seconds


def generated_images(G, args, settings, tmp: Path) -> list:
    rows = []
    mapper = LatentMapper(G, args.psi)
    gen = torch.Generator().manual_seed(args.seed)
    base = Pose.for_generator(G)
    R = G.cfg.img_resolution
    for i in range(args.generated):
        seed = 1000 + i
        cls = i % G.c_dim if G.c_dim else None
        ws = mapper.ws([(cls, seed)])
        prior = sample_camera_prior(G.cfg.camera, 1, gen)
        yaw = float(torch.rand((), generator=gen) * 2 * math.pi - math.pi)
        true_pose = replace(base, yaw=yaw, pitch=float(prior.angles[0, 1]))
        rgb, _ = render_view(G, ws, true_pose, R)
        png = save_png(rgb, tmp / f"gen{seed}.png")

        def truth(offset, ws=ws, true_pose=true_pose):
            return render_view(G, ws, replace(true_pose, yaw=true_pose.yaw + offset), R)

        row = {"seed": seed, "class": cls, "yaw_deg": math.degrees(yaw), "pitch_deg": math.degrees(true_pose.pitch)}
        for mode, pose in (("given", true_pose), ("unknown", None)):
            result, seconds = run_one(G, png, settings, pose, png.stem)
            scores = novel_scores(G, result, truth)
            row[mode] = {"input_psnr_latent": result.metrics["psnr_latent"], "input_psnr_tuned": result.metrics["psnr"],
                         "input_ssim_tuned": result.metrics["ssim"], "class_found": result.class_index,
                         "tuning_kept_step": result.metrics.get("tuning_kept_step"),
                         "seconds": seconds, **{f"novel_{k}": v for k, v in scores.items()}}
            if mode == "unknown":
                row[mode]["pose_error_deg"] = view_angle_deg(result.pose, true_pose)
                row[mode]["yaw_error_deg"] = wrap_deg(result.pose.yaw - yaw)
            print(f"generated seed {seed} class {cls} ({mode} pose): input {result.metrics['psnr']:.1f} dB, "
                  f"novel {scores['psnr_latent']:.1f} / {scores['psnr_tuned']:.1f} dB (latent / tuned), "
                  f"IoU {scores['iou_tuned']:.3f}, class {result.class_index}"
                  + (f", pose error {row[mode]['pose_error_deg']:.1f} deg" if mode == "unknown" else "")
                  + f", {seconds:.0f} s", file=sys.stderr, flush=True)
        rows.append(row)
    return rows


def synth_truth(objects, camera_args: dict, resolution: int):
    """rgb [3, R, R] in [-1, 1] and silhouette [1, R, R] of one synthetic object from a camera."""
    cam = Camera.from_angles(batch=1, **camera_args)
    img, dist = synth.render(objects, cam, resolution)
    rgb = torch.from_numpy(img[0]).permute(2, 0, 1).float() / 127.5 - 1
    silhouette = torch.from_numpy(np.isfinite(dist[0])).float()[None]
    return rgb, silhouette


def real_images(G, args, settings, tmp: Path, estimate: bool) -> list:
    R = G.cfg.img_resolution
    classes = G.c_dim if G.c_dim else 1
    cfg = synth.SynthSettings(num=args.real, resolution=R, classes=min(classes, len(synth.CLASS_NAMES)),
                              seed=args.real_seed, fov=float(G.cfg.camera.fov), radius=float(G.cfg.camera.radius))
    labels, angles, objects, rows = synth.plan(cfg)
    base = Pose.for_generator(G)
    out = []
    for i in range(args.real):
        c = int(labels[i])
        obj = synth.take(objects[c], rows[[i]])
        yaw, pitch = float(angles[i, 0]), float(angles[i, 1])
        cam_args = dict(radius=cfg.radius, fov=cfg.fov)
        rgb, _ = synth_truth(obj, dict(yaw=yaw, pitch=pitch, **cam_args), R)
        png = save_png(rgb, tmp / f"real{i:02d}.png")
        true_pose = replace(base, yaw=yaw, pitch=pitch, radius=cfg.radius, fov=cfg.fov)

        def truth(offset, obj=obj, yaw=yaw, pitch=pitch, cam_args=cam_args):
            return synth_truth(obj, dict(yaw=yaw + offset, pitch=pitch, **cam_args), R)

        modes = (("given", true_pose),) + ((("unknown", None),) if estimate else ())
        row = {"index": i, "class": c, "yaw_deg": math.degrees(yaw), "pitch_deg": math.degrees(pitch)}
        for mode, pose in modes:
            result, seconds = run_one(G, png, settings, pose, png.stem)
            scores = novel_scores(G, result, truth)
            row[mode] = {"input_psnr_tuned": result.metrics["psnr"], "input_psnr_latent": result.metrics["psnr_latent"],
                         "class_found": result.class_index, "seconds": seconds,
                         "tuning_kept_step": result.metrics.get("tuning_kept_step"),
                         **{f"novel_{k}": v for k, v in scores.items()}}
            if pose is None:
                row[mode]["pose_error_deg"] = view_angle_deg(result.pose, true_pose)
            print(f"real {i} ({synth.CLASS_NAMES[c]}, {mode} pose): input {result.metrics['psnr']:.1f} dB, novel "
                  f"{scores['psnr_tuned']:.1f} dB, IoU {scores['iou_latent']:.3f} / {scores['iou_tuned']:.3f} "
                  f"(latent / tuned), class {result.class_index}, {seconds:.0f} s", file=sys.stderr, flush=True)
        out.append(row)
    return out


def median(rows, mode, key):
    values = [r[mode][key] for r in rows if mode in r]
    return float(statistics.median(values)) if values else None


def tuning_effect(rows, mode) -> dict:
    """Per picture, tuned minus latent-only: the input view's and the novel views' PSNR (median and
    worst), and the share of pictures whose tuning was kept (a kept step above 0)."""
    rows = [r[mode] for r in rows if mode in r]
    if not rows:
        return {}
    novel = [r["novel_psnr_tuned"] - r["novel_psnr_latent"] for r in rows]
    iou = [r["novel_iou_tuned"] - r["novel_iou_latent"] for r in rows]
    return {"input_gain_db_median": float(statistics.median(r["input_psnr_tuned"] - r["input_psnr_latent"] for r in rows)),
            "novel_change_db_median": float(statistics.median(novel)), "novel_change_db_worst": float(min(novel)),
            "novel_iou_change_median": float(statistics.median(iou)), "novel_iou_change_worst": float(min(iou)),
            "kept_fraction": float(np.mean([(r["tuning_kept_step"] or 0) > 0 for r in rows]))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="assets/demo.ckpt")
    p.add_argument("--generated", type=int, default=16)
    p.add_argument("--real", type=int, default=16)
    p.add_argument("--real-seed", type=int, default=20261207, help="synthetic objects' seed (the demo data used 0)")
    p.add_argument("--real-unknown", action="store_true", help="also invert the real images with the camera unknown")
    p.add_argument("--psi", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0, help="the random cameras of the generated images")
    p.add_argument("--steps", type=int, help="latent steps (default: InversionSettings')")
    p.add_argument("--pti-steps", type=int, help="tuning steps (default: InversionSettings')")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    p.add_argument("--json", help="also write the JSON here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    G = open_model(args.checkpoint, device="cpu").G.eval().requires_grad_(False)
    settings = InversionSettings()
    if args.steps is not None:
        settings = replace(settings, steps=args.steps)
    if args.pti_steps is not None:
        settings = replace(settings, pti_steps=args.pti_steps)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        gen = generated_images(G, args, settings, Path(tmp))
        real = real_images(G, args, settings, Path(tmp), args.real_unknown)
    times = [r[m]["seconds"] for r in gen + real for m in ("given", "unknown") if m in r]
    summary = {
        "input_psnr_tuned": median(gen, "given", "input_psnr_tuned"),
        "input_psnr_latent": median(gen, "given", "input_psnr_latent"),
        "novel_psnr_latent": median(gen, "given", "novel_psnr_latent"),
        "novel_psnr_tuned": median(gen, "given", "novel_psnr_tuned"),
        "novel_iou_latent": median(gen, "given", "novel_iou_latent"),
        "novel_iou_tuned": median(gen, "given", "novel_iou_tuned"),
        "unknown_pose_input_psnr_tuned": median(gen, "unknown", "input_psnr_tuned"),
        "unknown_pose_novel_psnr_latent": median(gen, "unknown", "novel_psnr_latent"),
        "unknown_pose_novel_psnr_tuned": median(gen, "unknown", "novel_psnr_tuned"),
        "unknown_pose_novel_iou_tuned": median(gen, "unknown", "novel_iou_tuned"),
        "pose_error_deg_median": median(gen, "unknown", "pose_error_deg"),
        "class_found_fraction": (float(np.mean([r["unknown"]["class_found"] == r["class"] for r in gen]))
                                 if gen else None),
        "real_novel_iou": median(real, "given", "novel_iou_tuned"),
        "real_novel_iou_latent": median(real, "given", "novel_iou_latent"),
        "real_novel_psnr": median(real, "given", "novel_psnr_tuned"),
        "real_novel_psnr_latent": median(real, "given", "novel_psnr_latent"),
        "real_input_psnr_tuned": median(real, "given", "input_psnr_tuned"),
        "real_unknown_pose_novel_iou": median(real, "unknown", "novel_iou_tuned"),
        "real_unknown_pose_error_deg": median(real, "unknown", "pose_error_deg"),
        "tuning_generated": tuning_effect(gen, "given"),
        "tuning_generated_pose_unknown": tuning_effect(gen, "unknown"),
        "tuning_real": tuning_effect(real, "given"),
        "seconds_per_image": float(statistics.median(times)) if times else None,
        "seconds_per_image_pose_unknown": median(gen, "unknown", "seconds"),
        "settings": settings.as_dict(), "checkpoint": args.checkpoint, "psi": args.psi,
        "generated": args.generated, "real": args.real, "real_seed": args.real_seed,
        "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
        "total_seconds": time.perf_counter() - start,
        "per_image": {"generated": gen, "real": real},
    }
    text = json.dumps(summary, indent=1)
    if args.json:
        Path(args.json).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
