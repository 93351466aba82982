"""3DGP's knowledge distillation into D (3dgp.md 4): a feature-prediction head, its loss, its weight.

D gets a second head beside the adversarial one, reading the same flattened 4x4 epilogue features.
On real patches it learns to predict a frozen network's features (ResNet-50, 2048-d) of the whole
real image. Bigger patches hold more of the image the target describes, so each sample's distance
counts in proportion to its patch scale. The weight falls linearly to 0 over `anneal_kimg`; G gets
no distillation term.
"""

from __future__ import annotations

import torch
from torch import nn

from trigan.core.layers import FullyConnectedLayer
from trigan.training.config import DistillConfig


class FeaturePredictionHead(nn.Module):
    """Flattened epilogue features [B, C * 16] -> FC (lrelu) -> C -> FC (linear) -> [B, out_dim]."""

    def __init__(self, channels: int, out_dim: int):
        super().__init__()
        self.fc = FullyConnectedLayer(channels * 16, channels, activation="lrelu")
        self.out = FullyConnectedLayer(channels, out_dim)

    def forward(self, flat: torch.Tensor) -> torch.Tensor:
        return self.out(self.fc(flat))


def distill_weight(cfg: DistillConfig, kimg: float) -> float:
    """cfg.weight at kimg 0, falling linearly to 0 at anneal_kimg (constant when anneal_kimg <= 0)."""
    if cfg.weight == 0:
        return 0.0
    if cfg.anneal_kimg <= 0:
        return float(cfg.weight)
    return float(cfg.weight) * max(1.0 - kimg / cfg.anneal_kimg, 0.0)


def scale_weights(scale: torch.Tensor, power: float, mean_of: torch.Tensor = None) -> torch.Tensor:
    """s^power / mean(s^power): 1 on average; `mean_of` (default `scale`) names the scales whose
    mean normalises, e.g. the whole global batch when `scale` is one process's slice of it."""
    ref = scale if mean_of is None else mean_of
    return scale.pow(power) / ref.pow(power).mean()


def distillation_distances(predicted: torch.Tensor, target: torch.Tensor, scale: torch.Tensor,
                           power: float = 1.0, mean_of: torch.Tensor = None) -> torch.Tensor:
    """Per-sample loss [B]: ||predicted - target||_2 (not squared) times the sample's scale weight."""
    # vector_norm's gradient at a zero difference is 0 (a plain sqrt of the sum would give NaN).
    dist = torch.linalg.vector_norm(predicted.float() - target.float(), dim=1)
    return dist * scale_weights(scale.float(), power, None if mean_of is None else mean_of.float())
