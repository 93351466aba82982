"""Export speed: a coloured 256^3 mesh and a 64-frame 256^2 video, and the cost of EG3D's way.

Prints one JSON object. The field of the latent is computed once and every chunk of the mesh grid
and every video frame queries it (trigan's way). `eg3d_way` times the mesh grid when each chunk
re-runs the synthesis network (`G.field_from_ws(ws)`) before querying it, as EG3D's and EpiGRAF's
extraction scripts do; only the first few chunks are timed and the total is extrapolated from
their mean (the output says how many), at the same chunk size as trigan's grid.

    python benchmarks/export.py                          # demo preset, random weights
    python benchmarks/export.py --preset epigraf_ffhq512 --resolution 128
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import torch

from trigan.core import mesh as M
from trigan.core.cameras import Pose
from trigan.core.generator import Generator
from trigan.core.rendering import field_renderer
from trigan.training.config import load_config


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class Timer:
    def __enter__(self):
        sync()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        sync()
        self.seconds = time.perf_counter() - self.start


@torch.no_grad()
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--resolution", type=int, default=256, help="mesh grid samples per axis")
    parser.add_argument("--chunk", type=int, default=1 << 19, help="points per chunk (trigan mesh's default)")
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--video-resolution", type=int, default=256)
    parser.add_argument("--eg3d-chunks", type=int, default=4, help="chunks timed for the EG3D-way estimate")
    parser.add_argument("--keep", action="store_true", help="keep the mesh and video (else deleted)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    cfg = load_config(args.preset).model
    G = Generator(cfg).eval().to(device).requires_grad_(False)
    classes = [0] if G.c_dim else None
    ws = G.map_latents(G.latents([0]), G.labels(classes, 1))
    activation = M.DensityActivation(cfg.render.density_shift, cfg.render.density_activation)
    n = args.resolution
    chunks = M.chunk_count(n, args.chunk)
    result = {"model": f"preset {args.preset} (random weights)", "device": str(device),
              "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
              "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
              "torch": torch.__version__}

    # Warm-up: first-call overheads (allocator, kernels) out of the timings.
    field_renderer("plain", G.field_from_ws(ws), G.render_options()).render(G.default_camera(), 32)
    M.density_grid(G.field_from_ws(ws), 16, activation, args.chunk)

    out_dir = Path(tempfile.mkdtemp(prefix="trigan-bench-export-"))

    # ---- mesh, trigan's way: one synthesis, then chunks of field queries ------------------------
    with Timer() as t_field:
        field = G.field_from_ws(ws)
    with Timer() as t_grid:
        volume = M.density_grid(field, n, activation, args.chunk)
    with Timer() as t_level:
        level = M.resolve_level(volume, "auto")
    with Timer() as t_mc:
        verts, faces = M.marching_cubes(volume, level)
    with Timer() as t_color:
        colors = M.vertex_colors(field, verts, args.chunk)
    mesh = M.MeshResult(verts, faces, level, colors)
    with Timer() as t_ply:
        M.save_mesh(mesh, out_dir / "mesh.ply")
    mesh_total = t_field.seconds + t_grid.seconds + t_level.seconds + t_mc.seconds + t_color.seconds + t_ply.seconds
    result["mesh"] = {"resolution": n, "chunk_points": args.chunk, "chunks": chunks,
                      "vertices": len(verts), "faces": len(faces), "auto_level": round(level, 4),
                      "field_s": round(t_field.seconds, 4), "grid_s": round(t_grid.seconds, 3),
                      "auto_level_s": round(t_level.seconds, 3), "marching_cubes_s": round(t_mc.seconds, 3),
                      "colors_s": round(t_color.seconds, 3), "write_ply_s": round(t_ply.seconds, 3),
                      "total_s": round(mesh_total, 3)}

    # ---- the same grid, EG3D's way: the synthesis network re-runs for every chunk ---------------
    bounds = field.bounds
    per_chunk = []
    for k in range(min(args.eg3d_chunks, chunks)):
        start, stop = k * args.chunk, min((k + 1) * args.chunk, n ** 3)
        with Timer() as t:
            fresh = G.field_from_ws(ws)
            pts = M.grid_points(bounds, n, start, stop, device=device)
            _, sigma = fresh(pts[None])
            activation(sigma.reshape(-1)).cpu()
        per_chunk.append(t.seconds)
    eg3d_grid = statistics.mean(per_chunk) * chunks
    result["eg3d_way"] = {"chunks_timed": len(per_chunk), "chunks_total": chunks,
                          "extrapolated": len(per_chunk) < chunks,
                          "seconds_per_chunk": round(statistics.mean(per_chunk), 4),
                          "grid_s": round(eg3d_grid, 3),
                          "note": f"timed {len(per_chunk)} of {chunks} chunks of {args.chunk} points, "
                                  "each re-running G.field_from_ws(ws); grid_s = mean per chunk x chunks",
                          "grid_ratio": round(eg3d_grid / t_grid.seconds, 2),
                          "mesh_ratio": round((mesh_total - t_field.seconds - t_grid.seconds + eg3d_grid)
                                              / mesh_total, 2)}

    # ---- video: the cached field, frames along an orbit, libx264 ---------------------------------
    res, frames = args.video_resolution, args.frames
    start = Pose.for_model(cfg.camera)
    yaws = [2 * math.pi * i / frames for i in range(frames)]
    images = []
    plain = field_renderer("plain", field, G.render_options())
    with Timer() as t_render:
        for yaw in yaws:
            cam = start.with_values(yaw=yaw).to_camera(device)
            rgb = plain.render(cam, res).rgb[0]
            images.append((rgb * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy())
    with Timer() as t_encode:
        writer = imageio_ffmpeg.write_frames(str(out_dir / "orbit.mp4"), (res, res), fps=25, codec="libx264",
                                             pix_fmt_in="rgb24", quality=None, output_params=["-crf", "20"],
                                             macro_block_size=1)
        writer.send(None)
        for image in images:
            writer.send(np.ascontiguousarray(image))
        writer.close()
    result["video"] = {"frames": frames, "resolution": res,
                       "samples_per_ray": cfg.render.num_steps + (cfg.render.num_fine_steps or cfg.render.num_steps),
                       "render_s": round(t_render.seconds, 3), "encode_s": round(t_encode.seconds, 3),
                       "total_s": round(t_render.seconds + t_encode.seconds, 3),
                       "ms_per_frame": round(1000 * t_render.seconds / frames, 1),
                       "mp4_bytes": (out_dir / "orbit.mp4").stat().st_size}
    if args.keep:
        result["output_dir"] = str(out_dir)
    else:
        shutil.rmtree(out_dir, ignore_errors=True)
    json.dump(result, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
