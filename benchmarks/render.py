"""Render speed: the plain exact path (field cached, coarse + fine) and the accelerated exact path.

Prints one JSON object (machine-readable, compared by later performance work) and a short table:
- `plain_model_ms_R`: the plain path at the model's own sample counts (this key was `exact_ms_R`
  before the accelerated path existed; issue 6 gives `exact_ms_R` to the accelerated path);
- `plain48_ms_R` (and its alias `naive_ms_R`): EpiGRAF's 48 coarse + 48 fine samples, the baseline;
- `exact_ms_R`: the accelerated exact path (core/accel.py, occupancy grid + empty-space skipping +
  early termination), `exact_speedup_R` = plain48 / exact, `psnr_exact_vs_ref_R` and
  `psnr_plain48_vs_ref_R` against a 512-sample stratified reference, and `setup_ms` (grid build,
  once per latent). The unsuffixed `exact_speedup` and `psnr_exact_vs_ref` are those of the first
  resolution;
- the preview path (core/preview.py, a baked volume ray-marched from a hull mesh with headless OpenGL):
  `preview_ms_R` (median over an orbit of `--orbit-frames` views while the camera moves, every mode's
  outputs computed), `preview_fps_R`, `psnr_preview_vs_exact_R` (mean over four yaws, rgb) and the
  unsuffixed ones at --preview-resolution (default 256);
- `first_view_ms_R`: what a new latent's first exact frame costs, set-up included (mapping,
  tri-planes, occupancy grid, one accelerated frame; a fresh seed every repeat, as a seed sweep or
  the viewer's seed box pays it), and `first_view_speedup_R` = plain48_ms_R / first_view_ms_R; the
  unsuffixed `first_view_speedup` is that of the first resolution;
- `setup_ms`: everything done once per latent (mapping, tri-planes, occupancy grid, preview bake),
  the wait after a seed, class or psi change; its parts are `field_setup_ms`, `grid_setup_ms` and
  `preview_setup_ms`.
The field is computed once per latent, outside the timed loops, as the viewer and exporters do.
On a CPU shared with another process, `--threads 1` gives steadier numbers (OpenMP threads spin).

    python benchmarks/render.py                      # demo preset, random weights (a fog: all occupied)
    python benchmarks/render.py --density-shift -5   # random weights with empty space
    python benchmarks/render.py --checkpoint assets/demo.ckpt --resolutions 128 256 512
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from dataclasses import replace

import torch

from trigan.core.generator import Generator
from trigan.core.model_io import open_model
from trigan.core.rendering import field_renderer, path_unavailable
from trigan.training.config import load_config


def time_call(fn, repeats: int) -> list:
    fn()  # warm-up (allocator, first-call overheads)
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR of images as shown: the model's raw colours clamped to [-1, 1] (peak-to-peak 2)."""
    mse = float(((a.clamp(-1, 1) - b.clamp(-1, 1)) ** 2).mean())
    return 99.0 if mse == 0 else 10 * math.log10(4.0 / mse)


