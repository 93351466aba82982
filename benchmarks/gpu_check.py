"""Every CUDA path in one run, printed as one JSON object (`make gpu-check`; under 8 minutes on one GPU).

Sections, each guarded: a section that raises records {"ok": false, "error": "<one line>"} and the
next one runs; one that measures a number outside its stated tolerance records its figures with
"ok": false and the misses in "error". The exit status is 0 when every section passed, else 1.

1. `parity`: CUDA against the CPU on every fixture (the converted official EpiGRAF and 3DGP
   snapshots in tests/fixtures/ and assets/demo.ckpt): each render path of core.rendering by name,
   max abs difference and PSNR of rgb and depth, in strict fp32 (TF32 off) and with the process's
   own precision settings (torch's default: TF32 in cuDNN convolutions); the field's MLP output against upstream's reference; the discriminators' logits
   (the fixtures converted with `trigan convert --all`, and the demo preset's D with random weights)
   with the fp16 blocks on CUDA against fp32 on the CPU. Tolerances are in the output (`TOLERANCES`).
2. `gl_preview`: the preview path's GL_RENDERER string (on a CUDA machine it must be the NVIDIA EGL
   device, not Mesa's software one) and ms per frame at 256^2, 512^2 and 1024^2 along an orbit.
3. `exact_render`: the accelerated path on demo.ckpt at 256^2 and 512^2 (ms, FPS, peak memory), and
   an FFHQ-512-size model (configs/models/epigraf_ffhq512.yaml, random weights) at 512^2.
4. `training`: a training step of the demo preset and of epigraf_ffhq512 at batch 4 on synthetic
   data: ms per step and peak memory.
5. `torchrun`: `torchrun --nproc_per_node=1 -m trigan.cli.main train` for two steps of a tiny model
   (a subprocess with a timeout), and a one-process NCCL all-reduce under torchrun (a one-process
   `trigan train` never opens a process group, so the probe is what exercises NCCL).
6. `mesh`: a coloured 256^3 mesh of demo.ckpt as `trigan mesh` makes it (core.exports.seed_mesh).

Progress goes to stderr, the JSON to stdout (and to --json FILE). Without CUDA the script prints one
line saying so and exits 0; `--device cpu` runs every section on the CPU instead (slow; for
development). `--quick` runs each section at its smallest size.

    python benchmarks/gpu_check.py                 # or: make gpu-check
    python benchmarks/gpu_check.py --quick --json gpu_check.json
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import torch

# trigan's modules are imported inside the sections that use them (marked PLC0415 below): a
# section whose imports fail records that and the others still run, and the no-CUDA answer needs
# torch alone.

REPO = Path(__file__).resolve().parents[1]
DEMO_CKPT = REPO / "assets" / "demo.ckpt"
FIXTURE_DIR = REPO / "tests" / "fixtures"
# name -> snapshot; each has upstream's reference outputs beside it (<name>_ref.npz)
FIXTURES = {
    "epigraf/uncond_gpc": FIXTURE_DIR / "epigraf" / "uncond_gpc.pkl",
    "epigraf/cond_white": FIXTURE_DIR / "epigraf" / "cond_white.pkl",
    "3dgp/3dgp_cond": FIXTURE_DIR / "3dgp" / "3dgp_cond.pkl",
    "3dgp/3dgp_uncond_origin": FIXTURE_DIR / "3dgp" / "3dgp_uncond_origin.pkl",
}

# Pass bounds, printed in the output. Strict fp32 (TF32 off): the same float32 maths through other
# kernels and summation orders, so images agree to far below what a viewer shows (a wrong kernel
# misses by orders of magnitude). The default settings use TF32 in cuDNN convolutions (10 mantissa
# bits, about 1e-3 relative error through the synthesis network): a visible-quality bound. The preview
# bakes its volume on the device and draws with GL, so it is bounded like the default. fp16 D blocks keep 11
# mantissa bits through several blocks: a bound relative to the logits' size.
TOLERANCES = {
    "render_fp32_min_psnr_db": 60.0,
    "render_fp32_max_abs_rgb": 1e-2,
    "render_default_min_psnr_db": 40.0,
    "preview_min_psnr_db": 40.0,
    "mlp_vs_upstream_max_abs": "max(1e-4, 1e-5 x max|reference|) (tests/fixtures/README.md)",
    "d_fp32_max_abs": "max(1e-4, 1e-5 x max|CPU logits|)",
    "d_fp16_max_abs": "5e-2 x max(1, max|CPU logits|)",
}

QUICK_SIZES = {"render": 32, "preview": [256], "exact": [256], "mesh": 128,
               "training": ["demo"], "orbit_frames": 8}
FULL_SIZES = {"render": 64, "preview": [256, 512, 1024], "exact": [256, 512], "mesh": 256,
              "training": ["demo", "epigraf_ffhq512"], "orbit_frames": 24}

# A tiny model for the torchrun step: a few seconds a step on any device.
TINY_TRAIN = [
    "model.img_resolution=16", "model.triplane.resolution=16", "model.triplane.channel_base=256",
    "model.triplane.channel_max=16", "model.triplane.feat_dim=8", "model.triplane.mlp_hidden=16",
    "model.mapping.w_dim=16", "model.mapping.z_dim=32", "model.render.num_steps=6",
    "discriminator.patch_resolution=8", "discriminator.num_additional_start_blocks=1",
    "discriminator.channel_base=128", "discriminator.channel_max=16",
    "training.batch_size=8", "training.num_workers=0", "training.tick_kimg=0.008",
    "training.samples=4", "training.image_ticks=1000", "training.video_ticks=0", "training.snapshot_ticks=1000",
]


# ---------------------------------------------------------------------------------------------------
# Small helpers

def log(message: str) -> None:
    print(f"gpu_check: {message}", file=sys.stderr, flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_ms(fn: Callable[[], object], device: torch.device, repeats: int = 1) -> float:
    """Median wall-clock ms of `repeats` calls of fn after one warm-up call, the device synchronised;
    repeats=0 times the first call itself."""
    if repeats == 0:
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        return round(1000 * (time.perf_counter() - start), 2)
    fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(1000 * (time.perf_counter() - start))
    return round(statistics.median(times), 2)


class PeakMemory:
    """torch.cuda.max_memory_allocated over the `with` block, in MiB (None on the CPU)."""

    def __init__(self, device: torch.device):
        self.device, self.mib = device, None

    def __enter__(self):
        if self.device.type == "cuda":
            sync(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            sync(self.device)
            self.mib = round(torch.cuda.max_memory_allocated(self.device) / 2 ** 20, 1)


@contextlib.contextmanager
def strict_fp32():
    """TF32 off for matmuls and cuDNN convolutions (torch turns it on for cuDNN by default)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def tf32_settings() -> dict:
    return {"matmul_tf32": torch.backends.cuda.matmul.allow_tf32, "cudnn_tf32": torch.backends.cudnn.allow_tf32}


