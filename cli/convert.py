"""`trigan convert`: an official EpiGRAF or 3DGP snapshot pickle, or a training checkpoint -> a trigan checkpoint."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from trigan.core.errors import TriganError
from trigan.core.output_paths import prepare_output_file

HELP = "convert an official EpiGRAF or 3DGP .pkl (or a training checkpoint) into a trigan checkpoint"
EXAMPLES = """\
examples:
  trigan convert network-snapshot-025000.pkl ffhq512.ckpt           # G_ema only, for viewing/export
  trigan convert network-snapshot-025000.pkl ffhq512-full.ckpt --all # also G, D and optimizer states
  trigan convert 3dgp-snapshot-002000.pkl imagenet.ckpt --all        # 3DGP: also its depth adaptor
  trigan train --config imagenet.ckpt --init imagenet.ckpt --data imagenet256.zip   # ... goes on in trigan
  trigan convert runs/00003-demo/best.ckpt demo.ckpt                 # a run's snapshot, G_ema only
  trigan convert runs/00003-demo demo.ckpt                           # a run folder: its best (else latest)
  trigan convert runs/00003-demo demo.ckpt --set model.camera.support_radius=0.3   # clear space no camera saw

--set KEY=VALUE changes the stored config of a trigan checkpoint (repeatable): settings of rendering
such as model.camera.support_radius or model.render.num_steps. A change the weights do not fit
(model.triplane.resolution=128, ...) is refused.

What is written is checked first: the weights must fit the config (names, shapes), be floating point
and finite, and the config must lie within trigan's bounds; anything else is refused and nothing is
written. A missing folder of DST is created (and said so on stderr).

The .pkl is read as data: no code stored in it runs, and CUDA tensors load on the CPU.
Commands that take a checkpoint also accept the .pkl directly; converting makes a smaller,
faster-loading file. --all on a 3DGP snapshot also writes the run's recipe (learning rates, gamma,
EMA, patches, the depth adaptor, distillation and camera regularisers) into the checkpoint's config,
for `trigan train --config CKPT --init CKPT`. 3DGP's angles become trigan's (its yaw 0 on +Z is
trigan's pi/2): see docs/3dgp.md.
"""


def add_parser(sub) -> None:
    p = sub.add_parser("convert", help=HELP, description=HELP[0].upper() + HELP[1:] + ".", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", help="an EpiGRAF or 3DGP network-snapshot-*.pkl, a trigan .ckpt or a run folder")
    p.add_argument("dst", help="the trigan checkpoint to write (.ckpt)")
    p.add_argument("--all", action="store_true", help="keep G, D and the optimizer states too (to fine-tune or resume)")
    p.add_argument("--force", action="store_true", help="overwrite DST if it exists")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="change a setting of the stored config (trigan checkpoints), e.g. "
                        "model.camera.support_radius=0.3; repeatable")
    p.set_defaults(run=run)


def run(args) -> int:
    # These load torch and the core (see cli/main.py).
    from trigan.core.checkpoint import export_generator  # noqa: PLC0415
    from trigan.core.checkpoint_meta import resolve_model_path  # noqa: PLC0415
    from trigan.training.config import config_from_saved  # noqa: PLC0415
    from trigan.training.official_import import convert_snapshot  # noqa: PLC0415

    src, dst = Path(args.src), Path(args.dst)
    if dst.exists() and not args.force:
        raise TriganError(f"{dst}: already exists (use --force to overwrite)")
    if dst.resolve() == src.resolve():
        raise TriganError(f"{dst}: the output would overwrite the input")
    log = lambda msg: print(msg, file=sys.stderr, flush=True)
    if not src.exists():
        raise TriganError(f"{src}: no such file or folder")
    # DST's folder takes files (created if missing, and said so) before a big snapshot is read.
    prepare_output_file(dst, "DST", log=lambda msg: log(f"trigan convert: {msg}"))
    if src.is_dir() or src.suffix != ".pkl":
        # Ours already: a training checkpoint (or a run folder) is slimmed to G_ema for viewing.
        if args.all:
            raise TriganError(f"{src}: --all is for EpiGRAF .pkl snapshots; a trigan checkpoint is used as it is")
        src = resolve_model_path(src)
        if dst.resolve() == src.resolve():
            raise TriganError(f"{dst}: the output would overwrite the input")
        out = export_generator(src, dst, overrides=args.overrides, parse_config=config_from_saved)
        changed = f", with {' '.join(args.overrides)}" if args.overrides else ""
        print(f"wrote {out} ({out.stat().st_size / 2 ** 20:.1f} MiB, G_ema only{changed})")
        return 0
    if args.overrides:
        raise TriganError(f"{src}: --set changes trigan checkpoints; convert the .pkl first, then convert "
                          "the result with --set")
    out = convert_snapshot(src, dst, keep_all=args.all, log=log)
    size = out.stat().st_size / 2 ** 20
    print(f"wrote {out} ({size:.1f} MiB{', with G, D and optimizer states' if args.all else ''})")
    return 0
