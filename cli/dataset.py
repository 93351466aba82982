"""`trigan dataset synth | check | resize | pack | select | poses | features`: make, inspect and prepare training datasets."""

from __future__ import annotations

import argparse
import math
import sys

from trigan.cli.flags import float_flag, int_flag
from trigan.core.errors import TriganError
from trigan.core.limits import MAX_IMAGE_SIDE, SYNTH_MAX_IMAGES, SYNTH_MAX_RESOLUTION, SYNTH_MAX_SEED

HELP = "make, check, resize and pack training datasets (zip or folder of images + dataset.json)"
EXAMPLES = """\
examples:
  trigan dataset synth data/shapes64.zip --num 3000 --resolution 64 --classes 4
  trigan dataset check data/shapes64.zip
  trigan dataset resize ~/photos data/photos256.zip --resolution 256
  trigan dataset pack data/my_folder data/my_folder.zip
  trigan dataset poses ~/eg3d/ffhq/dataset.json --format eg3d --out data/ffhq256.zip --center
  trigan dataset select data/imagenet256.zip data/imagenet256_sel.zip --keep-ratio 0.333 --per-class
  trigan dataset features data/imagenet256.zip --out data/imagenet256_resnet50.memmap --weights resnet50.pth

A dataset is a zip or a folder of square images, optional <stem>_depth.png depth maps, and an
optional dataset.json with camera_angles and labels; see docs/datasets.md.
"""

SYNTH_HELP = "render the procedural dataset: simple objects of a few classes, one random view each"
SYNTH_EXAMPLES = """\
examples:
  trigan dataset synth shapes.zip                                  # 2000 images, 64x64, 4 classes
  trigan dataset synth shapes128.zip --num 5000 --resolution 128 --classes 7 --seed 3
  trigan dataset synth wide.zip --pitch-range 0.6 2.0 --fov 40

Each image is one object (random proportions and colours) seen from yaw uniform in [-pi, pi) and
pitch uniform in the range (radians from +Y, pi/2 = horizon), on a white background, with a 16-bit
depth map (ray distance, linear over [near, far]). The same arguments give a byte-identical zip.
"""

CHECK_HELP = "read every image and depth map of a dataset and list every problem"
CHECK_EXAMPLES = """\
examples:
  trigan dataset check data/ffhq256.zip
  trigan dataset check data/my_folder --require-camera-angles
  trigan dataset check data/ffhq256.zip --picture ffhq256_check.png

Prints each problem as `PATH: message` (errors, and notes such as grayscale images converted to
RGB), then, when dataset.json has camera_angles, the pose distribution (`poses:` lines: yaw centre
(circular mean) and pitch mean, spread, outliers, yaw coverage with and without mirroring, and a
warning when yaw is not zero-centred), then a summary line. --picture writes a PNG: a contact sheet
of 32 sample images (seed 0) and a yaw/pitch scatter with histograms. Exit status: 0 when there are
no errors, 1 when there are errors, 2 when the path cannot be opened at all.
"""

RESIZE_HELP = "centre-crop every image (and depth map) to a square and resize it"
RESIZE_EXAMPLES = """\
examples:
  trigan dataset resize raw_photos/ data/photos256.zip --resolution 256
  trigan dataset resize data/big.zip data/small/ --resolution 64 --png

Images: converted to RGB (alpha composited on white, CMYK and grayscale converted), centre crop of
the short side, Lanczos resize; PNG and JPEG keep their format (JPEG quality 95), others become
PNG. Depth maps: same crop, bilinear resize in 32-bit float, written as 16-bit PNG (8-bit inputs
come out x256, the same values the loader reads). dataset.json is copied unchanged.
SRC and DST may each be a folder or a .zip.
"""