# name -> the precision settings a parity render runs under: strict fp32, and the process's own
# (what a user gets: torch's defaults unless something changed them)
PRECISION_MODES = {"fp32": strict_fp32, "default": contextlib.nullcontext}


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR of images as shown: raw colours clamped to [-1, 1] (peak-to-peak 2); 99 when equal."""
    mse = float(((a.clamp(-1, 1) - b.clamp(-1, 1)) ** 2).mean())
    return 99.0 if mse == 0 else round(10 * math.log10(4.0 / mse), 2)


def max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float().cpu() - b.float().cpu()).abs().max())


def one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".splitlines()
    return text[0][:300] if text else type(exc).__name__


def first_latent_field(G, seed: int = 0):
    """The field of one seed (class 0 for conditional models), computed once."""
    with torch.no_grad():
        labels = G.labels([0] if G.c_dim else None, 1)
        return G.field_from_ws(G.map_latents(G.latents([seed]), labels))


# ---------------------------------------------------------------------------------------------------
# 1. Parity of the device against the CPU

def compare_renders(ours, ref) -> dict:
    return {"rgb_max_abs": round(max_abs(ours.rgb, ref.rgb), 6), "rgb_psnr_db": psnr(ours.rgb.float().cpu(), ref.rgb),
            "depth_max_abs": round(max_abs(ours.depth, ref.depth), 6)}


def worst_of(comparisons: List[dict]) -> dict:
    """The worst figure of each kind over several views: the largest differences, the lowest PSNR."""
    return {key: (min if key.endswith("psnr_db") else max)(c[key] for c in comparisons) for key in comparisons[0]}


def render_paths(G, field, poses, resolution: int, device: torch.device) -> Dict[str, list]:
    """path -> [RenderOutput on the CPU] for every available render path, one per pose."""
    from trigan.core.rendering import RENDER_PATHS, field_renderer, path_unavailable  # noqa: PLC0415

    opts = G.render_options(deterministic=True)
    outputs = {}
    with torch.no_grad():
        for path in RENDER_PATHS:
            if path_unavailable(path) is not None:
                continue
            renderer = field_renderer(path, field, opts)
            outputs[path] = [_on_cpu(renderer.render(pose.to_camera(device), resolution)) for pose in poses]
            release = getattr(renderer, "release", None)
            if release is not None:
                release()
    return outputs


def _on_cpu(out):
    from trigan.core.renderer import RenderOutput  # noqa: PLC0415
    return RenderOutput(rgb=out.rgb.float().cpu(), depth=out.depth.float().cpu(), opacity=out.opacity.float().cpu())


def model_parity(path: Path, device: torch.device, resolution: int) -> dict:
    """Every render path of one model on `device` against the same on the CPU, in strict fp32 and in
    the process's default precision (PRECISION_MODES); the worst of two views."""
    from trigan.core.cameras import Pose  # noqa: PLC0415
    from trigan.core.model_io import open_model  # noqa: PLC0415
    from trigan.core.rendering import RENDER_PATHS, path_unavailable  # noqa: PLC0415

    cpu_G = open_model(path, device="cpu").G
    dev_G = open_model(path, device=device).G
    start = Pose.for_generator(cpu_G)          # one pose for both devices (3DGP's is a computed posterior)
    poses = [start, start.with_values(yaw=start.yaw + 0.5)]
    ref = render_paths(cpu_G, first_latent_field(cpu_G), poses, resolution, torch.device("cpu"))
    result = {"resolution": resolution, "paths": {}, "unavailable": {}}
    for path_name in RENDER_PATHS:
        reason = path_unavailable(path_name)
        if reason is not None:
            result["unavailable"][path_name] = reason
    result["default_precision"] = tf32_settings()
    for mode, settings in PRECISION_MODES.items():
        with settings():
            ours = render_paths(dev_G, first_latent_field(dev_G), poses, resolution, device)
        for path_name, images in ours.items():
            pairs = [compare_renders(a, b) for a, b in zip(images, ref[path_name], strict=True)]
            result["paths"].setdefault(path_name, {})[mode] = worst_of(pairs)
    npz = path.with_name(path.stem + "_ref.npz")
    if npz.exists():
        result["mlp_vs_upstream_max_abs"], result["mlp_vs_upstream_bound"] = mlp_against_upstream(dev_G, npz)
    return result


