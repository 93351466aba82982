"""The `--device` option every command shares: auto (CUDA when available), cpu, cuda, cuda:1 ..."""

from __future__ import annotations

import torch

from trigan.core.errors import TriganError


def parse_device(name: str) -> torch.device:
    """A torch device from a user's string; a one-line TriganError for a bad or unavailable one."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise TriganError(f"--device {name}: not a device (auto, cpu, cuda, cuda:1 ...)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TriganError(f"--device {name}: CUDA is not available here")
    return device
