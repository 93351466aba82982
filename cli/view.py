"""`trigan view`: the desktop viewer."""

from __future__ import annotations

import argparse
import os
import sys

from trigan.core.errors import TriganError
from trigan.viewer.display import check_display

HELP = "open the desktop viewer on a checkpoint, a run directory, or the bundled demo model"
EXAMPLES = """\
examples:
  trigan view                                  the bundled demo model (assets/demo.ckpt)
  trigan view model.ckpt                       a trigan checkpoint
  trigan view network-snapshot-001000.pkl      an official EpiGRAF snapshot
  trigan view runs/00000-demo-shapes           a run's best snapshot (--latest: its newest)
  xvfb-run -a trigan view                      on a machine without a screen (virtual X server)

In the image: left-drag orbits, right- or middle-drag pans, the wheel zooms, double-click resets;
arrow keys orbit, +/- zoom, R resets. Window layout and last settings are restored on the next start
(see docs/viewer.md for the settings folder). Training runs started from the viewer keep running
when it closes and reappear when it opens again.
"""


def add_parser(sub) -> None:
    p = sub.add_parser("view", help=HELP, description=HELP[0].upper() + HELP[1:] + ".", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?", metavar="CKPT|RUN_DIR",
                   help="a trigan .ckpt, an EpiGRAF .pkl or a training run directory (default: the demo model)")
    p.add_argument("--latest", action="store_true", help="with a run directory: its latest snapshot, not its best")
    p.add_argument("--device", default=None, help="auto (CUDA when available), cpu, cuda, cuda:1 ...")
    p.add_argument("--settings", metavar="PATH",
                   help="settings file to read and write (default: ~/.config/trigan/viewer.json)")
    p.add_argument("--state-file", metavar="PATH",
                   help="for scripts and tests: rewrite PATH with the viewer's state as JSON a few times a second")
    p.add_argument("--control-file", metavar="PATH",
                   help="for scripts and tests: run the JSON commands appended to PATH (docs/viewer.md)")
    p.set_defaults(run=run)


def run(args) -> int:
    # Checked once, before DearPyGui is imported (its window creation aborts the process without a
    # display); the answer goes on to the viewer, which fits its window into the screen it found.
    display = check_display()
    if display.problem:
        print(f"trigan view: {display.problem}", file=sys.stderr)
        return 1
    if args.model is not None:
        if not os.path.exists(os.path.expanduser(args.model)):
            raise TriganError(f"{args.model}: no such file or folder (expected a .ckpt, an EpiGRAF .pkl or a run directory)")
    if args.device is not None:
        from trigan.core.devices import parse_device  # noqa: PLC0415 (loads torch: see cli/main.py)
        parse_device(args.device)              # a bad name: one line now rather than in the window
    from trigan.viewer.app import run_viewer  # noqa: PLC0415 (loads torch: see cli/main.py)
    return run_viewer(display, args.model, latest=args.latest, device=args.device, settings_path=args.settings,
                      state_file=args.state_file, control_file=args.control_file)
