"""`trigan render`: images, grids and videos of a model along camera trajectories.

Every latent's field (tri-planes + MLP) is computed once and re-rendered for every view; views of
several latents and frames are rendered in batches of --batch. Outputs are named by class and seed
and written atomically (temporary name, then rename). Every output's name is known before rendering
starts: if any of them exists the command stops at once, naming it, unless --force (then they are
replaced). Numeric flags are bounded (cli/flags.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, List, Optional, Sequence

from tqdm import tqdm

from trigan.cli import flags
from trigan.core.errors import TriganError
from trigan.core.limits import MAX_FRAMES, MAX_RAY_STEPS
from trigan.core.output_paths import prepare_output_dir, refuse_existing

if TYPE_CHECKING:
    import numpy as np

VIS_IMAGES = ("image", "image_grid", "front_grid", "view_grid", "interp")
VIS_VIDEOS = ("video", "video_grid", "interp_video")
VIS = VIS_IMAGES + VIS_VIDEOS
OUTPUTS = ("rgb", "depth", "normals")
VIEW_GRID_FRAMES = 8
MIN_RESOLUTION, MAX_RESOLUTION = 16, 2048
MAX_FPS = 240.0
MAX_INTERP_STEPS = 1000

EPILOG = """\
examples:
  trigan render model.ckpt --out renders                          class 0, seeds 0-3, one PNG each
  trigan render runs/00000-demo-shapes --out renders --vis image_grid --seeds 0-7 --classes 0-3
  trigan render model.ckpt --out renders --vis video --trajectory orbit --seeds 7 --resolution 256
  trigan render model.ckpt --out renders --vis video_grid --seeds 0-15 --trajectory front_circle --fps 30
  trigan render model.ckpt --out renders --vis video --trajectory path.json --format gif
  trigan render model.ckpt --out renders --vis image --camera yaw=0.4,pitch=pi/2-0.2,fov=18 --output depth
  trigan render model.ckpt --out renders --vis interp --seeds 0-3 --interp-steps 8
  trigan render model.ckpt --out renders --vis interp_video --seeds 0-3 --trajectory orbit --frames 120
  trigan render network-snapshot-001000.pkl --out renders --vis front_grid --psi 0.7
  trigan render assets/demo.ckpt --out docs --vis view_grid --classes 0-3 --seeds 0 --frames 8 --resolution 128
  trigan render inv/photo.pti.ckpt --latent inv/photo.inversion.npz --out renders --vis video --trajectory orbit

