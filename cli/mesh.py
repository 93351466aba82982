"""`trigan mesh`: coloured meshes (ply/obj/glb) or density volumes (npy) of generated objects."""

from __future__ import annotations

import argparse
import sys

from tqdm import tqdm

from trigan.cli import flags
from trigan.cli.render import load_latent, model_classes
from trigan.core.errors import TriganError
from trigan.core.output_paths import prepare_output_dir, refuse_existing

EPILOG = """\
examples:
  trigan mesh assets/demo.ckpt --out meshes --seeds 0-3 --classes 1
  trigan mesh runs/00000-demo-shapes --latest --out meshes --seeds 7 --classes 0-3 --format glb
  trigan mesh network-snapshot-001000.pkl --out meshes --seeds 0-7 --psi 0.7 --threshold 25
  trigan mesh model.ckpt --out meshes --seeds 0 --largest-component --resolution 384 --format obj
  trigan mesh model.ckpt --out volumes --seeds 0 --format npy      the density volume itself
  trigan mesh inv/photo.pti.ckpt --latent inv/photo.inversion.npz --out meshes   an inverted latent

The grid covers the model's scene box [-cube_scale, cube_scale]^3 and the mesh is in world
units, so it lines up with the renderer's cameras. --threshold is a level of the ACTIVATED
density, softplus(sigma + density_shift), in 1/world-units (EpiGRAF's extract_geometry used raw
sigma 25, about the same number when the shift is 0). 'auto' splits the voxels into empty and
occupied (Otsu) and prints the level it chose; higher levels give tighter surfaces.
Hollows sealed inside an object (its inside is never seen in training, so it is often empty) would
add inward-facing pieces no camera sees; they are dropped unless --keep-cavities.
Files are named seed0007.ply, or class002_seed0007.ply for class-conditional models (class 0 when
--classes is not given, as in trigan render). Existing files are not replaced: the command stops
before any work, naming the first one that exists, unless --force.
An npy volume is float32 [N, N, N] indexed [x, y, z]; index i is at -s + i * 2s / (N - 1).
--latent NAME.inversion.npz (from `trigan invert`) meshes that latent, with its noise maps, on the
model given (NAME.pti.ckpt for the tuned one) instead of seeds: NAME-latent.ply.
See docs/meshes.md.
"""


# core.mesh.FORMATS, written out so that `trigan mesh --help` does not load torch
# (tests/test_startup.py checks that the two agree).
HELP_FORMATS = ("ply", "obj", "glb", "npy")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "mesh", help="export coloured meshes (ply/obj/glb) or density volumes (npy) of seeds",
        description="Extract the surface of generated objects by marching cubes over the model's scene box.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", metavar="CKPT", help="a .ckpt, an EpiGRAF .pkl or a training run directory")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the files (created if needed)")
    p.add_argument("--force", action="store_true", help="replace files that already exist (default: refuse)")
    p.add_argument("--seeds", type=flags.seeds, default="0", help="seeds, e.g. 0-3,7 (default: 0)")
    p.add_argument("--latent", metavar="NAME.inversion.npz",
                   help="mesh this inverted latent (trigan invert) instead of seeds")
    p.add_argument("--classes", type=flags.classes,
                   help="classes of a class-conditional model, e.g. 0-3 (each with every seed; default: 0)")
    p.add_argument("--psi", type=flags.psi, default=1.0, help="truncation psi (default 1: none; upstream used 0.7)")
    p.add_argument("--class-truncation", action="store_true",
                   help="truncate toward each class's mean w instead of the global one (3DGP)")
    p.add_argument("--resolution", type=flags.int_flag("--resolution", MIN_RES, MAX_RES, "samples per axis"),
                   default=256, metavar="N", help=f"grid samples per axis, {MIN_RES}..{MAX_RES} (default 256)")
    p.add_argument("--threshold", default="auto", metavar="auto|VALUE",
                   help="density level in 1/world-units, or auto (default; the level is printed)")
    p.add_argument("--format", default="ply", metavar="FMT", help=f"{' | '.join(HELP_FORMATS)} (default ply)")
    p.add_argument("--no-color", dest="color", action="store_false", help="geometry only, no vertex colours")
    p.add_argument("--largest-component", action="store_true", help="keep only the biggest connected piece")
    p.add_argument("--keep-cavities", action="store_true",
                   help="keep the walls of hollows sealed inside objects (dropped by default: no camera sees them)")
    p.add_argument("--latest", action="store_true", help="with a run directory: latest.ckpt rather than best.ckpt")
    p.add_argument("--chunk", type=flags.int_flag("--chunk", 1, MAX_CHUNK, "points"), default=None,
                   metavar="POINTS", help="field queries per chunk; bounds the memory (default: the size "
                   "measured fastest on the device)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1 ...")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=run)


MIN_RES, MAX_RES = 8, 1024
MAX_CHUNK = 1 << 26     # 64M points: a few GB of features per chunk at most