def mlp_against_upstream(G, npz: Path):
    """(max abs, bound) of the field's MLP outputs on the device against upstream's, strict fp32."""
    ref = dict(np.load(npz))
    with strict_fp32(), torch.no_grad():
        field = G.field_from_ws(torch.from_numpy(ref["ws_psi1"]).to(G.device))
        rgb, sigma = field(torch.from_numpy(ref["points"]).to(G.device))
        out = torch.cat([rgb, sigma[..., None]], dim=-1).cpu().numpy()
    bound = max(1e-4, 1e-5 * float(np.abs(ref["mlp_out"]).max()))
    return round(float(np.abs(out - ref["mlp_out"]).max()), 7), bound


def render_misses(name: str, record: dict) -> List[str]:
    misses = []
    for path_name, modes in record["paths"].items():
        for mode, c in modes.items():
            if path_name == "preview":
                low = c["rgb_psnr_db"] < TOLERANCES["preview_min_psnr_db"]
            elif mode == "fp32":
                low = (c["rgb_psnr_db"] < TOLERANCES["render_fp32_min_psnr_db"]
                       or c["rgb_max_abs"] > TOLERANCES["render_fp32_max_abs_rgb"])
            else:
                low = c["rgb_psnr_db"] < TOLERANCES["render_default_min_psnr_db"]
            if low:
                misses.append(f"{name} {path_name} {mode}: {c['rgb_psnr_db']} dB, max abs {c['rgb_max_abs']}")
    if record.get("mlp_vs_upstream_max_abs", 0.0) > record.get("mlp_vs_upstream_bound", 1.0):
        misses.append(f"{name} MLP vs upstream: {record['mlp_vs_upstream_max_abs']}")
    return misses


