"""Export speed: coloured meshes at 128^3 and 256^3 (before and after lattice queries), a 64-frame
256^2 video, and the cost of EG3D's way.

Prints one JSON object. The field of the latent is computed once and every chunk of the mesh grid
and every video frame queries it (trigan's way). `mesh_R` is a coloured mesh at R^3 the way
`trigan mesh` makes it now (the grid read from the tri-planes' lattice projections,
core.field.query_lattice, in chunks sized by measurement, core.chunking) and its `before` the way
it was made until issue 32 (every grid point a point query, chunks of `--old-chunk` = 2^19 points,
vertex colours in chunks of 2^19 too), kept callable here; `grid_speedup` and `mesh_speedup` (the
whole mesh: field, grid, level, marching cubes, colours, ply) are before / after in one run. `eg3d_way` times the mesh grid when each chunk
re-runs the synthesis network (`G.field_from_ws(ws)`) before querying it, as EG3D's and EpiGRAF's
extraction scripts do; only the first few chunks are timed and the total is extrapolated from
their mean (the output says how many), in chunks of --old-chunk points.

    python benchmarks/export.py                          # demo preset, random weights
    python benchmarks/export.py --checkpoint assets/demo.ckpt --threads 1
    python benchmarks/export.py --preset epigraf_ffhq512 --resolutions 128
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
from trigan.core.chunking import chosen_chunks
from trigan.core.generator import Generator
from trigan.core.model_io import open_model
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


def density_grid_before(field, n: int, activation, chunk: int) -> M.DensityVolume:
    """The density grid as trigan made it before issue 32: every grid point a point query of the
    field, in chunks of `chunk` points (2^19 was the default)."""
    total = n ** 3
    out = np.empty(total, dtype=np.float32)
    for start in range(0, total, chunk):
        stop = min(start + chunk, total)
        _, sigma = field(M.grid_points(field.bounds, n, start, stop, device=field.device)[None])
        out[start:stop] = activation(sigma.reshape(-1).float()).cpu().numpy()
    return M.DensityVolume(out.reshape(n, n, n), field.bounds)


def timed_mesh(G, ws, n: int, activation, grid_fn, chunk, out_path: Path) -> dict:
    """A coloured mesh at n^3 from a fresh field: every stage timed."""
    with Timer() as t_field:
        field = G.field_from_ws(ws)
    with Timer() as t_grid:
        volume = grid_fn(field, n)
    with Timer() as t_level:
        level = M.resolve_level(volume, "auto")
    with Timer() as t_mc:
        verts, faces = M.marching_cubes(volume, level)
    with Timer() as t_color:
        colors = M.vertex_colors(field, verts, chunk)
    with Timer() as t_ply:
        M.save_mesh(M.MeshResult(verts, faces, level, colors), out_path)
    seconds = (t_field, t_grid, t_level, t_mc, t_color, t_ply)
    return {"resolution": n, "vertices": len(verts), "faces": len(faces), "auto_level": round(level, 4),
            "field_s": round(t_field.seconds, 4), "grid_s": round(t_grid.seconds, 3),
            "auto_level_s": round(t_level.seconds, 3), "marching_cubes_s": round(t_mc.seconds, 3),
            "colors_s": round(t_color.seconds, 3), "write_ply_s": round(t_ply.seconds, 3),
            "total_s": round(sum(t.seconds for t in seconds), 3), "volume": volume}


@torch.no_grad()
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--checkpoint", help="a trained checkpoint or EpiGRAF .pkl instead of random weights")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[128, 256], help="mesh grid samples per axis")
    parser.add_argument("--chunk", type=int, default=None, help="points per chunk (default: measured, as trigan mesh)")
    parser.add_argument("--old-chunk", type=int, default=1 << 19,
                        help="points per chunk of the route before issue 32 and of the EG3D-way estimate")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--video-resolution", type=int, default=256)
    parser.add_argument("--eg3d-chunks", type=int, default=4, help="chunks timed for the EG3D-way estimate")
    parser.add_argument("--keep", action="store_true", help="keep the mesh and video (else deleted)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    if args.checkpoint:
        G = open_model(args.checkpoint, device=device).G.eval().requires_grad_(False)
        source = args.checkpoint
    else:
        torch.manual_seed(0)   # the same random weights in every run
        G = Generator(load_config(args.preset).model).eval().to(device).requires_grad_(False)
        source = f"preset {args.preset} (random weights)"
    cfg = G.cfg
    classes = [0] if G.c_dim else None
    ws = G.map_latents(G.latents([0]), G.labels(classes, 1))
    activation = M.DensityActivation(cfg.render.density_shift, cfg.render.density_activation)
    n = max(args.resolutions)
    chunks = M.chunk_count(n, args.old_chunk)
    result = {"model": source, "device": str(device),
              "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
              "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
              "torch": torch.__version__}

    # Warm-up: first-call overheads (allocator, kernels) out of the timings.
    # (the first density grid and colours also choose their chunk sizes, once per process)
    field_renderer("plain", G.field_from_ws(ws), G.render_options()).render(G.default_camera(), 32)
    M.vertex_colors(G.field_from_ws(ws), M.grid_points(G.field_from_ws(ws).bounds, 4, 0, 64).numpy(), args.chunk)
    M.density_grid(G.field_from_ws(ws), 16, activation, args.chunk)
    density_grid_before(G.field_from_ws(ws), 16, activation, args.old_chunk)
    result["chunks_chosen"] = {f"{kind} on {dev}": size for (kind, dev), size in chosen_chunks().items()}

    out_dir = Path(tempfile.mkdtemp(prefix="trigan-bench-export-"))

    # ---- meshes, before and after, at every resolution, in one run ----------------------------
    def after(field, res):
        return M.density_grid(field, res, activation, args.chunk)

    def before(field, res):
        return density_grid_before(field, res, activation, args.old_chunk)

    for grid_fn in (after, before):   # warm-up: imports (PyMCubes, trimesh) and first calls untimed
        timed_mesh(G, ws, 16, activation, grid_fn, args.chunk, out_dir / "warm-up.ply")
    for res in sorted(args.resolutions):
        new = timed_mesh(G, ws, res, activation, after, args.chunk, out_dir / f"new{res}.ply")
        old = timed_mesh(G, ws, res, activation, before, args.old_chunk, out_dir / f"old{res}.ply")
        # equal up to float rounding: 1e-5 of the largest density (tests/test_field.py's tolerance)
        after_density, before_density = new.pop("volume").density, old.pop("volume").density
        scale = max(1.0, float(np.abs(before_density).max()))
        same = bool(np.allclose(after_density, before_density, rtol=0, atol=1e-5 * scale))
        result[f"mesh_{res}"] = dict(new, before=old, same_volume=same,
                                     grid_speedup=round(old["grid_s"] / new["grid_s"], 2),
                                     grid_and_colors_speedup=round((old["grid_s"] + old["colors_s"])
                                                                   / (new["grid_s"] + new["colors_s"]), 2),
                                     mesh_speedup=round(old["total_s"] / new["total_s"], 2))

    field = G.field_from_ws(ws)
    result["mesh"] = result[f"mesh_{n}"]   # the largest resolution, as this key held before
    grid_seconds = result["mesh"]["grid_s"]
    mesh_total = result["mesh"]["total_s"]
    field_seconds = result["mesh"]["field_s"]

    # ---- the same grid, EG3D's way: the synthesis network re-runs for every chunk ---------------
    bounds = field.bounds
    per_chunk = []
    for k in range(min(args.eg3d_chunks, chunks)):
        start, stop = k * args.old_chunk, min((k + 1) * args.old_chunk, n ** 3)
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
                          "note": f"timed {len(per_chunk)} of {chunks} chunks of {args.old_chunk} points, "
                                  "each re-running G.field_from_ws(ws); grid_s = mean per chunk x chunks",
                          "grid_ratio": round(eg3d_grid / grid_seconds, 2),
                          "mesh_ratio": round((mesh_total - field_seconds - grid_seconds + eg3d_grid)
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