PACK_HELP = "zip a dataset folder (images, depth maps, dataset.json), sorted and reproducible"
PACK_EXAMPLES = """\
examples:
  trigan dataset pack data/my_folder data/my_folder.zip
  trigan dataset pack data/my_folder data/my_folder.zip --no-check --force

Before packing, the folder is opened as a dataset (dataset.json, labels, camera angles, names,
depth maps are checked, images are not decoded); --no-check skips that.
"""


POSES_HELP = "write dataset.json camera_angles from EG3D labels, GRAM pose files or plain angles"
POSES_EXAMPLES = """\
examples:
  trigan dataset poses ~/eg3d/ffhq/dataset.json --format eg3d --out data/ffhq256.zip --center
  trigan dataset poses ~/GRAM/datasets/ffhq/poses --format gram --out data/ffhq256/
  trigan dataset poses angles.csv --format angles --degrees --yaw-zero +z --out data/cars/

SRC: eg3d: EG3D's dataset.json ({"labels": [[name, [16 cam2world + 9 intrinsics]], ...]});
gram: GRAM's folder of pose files (<name>.mat for FFHQ, <name>_pose.npy for Cats); angles: a CSV
(name, yaw, pitch[, roll]) or a JSON ({name: [yaw, pitch, roll]}), yaw the azimuth from +X toward
+Z, pitch the polar angle from +Y (--elevation: from the horizon), radians unless --degrees.
--yaw-zero names the source axis that becomes trigan's yaw 0 (eg3d and gram: +z, their front;
angles: +x, kept as given). --center subtracts the circular mean yaw. DATA: a dataset folder or
zip (its images are matched by name; a zip is rewritten with the new dataset.json), or a
dataset.json path. Formulas: docs/datasets.md.
"""

FEATURES_HELP = "compute ResNet-50 features of every image, for 3DGP's knowledge distillation"
FEATURES_EXAMPLES = """\
examples:
  trigan dataset features data/imagenet256.zip --out data/imagenet256_resnet50.memmap \\
      --weights ~/models/resnet50_a1_in1k.safetensors
  trigan dataset features data/dogs256/ --out dogs.memmap --weights resnet50.pth --device cuda --batch-size 128

Runs timm's resnet50 without its classifier (2048-d pooled features, timm's own evaluation
transform) on every image (mirrored copies use their source image's row). Needs `pip install timm`
and a local weights file (.safetensors, .pth or .bin state dict); nothing is downloaded. Writes
OUT (raw float32 rows) and OUT_desc.json (shape, and the row of each image path), 3DGP's format.
Train with: training.distill.weight=1.0 training.distill.features=OUT discriminator.feat_predict_dim=2048
"""


SELECT_HELP = "keep the most typical images of a dataset (instance selection, as 3DGP filters ImageNet)"
SELECT_EXAMPLES = """\
examples:
  trigan dataset select data/shapes64.zip data/shapes64_sel.zip --keep-ratio 0.5
  trigan dataset select data/imagenet256.zip data/imagenet256_sel.zip --keep-ratio 0.333 --per-class \\
      --embedder inception-2015-12-05.pt --device cuda
  trigan dataset select raw_folders/ data/sel/ --num 300 --per-folder --force

Embeds every image, fits a Gaussian (full covariance, --reg-covar added to its diagonal) to the
embeddings of the whole dataset, of each class (--per-class, dataset.json labels) or of each folder
(--per-folder), and keeps the most likely ones: int(count x ratio), or --num per group; at least one
per group. Embedders: tiny (default; an 8x8 RGB thumbnail, needs no download; tiny:N for NxN) or a
TorchScript feature network file, e.g. the Inception detector of `trigan metrics` (upstream's choice).
Writes DST (a folder or a .zip) with the kept images, their depth maps and dataset.json holding
only their entries. See docs/datasets.md.
"""


