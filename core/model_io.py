"""Open any model trigan accepts: a trigan checkpoint, an official EpiGRAF or 3DGP snapshot pickle, or a
training run directory (its best.ckpt, else latest.ckpt; `latest=True` for the newest).

Every command and the viewer go through `open_model`, so each accepts all three.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List

from trigan.core.checkpoint import build_generator, load_checkpoint
from trigan.core.config import SavedConfig
from trigan.core.epigraf_import import load_epigraf_generator
from trigan.core.errors import CheckpointError
from trigan.core.generator import Generator
from trigan.core.read_budget import open_regular_file, require_regular_file


@dataclass
class LoadedModel:
    G: Generator
    config: SavedConfig                      # the model; a checkpoint's recipe sections as saved
    format: str                              # "trigan checkpoint" | "EpiGRAF pickle" | "3DGP pickle"
    path: str
    progress: Dict[str, Any] = field(default_factory=dict)
    metrics: Dict[str, Any] = field(default_factory=dict)
    extra_keys: List[str] = field(default_factory=list)


def _is_pickle(path: Path) -> bool:
    with open_regular_file(path, str(path), buffering=0) as f:  # never blocks on a named pipe
        return f.read(1) == b"\x80"


RUN_BEST, RUN_LATEST = "best.ckpt", "latest.ckpt"


def resolve_model_path(path, latest: bool = False) -> Path:
    """The checkpoint file a path names: the file itself, or for a run directory its best snapshot
    (by the run's metric) or, with latest=True or without a best one, its newest."""
    path = Path(os.path.expanduser(str(path)))
    if not path.is_dir():
        return path
    order = [RUN_LATEST] if latest else [RUN_BEST, RUN_LATEST]
    for name in order:
        if (path / name).is_file():
            return path / name
    legacy = sorted(path.glob("network-snapshot-*.pkl"))   # an EpiGRAF output folder
    if legacy:
        return legacy[-1]
    raise CheckpointError(f"{path}: a folder without {' or '.join(order)} (expected a training run "
                          "directory or a checkpoint file)")


def open_model(path, device=None, latest: bool = False) -> LoadedModel:
    """G_ema in eval mode with its config, from a .ckpt, an EpiGRAF .pkl or a run directory."""
    path = resolve_model_path(path, latest)
    require_regular_file(path, str(path))  # no such file / a folder / a named pipe or device: one line
    if _is_pickle(path):
        G, config, info = load_epigraf_generator(path, device=device)
        return LoadedModel(G=G, config=config, path=str(path), **info)
    ckpt = load_checkpoint(path)
    G = build_generator(ckpt.config.model, ckpt.G_ema, source=str(path), device=device)
    return LoadedModel(G=G, config=ckpt.config, format="trigan checkpoint", path=str(path),
                       progress=ckpt.progress, metrics=ckpt.metrics, extra_keys=sorted(ckpt.extra))