class Fp16Blocks:
    """Counts the discriminator blocks that ran in fp16 (hooks on their inputs)."""

    def __init__(self, D):
        self.count = 0
        self.handles = [getattr(D, f"b{res}").register_forward_pre_hook(self._seen) for res in D.block_resolutions]

    def _seen(self, _module, inputs):
        if any(isinstance(t, torch.Tensor) and t.dtype == torch.float16 for t in inputs):
            self.count += 1

    def remove(self):
        for h in self.handles:
            h.remove()


def discriminator_parity(D_cpu, inputs: dict, device: torch.device) -> dict:
    """Logits of D on the CPU in fp32 against the same D on `device` in fp32 and with its fp16 blocks."""
    D_dev = copy.deepcopy(D_cpu).to(device)
    moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in inputs.items()}
    with torch.no_grad():
        ref = D_cpu(**inputs, use_fp16=False).float()
        with strict_fp32():
            fp32 = D_dev(**moved, use_fp16=False).float().cpu()
        counter = Fp16Blocks(D_dev)
        try:
            fp16 = D_dev(**moved, use_fp16=True).float().cpu()
        finally:
            counter.remove()
    scale = float(ref.abs().max())
    return {"logits_max_abs_cpu": round(scale, 5),
            "fp32_max_abs": round(max_abs(fp32, ref), 7), "fp32_bound": max(1e-4, 1e-5 * scale),
            "fp16_max_abs": round(max_abs(fp16, ref), 6), "fp16_bound": round(5e-2 * max(1.0, scale), 6),
            "fp16_blocks": counter.count, "blocks": len(D_cpu.block_resolutions)}


def converted_discriminator(pkl: Path, tmp: Path):
    """(D in eval mode, its inputs from the fixture's reference) after `trigan convert --all`."""
    from trigan.cli.main import main as trigan  # noqa: PLC0415
    from trigan.core.cameras import PatchParams  # noqa: PLC0415
    from trigan.core.checkpoint import load_checkpoint  # noqa: PLC0415
    from trigan.training.config import config_from_saved  # noqa: PLC0415
    from trigan.training.discriminator import Discriminator  # noqa: PLC0415

    dst = tmp / f"{pkl.stem}_full.ckpt"
    if trigan(["convert", str(pkl), str(dst), "--all"]) != 0:
        raise RuntimeError(f"trigan convert --all {pkl.name} failed")
    ckpt = load_checkpoint(dst)
    cfg = config_from_saved(ckpt.config)
    D = Discriminator(cfg.discriminator, cfg.model.c_dim, cfg.model.camera.yaw_offset).eval()
    D.load_state_dict(ckpt.extra["D"], strict=True)
    ref = dict(np.load(pkl.with_name(pkl.stem + "_ref.npz")))
    inputs = {"img": torch.from_numpy(ref["d_input"]), "c": torch.from_numpy(ref["d_c"]) if cfg.model.c_dim else None}
    if "d_patch_params" in ref:
        pp = torch.from_numpy(ref["d_patch_params"])       # scale_x, scale_y, offset_x, offset_y
        inputs["patch"] = PatchParams(scale=pp[:, 0], offset=pp[:, 2:4])
    if "d_camera_angles" in ref:
        inputs["camera_angles"] = torch.from_numpy(ref["d_camera_angles"])
    return D, inputs


def random_demo_discriminator():
    """The demo preset's D with seeded random weights and a batch of 4 random images (its own inputs)."""
    from trigan.training.config import load_config  # noqa: PLC0415
    from trigan.training.discriminator import Discriminator  # noqa: PLC0415

    cfg = load_config("demo")
    torch.manual_seed(0)
    D = Discriminator(cfg.discriminator, cfg.model.c_dim, cfg.model.camera.yaw_offset).eval()
    p, c_dim = cfg.discriminator.patch_resolution, cfg.model.c_dim
    inputs = {"img": torch.rand(4, cfg.discriminator.img_channels, p, p) * 2 - 1,
              "c": torch.eye(c_dim)[torch.arange(4) % c_dim] if c_dim else None}
    if cfg.discriminator.camera_cond:
        inputs["camera_angles"] = torch.tensor([[1.0, 1.4, 0.0], [2.0, 1.6, 0.0], [0.5, 1.2, 0.0], [3.0, 1.5, 0.0]])
    return D, inputs