# ----------------------------------------------------------------------------------------------
# Numeric flags: the bounded types of cli/flags.py, so a bad value (1e9 where a count is asked, nan,
# inf, a size that would allocate without bound) stops while parsing with one line naming the flag
# and the range, before anything runs. The tools check their own ranges again for Python callers,
# with the same numbers (core/limits.py). This module must not import the tools (they load torch),
# so the synth class count is repeated, and tests/test_hostile_datasets.py checks it.

SYNTH_CLASSES = 7                  # len(training.synth.CLASS_NAMES)
RESIZE_MAX_RESOLUTION = MAX_IMAGE_SIDE   # the largest images trigan trains on
MAX_DISTANCE = 1000.0              # synth camera radius, near and far: the objects lie within 0.24 of the origin
MAX_BATCH = 4096                   # images per forward pass: more is never faster, and can exhaust memory
MAX_WORKERS = 64                   # image-decoding processes
MAX_KEEP = 2 ** 31 - 1             # select --num (more than the dataset keeps everything)
MAX_REG_COVAR = 1e6                # embeddings are O(1) numbers; far more regularisation is meaningless
MAX_TINY_SIZE = 32                 # tiny:N embeds 3*N^2 numbers; its covariance is (3 N^2)^2 float64 (75 MB at 32)


def _embedder(text: str) -> str:
    """--embedder: tiny:N is bounded (its size is squared twice); a file is checked when loaded."""
    if text.startswith("tiny:"):
        size = text[len("tiny:"):]
        if not (size.isdigit() and len(size) <= 3 and 1 <= int(size) <= MAX_TINY_SIZE):
            raise TriganError(f"--embedder {text}: expected tiny:N with N in 1..{MAX_TINY_SIZE}")
    return text


def _formatter(prog):
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def _sub(actions, name, help_text, examples):
    return actions.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".",
                              epilog=examples, formatter_class=_formatter)


