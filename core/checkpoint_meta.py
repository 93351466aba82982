"""What a trigan checkpoint holds, read without torch: its config, progress, metrics, the names of its
other sections, and each weight's dtype and shape. `trigan info` describes a checkpoint from this in
a fraction of a second, where building the Generator first costs the 1-2 s of importing torch.

Also here, because both readers need them and this module must not import torch: the checks that
run before any unpickling of a `torch.save` zip (`check_archive`: no zip bomb, a pickle that passes
the opcode scan of core/read_budget.py) and of its loaded sections (`check_sections`), which
core/checkpoint.py's loader runs too, and `resolve_model_path` (which file a path names).

How the weights are read without torch: a `torch.save` zip keeps its object tree in `data.pkl` and
each tensor's bytes in `data/<key>`. The pickle names a tensor as a call of
`torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)` whose storage is a persistent
id `('storage', torch.FloatStorage, key, location, numel)`. The unpickler below maps exactly these
names to records (dtype, shape, key): it imports nothing, never reads a storage, and any other
global stops it. Storages are read only to check that the weights are finite, with numpy, from the
zip entry itself.

The reader answers only when it can vouch for the whole description: anything unusual (a global it
does not know, weights that are not floating point or not finite, the camera generator's first
layout, tensors where plain values are expected, weights whose layout disagrees with the config)
makes `read_checkpoint_meta` return None, and the caller loads the checkpoint the full way, which
says what is wrong in the words it always has.

What it does not check, because only the Generator (torch) knows it: each weight's name and shape
against the architecture, and the memory that building the generator would take. It checks that the
weights hold the parts the config describes (decoder blocks, background network, camera generator)
and that every record lies inside the bytes of the file; a file whose weights are renamed or
reshaped is described here and refused by every command that loads it.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from trigan.core.config import SavedConfig, check_model_values, config_from_data
from trigan.core.errors import CheckpointError, ConfigError
from trigan.core.read_budget import LIMITS, TreeBudget, open_regular_file, refusal, scan_pickle, walk_plain

FORMAT = "trigan-checkpoint"
VERSION = 1
ZIP_MAGIC = b"PK\x03\x04"   # torch.save writes a zip archive
# torch's weights-only unpickler allows these, but torch.save of a trigan payload never writes them:
# bytearray(n) allocates n bytes, set()/Counter() hash whatever they are given.
REFUSED_GLOBALS = {f"{module} {name}": "which a trigan checkpoint never uses"
                   for module, name in (("builtins", "bytearray"), ("builtins", "set"),
                                        ("collections", "Counter"), ("builtins", "complex"))}
RUN_BEST, RUN_LATEST = "best.ckpt", "latest.ckpt"


# ---------------------------------------------------------------------------------------------------
# Which file a path names, and the checks every reader of a torch.save zip runs first

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


def is_pickle_file(path: Path) -> bool:
    """Whether the file starts like a Python pickle (an official .pkl) rather than a zip (a .ckpt)."""
    with open_regular_file(path, str(path), buffering=0) as f:  # never blocks on a named pipe
        return f.read(1) == b"\x80"


def refuse_foreign_format(head: bytes, name: str) -> None:
    if not head:
        raise CheckpointError(f"{name}: empty file, expected a trigan checkpoint")
    if head != ZIP_MAGIC:
        if head[:1] == b"\x80":
            raise CheckpointError(f"{name}: a Python pickle, not a trigan checkpoint "
                                  "(official EpiGRAF snapshots are read by the .pkl importer)")
        raise CheckpointError(f"{name}: not a checkpoint (neither a torch.save archive nor a pickle)")


def check_archive(f, size: int, name: str) -> None:
    """Before anything reads the zip's pickle: what it would unpack must fit the file (no zip bomb),
    and its pickle must pass the opcode scan (forged lengths and memo indices, depth, copy bombs, odd
    globals)."""
    try:
        with zipfile.ZipFile(f) as archive:
            entries = archive.infolist()
            claimed = sum(entry.file_size for entry in entries)
            if claimed > LIMITS.ckpt_unzip_ratio * size + (1 << 20):
                raise CheckpointError(f"{name}: refuses to load: its entries claim {claimed:,} bytes unpacked, "
                                      f"far more than the {size:,} bytes of the file (torch.save stores them "
                                      f"uncompressed)")
            pickles = [entry for entry in entries if entry.filename.endswith("data.pkl")]
            if not pickles:
                return  # torch.load explains what is missing
            if pickles[0].file_size > LIMITS.ckpt_pickle_bytes:
                raise refusal(name, f"its pickle of {pickles[0].file_size:,} bytes: the pickle size",
                              "ckpt_pickle_bytes")
            with archive.open(pickles[0]) as stream:
                scan_pickle(stream, pickles[0].file_size, name, refused_globals=REFUSED_GLOBALS)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, NotImplementedError, OSError,
            ValueError) as exc:  # ValueError: a mangled entry name (UnicodeDecodeError), a bad header field
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise CheckpointError(f"{name}: truncated or corrupt checkpoint ({detail[:160]})") from None


def check_sections(payload: dict, name: str) -> None:
    """Every section is walked under one budget before anything (OmegaConf, `info`, a resumed
    trainer) expands it: a shared-container bomb is refused after a bounded walk. The config is
    stored resolved, so an interpolation in it is forged: OmegaConf would resolve it."""
    budget = TreeBudget(name)
    for key, section in payload.items():
        walk_plain(section, budget, limit_key="config_depth" if key == "config" else "nesting_depth")
    pending = [("config", payload["config"])]
    while pending:
        where, value = pending.pop()
        if isinstance(value, dict):
            pending.extend((f"{where}.{k}", v) for k, v in value.items())
        elif isinstance(value, (list, tuple)):
            pending.extend((f"{where}[{i}]", v) for i, v in enumerate(value))
        elif isinstance(value, str) and "${" in value:
            raise CheckpointError(f"{name}: refuses to load: {where[:80]} holds the interpolation "
                                  f"{value[:40]!r}; a trigan checkpoint stores its config resolved")


# ---------------------------------------------------------------------------------------------------
# The pickle as records

# torch's storage classes as torch.save and upstream's pickles name them -> (torch's dtype name, the
# numpy dtype holding the same bytes, bytes per element). bfloat16 has no numpy dtype: its values stay
# uint16 bits, and its finiteness is read from them like the others'. Shared by both torch-free readers
# (this one and core/epigraf_pickle.py's record route).
STORAGE_DTYPES = {
    "FloatStorage": ("float32", "<f4", 4), "DoubleStorage": ("float64", "<f8", 8),
    "HalfStorage": ("float16", "<f2", 2), "BFloat16Storage": ("bfloat16", "<u2", 2),
    "LongStorage": ("int64", "<i8", 8), "IntStorage": ("int32", "<i4", 4), "ShortStorage": ("int16", "<i2", 2),
    "CharStorage": ("int8", "i1", 1), "ByteStorage": ("uint8", "u1", 1), "BoolStorage": ("bool", "?", 1)}
# The exponent bits of each floating dtype: all of them set is an infinity or a NaN.
EXPONENT_MASKS = {"float32": (0x7F800000, "<u4"), "float64": (0x7FF0000000000000, "<u8"),
                  "float16": (0x7C00, "<u2"), "bfloat16": (0x7F80, "<u2")}


def any_non_finite(values, dtype: str) -> bool:
    """Whether a numpy array (or buffer) of the bytes of a floating `dtype` (an EXPONENT_MASKS key)
    holds an infinity or a NaN: all exponent bits set."""
    import numpy as np  # noqa: PLC0415 (only describing a checkpoint needs it; kept off the --help path)

    mask, bits = EXPONENT_MASKS[dtype]
    words = values.view(bits) if isinstance(values, np.ndarray) else np.frombuffer(values, dtype=bits)
    return bool(np.any((words & np.array(mask, dtype=bits)) == mask))


@dataclass(frozen=True)
class StorageType:
    dtype: str
    itemsize: int


@dataclass(frozen=True)
class StorageRecord:
    dtype: str
    itemsize: int
    key: str
    numel: int


@dataclass(frozen=True)
class TensorRecord:
    """A tensor as the pickle describes it; its data stays in the zip."""
    storage: StorageRecord
    offset: int
    shape: Tuple[int, ...]

    @property
    def dtype(self) -> str:
        return self.storage.dtype

    @property
    def numel(self) -> int:
        count = 1
        for side in self.shape:
            count *= side
        return count


class NotDescribable(Exception):
    """The file holds something this reader does not vouch for: the caller loads it the full way."""


def contiguous_strides(shape: Tuple[int, ...]) -> Tuple[int, ...]:
    strides, step = [], 1
    for side in reversed(shape):
        strides.append(step)
        step *= max(side, 1)
    return tuple(reversed(strides))


def _rebuild_tensor(storage, offset, size, stride, *_requires_grad_hooks_metadata) -> TensorRecord:
    """The record of a contiguous tensor inside its storage, as torch.save writes a state dict's;
    anything else (an expanded view, a tensor past its storage's end) is NotDescribable, so that a
    record's numel never exceeds what the file holds."""
    size, stride = tuple(size), tuple(stride)
    plain = lambda values: all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values)
    if not (isinstance(storage, StorageRecord) and plain((offset, *size, *stride))
            and stride == contiguous_strides(size)):
        raise NotDescribable("an unusual tensor")
    record = TensorRecord(storage=storage, offset=offset, shape=size)
    if offset + record.numel > storage.numel:
        raise NotDescribable("a tensor beyond its storage")
    return record