def d_misses(name: str, record: dict, device: torch.device) -> List[str]:
    misses = []
    if record["fp32_max_abs"] > record["fp32_bound"]:
        misses.append(f"D {name} fp32: {record['fp32_max_abs']}")
    if record["fp16_max_abs"] > record["fp16_bound"]:
        misses.append(f"D {name} fp16: {record['fp16_max_abs']}")
    if device.type == "cuda" and record["fp16_blocks"] == 0:
        misses.append(f"D {name}: no block ran in fp16 on CUDA")
    return misses


def parity_section(device: torch.device, resolution: int = 64, fixtures: Optional[Dict[str, Path]] = None,
                   demo: Optional[Path] = DEMO_CKPT) -> dict:
    fixtures = FIXTURES if fixtures is None else fixtures
    models = dict(fixtures)
    if demo is not None:
        models["demo"] = demo
    result = {"tolerances": TOLERANCES, "models": {}, "discriminators": {}}
    misses: List[str] = []
    for name, path in models.items():
        log(f"parity: renders of {name}")
        result["models"][name] = record = model_parity(Path(path), device, resolution)
        misses += render_misses(name, record)
    with tempfile.TemporaryDirectory(prefix="trigan-gpu-check-") as tmp:
        discriminators = {name: (lambda p=path: converted_discriminator(Path(p), Path(tmp)))
                          for name, path in fixtures.items()}
        discriminators["demo_random"] = random_demo_discriminator
        for name, build in discriminators.items():
            log(f"parity: discriminator of {name}")
            D, inputs = build()
            result["discriminators"][name] = record = discriminator_parity(D, inputs, device)
            misses += d_misses(name, record, device)
    result["failures"] = misses
    return result


# ---------------------------------------------------------------------------------------------------
# 2. The GL preview

def gl_preview_section(device: torch.device, sizes=(256, 512, 1024), frames: int = 24,
                       checkpoint: Path = DEMO_CKPT) -> dict:
    from trigan.core.cameras import Pose  # noqa: PLC0415
    from trigan.core.model_io import open_model  # noqa: PLC0415
    from trigan.core.rendering import field_renderer, path_unavailable  # noqa: PLC0415

    reason = path_unavailable("preview")
    if reason is not None:
        raise RuntimeError(f"the preview path is unavailable: {reason}")
    G = open_model(checkpoint, device=device).G
    field = first_latent_field(G)
    start = time.perf_counter()
    preview = field_renderer("preview", field, G.render_options())
    result = {"setup_ms": round(1000 * (time.perf_counter() - start), 1),
              "gl_renderer": preview.marcher.ctx.renderer if preview.marcher is not None else None,
              "ms_per_frame": {}, "fps": {}}
    start_yaw = Pose.for_generator(G).yaw
    orbit = [G.default_camera(yaw=start_yaw + 2 * math.pi * i / frames) for i in range(frames)]
    for size in sizes:
        preview.render(orbit[0], size, normals=True)     # warm-up: the framebuffer at this size
        times = []
        for camera in orbit:
            begin = time.perf_counter()
            preview.render(camera, size, normals=True)
            times.append(1000 * (time.perf_counter() - begin))
        ms = statistics.median(times)
        result["ms_per_frame"][str(size)] = round(ms, 2)
        result["fps"][str(size)] = round(1000 / ms, 1)
    preview.release()
    renderer = (result["gl_renderer"] or "").lower()
    if device.type == "cuda" and "nvidia" not in renderer:
        result["failures"] = [f"EGL picked {result['gl_renderer']!r}, not the NVIDIA device"]
    return result


# ---------------------------------------------------------------------------------------------------
# 3. Exact-render speed

