"""`trigan info`: what a checkpoint (or preset) holds."""

from __future__ import annotations

import argparse
import json

from trigan.core.errors import TriganError
from trigan.training.config import list_presets, load_config

HELP = "describe a checkpoint or preset: architecture, parameters, camera, training progress"
EXAMPLES = """\
examples:
  trigan info assets/demo.ckpt
  trigan info runs/demo-0001/checkpoints/best.ckpt --json
  trigan info --preset epigraf_ffhq512
  trigan info --preset demo model.c_dim=10      # a preset with key=value overrides
"""


def add_parser(sub) -> None:
    p = sub.add_parser("info", help=HELP, description=HELP[0].upper() + HELP[1:] + ".", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", nargs="?", help="a trigan checkpoint (.ckpt) or an official EpiGRAF or 3DGP .pkl")
    p.add_argument("--preset", help=f"describe a preset instead (randomly initialised): {', '.join(list_presets())}")
    p.add_argument("overrides", nargs="*", default=[], metavar="key=value",
                   help="config overrides, with --preset")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(run=run)


def run(args) -> int:
    # These load torch and the core (see cli/main.py).
    from trigan.core.generator import Generator  # noqa: PLC0415
    from trigan.core.model_io import open_model  # noqa: PLC0415
    from trigan.core.summary import format_summary, model_summary  # noqa: PLC0415

    if args.preset and args.checkpoint and "=" in args.checkpoint:
        args.overrides = [args.checkpoint] + list(args.overrides)  # argparse put the first override there
        args.checkpoint = None
    if bool(args.preset) == bool(args.checkpoint):
        raise TriganError("give either a checkpoint path or --preset NAME (see trigan info --help)")
    if args.preset:
        config = load_config(args.preset, args.overrides)
        G = Generator(config.model)
        summary = model_summary(config, G)
        source = f"preset {args.preset} (randomly initialised)"
    else:
        if args.overrides:
            raise TriganError("key=value overrides only apply with --preset")
        model = open_model(args.checkpoint)
        summary = model_summary(model.config, model.G, model.progress, model.metrics, model.extra_keys)
        source = f"{args.checkpoint} ({model.format})"
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(format_summary(summary, source))
    return 0
