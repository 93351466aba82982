"""`trigan invert`: put photos into a model (latent, camera, pivotal tuning) and write what came out.

Everything is checked before the first step: the model, every image and mask, the class, the
camera, the VGG weights, the output folder and every output's name; a mistake is one line (exit 2)
and nothing is written. Then each image is inverted (training.inversion.invert) and its outputs
written (training.inversion_outputs.save_inversion), with one line per image on stdout.
Ctrl-C once stops the current image's fit, keeps the best so far and still writes its outputs (the
remaining images are skipped); a second Ctrl-C aborts at once (atomic writes leave nothing partial).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import List, Optional

from tqdm import tqdm

from trigan.cli import flags
from trigan.core.errors import TriganError
from trigan.core.limits import MAX_CLASSES, MAX_INVERSION_STEPS, MAX_TUNE_HOLD

KEYS = ("auto", "white", "black", "off")
# training.inversion.InversionSettings' defaults, written out so that --help does not load torch
# (tests/test_invert_cli.py checks that the two agree).
HELP_STEPS, HELP_PTI_STEPS, HELP_PTI_HOLD = 200, 80, 1.0
BAR_TICKS = 1000          # the progress bar counts thousandths of one image's whole fit
INTERRUPTED = 130         # the exit status of a run stopped by Ctrl-C (the shell's 128 + SIGINT)

EPILOG = """\
examples:
  trigan invert assets/demo.ckpt photo.png --out inverted              pose and latent estimated, then tuned
  trigan invert assets/demo.ckpt a.jpg b.jpg c.jpg --out inverted --class 2
  trigan invert model.ckpt car.png --out inv --camera yaw=0.4,pitch=pi/2-0.2 --vgg vgg16-397923af.pth
  trigan invert model.ckpt img0007.png --out inv --pose-from data/shapes/dataset.json
  trigan invert model.ckpt face.png --out inv --mask face-mask.png --wplus --steps 500 --pti-steps 300
  trigan invert network-snapshot-001000.pkl obj.png --out inv --key white --pti-steps 0 --no-mesh
  trigan render inv/photo.pti.ckpt --latent inv/photo.inversion.npz --out renders --vis video --trajectory orbit
  trigan mesh inv/photo.pti.ckpt --latent inv/photo.inversion.npz --out meshes --resolution 384

MODEL is a trigan .ckpt, an official EpiGRAF / 3DGP .pkl, or a training run directory (its best.ckpt,
or with --latest its latest.ckpt).