def accelerated_figures(G, field, size: int, device: torch.device, repeats: int) -> dict:
    from trigan.core.rendering import field_renderer  # noqa: PLC0415

    opts = G.render_options(deterministic=True)
    camera = G.default_camera(yaw=0.6, pitch=1.3)
    with PeakMemory(device) as peak, torch.no_grad():
        sync(device)
        start = time.perf_counter()
        fast = field_renderer("accelerated", field, opts)
        sync(device)
        setup = 1000 * (time.perf_counter() - start)
        ms = timed_ms(lambda: fast.render(camera, size), device, repeats)
    return {"grid_setup_ms": round(setup, 1), "ms": ms, "fps": round(1000 / ms, 1),
            "occupied_fraction": round(float(fast.grid.occupied_fraction), 4), "peak_mib": peak.mib}


def plain_figures(G, field, size: int, device: torch.device, repeats: int) -> dict:
    from trigan.core.rendering import field_renderer  # noqa: PLC0415

    plain = field_renderer("plain", field, G.render_options(deterministic=True))
    camera = G.default_camera(yaw=0.6, pitch=1.3)
    with PeakMemory(device) as peak, torch.no_grad():
        ms = timed_ms(lambda: plain.render(camera, size), device, repeats)
    return {"ms": ms, "peak_mib": peak.mib}


def exact_render_section(device: torch.device, sizes=(256, 512), big_preset: str = "epigraf_ffhq512",
                         big_size: int = 512, repeats: int = 5, checkpoint: Path = DEMO_CKPT) -> dict:
    from trigan.core.generator import Generator  # noqa: PLC0415
    from trigan.core.model_io import open_model  # noqa: PLC0415
    from trigan.training.config import load_config  # noqa: PLC0415

    G = open_model(checkpoint, device=device).G
    field = first_latent_field(G)
    result = {"demo_ckpt": {str(size): accelerated_figures(G, field, size, device, repeats) for size in sizes}}
    log(f"exact_render: {big_preset} (random weights) at {big_size}^2")
    torch.manual_seed(0)
    big = Generator(load_config(big_preset).model).eval().to(device).requires_grad_(False)
    with PeakMemory(device) as peak:
        first_ms = timed_ms(lambda: first_latent_field(big), device, repeats=0)   # kernels chosen, memory pooled
        field_ms = timed_ms(lambda: first_latent_field(big), device, repeats=1)
    big_field = first_latent_field(big)
    result["large_model"] = {
        "preset": big_preset, "weights": "random (seed 0)", "size": big_size,
        "field_setup_ms": field_ms, "field_setup_first_ms": first_ms, "field_peak_mib": peak.mib,
        "accelerated": accelerated_figures(big, big_field, big_size, device, max(1, repeats // 2)),
        "plain": plain_figures(big, big_field, big_size, device, 1)}
    return result


# ---------------------------------------------------------------------------------------------------
# 4. A training step

def synthetic_dataset(folder: Path, resolution: int, classes: int, num: int = 16) -> Path:
    from trigan.cli.main import main as trigan  # noqa: PLC0415

    data = folder / f"synth{resolution}.zip"
    if not data.exists() and trigan(["dataset", "synth", str(data), "--num", str(num), "--resolution", str(resolution),
                                     "--classes", str(max(classes, 1)), "--seed", "0"]) != 0:
        raise RuntimeError(f"trigan dataset synth {data.name} failed")
    return data


def training_step_figures(preset: str, device: torch.device, batch: int, steps: int, overrides=(),
                          folder: Optional[Path] = None) -> dict:
    from trigan.training import distributed as ddp  # noqa: PLC0415
    from trigan.training.config import load_config  # noqa: PLC0415
    from trigan.training.dataset import open_dataset  # noqa: PLC0415
    from trigan.training.loop import Trainer  # noqa: PLC0415
    from trigan.training.session import fit_config_to_dataset  # noqa: PLC0415

    cfg = load_config(preset, ["training.num_workers=0", f"training.batch_size={batch}", *overrides])
    if cfg.model.c_dim == 0:
        cfg.training.use_labels = False     # the synthetic data has labels; keep the preset unconditional
    with tempfile.TemporaryDirectory(prefix="trigan-gpu-check-") as tmp:
        run_dir = Path(tmp)
        data = synthetic_dataset(folder or run_dir, cfg.model.img_resolution, cfg.model.c_dim)
        dataset = open_dataset(data, mirror=cfg.training.mirror, use_labels=cfg.training.use_labels)
        fit_config_to_dataset(cfg, dataset, log)
        torch.manual_seed(0)
        trainer = Trainer(cfg, run_dir, dataset, ddp.DistInfo(device=device))
        trainer.train_step()                  # warm-up, with step 0's R1
        times = []
        with PeakMemory(device) as peak:
            for _ in range(steps):
                sync(device)
                start = time.perf_counter()
                trainer.train_step()
                sync(device)
                times.append(1000 * (time.perf_counter() - start))
    return {"batch": batch, "img_resolution": cfg.model.img_resolution, "steps_timed": steps,
            "ms_per_step": round(statistics.median(times), 1), "ms_per_step_max": round(max(times), 1),
            "fp16_discriminator": bool(getattr(trainer, "use_fp16", False)), "peak_mib": peak.mib}


def training_section(device: torch.device, presets=("demo", "epigraf_ffhq512"), batch: int = 4, steps: int = 3,
                     overrides=()) -> dict:
    result = {}
    for preset in presets:
        log(f"training: a step of {preset} at batch {batch}")
        result[preset] = training_step_figures(preset, device, batch, steps, overrides)
    return result


# ---------------------------------------------------------------------------------------------------
# 5. torchrun with one process

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun_command(*args: str) -> List[str]:
    """torchrun's command line, one process, on a rendezvous port of our own."""
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=1",
            "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{free_port()}", *args]


def child_env() -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def probe_collective() -> int:
    """Run under torchrun: one all-reduce in a real process group (NCCL on CUDA, gloo on the CPU)."""
    import torch.distributed as dist  # noqa: PLC0415

    backend = "nccl" if torch.cuda.is_available() else "gloo"
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if backend == "nccl" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend)
    value = torch.full((4,), 2.0, device=device)
    dist.all_reduce(value)
    sync(device)
    print(json.dumps({"backend": dist.get_backend(), "world_size": dist.get_world_size(),
                      "all_reduce_sum": float(value.sum())}))
    dist.destroy_process_group()
    return 0


