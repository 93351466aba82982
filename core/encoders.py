"""Scalar encoders shared by the networks: Fourier features (+ an optional learned lookup table).

Used for the background network's inverted-sphere coordinates, the discriminator's patch code and
its camera code. Buffer and parameter names (`fourier_encoder.fourier_coefs`, `const_embed`) match
EpiGRAF's so official weights load by name.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class FourierEncoder1d(nn.Module):
    """Per coordinate: sin then cos of (multiplier * x) * pi * 2^k / period, k = 0..n-1.

    The period is the smallest power of two >= multiplier (1024 for 1000, 64 for 64), so the
    lowest frequency spans [0, multiplier] within half a period and never wraps.
    """

    def __init__(self, multiplier: float, num_freqs: int):
        super().__init__()
        self.multiplier = multiplier
        period = 2.0 ** math.ceil(math.log2(multiplier))
        self.register_buffer("fourier_coefs", math.pi * 2.0 ** torch.arange(num_freqs, dtype=torch.float32) / period)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., D] -> [..., D, 2 * num_freqs]."""
        phases = (x * self.multiplier).unsqueeze(-1) * self.fourier_coefs.to(x.dtype)
        return torch.cat([phases.sin(), phases.cos()], dim=-1)


class ScalarEncoder1d(nn.Module):
    """Fourier features per coordinate, optionally followed by a learned embedding row looked up at
    round(multiplier * x), so that the code can memorise exact patch values as well as interpolate."""

    def __init__(self, multiplier: float, num_freqs: int, const_emb_dim: int = 0):
        super().__init__()
        self.multiplier = multiplier
        self.fourier_encoder = FourierEncoder1d(multiplier, num_freqs)
        self.const_embed = nn.Embedding(int(multiplier) + 1, const_emb_dim) if const_emb_dim > 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., D] -> [..., D * (2 * num_freqs + const_emb_dim)], laid out coordinate by coordinate."""
        parts = [self.fourier_encoder(x)]
        if self.const_embed is not None:
            # Clamped so values a rounding error outside [0, 1] still find a row.
            index = (x * self.multiplier).round().long().clamp(0, self.const_embed.num_embeddings - 1)
            parts.append(self.const_embed(index).to(x.dtype))
        return torch.cat(parts, dim=-1).flatten(-2)
