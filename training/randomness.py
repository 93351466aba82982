"""Random numbers for training that do not depend on how a batch is split over processes.

Every random draw of a training step is a function of (run seed, step, phase, sample index):
* batch-level draws (latents, which dataset entries lend labels and poses, patch parameters, GPC
  spoofing) are made for the whole global batch from one generator on the CPU, and each process
  keeps its slice;
* draws inside the networks (synthesis noise maps) come from a per-sample generator seeded by the
  sample's global index; the renderer hashes (seed, global ray id, sample) itself.

So two processes with half the batch each compute exactly what one process with the whole batch
does, and a resumed run draws what an uninterrupted one would (the step number is in the seed).
"""

from __future__ import annotations

from typing import Sequence

import torch

_MASK63 = (1 << 63) - 1


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers (splitmix64 steps): nearby inputs give unrelated seeds."""
    x = 0x9E3779B97F4A7C15
    for part in parts:
        x = (x ^ (int(part) & 0xFFFFFFFFFFFFFFFF)) & 0xFFFFFFFFFFFFFFFF
        x = (x + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 31
    return x & _MASK63


# Phases of a step, each with its own stream.
PHASE_G, PHASE_D, PHASE_REG = 1, 2, 3
PHASE_CAMERA = 4   # the camera regularisers' own batch (3DGP's learned camera generator)
PHASE_OUTLINE = 16   # added to G's or D's phase: the renderer's stream for the outline D's whole fakes


def batch_generator(seed: int, step: int, phase: int) -> torch.Generator:
    """The CPU generator for a phase's batch-level draws."""
    return torch.Generator(device="cpu").manual_seed(mix_seed(seed, step, phase))


def render_seed(seed: int, step: int, phase: int) -> int:
    """The renderer's hash seed for a phase (32 bits: the renderer's hash works on 32-bit words)."""
    return mix_seed(seed, step, phase, 0x52) & 0xFFFFFFFF


class SampleNoise:
    """Synthesis noise maps, one generator per sample seeded by its global index.

    Called by each noisy synthesis layer in order; the call count tells the layers apart, so
    a fresh object must be made for every generator forward pass.
    """

    def __init__(self, seed: int, sample_indices: Sequence[int]):
        self.seed, self.indices, self.calls = seed, list(sample_indices), 0

    def __call__(self, batch: int, resolution: int, device, dtype) -> torch.Tensor:
        if batch != len(self.indices):
            raise ValueError(f"noise for {len(self.indices)} samples asked for a batch of {batch}")
        self.calls += 1
        maps = []
        for index in self.indices:
            gen = torch.Generator(device="cpu").manual_seed(mix_seed(self.seed, index, self.calls))
            maps.append(torch.randn(1, resolution, resolution, generator=gen))
        return torch.stack(maps).to(device=device, dtype=dtype)