def first_view_seconds(G, opts, frame_options, camera, res: int, repeats: int) -> float:
    """Median time from a new latent to its first exact frame: mapping, tri-planes, the accelerated
    path's occupancy grid and one frame. Each run (the warm-up too) takes a seed not used before,
    so nothing per latent is cached."""
    seeds = iter(range(1000 + 100 * res, 1000 + 100 * res + repeats + 1))
    labels = G.labels([0] if G.c_dim else None, 1)

    def first_view():
        field = G.field_from_ws(G.map_latents(G.latents([next(seeds)]), labels))
        field_renderer("accelerated", field, opts).render(camera, res, options=frame_options)

    return statistics.median(time_call(first_view, repeats))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--checkpoint", help="benchmark a trained checkpoint or EpiGRAF .pkl instead")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--density-shift", type=float, default=None,
                        help="override the model's density shift (e.g. -5 gives a random model empty space)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--ref-samples", type=int, default=512, help="samples per ray of the reference")
    parser.add_argument("--preview-resolution", type=int, default=256)
    parser.add_argument("--orbit-frames", type=int, default=36, help="preview frames timed along an orbit")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    if args.checkpoint:
        G = open_model(args.checkpoint, device=device).G
        source = args.checkpoint
    else:
        torch.manual_seed(0)   # the same random weights in every run: comparable figures
        G = Generator(load_config(args.preset).model).eval().to(device)
        source = f"preset {args.preset} (random weights, seed 0)"
    G.requires_grad_(False)
    result = {"model": source, "device": str(device), "threads": torch.get_num_threads(),
              "cpu": platform.processor() or platform.machine(), "torch": torch.__version__}
    with torch.inference_mode():
        labels = G.labels([0] if G.c_dim else None, 1)
        ws = G.map_latents(G.latents([0]), labels)
        setup = time_call(lambda: G.field_from_ws(G.map_latents(G.latents([0]), labels)), args.repeats)
        result["field_setup_ms"] = round(1000 * statistics.median(setup), 2)
        field = G.field_from_ws(ws)
        camera = G.default_camera(yaw=0.6, pitch=1.3)
        shift = {} if args.density_shift is None else {"density_shift": args.density_shift}
        if shift:
            result["density_shift"] = args.density_shift
        opts = G.render_options(**shift)
        samples = opts.num_steps + opts.fine_steps
        result["samples_per_ray"] = samples
        plain = G.render_options(num_steps=48, num_fine_steps=48, **shift)
        builds = []
        for _ in range(max(1, args.repeats)):
            start = time.perf_counter()
            fast = field_renderer("accelerated", field, opts)
            builds.append(time.perf_counter() - start)
        result["grid_setup_ms"] = round(1000 * statistics.median(builds), 1)
        result["occupied_fraction"] = round(fast.grid.occupied_fraction, 4)
        reason = path_unavailable("preview")
        if reason is None:
            builds = []
            for _ in range(max(1, args.repeats)):
                start = time.perf_counter()
                preview = field_renderer("preview", field, opts, grid=fast.grid)
                builds.append(time.perf_counter() - start)
            result["preview_setup_ms"] = round(1000 * statistics.median(builds), 1)
            result["preview_faces"] = preview.stats["faces"]
            result["gl_renderer"] = preview.marcher.ctx.renderer if preview.marcher is not None else None
        else:
            result["preview_unavailable"] = reason
        result["setup_ms"] = round(result["field_setup_ms"] + result["grid_setup_ms"]
                                   + result.get("preview_setup_ms", 0.0), 1)
        plain_path = field_renderer("plain", field, opts)
        for res in args.resolutions:
            for key, o in (("plain_model", opts), ("plain48", plain)):
                ms = 1000 * statistics.median(time_call(lambda res=res, o=o: plain_path.render(camera, res, options=o),
                                                        args.repeats))
                result[f"{key}_ms_{res}"] = round(ms, 1)
                result[f"{key}_points_per_s_{res}"] = round(res * res * (o.num_steps + o.fine_steps) / (ms / 1000))
            result[f"naive_ms_{res}"] = result[f"plain48_ms_{res}"]
            ms = 1000 * statistics.median(time_call(lambda res=res: fast.render(camera, res, options=plain), args.repeats))
            result[f"exact_ms_{res}"] = round(ms, 1)
            result[f"exact_speedup_{res}"] = round(result[f"plain48_ms_{res}"] / ms, 2)
            result[f"exact_points_per_ray_{res}"] = round(fast.last_stats["evaluated"] / (res * res), 1)
            ref = plain_path.render(camera, res, options=replace(plain, num_steps=args.ref_samples, num_fine_steps=0))
            exact = fast.render(camera, res, options=plain)
            naive = plain_path.render(camera, res, options=plain)
            result[f"psnr_exact_vs_ref_{res}"] = round(psnr(exact.rgb, ref.rgb), 2)
            result[f"psnr_plain48_vs_ref_{res}"] = round(psnr(naive.rgb, ref.rgb), 2)
            ms = 1000 * first_view_seconds(G, opts, plain, camera, res, args.repeats)
            result[f"first_view_ms_{res}"] = round(ms, 1)
            result[f"first_view_speedup_{res}"] = round(result[f"plain48_ms_{res}"] / ms, 2)
        if reason is None:
            pres = args.preview_resolution
            for res in sorted({pres, *args.resolutions}):
                orbit = [G.default_camera(yaw=0.6 + 2 * math.pi * i / args.orbit_frames, pitch=1.3)
                         for i in range(args.orbit_frames)]
                preview.render(orbit[0], res, normals=True)  # warm-up (framebuffer allocation)
                times = []
                for cam in orbit:
                    start = time.perf_counter()
                    preview.render(cam, res, normals=True)
                    times.append(time.perf_counter() - start)
                ms = 1000 * statistics.median(times)
                result[f"preview_ms_{res}"] = round(ms, 2)
                result[f"preview_fps_{res}"] = round(1000 / ms, 1)
                scores = []
                for yaw in (0.0, 1.6, 3.1, 4.7):
                    cam = G.default_camera(yaw=yaw, pitch=1.3)
                    scores.append(psnr(preview.render(cam, res).rgb, fast.render(cam, res, options=plain).rgb))
                result[f"psnr_preview_vs_exact_{res}"] = round(statistics.mean(scores), 2)
            for key in ("preview_ms", "preview_fps", "psnr_preview_vs_exact"):
                result[key] = result[f"{key}_{pres}"]
        first = args.resolutions[0]
        result["exact_speedup"] = result[f"exact_speedup_{first}"]
        result["psnr_exact_vs_ref"] = result[f"psnr_exact_vs_ref_{first}"]
        result["first_view_speedup"] = result[f"first_view_speedup_{first}"]
    print(json.dumps(result))
    print(f"\n{source} on {device} ({result['threads']} threads), {samples} samples per ray "
          f"(coarse + fine), field cached ({result['field_setup_ms']} ms to compute)", file=sys.stderr)
    for res in args.resolutions:
        for key, label in (("plain_model", f"{samples} samples"), ("plain48", "48 + 48 samples")):
            print(f"  {res:4d}^2  {label:16s} {result[f'{key}_ms_{res}']:9.1f} ms/frame  "
                  f"{result[f'{key}_points_per_s_{res}'] / 1e6:6.2f} M points/s", file=sys.stderr)
        print(f"  {res:4d}^2  {'accelerated':16s} {result[f'exact_ms_{res}']:9.1f} ms/frame  "
              f"x{result[f'exact_speedup_{res}']} vs 48 + 48, {result[f'psnr_exact_vs_ref_{res}']} dB vs "
              f"{args.ref_samples} samples (48 + 48: {result[f'psnr_plain48_vs_ref_{res}']} dB)", file=sys.stderr)
        if f"preview_ms_{res}" in result:
            print(f"  {res:4d}^2  {'preview':16s} {result[f'preview_ms_{res}']:9.1f} ms/frame  "
                  f"{result[f'preview_fps_{res}']} FPS, {result[f'psnr_preview_vs_exact_{res}']} dB vs the exact path",
                  file=sys.stderr)
    for res in args.resolutions:
        print(f"  {res:4d}^2  {'first view':16s} {result[f'first_view_ms_{res}']:9.1f} ms (new latent: field, grid, "
              f"frame)  x{result[f'first_view_speedup_{res}']} vs one 48 + 48 frame", file=sys.stderr)
    print(f"  per-latent set-up {result['setup_ms']} ms (field {result['field_setup_ms']}, grid "
          f"{result['grid_setup_ms']} ({100 * result['occupied_fraction']:.1f}% of cells occupied), preview "
          f"{result.get('preview_setup_ms', 'unavailable')})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
