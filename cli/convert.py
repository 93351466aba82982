"""`trigan convert`: an official EpiGRAF snapshot pickle -> a trigan checkpoint."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from trigan.core.errors import TriganError

HELP = "convert an official EpiGRAF network-snapshot .pkl into a trigan checkpoint"
EXAMPLES = """\
examples:
  trigan convert network-snapshot-025000.pkl ffhq512.ckpt           # G_ema only, for viewing/export
  trigan convert network-snapshot-025000.pkl ffhq512-full.ckpt --all # also G, D and optimizer states

The .pkl is read as data: no code stored in it runs, and CUDA tensors load on the CPU.
Commands that take a checkpoint also accept the .pkl directly; converting makes a smaller,
faster-loading file.
"""


def add_parser(sub) -> None:
    p = sub.add_parser("convert", help=HELP, description=HELP[0].upper() + HELP[1:] + ".", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", help="an EpiGRAF network-snapshot-*.pkl")
    p.add_argument("dst", help="the trigan checkpoint to write (.ckpt)")
    p.add_argument("--all", action="store_true", help="keep G, D and the optimizer states too (to fine-tune or resume)")
    p.add_argument("--force", action="store_true", help="overwrite DST if it exists")
    p.set_defaults(run=run)


def run(args) -> int:
    from trigan.core.epigraf_import import convert_epigraf
    src, dst = Path(args.src), Path(args.dst)
    if dst.exists() and not args.force:
        raise TriganError(f"{dst}: already exists (use --force to overwrite)")
    if dst.resolve() == src.resolve():
        raise TriganError(f"{dst}: the output would overwrite the input")
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    out = convert_epigraf(src, dst, keep_all=args.all, log=log)
    size = out.stat().st_size / 2 ** 20
    print(f"wrote {out} ({size:.1f} MiB{', with G, D and optimizer states' if args.all else ''})")
    return 0
