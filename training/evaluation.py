"""Metrics during training: FID/KID of G_ema against the training set, with fakes conditioned like
training fakes (labels and poses of random dataset entries), so best.ckpt is chosen on the same
distribution the model learns. The feature network comes from `training.inception` (a local
TorchScript file; nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

import torch

from trigan.core.errors import ConfigError
from trigan.core.metrics import INCEPTION_HELP, compute_metric, parse_metric_names
from trigan.training.conditioning import DatasetConditioning


def check_metric_setup(names: List[str], inception: Optional[str]) -> List[str]:
    """Validate metric names and the feature file before training starts (not hours into a run)."""
    if not names:
        return []
    parsed = parse_metric_names(names)
    if not inception:
        raise ConfigError(f"training.metrics={','.join(parsed)} needs training.inception=PATH; {INCEPTION_HELP}")
    if not Path(inception).is_file():
        raise ConfigError(f"training.inception={inception}: no such file; {INCEPTION_HELP}")
    return parsed


def dataset_conditioning(G, dataset):
    """(n, generator) -> (one-hot labels or None, cameras) from random dataset entries."""
    source = DatasetConditioning(dataset)

    def draw(n: int, generator: torch.Generator):
        classes, angles = source.lookup(torch.randint(len(dataset), (n,), generator=generator))
        c = torch.nn.functional.one_hot(classes, G.c_dim).float() if G.c_dim > 0 else None
        return c, source.cameras(G.cfg.camera, angles, generator)
    return draw


def evaluate_metrics(G, dataset, names: List[str], extractor, cache_dir=None, seed: int = 0) -> Dict[str, float]:
    """Each metric of G against the dataset; `extractor` is a loaded core.metrics.FeatureExtractor
    (loaded once per run by the caller, not at every evaluation)."""
    cache_key = (f"{getattr(dataset, 'path', '')}|mirror={getattr(dataset, 'mirror', False)}"
                 f"|res={getattr(dataset, 'resolution', '')}")
    conditioning = dataset_conditioning(G, dataset)
    return {name: float(compute_metric(name, G, dataset, extractor, conditioning=conditioning, cache_dir=cache_dir,
                                       cache_key=cache_key, seed=seed))
            for name in names}
