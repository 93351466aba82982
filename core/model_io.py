"""Open any model trigan accepts: a trigan checkpoint, an official EpiGRAF or 3DGP snapshot pickle, or a
training run directory (its best.ckpt, else latest.ckpt; `latest=True` for the newest).

Every command and the viewer go through `open_model`, so each accepts all three.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List

from trigan.core.checkpoint import build_generator, load_checkpoint
from trigan.core.checkpoint_meta import is_pickle_file, resolve_model_path
from trigan.core.config import SavedConfig
from trigan.core.epigraf_import import load_epigraf_generator
from trigan.core.generator import Generator
from trigan.core.read_budget import require_regular_file


@dataclass
class LoadedModel:
    G: Generator
    config: SavedConfig                      # the model; a checkpoint's recipe sections as saved
    format: str                              # "trigan checkpoint" | "EpiGRAF pickle" | "3DGP pickle"
    path: str
    progress: Dict[str, Any] = field(default_factory=dict)
    metrics: Dict[str, Any] = field(default_factory=dict)
    extra_keys: List[str] = field(default_factory=list)


def open_model(path, device=None, latest: bool = False) -> LoadedModel:
    """G_ema in eval mode with its config, from a .ckpt, an EpiGRAF .pkl or a run directory."""
    path = resolve_model_path(path, latest)
    require_regular_file(path, str(path))  # no such file / a folder / a named pipe or device: one line
    if is_pickle_file(path):
        G, config, info = load_epigraf_generator(path, device=device)
        return LoadedModel(G=G, config=config, path=str(path), **info)
    ckpt = load_checkpoint(path)
    G = build_generator(ckpt.config.model, ckpt.G_ema, source=str(path), device=device)
    return LoadedModel(G=G, config=ckpt.config, format="trigan checkpoint", path=str(path),
                       progress=ckpt.progress, metrics=ckpt.metrics, extra_keys=sorted(ckpt.extra))