Images of any size and mode are centre-cropped to a square and resized to the model's resolution
(--no-crop: the whole image is resized, its aspect changes). The object is picked out by --mask
(one file per IMAGE, in order; white = object), by an RGBA image's alpha, or by keying the
background colour (--key auto keys against the model's own backdrop, white or black).
The camera is --camera (trigan's convention: yaw 0 looks from +X, pitch the polar angle from +Y,
radians, pi allowed; fov in degrees), a dataset.json's camera_angles (--pose-from), or estimated
from several starting yaws. A conditional model tries every class unless --class is given.
Stage 1 fits the latent (W, or W+ with --wplus) for --steps steps; stage 2 (pivotal tuning, off with
--pti-steps 0) fine-tunes the generator around it; the tuned state kept is the one whose gain at
the picture most exceeds --pti-hold times what it changes on the object's other sides (the untuned
weights compete, so tuning that costs more than it gains is not taken). The loss is LPIPS-style VGG16 features plus
pixels with --vgg FILE (torchvision's vgg16-397923af.pth, from
https://download.pytorch.org/models/vgg16-397923af.pth; never downloaded), else multi-scale pixels
+ SSIM.

Outputs per IMAGE (NAME = its file stem) in --out: NAME.inversion.npz (ws, class, camera, noise,
fit metrics, settings), NAME.pti.ckpt (the tuned model; not with --pti-steps 0), NAME.png (input |
reconstruction | yaw +60, +120, 180, -90 degrees), NAME-orbit.mp4 (not with --no-video), NAME.ply
(coloured mesh; not with --no-mesh). Existing files are not replaced unless --force; the command
stops before any work, naming the first. stdout gets one line per image:
  NAME: PSNR 31.2 dB, SSIM 0.954 (latent 27.5 dB) class 2, yaw 0.412 pitch 1.498 (estimated)
("(latent 27.5 dB; tuning not kept)" when no tuned state beat the latent alone).
Ctrl-C stops the fit and keeps the best so far (its outputs are still written); twice aborts.
See docs/inversion.md.
"""


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "invert", help="put photos into a model: latent, camera, pivotal tuning; npz, checkpoint, figure, video, mesh",
        description="Invert images into a model: find the latent (and class and camera) that renders each "
                    "image, fine-tune the generator around it, and write the record, the tuned checkpoint, a "
                    "figure of novel views, an orbit video and a coloured mesh.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="MODEL", help="a .ckpt, an EpiGRAF/3DGP .pkl or a run directory")
    p.add_argument("images", metavar="IMAGE", nargs="+", help="image files (any size; png, jpg, ...)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    p.add_argument("--mask", action="append", metavar="FILE",
                   help="object mask (white = object), the size of its image; once per IMAGE, in order")
    p.add_argument("--no-crop", dest="crop", action="store_false",
                   help="resize the whole image to a square instead of centre-cropping it")
    p.add_argument("--key", choices=KEYS, default="auto",
                   help="key the background out: auto (the model's backdrop), white, black, off (default: auto)")
    p.add_argument("--class", dest="class_index", type=flags.int_flag("--class", 0, MAX_CLASSES - 1),
                   metavar="K", help="class of a conditional model, 0-based (default: every class tried, best kept)")
    p.add_argument("--camera", metavar="K=V,...",
                   help="the image's camera: yaw=..,pitch=..[,fov=..,radius=..] (default: estimated)")
    p.add_argument("--pose-from", metavar="dataset.json",
                   help="the camera from a dataset.json's camera_angles, looked up by the image's file name")
    p.add_argument("--wplus", action="store_true", help="fit one w per layer (W+) instead of one w")
    p.add_argument("--steps", type=flags.int_flag("--steps", 1, MAX_INVERSION_STEPS), metavar="N",
                   help=f"latent steps (default: {HELP_STEPS})")
    p.add_argument("--pti-steps", type=flags.int_flag("--pti-steps", 0, MAX_INVERSION_STEPS), metavar="N",
                   help=f"pivotal tuning steps, 0 = none (default: {HELP_PTI_STEPS})")
    p.add_argument("--pti-hold", type=flags.float_flag("--pti-hold", 0.0, MAX_TUNE_HOLD), metavar="H",
                   help="how much the other sides' change counts against the picture's gain when the "
                        f"tuned state is chosen; 0 keeps the best fit of the picture (default: {HELP_PTI_HOLD:g})")
    p.add_argument("--vgg", metavar="PATH", help="VGG16 weights for the perceptual loss (torchvision's "
                   "vgg16-397923af.pth); default: pixels + SSIM")
    p.add_argument("--no-video", dest="video", action="store_false", help="no orbit video")
    p.add_argument("--no-mesh", dest="mesh", action="store_false", help="no mesh")
    p.add_argument("--mesh-resolution", type=flags.int_flag("--mesh-resolution", 8, 1024, "samples per axis"),
                   default=256, metavar="N", help="mesh grid samples per axis, 8..1024 (default 256, as trigan mesh)")
    p.add_argument("--latest", action="store_true", help="for a run directory: its latest.ckpt, not best.ckpt")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1 ...")
    p.add_argument("--force", action="store_true", help="replace outputs that already exist (default: refuse)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


# --------------------------------------------------------------------------------------------------
# Checks (all before any work)

def check_options(args) -> None:
    """What can be checked without the model."""
    if args.camera is not None and args.pose_from is not None:
        raise TriganError("--camera and --pose-from both set the camera: give one")
    if args.mask is not None and len(args.mask) != len(args.images):
        raise TriganError(f"--mask given {len(args.mask)} time(s) for {len(args.images)} image(s): "
                          "give one mask per IMAGE, in order")
    stems = [Path(p).stem for p in args.images]
    twice = next((s for s in stems if stems.count(s) > 1), None)
    if twice is not None:
        raise TriganError(f"two images are named {twice!r}: their outputs would share names; rename one")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise TriganError(f"--out {out}: exists and is not a folder")


def settings_from_args(args):
    """InversionSettings: the optimiser's defaults, with the flags given."""
    from trigan.training.inversion import InversionSettings  # noqa: PLC0415 (loads torch: see cli/main.py)
    changes = {"wplus": bool(args.wplus)}
    if args.steps is not None:
        changes["steps"] = args.steps
    if args.pti_steps is not None:
        changes["pti_steps"] = args.pti_steps
    if args.pti_hold is not None:
        changes["tune_hold"] = args.pti_hold
    settings = InversionSettings(**changes)
    settings.check()
    return settings


def check_class(G, class_index: Optional[int]) -> Optional[int]:
    if class_index is None:
        return None
    if G.c_dim == 0:
        raise TriganError(f"--class {class_index}: this model is unconditional (it has no classes)")
    if class_index >= G.c_dim:
        raise TriganError(f"--class {class_index}: out of range: this model has {G.c_dim} classes "
                          f"(0..{G.c_dim - 1})")
    return class_index


def load_targets(args, G, resolution: int) -> list:
    from trigan.training.inversion_inputs import load_target, model_backdrop  # noqa: PLC0415 (loads torch)
    backdrop = model_backdrop(G)
    masks = args.mask or [None] * len(args.images)
    return [load_target(path, resolution, crop=args.crop, mask_path=mask, key=args.key, backdrop=backdrop)
            for path, mask in zip(args.images, masks, strict=True)]


def image_poses(args, G, class_index: Optional[int]) -> list:
    """The given camera of each image (None: estimated); a 3DGP model's start view (fov, radius,
    look-at) is its class's when the class is given."""
    from trigan.training.inversion_inputs import parse_camera_spec, pose_from_dataset  # noqa: PLC0415
    if args.camera is not None:
        return [parse_camera_spec(args.camera, G, class_index)] * len(args.images)
    if args.pose_from is not None:
        return [pose_from_dataset(args.pose_from, path, G, class_index) for path in args.images]
    return [None] * len(args.images)


# --------------------------------------------------------------------------------------------------
# Ctrl-C

class StopFlag:
    """The first SIGINT sets the flag (the optimiser's should_stop reads it); the second raises
    KeyboardInterrupt (cli/main.py prints `trigan: interrupted`, exit 130). Installed only on the main
    thread (signal handlers can be set nowhere else); the previous handler is restored on exit."""

    def __init__(self, on_first=None):
        self.stopped = False
        self.on_first = on_first
        self._previous = None

    def __call__(self) -> bool:
        return self.stopped

    def handle(self, signum, frame) -> None:
        if self.stopped:
            raise KeyboardInterrupt
        self.stopped = True
        if self.on_first is not None:
            self.on_first()

    def __enter__(self) -> "StopFlag":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self.handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


# --------------------------------------------------------------------------------------------------
# Output

def result_line(result) -> str:
    """`NAME: PSNR 31.2 dB, SSIM 0.954 (latent 27.5 dB) class 2, yaw 0.412 pitch 1.498 (estimated)`."""
    from trigan.training.inversion import tuning_note  # noqa: PLC0415 (loads torch: see cli/main.py)
    m = result.metrics
    note = tuning_note(m)
    line = (f"{result.target_name}: PSNR {float(m['psnr']):.1f} dB, SSIM {float(m['ssim']):.3f} "
            f"(latent {float(m['psnr_latent']):.1f} dB{'; ' + note if note else ''})")
    if result.class_index is not None:
        line += f" class {result.class_index},"
    else:
        line += ","
    pose = result.pose
    line += f" yaw {pose.yaw:.3f} pitch {pose.pitch:.3f} ({'given' if result.pose_given else 'estimated'})"
    if m.get("interrupted"):
        line += ", stopped early"
    return line


def run(args) -> int:
    # These load torch and the core (see cli/main.py).
    from trigan.core.devices import parse_device  # noqa: PLC0415
    from trigan.core.model_io import open_model  # noqa: PLC0415
    from trigan.core.output_paths import prepare_output_dir, refuse_existing  # noqa: PLC0415
    from trigan.training.inversion_outputs import check_output_name, planned_outputs, save_inversion  # noqa: PLC0415
    from trigan.training.perceptual import make_image_loss  # noqa: PLC0415

    check_options(args)
    settings = settings_from_args(args)
    device = parse_device(args.device)
    model = open_model(args.model, device=device, latest=args.latest)
    G = model.G.eval()
    class_index = check_class(G, args.class_index)
    resolution = int(G.cfg.img_resolution)     # the fit's size; patches bound its memory (docs/inversion.md)
    targets = load_targets(args, G, resolution)
    for target in targets:      # its stem names the outputs
        check_output_name(target.name, f"{target.path}: the file name")
    poses = image_poses(args, G, class_index)
    image_loss = make_image_loss(args.vgg, device)
    log = lambda msg: print(f"trigan invert: {msg}", file=sys.stderr, flush=True)
    # The folder last: a missing one is created only when everything else is right.
    out_dir = prepare_output_dir(args.out, "--out", log=log)
    planned = [planned_outputs(out_dir, t.name, tuned=settings.pti_steps > 0, video=args.video, mesh=args.mesh)
               for t in targets]
    refuse_existing([p for paths in planned for p in paths.values()], args.force)

    log(f"{len(targets)} image(s) into {G.cfg.name} {model.path} on {device} at {resolution}px, "
        f"{settings.steps} latent + {settings.pti_steps} tuning steps, "
        f"{'perceptual (VGG16)' if args.vgg else 'pixel + SSIM'} loss")
    stop = StopFlag(on_first=lambda: tqdm.write("trigan invert: stopping: keeping the best so far "
                                                "(Ctrl-C again to abort)", file=sys.stderr))
    done: List[str] = []
    with stop:
        for target, pose in zip(targets, poses, strict=True):
            result = invert_one(G, target, settings, pose, class_index, image_loss, stop, args.quiet)
            written = save_inversion(result, G, out_dir, model_path=model.path, video=args.video, mesh=args.mesh,
                                     force=args.force, target=target, config=model.config, log=log,
                                     mesh_resolution=args.mesh_resolution)
            for path in written.values():
                log(f"wrote {path}")
            print(result_line(result), flush=True)
            done.append(target.name)
            if stop.stopped:
                break
    if stop.stopped:
        skipped = len(targets) - len(done)
        log("stopped by Ctrl-C" + (f"; {skipped} image(s) not inverted" if skipped else ""))
        return INTERRUPTED
    return 0


def invert_one(G, target, settings, pose, class_index, image_loss, stop: StopFlag, quiet: bool):
    """One image's fit under a progress bar that shows the stage, the loss and the PSNR so far."""
    from trigan.training.inversion import invert  # noqa: PLC0415 (loads torch: see cli/main.py)

    with tqdm(total=BAR_TICKS, desc=target.name, unit="‰", file=sys.stderr, disable=quiet, leave=False,
              dynamic_ncols=True, bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}{postfix}") as bar:

        def progress(p) -> None:
            bar.update(max(0, min(BAR_TICKS, round(p.fraction * BAR_TICKS)) - bar.n))
            bar.set_postfix_str(f"{p.stage} {p.step}/{p.total} loss {p.loss:.4f} PSNR {p.psnr:.1f} dB", refresh=False)

        return invert(G, target, settings, pose=pose, class_index=class_index, image_loss=image_loss,
                      progress=progress, should_stop=stop)
