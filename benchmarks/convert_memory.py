"""Peak memory of `trigan convert` on a large EpiGRAF-format snapshot, relative to its file size.

Builds a synthetic snapshot in upstream's on-disk format (persistent-object records holding the
module tree, tensors as legacy torch.save storage blobs) for an FFHQ-512-size generator, G and
G_ema (about 235 MB), converts it in a fresh process and reports the child's peak resident memory
above the interpreter + torch baseline, as a multiple of the file size. Target: about 2x or less.

    python benchmarks/convert_memory.py [--preset epigraf_ffhq512] [--keep DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import pickle
import subprocess
import sys
import tempfile
import types
from collections import OrderedDict
from pathlib import Path

import torch

from trigan.core.config import load_config
from trigan.core.generator import Generator

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
    """Pickles as upstream's persistent network object: class name + module __dict__."""

    def __init__(self, reconstruct, module: torch.nn.Module, init_kwargs=None):
        self.reconstruct, self.name = reconstruct, type(module).__name__
        self.state = {"training": False,
                      "_parameters": OrderedDict((k, torch.nn.Parameter(v.detach().clone(), requires_grad=False))
                                                 for k, v in module._parameters.items() if v is not None),
                      "_buffers": OrderedDict((k, v.clone()) for k, v in module._buffers.items() if v is not None),
                      "_non_persistent_buffers_set": set(),
                      "_modules": OrderedDict((k, Record(reconstruct, c)) for k, c in module._modules.items()
                                              if c is not None),
                      "conv_clamp": getattr(module, "conv_clamp", None),
                      "_init_args": (), "_init_kwargs": init_kwargs or {}}

    def __reduce__(self):
        return self.reconstruct, ({"type": "class", "version": 6, "module_src": "# omitted",
                                   "class_name": self.name, "state": self.state},)


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
    with upstream_persistence_name() as reconstruct:
        nets = {name: Record(reconstruct, Generator(m), init_kwargs) for name in ("G", "G_ema")}
        snapshot = {"training_set_kwargs": {"resolution": m.img_resolution}, **nets, "D": None,
                    "augment_pipe": None, "stats": {"cur_nimg": 25_000_000, "cur_tick": 6250}}
        with open(path, "wb") as f:
            pickle.dump(snapshot, f, protocol=4)


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
        write_snapshot(src, args.preset)
        size = src.stat().st_size
        baseline = peak_rss_of([sys.executable, "-c", "import trigan.core.epigraf_import, trigan.cli.main"])
        peak = peak_rss_of([sys.executable, "-m", "trigan.cli.main", "convert", str(src), str(dst), "--force"])
        result = {"snapshot_mb": round(size / 2 ** 20, 1), "baseline_rss_mb": round(baseline / 2 ** 20, 1),
                  "convert_peak_rss_mb": round(peak / 2 ** 20, 1),
                  "extra_over_file_size": round((peak - baseline) / size, 2),
                  "checkpoint_mb": round(dst.stat().st_size / 2 ** 20, 1)}
    print(json.dumps(result), flush=True)
    print(f"converting a {result['snapshot_mb']} MB snapshot peaks at {result['convert_peak_rss_mb']} MB "
          f"({result['extra_over_file_size']}x the file size above the {result['baseline_rss_mb']} MB "
          f"interpreter + torch baseline)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