def _rebuild_parameter(data, *_requires_grad_hooks) -> TensorRecord:
    if not isinstance(data, TensorRecord):
        raise NotDescribable("an unusual parameter")
    return data


class _StateDict(dict):
    """collections.OrderedDict as a module's state_dict pickles it: the items, plus the `_metadata`
    that a BUILD opcode hands over, kept as data (a dict keeps the order already)."""
    state = None

    def __setstate__(self, state):
        self.state = state


class _RecordingUnpickler(pickle.Unpickler):
    """Plain containers, tensors as TensorRecord; every other global stops it (NotDescribable)."""

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return _StateDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in STORAGE_DTYPES:
            dtype, _, itemsize = STORAGE_DTYPES[name]
            return StorageType(dtype, itemsize)
        raise NotDescribable(f"the global {module}.{name}")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], StorageType)
                and isinstance(pid[2], str) and isinstance(pid[4], int) and pid[4] >= 0):
            raise NotDescribable("an unusual storage")
        return StorageRecord(dtype=pid[1].dtype, itemsize=pid[1].itemsize, key=pid[2], numel=pid[4])


def _read_records(archive: zipfile.ZipFile) -> Tuple[dict, str]:
    """(the payload with tensors as records, the zip's folder holding data.pkl and data/)."""
    entry = next(e for e in archive.infolist() if e.filename.endswith("data.pkl"))
    folder = entry.filename[:-len("data.pkl")]
    with archive.open(entry) as stream:
        return _RecordingUnpickler(stream).load(), folder


