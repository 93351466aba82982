"""Baseline render speed: the plain exact path (field cached, coarse + fine), demo preset.

Prints one JSON object (machine-readable, compared by later performance work) and a short table:
`exact_ms_R` at the model's own sample counts, and `plain48_ms_R` at EpiGRAF's 48 coarse + 48 fine
samples, the baseline that faster render paths are measured against. The field is computed once per
latent, outside the timed loop, as the viewer and exporters do.

    python benchmarks/render.py                      # demo preset, random weights
    python benchmarks/render.py --checkpoint assets/demo.ckpt --resolutions 128 256 512
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

import torch

from trigan.core.config import load_config
from trigan.core.generator import Generator
from trigan.core.model_io import open_model


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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--checkpoint", help="benchmark a trained checkpoint or EpiGRAF .pkl instead")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    if args.checkpoint:
        G = open_model(args.checkpoint, device=device).G
        source = args.checkpoint
    else:
        G = Generator(load_config(args.preset).model).eval().to(device)
        source = f"preset {args.preset} (random weights)"
    G.requires_grad_(False)
    result = {"model": source, "device": str(device), "threads": torch.get_num_threads(),
              "cpu": platform.processor() or platform.machine(), "torch": torch.__version__}
    with torch.inference_mode():
        ws = G.map_latents(G.latents([0]), G.labels([0] if G.c_dim else None, 1))
        setup = time_call(lambda: G.field_from_ws(ws), args.repeats)
        result["field_setup_ms"] = round(1000 * statistics.median(setup), 2)
        field = G.field_from_ws(ws)
        camera = G.default_camera(yaw=0.6, pitch=1.3)
        opts = G.render_options()
        samples = opts.num_steps + opts.fine_steps
        result["samples_per_ray"] = samples
        plain = G.render_options(num_steps=48, num_fine_steps=48)
        for res in args.resolutions:
            for key, o in (("exact", opts), ("plain48", plain)):
                ms = 1000 * statistics.median(time_call(lambda: G.render(field, camera, res, options=o), args.repeats))
                result[f"{key}_ms_{res}"] = round(ms, 1)
                result[f"{key}_points_per_s_{res}"] = round(res * res * (o.num_steps + o.fine_steps) / (ms / 1000))
    print(json.dumps(result))
    print(f"\n{source} on {device} ({result['threads']} threads), {samples} samples per ray "
          f"(coarse + fine), field cached ({result['field_setup_ms']} ms to compute)", file=sys.stderr)
    for res in args.resolutions:
        for key, label in (("exact", f"{samples} samples"), ("plain48", "48 + 48 samples")):
            print(f"  {res:4d}^2  {label:16s} {result[f'{key}_ms_{res}']:9.1f} ms/frame  "
                  f"{result[f'{key}_points_per_s_{res}'] / 1e6:6.2f} M points/s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
