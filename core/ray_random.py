"""The random numbers of a render: per-ray jitter and density noise.

With `RenderOptions.deterministic` (inference) every value is a hash of (seed, stream, ray id,
sample index), so the same request gives the same image whatever the chunking or device; otherwise
values come from torch's RNG (or the options' `generator`). Each use draws from its own `stream`
(the plain path's coarse jitter 0, fine samples 1, background jitter 2, density noise 3-6; the
accelerated path's jitter 100), so the draws of one never shift another's.
"""

from __future__ import annotations

from typing import Tuple

import torch

_MASK32 = 0xFFFFFFFF


def _mix32(x):
    """An integer hash on values in [0, 2^32) (works on python ints and int64 tensors).

    Multipliers below 2^31 keep every product inside int64, so nothing relies on overflow."""
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _MASK32
    x = x ^ (x >> 15)
    x = (x * 0x5BD1E995) & _MASK32
    return x ^ (x >> 16)


def hash_uniform(ray_ids: torch.Tensor, num: int, stream: int, seed: int, dtype=torch.float32) -> torch.Tensor:
    """[R, num] values in [0, 1), a pure function of (seed, stream, ray id, sample index)."""
    key = _mix32((_mix32(seed & _MASK32) ^ (stream * 0x9E3779B1)) & _MASK32)
    counter = ray_ids.reshape(-1, 1).long() * num + torch.arange(num, device=ray_ids.device)
    x = _mix32((counter & _MASK32) ^ key)
    x = _mix32(x ^ (counter >> 32))
    return (x >> 8).to(dtype) * (1.0 / (1 << 24))


def ray_uniform(opts, shape: Tuple[int, int], ray_ids: torch.Tensor, stream: int, dtype, device) -> torch.Tensor:
    """[R, K] uniform values in [0, 1) for rays `ray_ids`; `opts`: the RenderOptions (deterministic,
    seed, generator)."""
    if opts.deterministic:
        return hash_uniform(ray_ids, shape[1], stream, opts.seed, dtype)
    return torch.rand(shape, generator=opts.generator, device=device, dtype=dtype)


def ray_normal(opts, shape: Tuple[int, int], ray_ids: torch.Tensor, stream: int, dtype, device) -> torch.Tensor:
    """Standard normal values; hashed (Box-Muller on two hashed uniforms, streams `stream` and
    `stream + 1`) when deterministic."""
    if opts.deterministic:
        u1 = hash_uniform(ray_ids, shape[1], stream, opts.seed, torch.float64)
        u2 = hash_uniform(ray_ids, shape[1], stream + 1, opts.seed, torch.float64)
        r = torch.sqrt(-2.0 * torch.log1p(-u1))   # 1 - u1 lies in (0, 1]: no log(0)
        return (r * torch.cos(2 * torch.pi * u2)).to(dtype)
    return torch.randn(shape, generator=opts.generator, device=device, dtype=dtype)