# ---------------------------------------------------------------------------------------------------
# The description

@dataclass
class CheckpointMeta:
    """What `trigan info` shows of a trigan checkpoint, as the full loader would give it."""
    config: SavedConfig
    weights: Dict[str, TensorRecord]            # G_ema's state dict as records
    progress: Dict[str, Any] = field(default_factory=dict)
    metrics: Dict[str, Any] = field(default_factory=dict)
    extra_keys: List[str] = field(default_factory=list)


@dataclass
class _ValuesCheckedConfig(SavedConfig):
    """A SavedConfig whose validation checks the model's values and choices but not the memory its
    generator would need: that check builds the generator on torch's meta device, and describing a
    checkpoint builds no generator."""

    def validate(self, what: str = "config") -> "_ValuesCheckedConfig":
        check_model_values(self, what)
        return self


def read_checkpoint_meta(path) -> Optional[CheckpointMeta]:
    """The description of the trigan checkpoint at `path` (a file, not a run folder), or None when
    this reader does not vouch for it (see the module's docstring): then load it the full way."""
    path = Path(path)
    name = str(path)
    try:
        with open_regular_file(path, name) as f:
            size = os.fstat(f.fileno()).st_size
            refuse_foreign_format(f.read(4), name)
            check_archive(f, size, name)   # bounds what the unpickler below can be made to do
            f.seek(0)
            with zipfile.ZipFile(f) as archive:
                payload, folder = _read_records(archive)
                meta = _meta_of(payload, name)
                _check_finite(archive, folder, meta.weights)
        return meta
    except Exception:  # noqa: BLE001 - whatever fails here (a refusal, a corrupt pickle or zip), the full loader judges the file and words the error
        return None


def _meta_of(payload: Any, name: str) -> CheckpointMeta:
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or payload.get("version", 0) != VERSION:
        raise NotDescribable("not a current trigan checkpoint")
    for key in ("config", "G_ema"):
        if not isinstance(payload.get(key), dict):
            raise NotDescribable(f"no {key} section")
    check_sections(payload, name)
    weights = payload["G_ema"]
    if not all(isinstance(v, TensorRecord) and v.dtype in EXPONENT_MASKS for v in weights.values()):
        raise NotDescribable("weights that are not floating-point tensors")
    if "camera_generator.origin_adaptor.params_in.weight" in weights:
        raise NotDescribable("the camera generator's first layout (migrated by the loader)")
    progress, metrics = payload.get("progress") or {}, payload.get("metrics") or {}
    if not isinstance(progress, dict) or not _plain(metrics):
        raise NotDescribable("unusual progress or metrics")
    try:
        saved = _values_checked_config(payload["config"], name)
    except ConfigError:
        raise NotDescribable("a config the loader refuses") from None
    extra = sorted(k for k in payload if k not in ("format", "version", "config", "G_ema", "progress", "metrics"))
    meta = CheckpointMeta(config=saved, weights=weights, progress=progress, metrics=metrics, extra_keys=extra)
    check_layout(meta)
    return meta


