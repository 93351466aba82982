"""Peak memory and time of `trigan convert` on a large upstream snapshot, relative to its file size.

Builds a synthetic snapshot in upstream's on-disk format (persistent-object records holding the
module tree, tensors as legacy torch.save storage blobs), G and G_ema with random weights, converts
it in a fresh process and reports the child's peak resident memory above the interpreter + torch
baseline, as a multiple of the file size, and the conversion's wall time. Target: about 2x or less.

    python benchmarks/convert_memory.py                         EpiGRAF FFHQ 512 (about 235 MB)
    python benchmarks/convert_memory.py --preset 3dgp_imagenet256   3DGP ImageNet: 105M-parameter G
                                                                   in 3DGP's layout (about 850 MB)
    python benchmarks/convert_memory.py --keep DIR               keep the snapshot and checkpoint
"""

from __future__ import annotations

import argparse
import contextlib
import json
import pickle
import subprocess
import sys
import tempfile
import time
import types
from collections import OrderedDict
from pathlib import Path

import torch

from trigan.core.generator import Generator
from trigan.training.config import DepthConfig, load_config
from trigan.training.depth_adaptor import DepthAdaptor

PERSISTENCE = ("src", "src.torch_utils", "src.torch_utils.persistence")


@contextlib.contextmanager
def upstream_persistence_name():
    """A function importable as upstream's reconstructor, so pickle records that global name."""
    saved = {n: sys.modules.get(n) for n in PERSISTENCE}

    def _reconstruct_persistent_obj(meta):  # never called: the file is only written here
        raise AssertionError
    _reconstruct_persistent_obj.__module__ = PERSISTENCE[-1]
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    for n in PERSISTENCE:
        sys.modules[n] = types.ModuleType(n)
    sys.modules[PERSISTENCE[-1]]._reconstruct_persistent_obj = _reconstruct_persistent_obj
    try:
        yield _reconstruct_persistent_obj
    finally:
        for n, m in saved.items():
            sys.modules.pop(n, None) if m is None else sys.modules.__setitem__(n, m)


class Record:
    """Pickles as upstream's persistent network object: class name + module __dict__ (persistent
    buffers only: upstream's modules have no others)."""

    def __init__(self, reconstruct, module: torch.nn.Module, init_kwargs=None):
        self.reconstruct, self.name = reconstruct, type(module).__name__
        skip = module._non_persistent_buffers_set
        self.state = {"training": False,
                      "_parameters": OrderedDict((k, torch.nn.Parameter(v.detach().clone(), requires_grad=False))
                                                 for k, v in module._parameters.items() if v is not None),
                      "_buffers": OrderedDict((k, v.clone()) for k, v in module._buffers.items()
                                              if v is not None and k not in skip),
                      "_non_persistent_buffers_set": set(),
                      "_modules": OrderedDict((k, Record(reconstruct, c)) for k, c in module._modules.items()
                                              if c is not None),
                      "conv_clamp": getattr(module, "conv_clamp", None),
                      "_init_args": (), "_init_kwargs": init_kwargs or {}}

    def __reduce__(self):
        return self.reconstruct, ({"type": "class", "version": 6, "module_src": "# omitted",
                                   "class_name": self.name, "state": self.state},)


def _dump_snapshot(path: Path, m, make_generator, init_kwargs) -> None:
    """A snapshot as upstream's training loop pickles it: G and G_ema (random weights), no D."""
    with upstream_persistence_name() as reconstruct:
        nets = {name: Record(reconstruct, make_generator(), init_kwargs) for name in ("G", "G_ema")}
        snapshot = {"training_set_kwargs": {"resolution": m.img_resolution}, **nets, "D": None,
                    "augment_pipe": None, "stats": {"cur_nimg": 25_000_000, "cur_tick": 6250}}
        with open(path, "wb") as f:
            pickle.dump(snapshot, f, protocol=4)


def write_snapshot(path: Path, preset: str) -> None:
    cfg = load_config(preset).model
    m = cfg.model if hasattr(cfg, "model") else cfg
    upstream_cfg = {"tri_plane": {"res": m.triplane.resolution, "feat_dim": m.triplane.feat_dim,
                                  "mlp": {"n_layers": m.triplane.mlp_layers, "hid_dim": m.triplane.mlp_hidden}},
                    "num_ray_steps": m.render.num_steps, "use_noise": True, "backbone": "stylegan2",
                    "dataset": {"cube_scale": m.camera.cube_scale, "white_back": m.render.white_background,
                                "camera": {"fov": m.camera.fov, "ray_start": m.camera.ray_start,
                                           "ray_end": m.camera.ray_end}}}
    init_kwargs = {"img_resolution": m.img_resolution, "w_dim": m.mapping.w_dim, "z_dim": m.mapping.z_dim,
                   "c_dim": m.c_dim, "channel_base": m.triplane.channel_base, "channel_max": m.triplane.channel_max,
                   "mapping_kwargs": {"num_layers": m.mapping.num_layers, "camera_cond": m.mapping.camera_cond},
                   "cfg": upstream_cfg}
    _dump_snapshot(path, m, lambda: Generator(m), init_kwargs)


def _module(**children) -> torch.nn.Module:
    m = torch.nn.Module()
    for name, child in children.items():
        setattr(m, name, child)
    return m