def add_parser(sub) -> None:
    p = sub.add_parser("dataset", help=HELP, description=HELP[0].upper() + HELP[1:] + ".", epilog=EXAMPLES,
                       formatter_class=_formatter)
    p.set_defaults(run=lambda args: _no_action(p))
    actions = p.add_subparsers(dest="action", metavar="ACTION")

    s = _sub(actions, "synth", SYNTH_HELP, SYNTH_EXAMPLES)
    s.add_argument("out", metavar="OUT.zip", help="the zip to write")
    s.add_argument("--num", type=int_flag("--num", 1, SYNTH_MAX_IMAGES, "images"), default=2000, help="number of images, at most 1000000 (default 2000)")
    s.add_argument("--resolution", type=int_flag("--resolution", 8, SYNTH_MAX_RESOLUTION, "pixels"), default=64, help="image size in pixels, 8 to 1024 (default 64)")
    s.add_argument("--classes", type=int_flag("--classes", 1, SYNTH_CLASSES), default=4, help="number of object classes, 1 to 7 (default 4)")
    s.add_argument("--seed", type=int_flag("--seed", 0, SYNTH_MAX_SEED), default=0, help="random seed (default 0)")
    s.add_argument("--fov", type=float_flag("--fov", 0, 180, lo_open=True, unit="degrees"), default=30.0, help="full field of view in degrees (default 30)")
    s.add_argument("--radius", type=float_flag("--radius", 0, MAX_DISTANCE, lo_open=True), default=1.0, help="camera distance from the origin (default 1)")
    s.add_argument("--pitch-range", type=float_flag("--pitch-range", 0, math.pi, unit="radians"), nargs=2, metavar=("MIN", "MAX"),
                   default=[math.pi / 2 - 0.5, math.pi / 2 + 0.15],
                   help="pitch range in radians from +Y (default pi/2-0.5 pi/2+0.15: mostly from slightly above)")
    s.add_argument("--near", type=float_flag("--near", 0, MAX_DISTANCE), default=0.6, help="distance stored as depth 0 (default 0.6)")
    s.add_argument("--far", type=float_flag("--far", 0, MAX_DISTANCE), default=1.4, help="distance stored as depth 65535 (default 1.4)")
    s.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    s.set_defaults(run=run_synth)

    c = _sub(actions, "check", CHECK_HELP, CHECK_EXAMPLES)
    c.add_argument("data", metavar="DATA", help="a dataset zip or folder")
    c.add_argument("--require-camera-angles", action="store_true",
                   help="make a dataset.json without camera_angles an error (models with dist=custom need them)")
    c.add_argument("--picture", metavar="PATH.png",
                   help="write a PNG: contact sheet of sample images and the yaw/pitch scatter and histograms")
    c.add_argument("--force", action="store_true", help="overwrite the --picture file if it exists")
    c.set_defaults(run=run_check)

    r = _sub(actions, "resize", RESIZE_HELP, RESIZE_EXAMPLES)
    r.add_argument("src", metavar="SRC", help="a dataset zip or folder")
    r.add_argument("dst", metavar="DST", help="the output: a .zip, or a folder")
    r.add_argument("--resolution", type=int_flag("--resolution", 1, RESIZE_MAX_RESOLUTION, "pixels"), required=True, help="output size in pixels, at most 4096")
    r.add_argument("--png", action="store_true", help="write every image as PNG")
    r.add_argument("--force", action="store_true", help="overwrite DST if it exists")
    r.set_defaults(run=run_resize)

    k = _sub(actions, "pack", PACK_HELP, PACK_EXAMPLES)
    k.add_argument("folder", metavar="FOLDER", help="a dataset folder")
    k.add_argument("out", metavar="OUT.zip", help="the zip to write")
    k.add_argument("--no-check", action="store_true", help="pack without opening the folder as a dataset first")
    k.add_argument("--force", action="store_true", help="overwrite OUT.zip if it exists")
    k.set_defaults(run=run_pack)

    sel = _sub(actions, "select", SELECT_HELP, SELECT_EXAMPLES)
    sel.add_argument("src", metavar="SRC", help="a dataset zip or folder")
    sel.add_argument("dst", metavar="DST", help="the output: a .zip, or a folder")
    amount = sel.add_mutually_exclusive_group(required=True)
    amount.add_argument("--keep-ratio", type=float_flag("--keep-ratio", 0, 1, lo_open=True), metavar="R", help="keep int(count x R) images (3DGP: 1/3 per class)")
    amount.add_argument("--num", type=int_flag("--num", 1, MAX_KEEP), metavar="N", help="keep N images (per group with --per-class/--per-folder)")
    group = sel.add_mutually_exclusive_group()
    group.add_argument("--per-class", action="store_true", help="select within each class (dataset.json labels)")
    group.add_argument("--per-folder", action="store_true", help="select within each folder of images")
    sel.add_argument("--embedder", type=_embedder, default="tiny", metavar="tiny|tiny:N|FILE.pt",
                     help="tiny (default: 8x8 RGB thumbnail) or a TorchScript feature network file")
    sel.add_argument("--reg-covar", type=float_flag("--reg-covar", 0, MAX_REG_COVAR), default=1e-5, metavar="X",
                     help="added to the covariance's diagonal (default 1e-5, upstream's ImageNet value)")
    sel.add_argument("--batch", type=int_flag("--batch", 1, MAX_BATCH), default=64, metavar="N", help="images embedded at once (default 64)")
    sel.add_argument("--device", default="auto", help="for a feature network: auto, cpu, cuda, cuda:1 ... (default auto)")
    sel.add_argument("--force", action="store_true", help="overwrite DST if it exists")
    sel.set_defaults(run=run_select)

    ps = _sub(actions, "poses", POSES_HELP, POSES_EXAMPLES)
    ps.add_argument("src", metavar="SRC", help="EG3D's dataset.json, GRAM's folder of pose files, or a CSV/JSON of angles")
    ps.add_argument("--format", required=True, choices=("eg3d", "gram", "angles"), help="the kind of SRC")
    ps.add_argument("--out", metavar="DATA", required=True, help="the dataset (folder or zip) or dataset.json to write camera_angles into")
    ps.add_argument("--yaw-zero", choices=("+x", "+z"), help="source axis that becomes yaw 0 (default +z for eg3d and gram, +x for angles)")
    ps.add_argument("--degrees", action="store_true", help="angles: the numbers are degrees (default radians)")
    ps.add_argument("--elevation", action="store_true", help="angles: pitch is the elevation above the horizon, not the polar angle from +Y")
    ps.add_argument("--center", action="store_true", help="subtract the circular mean yaw so the data is zero-centred")
    ps.add_argument("--force", action="store_true", help="replace camera_angles that DATA already has")
    ps.set_defaults(run=run_poses)

    f = _sub(actions, "features", FEATURES_HELP, FEATURES_EXAMPLES)
    f.add_argument("data", metavar="DATA", help="a dataset zip or folder")
    f.add_argument("--out", metavar="FILE", required=True, help="the features file to write (e.g. NAME.memmap)")
    f.add_argument("--weights", metavar="PATH", help="local ResNet-50 weights file (required; never downloaded)")
    f.add_argument("--batch-size", type=int_flag("--batch-size", 1, MAX_BATCH), default=32, help="images per forward pass (default 32)")
    f.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1 ... (default auto)")
    f.add_argument("--workers", type=int_flag("--workers", 0, MAX_WORKERS), default=2, help="image-decoding processes (default 2)")
    f.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    f.set_defaults(run=run_features)