def _values_checked_config(data: dict, name: str) -> SavedConfig:
    checked = config_from_data(_ValuesCheckedConfig, data, what=f"{name}: config")
    return SavedConfig(model=checked.model, discriminator=checked.discriminator, training=checked.training)


def _plain(value: Any) -> bool:
    """Plain data only (no tensors): what a summary prints as it is."""
    if isinstance(value, dict):
        return all(_plain(k) and _plain(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, (int, float, str, bool))


def _check_finite(archive: zipfile.ZipFile, folder: str, weights: Dict[str, TensorRecord]) -> None:
    """Every storage the weights use holds finite values only (read by its exponent bits)."""
    seen = set()
    for record in weights.values():
        storage = record.storage
        if storage.key in seen:
            continue
        seen.add(storage.key)
        data = archive.read(f"{folder}data/{storage.key}")
        if len(data) != storage.numel * storage.itemsize:
            raise NotDescribable("a storage of the wrong size")
        if any_non_finite(data, storage.dtype):
            raise NotDescribable("non-finite weights")


# ---------------------------------------------------------------------------------------------------
# What the summary needs from the weights: parameter counts and the number of ws

# Buffers of the generator's modules (state-dict entries that are not parameters), by their last name.
# tests/test_startup.py checks this against the Generator's named_buffers() on every preset.
BUFFER_NAMES = frozenset({"w_avg", "mean_camera_pose", "resample_filter", "noise_const", "fourier_coefs"})
# core.generator.parameter_counts's parts, in its order, by state-dict prefix.
PARAMETER_PARTS = (("mapping", "mapping."), ("tri_plane_decoder", "synthesis.tri_plane_decoder."),
                   ("tri_plane_mlp", "synthesis.tri_plane_mlp."), ("background", "synthesis.bg_model."),
                   ("camera_generator", "camera_generator."))
_DECODER_BLOCK = re.compile(r"^synthesis\.tri_plane_decoder\.b(\d+)\.")


def parameter_counts_of(weights: Dict[str, TensorRecord]) -> Dict[str, int]:
    """core.generator.parameter_counts, from a state dict's records: parameters, not buffers."""
    params = {k: v.numel for k, v in weights.items() if k.rsplit(".", 1)[-1] not in BUFFER_NAMES}
    counts = {part: sum(n for k, n in params.items() if k.startswith(prefix)) for part, prefix in PARAMETER_PARTS}
    counts["total"] = sum(params.values())
    return counts


def decoder_resolutions(model) -> List[int]:
    """The tri-plane decoder's blocks, b4 ... b<triplane.resolution> (core.synthesis.TriPlaneDecoder)."""
    resolution = model.triplane.resolution
    return [2 ** i for i in range(2, resolution.bit_length()) if 2 ** i <= resolution]


def num_ws_of(model) -> int:
    """The synthesis network's number of ws: one per decoder conv (b4 has one, the others two), one
    for the last toRGB, and two per background block (core.synthesis, core.background)."""
    decoder = 2 * len(decoder_resolutions(model))
    background = 2 * model.background.num_blocks if model.background.type == "sphere" else 0
    return decoder + background


def check_layout(meta: CheckpointMeta) -> None:
    """The weights hold the parts the config describes (decoder blocks, background network, camera
    generator); else NotDescribable. The full loader checks every name and shape."""
    model = meta.config.model
    blocks = {int(m.group(1)) for k in meta.weights for m in [_DECODER_BLOCK.match(k)] if m}
    has = lambda prefix: any(k.startswith(prefix) for k in meta.weights)
    resolution = model.triplane.resolution
    if resolution < 4 or resolution & (resolution - 1) or blocks != set(decoder_resolutions(model)):
        raise NotDescribable("decoder blocks that differ from the config")
    if has("synthesis.bg_model.") != (model.background.type == "sphere"):
        raise NotDescribable("a background network the config does not describe")
    if has("camera_generator.") != bool(model.camera_generator.enabled):
        raise NotDescribable("a camera generator the config does not describe")