def _check_args(args):
    from trigan.core.mesh import FORMATS, parse_level  # noqa: PLC0415 (loads torch: see cli/main.py)
    fmt = str(args.format).lower().lstrip(".")
    if fmt not in FORMATS:
        raise TriganError(f"--format {args.format}: expected one of {', '.join(FORMATS)}")
    if getattr(args, "latent", None) is not None and args.classes is not None:
        raise TriganError("--latent holds its own class: --classes does not go with it")
    return fmt, parse_level(args.threshold)   # the numbers were bounded while parsing (cli/flags.py)


def _jobs(G, args):
    """[(seed, class or None)] in the order the files are written: class-major. The classes follow
    trigan render's rule (cli.render.model_classes): class 0 when a conditional model gets none."""
    return [(s, c) for c in model_classes(G, args.classes) for s in args.seeds]


def _progress_bar(desc: str, total: int, quiet: bool):
    bar = tqdm(total=total, desc=desc, unit="pt", unit_scale=True, file=sys.stderr, disable=quiet, leave=False)

    def update(done: int, _total: int) -> None:
        bar.update(done - bar.n)
    return bar, update


def run(args) -> int:
    # These load torch and the core (see cli/main.py).
    from trigan.core import mesh as M  # noqa: PLC0415
    from trigan.core.devices import parse_device  # noqa: PLC0415
    from trigan.core.exports import seed_mesh  # noqa: PLC0415
    from trigan.core.model_io import open_model  # noqa: PLC0415

    fmt, level = _check_args(args)
    device = parse_device(args.device)
    model = open_model(args.checkpoint, device=device, latest=args.latest)
    G = model.G
    latent = None if getattr(args, "latent", None) is None else load_latent(args.latent, G)
    jobs = _jobs(G, args) if latent is None else [(0, None)]
    file_name = ((lambda seed, cls: M.mesh_file_name(seed, cls, fmt)) if latent is None
                 else (lambda _seed, _cls: f"{latent.name}-latent.{fmt}"))
    # Checked before the first grid is evaluated: a folder that takes files, and no earlier file replaced.
    out = prepare_output_dir(args.out, "--out", log=lambda msg: print(f"trigan mesh: {msg}", file=sys.stderr))
    refuse_existing([out / file_name(seed, cls) for seed, cls in jobs], args.force)
    s = G.cfg.camera.cube_scale
    n = args.resolution
    what = ("volume" if fmt == "npy" else "mesh") + ("" if len(jobs) == 1 else "es" if fmt != "npy" else "s")
    chunks = ("chunks sized by measurement" if args.chunk is None
              else f"{M.chunk_count(n, args.chunk)} chunk(s) each")
    print(f"{model.path}: {len(jobs)} {what}, {n}^3 grid over "
          f"[{-s:g}, {s:g}]^3 world units, {chunks}, on {device}", flush=True)
    for seed, cls in jobs:
        name = f"seed {seed}" + ("" if cls is None else f" class {cls}") if latent is None else latent.name
        path = out / file_name(seed, cls)
        bar, update = _progress_bar(name, n ** 3, args.quiet)
        try:
            if latent is None:
                export = seed_mesh(G, seed, cls, path, fmt, psi=args.psi, class_truncation=args.class_truncation,
                                   resolution=n, level=level, color=args.color, keep_largest=args.largest_component,
                                   keep_cavities=args.keep_cavities,
                                   chunk=args.chunk, progress=update, overwrite=args.force)
            else:
                from trigan.core.exports import latent_mesh  # noqa: PLC0415 (only for --latent)
                export = latent_mesh(G, latent.ws, path, fmt, resolution=n, level=level, color=args.color,
                                    keep_largest=args.largest_component, keep_cavities=args.keep_cavities,
                                    chunk=args.chunk, progress=update, overwrite=args.force)
        except M.NoSurfaceError as exc:
            raise M.NoSurfaceError(f"{name}: {exc}") from None
        finally:
            bar.close()
        d = export.volume.density
        if fmt == "npy":
            hint = M.auto_level(d) if float(d.max()) > float(d.min()) else None
            print(f"{path}: density {float(d.min()):.4g}..{float(d.max()):.4g} per world unit"
                  + ("" if hint is None else f" (auto level would be {hint:.4g})")
                  + f", {export.seconds:.1f} s", flush=True)
            continue
        result = export.mesh
        how = "auto" if level == "auto" else "given"
        if args.largest_component:
            kept = f", kept the largest of {result.info.get('components', 1)} component(s)"
        else:
            # One main piece plus specks is a clean object; two big pieces usually are not.
            counts = M.component_face_counts(result)
            share = 100.0 * counts[0] / counts.sum() if len(counts) else 0.0
            kept = f", {len(counts)} component(s), the largest with {share:.1f}% of the faces"
        hollows = result.info.get("cavities", 0)
        if hollows:
            kept += f", dropped the walls of {hollows} sealed hollow(s)"
        print(f"{path}: {len(result.vertices)} vertices, {len(result.faces)} faces at density level "
              f"{result.level:.4g} per world unit ({how}; densities {float(d.min()):.4g}..{float(d.max()):.4g})"
              f"{kept}, {export.seconds:.1f} s", flush=True)
    return 0