def _no_action(parser) -> int:
    parser.print_help()
    return 0


def run_synth(args) -> int:
    from trigan.training.synth import SynthSettings, write_synth_dataset  # noqa: PLC0415 (loads torch: see cli/main.py)
    settings = SynthSettings(num=args.num, resolution=args.resolution, classes=args.classes, seed=args.seed,
                             fov=args.fov, radius=args.radius, pitch_range=tuple(args.pitch_range),
                             near=args.near, far=args.far)
    info = write_synth_dataset(args.out, settings, force=args.force, progress=True)
    print(f"wrote {info['path']}: {info['images']} images {info['resolution']}x{info['resolution']} with depth, "
          f"{len(info['classes'])} classes ({', '.join(info['classes'])}), seed {args.seed}, "
          f"{info['bytes'] / 2 ** 20:.1f} MiB in {info['seconds']:.1f} s")
    return 0


def run_check(args) -> int:
    # These load torch (see cli/main.py).
    from trigan.training.dataset_report import (  # noqa: PLC0415
        center_command,
        check_picture_path,
        format_pose_report,
        pose_stats,
        read_poses,
        write_picture,
    )
    from trigan.training.dataset_tools import check_dataset, format_summary  # noqa: PLC0415
    if args.picture:     # a bad --picture stops before the (long) check, not after it
        check_picture_path(args.picture, force=args.force)
    problems, summary = check_dataset(args.data, require_camera_angles=args.require_camera_angles, progress=True)
    for p in problems:
        print(f"{p.path}: {'error' if p.severity == 'error' else 'note'}: {p.message}")
    poses = read_poses(args.data)
    pose_lines = []
    if poses.angles is not None:
        pose_lines = format_pose_report(pose_stats(poses.angles, poses.names), center_command(args.data, poses.json_path))
    for line in pose_lines:
        print(line)
    if args.picture:
        out = write_picture(args.data, args.picture, poses=poses, stats_lines=pose_lines, force=args.force)
        print(f"wrote {out}")
    print(format_summary(summary))
    sys.stdout.flush()
    return 1 if summary.errors else 0


def run_resize(args) -> int:
    from trigan.training.dataset_tools import resize_dataset  # noqa: PLC0415 (loads torch: see cli/main.py)
    info = resize_dataset(args.src, args.dst, args.resolution, force=args.force, png=args.png, progress=True)
    skipped = f", {info['skipped']} other files not copied" if info["skipped"] else ""
    print(f"wrote {info['path']}: {info['images']} images and {info['depth']} depth maps at "
          f"{info['resolution']}x{info['resolution']}{skipped}")
    return 0


