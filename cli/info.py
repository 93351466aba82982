"""`trigan info`: what a checkpoint (or preset) holds."""

from __future__ import annotations

import argparse
import json
from typing import Optional, Tuple

from trigan.core.errors import TriganError
from trigan.core.summary import format_summary
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
    if args.preset and args.checkpoint and "=" in args.checkpoint:
        args.overrides = [args.checkpoint] + list(args.overrides)  # argparse put the first override there
        args.checkpoint = None
    if bool(args.preset) == bool(args.checkpoint):
        raise TriganError("give either a checkpoint path or --preset NAME (see trigan info --help)")
    if args.preset:
        summary, source = describe_preset(args.preset, args.overrides)
    else:
        if args.overrides:
            raise TriganError("key=value overrides only apply with --preset")
        summary, source = describe_without_torch(args.checkpoint) or describe_loaded(args.checkpoint)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(format_summary(summary, source))
    return 0


def describe_preset(preset: str, overrides) -> Tuple[dict, str]:
    # These load torch and the core (see cli/main.py).
    from trigan.core.generator import Generator  # noqa: PLC0415
    from trigan.core.summary import model_summary  # noqa: PLC0415

    config = load_config(preset, overrides)
    return model_summary(config, Generator(config.model)), f"preset {preset} (randomly initialised)"


def describe_without_torch(path: str) -> Optional[Tuple[dict, str]]:
    """A trigan checkpoint (core.checkpoint_meta) or an official EpiGRAF / 3DGP .pkl
    (core.epigraf_import.read_snapshot_meta) described from its config and its weights' shapes,
    without importing torch or building the generator; None when that reader does not vouch for the
    file (anything unusual), which is then loaded the full way."""
    from trigan.core.checkpoint_meta import (  # noqa: PLC0415 (numpy, no torch: see cli/main.py)
        is_pickle_file,
        num_ws_of,
        parameter_counts_of,
        read_checkpoint_meta,
        resolve_model_path,
    )
    from trigan.core.read_budget import require_regular_file  # noqa: PLC0415
    from trigan.core.summary import summary_of  # noqa: PLC0415

    resolved = resolve_model_path(path)
    require_regular_file(resolved, str(resolved))  # no such file / a folder / a named pipe: one line
    if is_pickle_file(resolved):
        from trigan.core.epigraf_import import read_snapshot_meta  # noqa: PLC0415 (no torch either)

        described = read_snapshot_meta(resolved)
        if described is None:
            return None
        meta, kind = described
    else:
        meta, kind = read_checkpoint_meta(resolved), "trigan checkpoint"
        if meta is None:
            return None
    summary = summary_of(meta.config, parameter_counts_of(meta.weights), num_ws_of(meta.config.model),
                         meta.progress, meta.metrics, meta.extra_keys)
    return summary, f"{path} ({kind})"


def describe_loaded(path: str) -> Tuple[dict, str]:
    # These load torch and the core (see cli/main.py).
    from trigan.core.model_io import open_model  # noqa: PLC0415
    from trigan.core.summary import model_summary  # noqa: PLC0415

    model = open_model(path)
    summary = model_summary(model.config, model.G, model.progress, model.metrics, model.extra_keys)
    return summary, f"{path} ({model.format})"