CKPT is a trigan .ckpt, an official EpiGRAF .pkl, or a training run directory (its best.ckpt by
the run's metric, or with --latest its latest.ckpt).

--vis:  image       one PNG per (class, seed) from the --camera view (default: the model's start view)
        image_grid  one PNG of all seeds (rows = classes for a conditional model)
        front_grid  per (class, seed): the first trajectory view large, the others small below it
                    (default trajectory: points)
        view_grid   one PNG: a row per (class, seed), a column per trajectory view (default: orbit,
                    8 views; --frames sets how many)
        video       one video per (class, seed) along the trajectory (default: front_circle)
        video_grid  one video of all seeds (and classes) in a grid
        interp      per class and pair of consecutive seeds: a row of --interp-steps images
                    interpolating w linearly, from the --camera view
        interp_video per class: w moves through all seeds in order while the camera follows the trajectory

--trajectory: front_circle (64 frames), points (3 views), wiggle (16), line (16) as EpiGRAF;
orbit (64, a full turn), zoom (64, a dolly zoom), or a keyframe FILE.json: a list of
{"yaw":, "pitch":, "fov":, "radius":, "time":} (radians, degrees, seconds), interpolated smoothly;
{"keyframes": [...], "look_at": [x, y, z], "pivot": [x, y, z]} also sets the point the path looks at and
orbits (the viewer's Camera path tab writes this form).
Trajectories are built around the --camera pose. Its defaults are the model's start view: the mean
pose, fov and radius; for a 3DGP model (learned camera generator) its mean posterior camera, whose
look-at point every view keeps. Angles: pitch is the polar angle from +Y (pi/2 = horizon); yaw 0
looks from +X. See docs/render.md.

Names: class003-seed0007.png, class003-seed0007-orbit.mp4 (no class part for an unconditional
model), grid-class0-3-seed0-7.png, front-..., interp-...; -depth / -normals with --output.
Existing files are not replaced: the command stops before rendering, naming the first one that
exists, unless --force. A missing --out folder is created (and said so on stderr).

--latent NAME.inversion.npz (from `trigan invert`) renders that latent, with its noise maps, instead
of seeds: on the model given (NAME.pti.ckpt for the tuned one), from its found camera unless
--camera changes it; --vis image, front_grid, view_grid or video; files are named NAME-latent.png,
NAME-latent-orbit.mp4, front-NAME-latent.png, ... See docs/inversion.md.
"""


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "render", help="render images, grids and videos (trajectories, keyframes, depth, normals)",
        description="Render images, image grids and videos of a model: seeds, classes, truncation, "
                    "camera trajectories and keyframe paths, rgb / depth / normals.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", metavar="CKPT", help="a .ckpt, an EpiGRAF .pkl or a run directory")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    p.add_argument("--force", action="store_true", help="replace outputs that already exist (default: refuse)")
    p.add_argument("--latest", action="store_true", help="for a run directory: its latest.ckpt, not best.ckpt")
    p.add_argument("--vis", choices=VIS, default="image", help="what to render (default: image)")
    p.add_argument("--trajectory", metavar="NAME|FILE.json",
                   help="front_circle, points, wiggle, line, orbit, zoom or a keyframe file "
                        "(default: front_circle for videos, points for front_grid)")
    p.add_argument("--seeds", type=flags.seeds, default="0-3", metavar="LIST",
                   help="seeds, e.g. 0-3,7 (default: 0-3)")
    p.add_argument("--latent", metavar="NAME.inversion.npz",
                   help="render this inverted latent (trigan invert) instead of seeds, from its camera")
    p.add_argument("--classes", type=flags.classes, metavar="LIST",
                   help="classes of a conditional model, 0-based, e.g. 1-16 (default: 0)")
    p.add_argument("--psi", type=flags.psi, default=0.7, help="truncation psi (default: 0.7; 1 = none)")
    p.add_argument("--truncation", choices=("class", "global"), default="class",
                   help="conditional models: truncate toward each class's mean w (default) or the global mean")
    p.add_argument("--resolution", type=flags.int_flag("--resolution", MIN_RESOLUTION, MAX_RESOLUTION, "pixels"),
                   metavar="PX", help=f"image size, {MIN_RESOLUTION}..{MAX_RESOLUTION} (default: the training "
                   "resolution; may exceed it)")
    p.add_argument("--frames", type=flags.int_flag("--frames", 1, MAX_FRAMES), metavar="N",
                   help=f"frames of the trajectory, 1..{MAX_FRAMES} (default: its own)")
    p.add_argument("--fps", type=flags.float_flag("--fps", 0.0, MAX_FPS, lo_open=True), default=None,
                   help="frames per second (default: 30)")
    p.add_argument("--format", choices=("mp4", "gif", "png"),
                   help="videos: mp4 (H.264, default), gif, or png (a folder of frames); images: png")
    p.add_argument("--quality", type=flags.float_flag("--quality", 1.0, 10.0), default=8.0,
                   help="mp4 quality 1..10, crf = (1 - q/10) * 51 (default: 8, crf 10)")
    p.add_argument("--output", choices=OUTPUTS, default="rgb", help="rgb (default), depth (near = white) or normals")
    p.add_argument("--camera", metavar="K=V,...",
                   help="base view: yaw=..,pitch=.. (radians, pi allowed), fov=.. (degrees), radius=.., "
                        "look_at_x/y/z=.. or look_at=0 (each defaults to the model's start view)")
    p.add_argument("--interp-steps", type=flags.int_flag("--interp-steps", 2, MAX_INTERP_STEPS), default=8, metavar="N",
                   help="interp: images per pair of seeds, both ends included (default: 8)")
    p.add_argument("--num-steps", type=flags.int_flag("--num-steps", 2, MAX_RAY_STEPS), metavar="N",
                   help="samples per ray, coarse and fine each, on the plain path (default: the accelerated "
                        "path, which places its own samples)")
    p.add_argument("--plain", action="store_true",
                   help="render with the plain coarse + fine path (the reference; several times slower) "
                        "instead of the accelerated exact path")
    p.add_argument("--batch", type=flags.batch, default=8, help="views rendered at once (default: 8)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1 ...")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


# --------------------------------------------------------------------------------------------------
# Validation

def _check_options(args) -> dict:
    """Everything that can be checked without the model; returns parsed values."""
    from trigan.core.trajectories import parse_camera  # noqa: PLC0415 (loads torch: see cli/main.py)

    video = args.vis in VIS_VIDEOS
    # Numbers were bounded while parsing (cli/flags.py); the seeds and classes are lists already.
    parsed = {"seeds": list(args.seeds), "classes": None if args.classes is None else list(args.classes)}
    parsed["camera"] = {} if args.camera is None else parse_camera(args.camera)
    if args.vis in ("interp", "interp_video") and len(parsed["seeds"]) < 2:
        raise TriganError(f"--vis {args.vis} interpolates between seeds: give at least two (e.g. --seeds 0-3)")
    if not video and args.format not in (None, "png"):
        raise TriganError(f"--format {args.format} is for videos; --vis {args.vis} writes PNG images")
    if not video and args.fps is not None:
        raise TriganError(f"--fps goes with a video (--vis {', '.join(VIS_VIDEOS)})")
    uses_trajectory = video or args.vis in ("front_grid", "view_grid")
    if not uses_trajectory and args.trajectory is not None:
        raise TriganError(f"--trajectory goes with --vis {', '.join(VIS_VIDEOS + ('front_grid', 'view_grid'))}; "
                          f"--vis {args.vis} renders the --camera view")
    if not uses_trajectory and args.frames is not None:
        raise TriganError(f"--frames goes with a video, front_grid or view_grid, not --vis {args.vis}")
    if getattr(args, "latent", None) is not None:
        check_latent_options(args)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise TriganError(f"--out {out}: exists and is not a folder")
    return parsed


LATENT_VIS = ("image", "front_grid", "view_grid", "video")


def check_latent_options(args) -> None:
    """--latent renders one given latent: no seeds, classes or grids of several latents."""
    if args.vis not in LATENT_VIS:
        raise TriganError(f"--latent renders one latent: --vis {', '.join(LATENT_VIS)}, not --vis {args.vis}")
    if args.classes is not None:
        raise TriganError("--latent holds its own class: --classes does not go with it")


def load_latent(path, G):
    """The inversion record of --latent, checked against G, with its noise maps put into G (which
    open_model made for this command alone)."""
    from trigan.training.inversion import apply_noise  # noqa: PLC0415 (loads torch: see cli/main.py)
    from trigan.training.inversion_outputs import load_inversion  # noqa: PLC0415
    record = load_inversion(path, G)
    apply_noise(G, record.noise)
    return record


def model_classes(G, parsed: Optional[List[int]]) -> List[Optional[int]]:
    """The classes to render or mesh, one rule for `trigan render` and `trigan mesh`: [None] for an
    unconditional model (where --classes is an error), the given classes, or class 0 when a
    conditional model gets none."""
    shown = None if parsed is None else compact(parsed).replace("_", ",")
    if G.c_dim == 0:
        if parsed is not None:
            raise TriganError(f"--classes {shown}: this model is unconditional (it has no classes)")
        return [None]
    classes = [0] if parsed is None else list(parsed)
    bad = [k for k in classes if k >= G.c_dim]
    if bad:
        raise TriganError(f"--classes {shown}: class {bad[0]} is out of range: this model has {G.c_dim} "
                          f"classes (0..{G.c_dim - 1})")
    return classes


# --------------------------------------------------------------------------------------------------
# Names

def compact(values: Sequence[int]) -> str:
    """[0, 1, 2, 3, 7] -> '0-3_7' (for file names)."""
    parts, values = [], list(values)
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        parts.append(str(values[i]) if i == j else f"{values[i]}-{values[j]}")
        i = j + 1
    return "_".join(parts)


def item_name(cls: Optional[int], seed: int) -> str:
    return f"seed{seed:04d}" if cls is None else f"class{cls:03d}-seed{seed:04d}"


# --------------------------------------------------------------------------------------------------
# Rendering

def _view_renderer(G, args, bar):
    """The export set-up of this command (core.exports.ViewRenderer): --resolution, --output, --psi,
    --truncation, --batch, --num-steps, --plain, with the progress bar counting views."""
    from trigan.core.exports import ViewRenderer  # noqa: PLC0415 (loads torch: see cli/main.py)
    return ViewRenderer(G, resolution=args.resolution, output=args.output, psi=args.psi,
                        class_truncation=args.truncation == "class", batch=args.batch, num_steps=args.num_steps,
                        on_views=bar.update, path="plain" if args.plain else "accelerated")


def _traj(args, base, default: str, frames: Optional[int] = None):
    """--trajectory (or `default`) around `base`, with --frames views (or `frames`, or its own count)."""
    from trigan.core.trajectories import make_trajectory  # noqa: PLC0415 (loads torch: see cli/main.py)
    return make_trajectory(args.trajectory or default, base, args.frames or frames, args.fps or 30.0)


def _single_view(base):
    from trigan.core.trajectories import Trajectory  # noqa: PLC0415 (loads torch: see cli/main.py)
    return Trajectory.from_poses("view", [base])


def _chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _front_grid(images: List[np.ndarray]) -> np.ndarray:
    """Upstream's front_grid: the first view at full size, the others Lanczos-resized to h/(n-1) in a
    row below it (centred; the canvas is white)."""
    import numpy as np  # noqa: PLC0415 (numerical stack: see cli/main.py)

    from trigan.core.images import resize  # noqa: PLC0415 (loads torch: see cli/main.py)
    main = images[0]
    h, w = main.shape[:2]
    if len(images) == 1:
        return main
    n = len(images) - 1
    side = max(1, h // n)
    thumbs = [resize(im, side, side) for im in images[1:]]
    canvas = np.full((h + side, max(w, side * n), 3), 255, dtype=np.uint8)
    canvas[:h, (canvas.shape[1] - w) // 2:(canvas.shape[1] - w) // 2 + w] = main
    x0 = (canvas.shape[1] - side * n) // 2
    for k, t in enumerate(thumbs):
        canvas[h:, x0 + k * side:x0 + (k + 1) * side] = t
    return canvas


def planned_outputs(vis: str, classes: Sequence[Optional[int]], seeds: Sequence[int], conditional: bool,
                    traj_name: Optional[str], fmt: str, suffix: str, out_dir: Path,
                    stem: Optional[str] = None) -> List[Path]:
    """Every path `--vis vis` writes, in the order it writes them: known before rendering starts, so
    that existing outputs are refused up front (refuse_existing) rather than after minutes of work.
    `stem` names the one latent of --latent instead of its class and seed."""
    from trigan.core.video import output_path  # noqa: PLC0415 (loads torch: see cli/main.py)

    pairs = [(k, s) for k in classes for s in seeds]
    name_of = item_name if stem is None else (lambda _k, _s: stem)   # --latent: its name for (class, seed)
    grid = (f"class{compact(classes)}-seed{compact(seeds)}" if conditional else f"seed{compact(seeds)}")
    grid = grid if stem is None else stem
    video = lambda stem: output_path(out_dir / f"{stem}-{traj_name}{suffix}", fmt)
    png = lambda stem: out_dir / f"{stem}{suffix}.png"
    if vis == "image":
        return [png(name_of(k, s)) for k, s in pairs]
    if vis == "image_grid":
        return [png(f"grid-{grid}")]
    if vis == "front_grid":
        return [png(f"front-{name_of(k, s)}") for k, s in pairs]
    if vis == "view_grid":
        return [png(f"views-{grid}-{traj_name}")]
    if vis == "interp":
        return [png(f"interp-{name_of(k, seeds[a])}-{seeds[a + 1]:04d}") for k in classes for a in range(len(seeds) - 1)]
    if vis == "video":
        return [video(name_of(k, s)) for k, s in pairs]
    if vis == "video_grid":
        return [video(f"grid-{grid}")]
    if vis == "interp_video":
        return [video(f"interp-{name_of(k, seeds[0])}-{seeds[-1]:04d}") for k in classes]
    raise ValueError(f"unknown --vis {vis!r}")


def run(args) -> int:
    # These load torch and the core (see cli/main.py).
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415

    from trigan.core.cameras import Pose  # noqa: PLC0415
    from trigan.core.devices import parse_device  # noqa: PLC0415
    from trigan.core.exports import grid_video_frames, video_frames  # noqa: PLC0415
    from trigan.core.images import grid_shape, save_png, tile, tile_partial  # noqa: PLC0415
    from trigan.core.model_io import open_model  # noqa: PLC0415
    from trigan.core.trajectories import apply_camera_values  # noqa: PLC0415
    from trigan.core.video import VideoWriter  # noqa: PLC0415

    parsed = _check_options(args)
    device = parse_device(args.device)
    model = open_model(args.checkpoint, device=device, latest=args.latest)
    G = model.G.eval()
    latent = None if getattr(args, "latent", None) is None else load_latent(args.latent, G)
    classes = model_classes(G, parsed["classes"]) if latent is None else [None]
    seeds = parsed["seeds"] if latent is None else [0]
    # 3DGP models: the mean posterior camera over all classes (upstream's), one view for every class;
    # an inverted latent: its own camera.
    base = apply_camera_values(Pose.for_generator(G) if latent is None else latent.pose, parsed["camera"])
    fmt = args.format or ("mp4" if args.vis in VIS_VIDEOS else "png")
    suffix = "" if args.output == "rgb" else f"-{args.output}"
    pairs = [(k, s) for k in classes for s in seeds]

    # Trajectories are built (and keyframe files checked) before any rendering starts.
    traj = None
    if args.vis in VIS_VIDEOS:
        traj = _traj(args, base, "front_circle")
    elif args.vis == "front_grid":
        traj = _traj(args, base, "points")
    elif args.vis == "view_grid":
        # A handful of views, not a video's worth: 8 unless --frames says otherwise.
        traj = _traj(args, base, "orbit", VIEW_GRID_FRAMES)
    view = _single_view(base)
    per_latent = len(traj) if traj is not None else 0
    # Where everything goes, checked before the first view is rendered: a folder that takes files,
    # and no output that would replace an earlier one (unless --force).
    log = lambda msg: print(f"trigan render: {msg}", file=sys.stderr, flush=True)
    out_dir = prepare_output_dir(args.out, "--out", log=log)
    outputs = planned_outputs(args.vis, classes, seeds, G.c_dim > 0, traj.name if traj is not None else None,
                              fmt, suffix, out_dir, stem=None if latent is None else f"{latent.name}-latent")
    refuse_existing(outputs, args.force)
    next_output = iter(outputs).__next__
    totals = {"image": len(pairs), "image_grid": len(pairs), "interp": len(classes) * (len(seeds) - 1) * args.interp_steps,
              "front_grid": len(pairs) * per_latent, "view_grid": len(pairs) * per_latent,
              "video": len(pairs) * per_latent, "video_grid": len(pairs) * per_latent,
              "interp_video": len(classes) * per_latent}
    written: List[Path] = []
    what = f"{args.vis} {G.cfg.name} {model.path} on {device}"
    print(f"trigan render: {what}, {len(pairs)} latent(s), {totals[args.vis]} view(s) at "
          f"{args.resolution or G.cfg.img_resolution}px", file=sys.stderr)
    grad_context = torch.no_grad() if args.output == "normals" else torch.inference_mode()  # normals need autograd
    with tqdm(total=totals[args.vis], unit="view", desc=args.vis, file=sys.stderr, disable=args.quiet,
              dynamic_ncols=True) as bar, grad_context:
        scene = _view_renderer(G, args, bar)
        # ws of (class, seed) pairs, or, with --latent, the inverted latent (its one pair stands for it)
        ws_of = scene.ws if latent is None else (lambda pairs: latent.ws.to(G.device).expand(len(pairs), -1, -1))

        def done(path: Path) -> None:
            written.append(path)
            tqdm.write(str(path), file=sys.stdout)

        def video_writer() -> VideoWriter:
            return VideoWriter(next_output(), args.fps or 30.0, fmt, args.quality, overwrite=args.force)

        vis = args.vis
        if vis == "image":
            for chunk in _chunks(pairs, args.batch):
                field = scene.field(ws_of(chunk))
                images = scene.render(field, range(len(chunk)), view, [0] * len(chunk))
                for image in images:
                    done(save_png(image, next_output()))

        elif vis == "image_grid":
            field = scene.field(ws_of(pairs))
            images = np.stack(list(scene.render(field, range(len(pairs)), view, [0] * len(pairs))))
            rows, cols = (len(classes), len(seeds)) if G.c_dim else grid_shape(len(pairs), scene.resolution)
            done(save_png(tile_partial(images, rows, cols), next_output()))

        elif vis == "front_grid":
            for k, s in pairs:
                field = scene.field(ws_of([(k, s)]))
                views = list(scene.render(field, [0] * len(traj), traj, range(len(traj))))
                done(save_png(_front_grid(views), next_output()))

        elif vis == "view_grid":
            rows = []
            for k, s in pairs:
                field = scene.field(ws_of([(k, s)]))
                rows.append(np.stack(list(scene.render(field, [0] * len(traj), traj, range(len(traj))))))
            done(save_png(tile(np.concatenate(rows), len(pairs), len(traj)), next_output()))

        elif vis == "interp":
            alphas = torch.linspace(0, 1, args.interp_steps, device=G.device)
            for k in classes:
                ws = scene.ws([(k, s) for s in seeds])
                for a in range(len(seeds) - 1):
                    w = torch.lerp(ws[a][None], ws[a + 1][None], alphas[:, None, None])
                    field = scene.field(w)
                    row = np.stack(list(scene.render(field, range(len(alphas)), view, [0] * len(alphas))))
                    done(save_png(tile(row, 1, len(alphas)), next_output()))

        elif vis == "video":
            for k, s in pairs:
                field = scene.field(ws_of([(k, s)]))
                with video_writer() as video:
                    for frame in video_frames(scene, field, traj):
                        video.append(frame)
                done(video.path)

        elif vis == "video_grid":
            field = scene.field(ws_of(pairs))
            rows, cols = (len(classes), len(seeds)) if G.c_dim else grid_shape(len(pairs), scene.resolution)
            with video_writer() as video:
                for frame in grid_video_frames(scene, field, rows, cols, traj):
                    video.append(frame)
            done(video.path)

        elif vis == "interp_video":
            frames = len(traj)
            # w passes through the seeds in order, linearly: the first frame is the first seed, the last the last.
            u = np.linspace(0, len(seeds) - 1, frames) if frames > 1 else np.zeros(1)
            seg = np.minimum(np.floor(u).astype(int), len(seeds) - 2)
            frac = torch.as_tensor(u - seg, dtype=torch.float32, device=G.device)
            for k in classes:
                ws = scene.ws([(k, s) for s in seeds])
                with video_writer() as video:
                    for chunk in _chunks(np.arange(frames), args.batch):
                        a = torch.as_tensor(seg[chunk], device=G.device)
                        w = torch.lerp(ws[a], ws[a + 1], frac[torch.as_tensor(chunk, device=G.device)][:, None, None])
                        field = scene.field(w)
                        for frame in scene.render(field, range(len(chunk)), traj, chunk):
                            video.append(frame)
                done(video.path)
    return 0