def run_pack(args) -> int:
    from trigan.training.dataset_tools import pack_dataset  # noqa: PLC0415 (loads torch: see cli/main.py)
    info = pack_dataset(args.folder, args.out, check=not args.no_check, force=args.force, progress=True)
    skipped = f", {info['skipped']} other files left out" if info["skipped"] else ""
    print(f"wrote {info['path']}: {info['images']} images, {info['depth']} depth maps"
          f"{', dataset.json' if info['json'] else ''}{skipped} ({info['bytes'] / 2 ** 20:.1f} MiB)")
    return 0


def run_poses(args) -> int:
    from trigan.training.pose_import import (  # noqa: PLC0415 (loads torch: see cli/main.py)
        center_yaws,
        describe,
        format_angle,
        import_poses,
        read_poses,
        yaw_concentration,
    )
    table = read_poses(args.src, args.format, yaw_zero=args.yaw_zero, degrees=args.degrees, elevation=args.elevation)
    for line in describe(table):
        print(line)
    if args.center:
        if yaw_concentration(table.angles) < 0.1:   # e.g. 360-degree data: no front to centre on
            print("warning: the yaws cover the circle almost evenly; their mean (used by --center) means little")
        print(f"centred: subtracted the mean yaw {format_angle(center_yaws(table))} (circular mean; pitch unchanged)")
    result = import_poses(table, args.out, force=args.force)
    if result.extra:
        shown_names = ", ".join(result.extra[:5]) + (", ..." if len(result.extra) > 5 else "")
        print(f"note: {len(result.extra)} poses have no image in {args.out} (not written): {shown_names}")
    print(f"wrote {result.path}: camera_angles for {result.written} images")
    return 0


def run_features(args) -> int:
    # These load torch and the core (see cli/main.py).
    from trigan.core.devices import parse_device  # noqa: PLC0415
    from trigan.training.feature_extraction import (  # noqa: PLC0415
        FeatureExtractionError,
        extract_dataset_features,
        load_timm_resnet50,
    )
    if not args.weights:
        raise FeatureExtractionError("--weights PATH is required: a local ResNet-50 weights file (trigan downloads "
                                     "nothing), e.g. timm's resnet50 model.safetensors")
    device = parse_device(args.device)
    model, transform = load_timm_resnet50(args.weights, device)
    info = extract_dataset_features(args.data, args.out, model, transform, batch_size=args.batch_size, device=device,
                                    num_workers=args.workers, force=args.force, progress=True)
    print(f"wrote {info['path']} and {info['index']}: {info['images']} images x {info['dim']} features "
          f"in {info['seconds']:.1f} s")
    return 0


def run_select(args) -> int:
    # These load torch and the core (see cli/main.py).
    from trigan.core.devices import parse_device  # noqa: PLC0415
    from trigan.training.instance_selection import select_dataset  # noqa: PLC0415
    device = None
    if not (args.embedder == "tiny" or args.embedder.startswith("tiny:")):
        device = parse_device(args.device)
    per = "class" if args.per_class else "folder" if args.per_folder else "all"
    info = select_dataset(args.src, args.dst, keep_ratio=args.keep_ratio, num=args.num, per=per,
                          embedder=args.embedder, reg_covar=args.reg_covar, batch_size=args.batch, device=device,
                          force=args.force, progress=True)
    groups = f" in {len(info['groups'])} {per} groups" if info["groups"] else ""
    depth = f" and {info['depth']} depth maps" if info["depth"] else ""
    print(f"wrote {info['path']}: kept {info['kept']} of {info['of']} images{depth}{groups} "
          f"(embedder {info['embedder']})")
    return 0