def torchrun_section(device: torch.device, timeout: float = 300.0, kimg: float = 0.016) -> dict:
    from trigan.core.checkpoint import load_checkpoint  # noqa: PLC0415

    result = {}
    with tempfile.TemporaryDirectory(prefix="trigan-gpu-check-") as tmp:
        tmp = Path(tmp)
        data = synthetic_dataset(tmp, 16, 3)
        out = tmp / "runs"
        command = torchrun_command("-m", "trigan.cli.main", "train", "--out", str(out), "--data", str(data),
                                   "--kimg", str(kimg), "--device", str(device), *TINY_TRAIN)
        start = time.perf_counter()
        train = subprocess.run(command, env=child_env(), capture_output=True, text=True, timeout=timeout, check=False)
        result["train_s"] = round(time.perf_counter() - start, 1)
        result["train_rc"] = train.returncode
        runs = [p for p in out.iterdir() if p.is_dir()] if out.exists() else []
        if train.returncode != 0 or len(runs) != 1:
            raise RuntimeError(f"torchrun trigan train exited {train.returncode}: "
                               f"{(train.stderr.strip().splitlines() or ['(no output)'])[-1]}")
        progress = load_checkpoint(runs[0] / "latest.ckpt").progress
        result["steps"], result["world_size"] = progress.get("step"), progress.get("world_size")
        start = time.perf_counter()
        probe = subprocess.run(torchrun_command(str(Path(__file__).resolve()), "--probe-collective"),
                               env=child_env(), capture_output=True, text=True, timeout=timeout, check=False)
        result["probe_s"] = round(time.perf_counter() - start, 1)
        if probe.returncode != 0:
            raise RuntimeError(f"the all-reduce probe exited {probe.returncode}: "
                               f"{(probe.stderr.strip().splitlines() or ['(no output)'])[-1]}")
        result["collective"] = json.loads(probe.stdout.strip().splitlines()[-1])
    expected = "nccl" if device.type == "cuda" else "gloo"
    if result["collective"]["backend"] != expected or result["collective"]["all_reduce_sum"] != 8.0:
        result["failures"] = [f"all-reduce probe: {result['collective']} (expected {expected}, sum 8.0)"]
    return result


# ---------------------------------------------------------------------------------------------------
# 6. A coloured mesh