def _3dgp_generator(m) -> torch.nn.Module:
    """A generator in 3DGP's module layout (synthesis.{tri_plane_decoder, tri_plane_mlp,
    depth_adaptor, camera_adaptor}, mapping with its float64 mean_camera_params), random weights."""
    G = Generator(m)
    mapping = _module(**dict(G.mapping.named_children()))
    mapping.register_buffer("w_avg", G.mapping.w_avg.clone())
    mapping.register_buffer("mean_camera_params", torch.tensor([0.0, 1.5708, 0.0, 27.5, 1.0], dtype=torch.float64))
    depth = DepthAdaptor(DepthConfig(), m.camera.ray_start, m.camera.ray_end)
    depth_up = _module(layers=depth.layers, head=depth.head)
    depth_up.near_plane_offset_raw = torch.nn.Parameter(torch.full([1], -3.0))
    depth_up.register_buffer("progress_coef", torch.zeros(1))
    synthesis = _module(tri_plane_decoder=G.synthesis.tri_plane_decoder, tri_plane_mlp=G.synthesis.tri_plane_mlp,
                        depth_adaptor=depth_up, camera_adaptor=G.camera_generator)
    return _module(synthesis=synthesis, mapping=mapping)


def write_3dgp_snapshot(path: Path, preset: str) -> None:
    m = load_config(preset).model
    cam = m.camera
    yaw = [cam.yaw_mean - cam.yaw_std, cam.yaw_mean + cam.yaw_std]
    pitch = [cam.pitch_mean - cam.pitch_std, cam.pitch_mean + cam.pitch_std]
    camera = {"ray": {"start": cam.ray_start, "end": cam.ray_end}, "cube_scale": cam.cube_scale,
              "fov": {"dist": "uniform", "min": cam.fov_min, "max": cam.fov_max},
              "origin": {"radius": {"dist": "normal", "mean": cam.radius, "std": 0.0},
                         "angles": {"dist": "uniform", "yaw": {"min": yaw[0], "max": yaw[1]},
                                    "pitch": {"min": pitch[0], "max": pitch[1]}}},
              "look_at": {"radius": {"dist": "uniform", "min": 0.0, "max": cam.look_at_radius_max},
                          "angles": {"dist": "spherical_uniform", "yaw": {"min": -3.14159265, "max": 3.14159265},
                                     "pitch": {"min": 0.0, "max": 3.14159265}}}}
    g = m.camera_generator
    generator_cfg = {"z_dim": m.mapping.z_dim, "w_dim": m.mapping.w_dim, "c_dim": m.c_dim, "map_depth": 2,
                     "cbase": m.triplane.channel_base, "cmax": m.triplane.channel_max, "fmaps": 1.0,
                     "fp32_only": True, "use_noise": True, "num_ray_steps": m.render.num_steps,
                     "ray_marcher_type": "classical", "use_inf_depth": True, "clamp_mode": "softplus",
                     "tri_plane": {"res": m.triplane.resolution, "feat_dim": m.triplane.feat_dim,
                                   "mlp": {"n_layers": m.triplane.mlp_layers, "hid_dim": m.triplane.mlp_hidden}},
                     "camera": camera, "dataset": {"name": m.name, "white_back": False, "last_back": False},
                     "camera_adaptor": {"enabled": True, "hid_dim": g.hidden_dim, "embed_dim": g.embed_dim,
                                        "lr_multiplier": g.lr_multiplier, "residual": False,
                                        "adjust": {"angles": True, "radius": False, "fov": True, "look_at": True}}}
    init_kwargs = {"img_resolution": m.img_resolution, "img_channels": 3, "conv_clamp": None, "num_fp16_res": 0,
                   "mapping_kwargs": {"camera_cond": False, "camera_cond_drop_p": 0.0},
                   "cfg": generator_cfg}
    _dump_snapshot(path, m, lambda: _3dgp_generator(m), init_kwargs)


def peak_rss_of(cmd) -> int:
    """Peak resident bytes of a child process (Linux reports ru_maxrss in KiB)."""
    code = ("import resource, runpy, subprocess, sys;"
            "r = subprocess.run(sys.argv[1:]);"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)")
    out = subprocess.run([sys.executable, "-c", code, *cmd], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) * 1024


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="epigraf_ffhq512")
    parser.add_argument("--keep", help="write the snapshot and checkpoint here instead of a temp folder")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        src, dst = folder / "network-snapshot-025000.pkl", folder / "converted.ckpt"
        family = load_config(args.preset).model.family
        (write_3dgp_snapshot if family == "3dgp" else write_snapshot)(src, args.preset)
        size = src.stat().st_size
        baseline = peak_rss_of([sys.executable, "-c", "import trigan.core.epigraf_import, trigan.cli.main"])
        start = time.perf_counter()
        peak = peak_rss_of([sys.executable, "-m", "trigan.cli.main", "convert", str(src), str(dst), "--force"])
        seconds = time.perf_counter() - start
        with torch.device("meta"):
            params = sum(p.numel() for p in Generator(load_config(args.preset).model).parameters())
        result = {"preset": args.preset, "format": "3DGP" if family == "3dgp" else "EpiGRAF",
                  "generator_parameters_m": round(params / 1e6, 1),
                  "snapshot_mb": round(size / 2 ** 20, 1), "baseline_rss_mb": round(baseline / 2 ** 20, 1),
                  "convert_peak_rss_mb": round(peak / 2 ** 20, 1),
                  "extra_over_file_size": round((peak - baseline) / size, 2),
                  "convert_seconds": round(seconds, 1),
                  "checkpoint_mb": round(dst.stat().st_size / 2 ** 20, 1)}
    print(json.dumps(result), flush=True)
    print(f"converting a {result['snapshot_mb']} MB {result['format']} snapshot "
          f"({result['generator_parameters_m']}M-parameter G, G and G_ema) takes {result['convert_seconds']} s "
          f"and peaks at {result['convert_peak_rss_mb']} MB ({result['extra_over_file_size']}x the file size "
          f"above the {result['baseline_rss_mb']} MB interpreter + torch baseline)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
