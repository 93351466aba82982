"""trigan's checkpoint format: one file, `torch.save` of plain containers.

    {"format": "trigan-checkpoint", "version": 1,
     "config": {...the resolved config as a plain dict: model, discriminator, training...},
     "G_ema": state_dict,                       # always
     "G": ..., "D": ..., "G_opt": ..., "D_opt": ...,   # optional (training state)
     "progress": {"kimg": ..., ...}, "metrics": {...}}   # optional

It loads with `torch.load(..., weights_only=True)`: no code is ever unpickled. Saving is atomic (a
temporary file in the same folder, flushed and fsynced, then renamed over the target), so a crash
or kill during a save leaves the previous file intact.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Union

import torch

from trigan.core.atomic import atomic_path
from trigan.core.camera_generator import has_first_layout, migrate_first_layout
from trigan.core.checkpoint_meta import FORMAT, VERSION, ZIP_MAGIC, check_archive, check_sections, refuse_foreign_format
from trigan.core.config import ModelConfig, SavedConfig, apply_overrides, config_to_dict, saved_config_from_dict
from trigan.core.errors import CheckpointError, ConfigError, TriganError
from trigan.core.generator import Generator
from trigan.core.read_budget import TreeBudget, open_regular_file, walk_plain

PathLike = Union[str, os.PathLike]


@dataclass
class Checkpoint:
    # The model typed and validated; the recipe's sections as saved (training.config.config_from_saved
    # parses them).
    config: SavedConfig
    G_ema: Dict[str, torch.Tensor]
    extra: Dict[str, Any] = field(default_factory=dict)   # G, D, optimizer states, ...
    progress: Dict[str, Any] = field(default_factory=dict)
    metrics: Dict[str, Any] = field(default_factory=dict)
    path: Optional[str] = None
    # The camera generator's weights were converted from trigan's first layout (its optimiser
    # state, when the file holds one, was not: such a run is continued with --init, not resumed).
    migrated_camera_generator: bool = False


def save_checkpoint(path: PathLike, config: Any, G_ema: Union[Generator, Dict[str, torch.Tensor]],
                    progress: Optional[dict] = None, metrics: Optional[dict] = None, **extra) -> Path:
    """Write a checkpoint atomically. `config` is a SavedConfig or training's whole Config (either
    saves as the same dict); `extra` may hold G, D (modules or state dicts), G_opt, D_opt."""
    as_state = lambda v: v.state_dict() if hasattr(v, "state_dict") else v
    payload = {"format": FORMAT, "version": VERSION, "config": config_to_dict(config),
               "G_ema": {k: v.detach().cpu() for k, v in as_state(G_ema).items()},
               "progress": dict(progress or {}), "metrics": dict(metrics or {})}
    for key, value in extra.items():
        if value is not None:
            payload[key] = as_state(value)
    path = Path(path)
    with atomic_path(path, durable=True) as tmp:
        with open(tmp, "wb") as f:
            torch.save(payload, f)
    return path


def read_torch_file(path: PathLike, name: Optional[str] = None) -> Any:
    """Any `torch.save` zip (a checkpoint, a weights file someone hands us) read within the reader's
    budgets: a regular file, no zip bomb, a pickle that passes the opcode scan, `weights_only`, and
    the loaded data walked under one budget. Raises CheckpointError (one line naming `name`)."""
    name = str(path) if name is None else name
    with open_regular_file(path, name) as f:  # a named pipe or device is refused before it can block
        size = os.fstat(f.fileno()).st_size
        head = f.read(4)
        if not head:
            raise CheckpointError(f"{name}: empty file")
        if head == ZIP_MAGIC:
            check_archive(f, size, name)
        elif head[:1] != b"\x80":
            raise CheckpointError(f"{name}: not a torch.save file (neither a zip archive nor a legacy pickle)")
        # else: torch's legacy format (before 1.6, e.g. older torchvision weights): several pickles in
        # a row, left to torch's weights_only reader; the walk below still bounds what it returns.
        f.seek(0)
        data = _torch_load(f, name)
    walk_plain(data, TreeBudget(name), limit_key="nesting_depth")
    return data


def _read_payload(path: Path) -> dict:
    name = str(path)
    with open_regular_file(path, name) as f:  # a named pipe or device is refused before it can block
        size = os.fstat(f.fileno()).st_size
        refuse_foreign_format(f.read(4), name)
        check_archive(f, size, name)
        f.seek(0)
        payload = _torch_load(f, name)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        keys = sorted(payload, key=str)[:6] if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{path}: a torch file but not a trigan checkpoint "
                              f"(found {keys}; a bare state dict has no config to build the model from)")
    if not isinstance(payload.get("version", 0), int) or payload.get("version", 0) > VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {str(payload['version'])[:20]} is newer "
                              f"than this trigan understands ({VERSION}); update trigan")
    for key in ("config", "G_ema"):
        if not isinstance(payload.get(key), dict):
            raise CheckpointError(f"{path}: checkpoint lacks its {key!r} section")
    check_sections(payload, name)
    return payload


def _torch_load(f, name: str) -> Any:
    try:
        return torch.load(f, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch.load fails in many ways on foreign or corrupt files; each is the file's fault
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights_only" in msg or "Unsupported global" in msg or "WeightsUnpickler" in msg:
            raise CheckpointError(f"{name}: refuses to load: the file holds Python objects beyond "
                                  "tensors and plain containers") from None
        raise CheckpointError(f"{name}: truncated or corrupt checkpoint ({msg[:160]})") from None


def load_checkpoint(path: PathLike) -> Checkpoint:
    """Read a trigan checkpoint (tensors on the CPU). Bad files raise CheckpointError (one line)."""
    path = Path(path)
    payload = _read_payload(path)
    try:
        config = saved_config_from_dict(payload["config"], what=f"{path}: config")
    except TriganError as exc:
        raise CheckpointError(str(exc)) from None
    extra = {k: v for k, v in payload.items()
             if k not in ("format", "version", "config", "G_ema", "progress", "metrics")}
    migrated = has_first_layout(payload["G_ema"])
    try:
        G_ema = migrate_first_layout(payload["G_ema"])
        if isinstance(extra.get("G"), dict):
            extra["G"] = migrate_first_layout(extra["G"])
    except (KeyError, ValueError, IndexError, RuntimeError, AttributeError) as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise CheckpointError(f"{path}: its camera generator has trigan's first layout, but its weights do "
                              f"not have that layout's names and shapes ({detail})") from None
    return Checkpoint(config=config, G_ema=G_ema, extra=extra,
                      progress=payload.get("progress") or {}, metrics=payload.get("metrics") or {},
                      path=str(path), migrated_camera_generator=migrated)


def export_generator(src: PathLike, dst: PathLike, overrides: Sequence[str] = (),
                     parse_config: Optional[Callable[[SavedConfig, str], Any]] = None) -> Path:
    """Write the G_ema-only checkpoint of a training checkpoint `src` (config, G_ema, progress and
    metrics kept; G, D and optimizer states dropped): what viewing, rendering and export need.
    `overrides` (`model.camera.support_radius=0.3`, ...) change the stored config; the weights must
    still fit it (settings of rendering, not of the architecture). `parse_config(saved, what)` (the
    CLI passes training's config_from_saved) reads the stored config whole first, so that the
    recipe's sections are checked and written as its schema has them; without it core checks and
    rewrites the model alone and keeps the recipe's sections as they were."""
    ckpt = load_checkpoint(src)
    config = ckpt.config
    if parse_config is not None:
        try:
            config = parse_config(config, f"{src}: config")
        except ConfigError as exc:
            raise CheckpointError(str(exc)) from None
    if overrides:
        config = apply_overrides(config, overrides, what=str(src))   # validate_config: bounds, memory
    # What is written must load: the weights fit the (changed) config, are floating point and finite.
    # Also refuses what the bounds cannot see (a config that does not build, ...).
    source = f"{src} with {' '.join(overrides)}" if overrides else str(src)
    try:
        check_generator_weights(config.model, ckpt.G_ema, source=source)
    except ConfigError as exc:
        raise CheckpointError(f"{src}: {exc}") from None
    progress = {**ckpt.progress, "source": ckpt.progress.get("source") or f"trigan checkpoint {Path(src).name}"}
    if overrides:
        progress["config_overrides"] = list(overrides)
    return save_checkpoint(dst, config, ckpt.G_ema, progress=progress, metrics=ckpt.metrics)


def check_generator_weights(model: ModelConfig, state_dict: Dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Raise CheckpointError unless the state dict fits the generator `model` describes exactly: the same
    names and shapes, dense floating-point tensors where the model has them, and finite values (a
    NaN or infinite weight renders black or garbage without any error). Every loader, `trigan
    convert` and export_generator go through here. The model is built on the meta device, so nothing
    is allocated for it; the finiteness scan reads each tensor in bounded chunks."""
    try:
        with torch.device("meta"):
            own = Generator(model).state_dict()
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{source}: its config does not describe a buildable model ({exc})") from None
    not_tensors = [k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(f"{source}: weight {not_tensors[0]} is a {type(state_dict[not_tensors[0]]).__name__}, "
                              "not a tensor")
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    wrong = [f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
             if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong:
            parts.append(f"{len(wrong)} of the wrong shape (e.g. {wrong[0]})")
        raise CheckpointError(f"{source}: weights do not fit the architecture in its config: " + "; ".join(parts))
    for name, expected in own.items():
        _check_weight_values(name, state_dict[name], expected.dtype, source)


_FINITE_CHUNK = 1 << 22   # elements scanned at once: a 16 MB float32 slice, a 4 MB mask


def _check_weight_values(name: str, tensor: torch.Tensor, expected_dtype: torch.dtype, source: str) -> None:
    """One weight: a dense tensor of a floating dtype where the model's is floating (int64 weights would
    be cast silently by load_state_dict), and finite."""
    if tensor.layout != torch.strided or tensor.is_quantized or tensor.device.type == "meta":
        raise CheckpointError(f"{source}: weight {name} is not a plain dense tensor ({tensor.layout}, "
                              f"{tensor.device.type})")
    if expected_dtype.is_floating_point != tensor.is_floating_point():
        kind = "floating-point" if expected_dtype.is_floating_point else str(expected_dtype).replace("torch.", "")
        raise CheckpointError(f"{source}: weight {name} is {str(tensor.dtype).replace('torch.', '')}: "
                              f"expected {kind} values")
    if not tensor.is_floating_point():
        return
    flat = tensor.detach().reshape(-1)
    for start in range(0, flat.numel(), _FINITE_CHUNK):
        part = flat[start:start + _FINITE_CHUNK]
        if not bool(torch.isfinite(part).all()):
            raise CheckpointError(f"{source}: weight {name} holds non-finite values (NaN or infinity): "
                                  "the model is broken (a diverged run?); use an earlier checkpoint")


def build_generator(model: ModelConfig, state_dict: Dict[str, torch.Tensor], source: str = "checkpoint",
                    device=None) -> Generator:
    """A Generator of `model` with these weights; a weight check_generator_weights refuses is an error."""
    check_generator_weights(model, state_dict, source)
    G = Generator(model)
    G.load_state_dict(state_dict)
    G.requires_grad_(False)
    return G.eval().to(device) if device is not None else G.eval()


def load_generator(path: PathLike, device=None) -> tuple:
    """(Generator G_ema in eval mode, Checkpoint) from a trigan checkpoint."""
    ckpt = load_checkpoint(path)
    return build_generator(ckpt.config.model, ckpt.G_ema, source=str(path), device=device), ckpt