def mesh_section(device: torch.device, resolution: int = 256, checkpoint: Path = DEMO_CKPT) -> dict:
    from trigan.core.exports import seed_mesh  # noqa: PLC0415
    from trigan.core.model_io import open_model  # noqa: PLC0415

    G = open_model(checkpoint, device=device).G
    class_index = 0 if G.c_dim else None
    with tempfile.TemporaryDirectory(prefix="trigan-gpu-check-") as tmp:
        seed_mesh(G, 0, class_index, Path(tmp) / "warm.ply", "ply", resolution=32)   # first-call overheads
        with PeakMemory(device) as peak:
            export = seed_mesh(G, 0, class_index, Path(tmp) / "mesh.ply", "ply", resolution=resolution, color=True)
    mesh = export.mesh
    return {"resolution": resolution, "seconds": round(export.seconds, 2), "vertices": len(mesh.vertices),
            "faces": len(mesh.faces), "colored": mesh.colors is not None, "peak_mib": peak.mib}


# ---------------------------------------------------------------------------------------------------
# The run

def run_section(name: str, fn: Callable[[], dict]) -> dict:
    """fn's figures with ok/seconds; an exception becomes {"ok": false, "error": one line}."""
    log(f"{name} ...")
    start = time.perf_counter()
    try:
        with contextlib.redirect_stdout(sys.stderr):    # the commands' own output is not the JSON
            record = fn()
        failures = record.pop("failures", None) or []
        record = {"ok": not failures, **({"error": "; ".join(failures)[:1000]} if failures else {}), **record}
    except Exception as exc:  # noqa: BLE001 - one section's failure must not stop the others
        record = {"ok": False, "error": one_line(exc)}
    record["seconds"] = round(time.perf_counter() - start, 1)
    log(f"{name}: {'ok' if record['ok'] else 'FAILED: ' + record['error']} ({record['seconds']} s)")
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return record


def sections(device: torch.device, quick: bool) -> Dict[str, Callable[[], dict]]:
    size = QUICK_SIZES if quick else FULL_SIZES
    return {
        "parity": lambda: parity_section(device, size["render"]),
        "gl_preview": lambda: gl_preview_section(device, size["preview"], size["orbit_frames"]),
        "exact_render": lambda: exact_render_section(device, size["exact"], repeats=3 if quick else 5),
        "training": lambda: training_section(device, size["training"], steps=2 if quick else 3),
        "torchrun": lambda: torchrun_section(device),
        "mesh": lambda: mesh_section(device, size["mesh"]),
    }


def machine(device: torch.device) -> dict:
    info = {"device": str(device), "torch": torch.__version__, "cuda": torch.version.cuda,
            "python": platform.python_version(), "cpu": platform.processor() or platform.machine()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_mib=props.total_memory // 2 ** 20,
                    capability=f"{props.major}.{props.minor}", cudnn=torch.backends.cudnn.version())
    return info


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu for a slow dry run")
    parser.add_argument("--quick", action="store_true", help="each section at its smallest size")
    parser.add_argument("--json", metavar="FILE", help="also write the JSON object to FILE")
    parser.add_argument("--only", nargs="+", metavar="SECTION", help="run only these sections")
    parser.add_argument("--probe-collective", action="store_true", help=argparse.SUPPRESS)  # torchrun's child
    args = parser.parse_args(argv)
    if args.probe_collective:
        return probe_collective()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"gpu_check: no CUDA device on this machine (torch {torch.__version__}, CUDA build "
              f"{torch.version.cuda or 'none'}); nothing to check")
        return 0
    if device.type == "cuda":
        device = torch.device("cuda", torch.cuda.current_device() if device.index is None else device.index)
        torch.cuda.set_device(device)
    table = sections(device, args.quick)
    unknown = sorted(set(args.only or []) - set(table))
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)} (expected: {', '.join(table)})")
    start = time.perf_counter()
    result = {"machine": machine(device), "quick": args.quick, "sections": {}}
    for name, fn in table.items():
        if args.only is None or name in args.only:
            result["sections"][name] = run_section(name, fn)
    result["ok"] = all(s["ok"] for s in result["sections"].values())
    result["seconds"] = round(time.perf_counter() - start, 1)
    text = json.dumps(result)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
