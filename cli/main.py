"""`trigan`: one command with a subcommand per thing the studio does.

Each subcommand lives in its own module with `add_parser(subparsers)` and `run(args)`. User
mistakes surface as TriganError and are printed as one line (`trigan: error: ...`), exit status 2;
programming errors keep their traceback.

Imports: the subcommand modules import the rest of trigan (which loads torch, 1-2 s) inside the
functions that need it, not at module level, so that importing the command line costs little; each
such import is marked `# noqa: PLC0415` (ruff's import-outside-top-level) and says so. Everywhere
else in the tree imports sit at the top of the module. Building the parser (every `add_parser`, so
`trigan --help` and `trigan COMMAND --help`) imports neither torch nor numpy: tests/test_startup.py
checks it, benchmarks/startup.py times it.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import List, Optional

from trigan.cli import convert, dataset, info, invert, mesh, metrics, render, train, view
from trigan.core.errors import TriganError

SUBCOMMANDS = [view, info, render, mesh, invert, metrics, convert, dataset, train]

EPILOG = """\
examples:
  trigan view                          open the desktop viewer on the bundled demo model
  trigan info --preset demo            describe the demo preset (random weights)
  trigan info assets/demo.ckpt         describe a checkpoint: architecture, camera, progress
  trigan info run/network-snapshot-001000.pkl --json
  trigan convert network-snapshot-001000.pkl model.ckpt --all
  trigan dataset synth data/shapes64.zip --num 3000   a procedural dataset to train on
  trigan train --config demo --data shapes.zip --out runs --kimg 200
  trigan render runs/00000-demo-shapes --out out --vis video --trajectory orbit --seeds 0-3
  trigan mesh model.ckpt --out meshes --seeds 0-3 --resolution 256 --format glb
  trigan invert assets/demo.ckpt photo.png --out inverted   a photo into the model: latent, camera, tuned model
  trigan metrics model.ckpt --data shapes.zip --metrics fid2k,nfs --inception inception-2015-12-05.pt

Run `trigan COMMAND --help` for the options and examples of each command.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trigan", description="trigan: studio and toolkit for 3D-aware tri-plane GANs (EpiGRAF, 3DGP).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    try:
        ver = version("trigan")
    except PackageNotFoundError:
        ver = "unknown"
    parser.add_argument("--version", action="version", version=f"trigan {ver}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.add_parser(sub)
    return parser


# Errors of writing output that are the place's fault, not trigan's: a read-only or full disk, a
# folder without permission. Any command that writes reports them in one line (the path and the
# reason) instead of a traceback; commands also check their output folders up front
# (core.output_paths), so this is the last guard for what only shows while writing.
OUTPUT_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR,
                 errno.EISDIR, errno.EEXIST, errno.ENAMETOOLONG, errno.EFBIG}


def output_error_line(exc: OSError) -> Optional[str]:
    """One line for an OSError that names a file and is one of OUTPUT_ERRNOS; None otherwise (a bug)."""
    if exc.errno not in OUTPUT_ERRNOS or not exc.filename:
        return None
    reason = exc.strerror or os.strerror(exc.errno)
    return f"{exc.filename}: {reason}"


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    try:
        # Inside the try: the bounded flag types (cli/flags.py) raise TriganError while parsing.
        args = parser.parse_args(argv)
        if not getattr(args, "command", None):
            parser.print_help()
            return 0
        return int(args.run(args) or 0)
    except TriganError as exc:
        print(f"trigan: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`trigan info X | head`): what it wanted it got. Point stdout at
        # nothing so the interpreter's final flush does not fail again with a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        line = output_error_line(exc)
        if line is None:
            raise
        print(f"trigan: error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("trigan: interrupted", file=sys.stderr)
        return 130


def console_entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    console_entry()
