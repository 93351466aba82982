"""Read an official EpiGRAF `network-snapshot-*.pkl` as plain data, safely and on CPU.

Safety model
------------
A pickle is a program for a small stack machine; the only way it can reach code is by naming a global
(`module.name`) that the unpickler then imports and calls. This reader uses a `pickle.Unpickler`
whose `find_class` consults a fixed allowlist and never imports anything: every name maps to an object
written here (or to a numpy/builtin data constructor), and any other name is refused before it is
looked up. The networks' embedded Python source (`module_src`) is ignored, never compiled. Persistent
ids are refused. Stand-in classes accept their pickled state as data and define `__setstate__`, so a
BUILD opcode aimed at them cannot rewrite them.

Tensors: each storage is a nested legacy `torch.save` blob. It is parsed here (header pickles through
a second, even smaller allowlist, then raw little-endian data), always onto the CPU whatever device
it was tagged with, and decoded once per storage key: upstream serialises a shared storage once per
view. Peak memory is about twice the file size, because the pickle memo keeps each raw blob alive
until loading ends while the decoded copy already exists.

Two ways to read tensors: `read_epigraf_pickle(path)` builds torch CPU tensors (what loading a model
needs); `read_epigraf_pickle(path, tensors="records")` imports no torch and gives each tensor as an
`ArrayTensor` (dtype name, shape, and its values as a numpy view of the decoded storage), which is
what `trigan info` needs. Both run the same allowlist, opcode scan and budgets; the record route
bounds-checks each view as torch's `as_strided` does, and is stricter where they differ (only
non-negative plain-int sizes, strides and offsets).
"""

from __future__ import annotations

import io
import math
import os
import pickle
import re
import struct
import sys
from collections import OrderedDict, defaultdict
from dataclasses import dataclass
from typing import Any, Tuple

import numpy as np

from trigan.core.checkpoint_meta import STORAGE_DTYPES
from trigan.core.errors import CheckpointError
from trigan.core.read_budget import BoundedFile, TreeBudget, open_regular_file, require_regular_file, scan_pickle

try:  # numpy >= 2 moved the pickle reconstructors; older pickles name numpy.core.*
    from numpy._core.multiarray import scalar as _np_scalar
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import scalar as _np_scalar

__all__ = ["ArrayTensor", "EpigrafNetwork", "EpigrafSnapshot", "is_epigraf_pickle", "read_epigraf_pickle"]

_EXPECTED = "trigan expects an EpiGRAF network-snapshot pickle or a trigan checkpoint"
_NETWORK_KEYS = ("G", "D", "G_ema", "augment_pipe")
_OPTIMIZER_OWNERS = {"G_opt": "G", "D_opt": "D"}
_LEGACY_TORCH_MAGIC = 0x1950A86A20F9469CFC6C
_SNIFF_BYTES = 64 * 1024


@dataclass
class EpigrafNetwork:
    class_name: str
    training: bool
    init_args: tuple
    init_kwargs: dict
    state_dict: "OrderedDict[str, Any]"  # torch tensors, or ArrayTensor records (tensors="records")
    attributes: dict  # module path ('' = root) -> {'class_name': ..., plain attributes}


@dataclass
class EpigrafSnapshot:
    path: str
    networks: dict  # 'G', 'D', 'G_ema', 'augment_pipe' -> EpigrafNetwork
    training_set_kwargs: dict
    stats: dict
    optimizers: dict  # 'G_opt', 'D_opt' -> {'defaults', 'param_groups', 'state'} keyed by parameter name
    vis: dict
    config: dict  # the whole experiment config, interpolations resolved


# ---------------------------------------------------------------------------------------------
# Stand-ins: what the allowed globals turn into. They hold data and run nothing from the file.

class _StateHolder:
    """Keeps the state a BUILD opcode hands over; defining __setstate__ also stops BUILD from
    setting attributes on the class itself."""
    state = None

    def __setstate__(self, state):
        self.state = state


class _ModuleLike(_StateHolder):
    """A torch module as its pickled `__dict__` (`_parameters`, `_buffers`, `_modules`, ...)."""
    class_name = "Module"


class _PersistentModule(_ModuleLike):
    def __init__(self, class_name, state):
        self.class_name, self.state = class_name, state


class _TorchOptimizer(_StateHolder):
    """torch.optim.Adam: its state is {'defaults', 'state', 'param_groups'}."""


class PickledConfigNode(_StateHolder):
    """Any OmegaConf 2.0 node. Containers keep `_content` (a dict, a list, or a string such as
    '${dataset}'), leaves keep `_val`; every node keeps `_parent` and `_metadata`."""

    def _field(self, key, default=None):
        return self.state.get(key, default) if isinstance(self.state, dict) else default

    @property
    def raw(self):
        return self._field("_content", self._field("_val"))

    @property
    def parent(self):
        return self._field("_parent")


class _EasyDict(dict):
    def __setstate__(self, state):  # EasyDict keeps everything as items; nothing to restore
        pass


class _TensorGroup(dict):
    """3DGP's camera parameter group (a dict subclass of tensors): its items are all it pickles."""

    def __setstate__(self, state):
        pass


class _Discriminator(_ModuleLike):
    """3DGP's top-level discriminator, pickled by class reference rather than as a persistent
    object: NEWOBJ makes an empty one, BUILD hands it the module's __dict__ as data."""
    class_name = "Discriminator"


class _Constructor:
    """A function the stream may call. Slots plus a refusing __setstate__: BUILD cannot alter it."""
    __slots__ = ("_fn",)

    def __init__(self, fn):
        self._fn = fn

    def __call__(self, *args):
        return self._fn(*args)

    def __setstate__(self, state):
        raise pickle.UnpicklingError("BUILD applied to a constructor")


def _reconstruct_persistent_obj(meta):
    # Upstream would exec meta['module_src'] to recreate the class; we only keep name and state.
    if not isinstance(meta, dict) or not isinstance(meta.get("state"), dict):
        raise ValueError("persistent object without a state dict")
    class_name = meta.get("class_name")  # never str() of file data: a shared-list bomb's repr is endless
    return _PersistentModule(class_name[:200] if isinstance(class_name, str) else "?", meta["state"])


# numpy: an array pickles as `_reconstruct(ndarray, (0,), b'b')` then BUILD (version, shape, dtype,
# fortran, data). numpy itself would allocate whatever shape `_reconstruct` names and trust the dtype
# state BUILD hands it, so both are stand-ins here that check shape and dtype against the data given.

_NDARRAY = "numpy.ndarray"  # a marker: calling the real class would allocate any shape it is given
_DTYPE_NAME = re.compile(r"[?bBhHiIlLqQefdgFDGSUV]|[biufcSUV]\d{1,9}")


class _DtypeSpec(_StateHolder):
    """np.dtype(name, align, copy) plus its BUILD state; only plain numeric/bytes/text dtypes resolve."""

    def __init__(self, name=None, *_align_copy):
        self.name = name

    def resolve(self) -> np.dtype:
        if not isinstance(self.name, str) or not _DTYPE_NAME.fullmatch(self.name):
            raise ValueError(f"unsupported numpy dtype {str(self.name)[:40] if isinstance(self.name, str) else '?'}")
        dtype = np.dtype(self.name)
        state = self.state
        if state is None:
            return dtype
        if not isinstance(state, tuple) or len(state) < 8 or any(part is not None for part in state[2:5]) \
                or state[1] not in ("<", ">", "|", "=") or state[5] not in (-1, dtype.itemsize):
            raise ValueError("structured, sub-array or malformed numpy dtype")
        return dtype.newbyteorder(state[1]) if state[1] in "<>" else dtype


def _array_dtype(spec) -> np.dtype:
    dtype = spec.resolve() if isinstance(spec, _DtypeSpec) else None
    if dtype is None or dtype.hasobject:
        raise ValueError("numpy array whose dtype is not a plain numeric one")
    return dtype


class _PickledArray(np.ndarray):
    """What `_reconstruct` makes: an empty array that BUILD fills only after checking its state."""

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise ValueError("malformed numpy array state")
        shape, spec, fortran, data = state[-4:]
        dtype = _array_dtype(spec)
        if not isinstance(shape, tuple) or len(shape) > 32 \
                or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
            raise ValueError("numpy array with a malformed shape")
        if not isinstance(data, (bytes, bytearray)) or math.prod(shape) * dtype.itemsize != len(data):
            raise ValueError("numpy array whose data does not match its shape and dtype")
        super().__setstate__((1, shape, dtype, bool(fortran), data))


def _reconstruct_array(subtype, shape, dtype):
    if subtype is not _NDARRAY:
        raise ValueError("numpy _reconstruct of something other than an ndarray")
    return np.ndarray.__new__(_PickledArray, (0,), np.uint8)


def _scalar(spec, data=None):
    dtype = _array_dtype(spec)
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise ValueError("numpy scalar whose data does not match its dtype")
    return _np_scalar(dtype, data)


def _plain_str(value=""):
    # Real snapshots never call str(); repr of a shared-reference bomb would never finish.
    if value is not None and not isinstance(value, (str, int, float, bool, bytes)):
        raise ValueError("str() of a container")
    return str(value)


def _rebuild_tensor(storage, offset, size, stride, *_requires_grad_hooks_metadata):
    import torch  # noqa: PLC0415 (loaded already: the storage decoder of this route imported it)

    if not isinstance(storage, torch.Tensor):
        raise ValueError("tensor whose storage is not a decoded storage")
    return storage.as_strided(tuple(size), tuple(stride), int(offset))  # bounds-checked view


def _rebuild_parameter(data, *_requires_grad_hooks):
    # Returning the tensor itself keeps identity: Adam's param_groups reference this very object.
    if not is_tensor(data):
        raise ValueError("parameter without tensor data")
    return data


def is_tensor(value) -> bool:
    """A tensor of either route: a torch tensor, or an ArrayTensor record."""
    if isinstance(value, ArrayTensor):
        return True
    torch = sys.modules.get("torch")  # no torch loaded: no torch tensor can exist
    return torch is not None and isinstance(value, torch.Tensor)


class ArrayTensor:
    """A tensor without torch: its dtype's name (torch's: 'float32', 'bfloat16', ...), its shape, and
    its values as a read-only numpy view of the decoded storage (bfloat16: the raw uint16 bits).
    Slots plus a refusing __setstate__: a BUILD opcode cannot alter one."""
    __slots__ = ("dtype", "shape", "values")

    def __init__(self, dtype: str, shape: Tuple[int, ...], values: np.ndarray):
        self.dtype, self.shape, self.values = dtype, shape, values

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    def tolist(self):
        if self.dtype == "bfloat16":  # widen the bits: bfloat16 is float32's upper half
            return (self.values.astype("<u4") << 16).view("<f4").tolist()
        return self.values.tolist()

    def __setstate__(self, state):
        raise pickle.UnpicklingError("BUILD applied to a tensor")


def _rebuild_array_tensor(storage, offset, size, stride, *_requires_grad_hooks_metadata):
    """The record route's `_rebuild_tensor_v2`: the view torch's as_strided would make, after the same
    bounds check (the view may not reach past its storage), or a ValueError."""
    if not isinstance(storage, _FlatStorage):
        raise ValueError("tensor whose storage is not a decoded storage")
    size, stride = tuple(size), tuple(stride)
    plain = lambda values: all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values)
    if not (plain((offset, *size, *stride)) and len(size) == len(stride) and len(size) <= 32):
        raise ValueError("tensor with a malformed size, stride or offset")
    numel = storage.values.shape[0]
    if math.prod(size) == 0:
        values = storage.values[:0].reshape(size)
    else:
        last = offset + sum((n - 1) * step for n, step in zip(size, stride, strict=True))
        if last >= numel:
            raise ValueError(f"tensor view reaches element {last} of a storage of {numel}")
        itemsize = storage.values.itemsize
        values = np.lib.stride_tricks.as_strided(storage.values[offset:], size,
                                                 tuple(step * itemsize for step in stride), writeable=False)
    return ArrayTensor(storage.dtype, size, values)


# ---------------------------------------------------------------------------------------------
# Storages: nested legacy torch.save blobs.


class _StorageKind:
    """A storage class named in a blob header, on the record route. Slots plus a refusing
    __setstate__, and not callable: the stream can only pass it around."""
    __slots__ = ("dtype", "numpy_dtype")

    def __init__(self, dtype: str, numpy_dtype: str):
        self.dtype, self.numpy_dtype = dtype, np.dtype(numpy_dtype)

    def __setstate__(self, state):
        raise pickle.UnpicklingError("BUILD applied to a storage type")


@dataclass(frozen=True, eq=False)  # hashed by identity, as a torch storage tensor is
class _FlatStorage:
    """A decoded storage on the record route: its dtype name and its elements, flat."""
    dtype: str
    values: np.ndarray

    def __setstate__(self, state):
        raise pickle.UnpicklingError("BUILD applied to a storage")


class _TorchTensors:
    """The torch route's storages: flat CPU tensors."""

    def __init__(self):
        import torch  # noqa: PLC0415 (the record route must not import it)

        self._torch = torch
        self.kinds = {name: getattr(torch, dtype) for name, (dtype, _, _) in STORAGE_DTYPES.items()}

    def is_kind(self, value) -> bool:
        return isinstance(value, self._torch.dtype)

    def decode(self, blob, start, kind, numel):
        torch = self._torch
        itemsize = torch.empty(0, dtype=kind).element_size()
        data = _storage_bytes(blob, start, numel, itemsize)
        if not data:
            return torch.empty(0, dtype=kind)
        return torch.frombuffer(data, dtype=kind)


class _ArrayTensors:
    """The record route's storages: flat numpy arrays of the same bytes (no torch)."""

    def __init__(self):
        self.kinds = {name: _StorageKind(dtype, code) for name, (dtype, code, _) in STORAGE_DTYPES.items()}

    def is_kind(self, value) -> bool:
        return isinstance(value, _StorageKind)

    def decode(self, blob, start, kind, numel):
        data = _storage_bytes(blob, start, numel, kind.numpy_dtype.itemsize)
        values = np.frombuffer(data, dtype=kind.numpy_dtype)
        values.flags.writeable = False
        return _FlatStorage(kind.dtype, values)


_TENSOR_ROUTES = {"torch": _TorchTensors, "records": _ArrayTensors}


class _BlobHeaderUnpickler(pickle.Unpickler):
    """Reads the small header pickles of a storage blob: storage type names are the only globals."""

    def __init__(self, file, kinds):
        super().__init__(file)
        self._kinds = kinds

    def find_class(self, module, name):
        if module == "torch" and name in self._kinds:
            return self._kinds[name]
        raise pickle.UnpicklingError(f"storage blob references '{module}.{name}'")

    def persistent_load(self, pid):
        return pid  # the ('storage', dtype, key, location, numel, view) record itself is the answer


class _StorageDecoder:
    """`torch.storage._load_from_bytes` stand-in: blob -> flat CPU tensor (or _FlatStorage on the
    record route), one per storage key."""

    def __init__(self, display_name="storage", route=None):
        self._cache = {}
        self._display_name = display_name
        self._route = route if route is not None else _TorchTensors()
        self._passed = []  # (header pickle, room after its start) that passed the opcode scan: _PASSED_KEPT

    def _header(self, stream, blob):
        # The header pickles are file data too: dry-run each before the C unpickler sees it.
        start, size = stream.tell(), len(blob)
        if not any(blob.startswith(header, start) and size - start >= room for header, room in self._passed):
            scan_pickle(stream, size - start, self._display_name)
            self._remember_passed(bytes(blob[start:stream.tell()]), size - start)
        stream.seek(start)
        return _BlobHeaderUnpickler(BoundedFile(stream, size - start), self._route.kinds).load()

    # Three of a blob's five headers (magic, version, system info) are the same bytes in every blob;
    # a pickle that starts with bytes that already passed the scan up to their STOP, with at least
    # as many bytes after its start (the one check that reads the room left: a FRAME's length),
    # scans alike, so each is scanned once per file (_header). A handful are kept: the others
    # differ per storage.
    _PASSED_KEPT = 8

    def _remember_passed(self, header: bytes, room: int) -> None:
        if len(self._passed) < self._PASSED_KEPT:
            self._passed.append((header, room))

    def __call__(self, blob):
        if not isinstance(blob, (bytes, bytearray)):
            raise ValueError("storage blob is not bytes")
        stream = io.BytesIO(blob)  # shares the bytes, no copy
        try:
            magic, version, sys_info, record, _keys = (self._header(stream, blob) for _ in range(5))
        except (EOFError, pickle.UnpicklingError) as exc:  # not the outer stream's truncation
            raise ValueError(f"malformed storage blob ({_one_line(exc)})") from None
        if magic != _LEGACY_TORCH_MAGIC or version != 1001 or not isinstance(record, tuple) \
                or len(record) < 5 or record[0] != "storage" or not self._route.is_kind(record[1]):
            raise ValueError("storage blob is not a legacy torch.save storage")
        if isinstance(sys_info, dict) and sys_info.get("little_endian") is False:
            raise ValueError("big-endian storage")
        _, dtype, key, location, numel = record[:5]
        cache_key = (key, location, dtype, numel)
        if cache_key not in self._cache:
            self._cache[cache_key] = self._route.decode(blob, stream.tell(), dtype, numel)
        return self._cache[cache_key]


def _storage_bytes(blob, start, numel, itemsize) -> bytearray:
    """The storage's data after its element count, checked against the header's count and the blob."""
    (stored_numel,) = struct.unpack_from("<q", blob, start)
    nbytes = stored_numel * itemsize
    data_start = start + 8
    if stored_numel != numel or stored_numel < 0 or data_start + nbytes > len(blob):
        raise ValueError("storage blob is shorter than its element count")
    # Copy into memory we own: the blob is immutable and its data offset is not aligned.
    return bytearray(memoryview(blob)[data_start:data_start + nbytes])


# ---------------------------------------------------------------------------------------------
# The outer unpickler and its allowlist.

_TYPING_ANY = "typing.Any"  # a marker rather than the real (attribute-settable) class
_OMEGACONF_VALUE_NODES = ("AnyNode", "StringNode", "IntegerNode", "FloatNode", "BooleanNode",
                          "ValueNode", "EnumNode", "PathNode", "BytesNode")


def _allowed_globals(display_name, tensors="torch"):
    # Calls of these copy at most what the opcode scan priced; str() is the one deep walk, guarded.
    builtin_types = (dict, list, tuple, set, frozenset, int, float, bool)
    allowed = {("builtins", t.__name__): t for t in builtin_types}
    allowed.update({
        ("builtins", "str"): _Constructor(_plain_str),
        ("collections", "OrderedDict"): OrderedDict, ("collections", "defaultdict"): defaultdict,
        ("typing", "Any"): _TYPING_ANY, ("numpy", "ndarray"): _NDARRAY, ("numpy", "dtype"): _Constructor(_DtypeSpec),
        ("omegaconf.dictconfig", "DictConfig"): PickledConfigNode, ("omegaconf.listconfig", "ListConfig"): PickledConfigNode,
        ("omegaconf.base", "ContainerMetadata"): _StateHolder, ("omegaconf.base", "Metadata"): _StateHolder,
    })
    allowed.update({("omegaconf.nodes", node): PickledConfigNode for node in _OMEGACONF_VALUE_NODES})
    for numpy_core in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(numpy_core, "_reconstruct")] = _Constructor(_reconstruct_array)
        allowed[(numpy_core, "scalar")] = _Constructor(_scalar)
    # EpiGRAF names its packages src.*; StyleGAN2/3 snapshots use the same helpers without the prefix,
    # and reading those as far as their network tree lets us say clearly what they are.
    for prefix in ("src.", ""):
        allowed[(prefix + "dnnlib.util", "EasyDict")] = _EasyDict
        allowed[(prefix + "dnnlib.util", "TensorGroup")] = _TensorGroup
        # 3DGP did not make its Discriminator persistent; train.py imports it as
        # training.networks_discriminator (src/ on the path), so that is the name snapshots hold.
        allowed[(prefix + "training.networks_discriminator", "Discriminator")] = _Discriminator
        allowed[(prefix + "torch_utils.persistence", "_reconstruct_persistent_obj")] = \
            _Constructor(_reconstruct_persistent_obj)
    route = _TENSOR_ROUTES[tensors]()
    rebuild = _rebuild_tensor if tensors == "torch" else _rebuild_array_tensor
    allowed.update({("torch._utils", "_rebuild_tensor_v2"): _Constructor(rebuild),
                    ("torch._utils", "_rebuild_parameter"): _Constructor(_rebuild_parameter),
                    ("torch.storage", "_load_from_bytes"): _Constructor(_StorageDecoder(display_name, route)),
                    ("torch.optim.adam", "Adam"): _TorchOptimizer})
    for module, name in (("container", "Sequential"), ("container", "ModuleList"),
                         ("container", "ModuleDict"), ("sparse", "Embedding")):
        allowed[(f"torch.nn.modules.{module}", name)] = type(name, (_ModuleLike,), {"class_name": name})
    return allowed


class _SafeUnpickler(pickle.Unpickler):
    def __init__(self, file, display_name, tensors="torch"):
        super().__init__(file)
        self._display_name = display_name
        self._allowed = _allowed_globals(display_name, tensors)  # fresh per file: the storage cache lives in it

    def find_class(self, module, name):
        allowed = self._allowed.get((module, name))
        if allowed is None:
            raise CheckpointError(f"{self._display_name}: refuses to load: the pickle references "
                                  f"'{module}.{name}', which is not an EpiGRAF network or tensor")
        return allowed

    def persistent_load(self, pid):
        raise CheckpointError(f"{self._display_name}: refuses to load: the pickle uses persistent ids, "
                              f"which an EpiGRAF snapshot never does")


# ---------------------------------------------------------------------------------------------
# Public entry points.

def is_epigraf_pickle(path) -> bool:
    """Cheap sniff: a pickle stream whose first 64 KiB name the persistent-object reconstructor.

    StyleGAN2/3 snapshots match too, on purpose: reading one explains in one line what it is.
    """
    try:
        require_regular_file(path)  # a named pipe would block open() forever
        with open(path, "rb") as f:
            head = f.read(_SNIFF_BYTES)
    except (OSError, CheckpointError):
        return False
    return head[:1] == pickle.PROTO and b"_reconstruct_persistent_obj" in head


def read_epigraf_pickle(path, tensors: str = "torch") -> EpigrafSnapshot:
    """Load a snapshot without running anything from it; every problem is a one-line CheckpointError.
    tensors="records" imports no torch and gives each tensor as an ArrayTensor (see the docstring)."""
    if tensors not in _TENSOR_ROUTES:
        raise ValueError(f"tensors must be one of {sorted(_TENSOR_ROUTES)}")
    name = os.fspath(path)
    top = _load_restricted(name, tensors)
    try:
        return _interpret_snapshot(top, name, TreeBudget(name))
    except MemoryError:  # the budgets should stop every input before this; a last resort
        raise CheckpointError(f"{name}: refuses to load: its data does not fit in memory") from None
    except RecursionError:
        raise CheckpointError(f"{name}: is malformed: its structure is cyclic or nested too deeply") from None
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{name}: is malformed: {_one_line(exc)}") from None


def _load_restricted(name, tensors="torch"):
    with open_regular_file(name) as f:  # refuses pipes, devices and folders before reading
        size = os.fstat(f.fileno()).st_size
        _refuse_foreign_format(f.read(8), name)
        f.seek(0)
        # A dry run of the opcodes first: forged lengths, memo indices, depth and copy bombs are
        # refused before the C unpickler allocates anything for them.
        scan_pickle(f, size, name)
        f.seek(0)
        try:
            return _SafeUnpickler(BoundedFile(f, size), name, tensors).load()
        except CheckpointError:
            raise
        except RecursionError:
            raise CheckpointError(f"{name}: is malformed: its structure is nested too deeply") from None
        except (EOFError, pickle.UnpicklingError) as exc:
            if isinstance(exc, EOFError) or "truncated" in str(exc):
                raise CheckpointError(f"{name}: is truncated or incomplete: the pickle stream ends early "
                                      f"(copy or download it again)") from None
            raise CheckpointError(f"{name}: is corrupt: {_one_line(exc)}") from None
        except MemoryError:  # the scan should stop every input before this; a last resort
            raise CheckpointError(f"{name}: refuses to load: its data does not fit in memory") from None
        except Exception as exc:  # noqa: BLE001 - a constructor fed malformed data (wrong arity, bad view bounds, ...)
            raise CheckpointError(f"{name}: is corrupt: {type(exc).__name__}: {_one_line(exc)}") from None


def _refuse_foreign_format(head, name):
    if not head:
        raise CheckpointError(f"{name}: is empty; {_EXPECTED}")
    if head.startswith(b"PK\x03\x04"):
        raise CheckpointError(f"{name}: looks like a torch.save file (a PyTorch state dict), not an EpiGRAF "
                              f"network snapshot; {_EXPECTED}")
    if head[:1] != pickle.PROTO:
        raise CheckpointError(f"{name}: is not a pickle file; {_EXPECTED}")


def _one_line(exc):
    return " ".join(str(exc).split()) or type(exc).__name__


# ---------------------------------------------------------------------------------------------
# From the unpickled object graph to plain data.

def _interpret_snapshot(top, name, budget):
    if isinstance(top, int) and top == _LEGACY_TORCH_MAGIC:
        raise CheckpointError(f"{name}: looks like a legacy torch.save file (a PyTorch state dict), not an "
                              f"EpiGRAF network snapshot; {_EXPECTED}")
    if not isinstance(top, dict) or not isinstance(top.get("G_ema"), _ModuleLike):
        raise CheckpointError(f"{name}: is a pickle but not an EpiGRAF network snapshot (no 'G_ema' "
                              f"network in it); {_EXPECTED}")
    _require_tri_plane_generator(top["G_ema"], name)
    networks = {key: _network(top[key], budget) for key in _NETWORK_KEYS if isinstance(top.get(key), _ModuleLike)}
    optimizers = {key: _optimizer(top[key], networks.get(owner), budget)
                  for key, owner in _OPTIMIZER_OWNERS.items() if isinstance(top.get(key), _TorchOptimizer)}
    return EpigrafSnapshot(
        path=name, networks=networks, training_set_kwargs=_plain(top.get("training_set_kwargs") or {}, budget),
        stats=_plain(top.get("stats") or {}, budget), optimizers=optimizers,
        vis=_plain(top.get("vis") or {}, budget), config=_experiment_config(top["G_ema"], budget))


def _require_tri_plane_generator(g_ema, name):
    synthesis = _children(g_ema).get("synthesis")
    if isinstance(synthesis, _ModuleLike) and "tri_plane_mlp" in _children(synthesis):
        return
    if isinstance(synthesis, _ModuleLike) and any(isinstance(k, str) and re.fullmatch(r"b\d+", k)
                                                  for k in _children(synthesis)):
        raise CheckpointError(f"{name}: is a 2-D StyleGAN generator snapshot, not a tri-plane EpiGRAF one "
                              f"(G_ema.synthesis has image blocks but no tri-plane decoder/MLP); {_EXPECTED}")
    raise CheckpointError(f"{name}: its G_ema ({g_ema.class_name}) is not EpiGRAF's tri-plane generator "
                          f"(no synthesis.tri_plane_mlp); {_EXPECTED}")


def _children(module):
    state = module.state if isinstance(module.state, dict) else {}
    children = state.get("_modules") or {}
    if not isinstance(children, dict):
        raise ValueError("a module whose submodules are not a dict")
    return children


def _walk_modules(module, budget, path="", depth=0):
    """Pre-order (path, module) pairs, in registration order, as torch's state_dict visits them.
    Every module reached counts against the budget: a module shared many times is walked each time."""
    budget.visit(depth)
    yield path, module
    for child_name, child in _children(module).items():
        if child is None:
            continue
        if not isinstance(child_name, str):
            raise ValueError("a submodule whose name is not a string")
        if not isinstance(child, _ModuleLike):
            raise ValueError(f"submodule '{_join(path, child_name)}' is not a network module")
        yield from _walk_modules(child, budget, _join(path, child_name), depth + 1)


def _join(path, name):
    return f"{path}.{name}" if path else name


def _module_state(module):
    if not isinstance(module.state, dict):
        raise ValueError("a module whose state is not a dict")
    return module.state


def _state_dict(module, budget):
    # torch orders a module's own parameters, then its buffers, then recurses into children.
    out = OrderedDict()
    for path, sub in _walk_modules(module, budget):
        state = _module_state(sub)
        non_persistent = set(_plain_names(state.get("_non_persistent_buffers_set") or ()))
        own = list((state.get("_parameters") or {}).items())
        own += [(k, t) for k, t in (state.get("_buffers") or {}).items() if k not in non_persistent]
        budget.items(len(own))
        for name, tensor in own:
            if not isinstance(name, str):
                raise ValueError("a parameter whose name is not a string")
            if tensor is not None and not is_tensor(tensor):
                raise ValueError(f"'{_join(path, name)}' is not a tensor")
            if tensor is not None:
                out[_join(path, name)] = tensor
    return out


def _plain_names(names):
    # Buffer names are strings; anything else (a nested tuple) would only be hashed, never matched.
    return [n for n in names if isinstance(n, str)]


def _network(module, budget):
    state = _module_state(module)
    attributes = {}
    for path, sub in _walk_modules(module, budget):
        attrs = {"class_name": sub.class_name}
        attrs.update((k, _plain(v, budget)) for k, v in _module_state(sub).items()
                     if isinstance(k, str) and not k.startswith("_"))
        attributes[path] = attrs
    return EpigrafNetwork(
        class_name=module.class_name, training=bool(state.get("training", False) is True),
        init_args=tuple(_plain(list(state.get("_init_args") or ()), budget)),
        init_kwargs=_plain(dict(state.get("_init_kwargs") or {}), budget),
        state_dict=_state_dict(module, budget), attributes=attributes)


def _optimizer(optimizer, network, budget):
    state = optimizer.state if isinstance(optimizer.state, dict) else {}
    # Adam holds the very Parameter objects of its network (pickle memo references): match by identity.
    names = {id(t): name for name, t in network.state_dict.items()} if network is not None else {}
    unmatched = {}

    def name_of(param):
        if id(param) in names:
            return names[id(param)]
        return unmatched.setdefault(id(param), f"<unmatched parameter {len(unmatched)}>")

    groups = []
    for group in state.get("param_groups") or ():
        budget.visit(1)
        params = group["params"]
        budget.items(len(params))
        groups.append(dict(_plain({k: v for k, v in group.items() if k != "params"}, budget),
                           params=[name_of(p) for p in params]))
    per_param = {name_of(p): _plain(dict(v), budget) for p, v in (state.get("state") or {}).items()}
    return {"defaults": _plain(state.get("defaults") or {}, budget), "param_groups": groups, "state": per_param}


_ATOMS = (str, int, float, bool, type(None))


def _plain(value, budget, depth=0):
    """Builtin containers, python numbers, CPU tensors and numpy arrays; configs resolved. Every object
    reached counts against the budget, shared ones each time (a shared-list bomb stops there)."""
    budget.visit(depth)
    if isinstance(value, PickledConfigNode):
        return PickledConfigResolver(value, budget).plain(value, depth)
    if isinstance(value, str):
        budget.chars(len(value))
        return value
    if isinstance(value, dict):
        budget.items(len(value))
        # a key is hashed again here: one that is itself a container is walked (and counted) too
        return {(k if isinstance(k, _ATOMS) else _plain(k, budget, depth + 1)): _plain(v, budget, depth + 1)
                for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        budget.items(len(value))
        return type(value)(_plain(v, budget, depth + 1) for v in value)
    if isinstance(value, _PickledArray):
        return value.view(np.ndarray)
    if isinstance(value, _DtypeSpec):
        return value.resolve()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _experiment_config(g_ema, budget):
    state = _module_state(g_ema)
    cfg = state.get("cfg")
    if not isinstance(cfg, PickledConfigNode):
        cfg = (state.get("_init_kwargs") or {}).get("cfg")
    if not isinstance(cfg, PickledConfigNode):
        return {}
    resolver = PickledConfigResolver(cfg, budget)
    return resolver.plain(resolver.root)


# ---------------------------------------------------------------------------------------------
# OmegaConf 2.0 trees: `_content` (containers) / `_val` (leaves), `_parent` links, `${a.b}` strings.

_INTERPOLATION = re.compile(r"\$\{([^${}]+)\}")
_MAX_INDIRECTIONS = 32
_UNRESOLVED = object()


class PickledConfigResolver:
    """Turns a node into plain data, resolving `${a.b.c}` against the root of the node's own tree.
    Every node reached, reference followed and character produced counts against the file's budget:
    an interpolation bomb (a: ${b}${b}${b}, b: ${c}${c}${c}, ...) is refused, not expanded."""

    def __init__(self, node, budget=None):
        self.root, seen = node, {id(node)}
        while isinstance(self.root.parent, PickledConfigNode) and id(self.root.parent) not in seen:
            self.root = self.root.parent
            seen.add(id(self.root))
        self._budget = budget if budget is not None else TreeBudget("config")
        self._expanding = set()  # ids of interpolation targets being expanded: a repeat is a cycle

    def plain(self, node, depth=0):
        self._budget.visit(depth)
        raw = node.raw if isinstance(node, PickledConfigNode) else node
        if isinstance(raw, str):
            return self._resolve_string(raw, depth)
        if isinstance(raw, dict):
            self._budget.items(len(raw))
            return {k: self.plain(v, depth + 1) for k, v in raw.items()}
        if isinstance(raw, list):
            self._budget.items(len(raw))
            return [self.plain(v, depth + 1) for v in raw]
        return _plain(raw, self._budget, depth)

    def _resolve_string(self, text, depth):
        self._budget.chars(len(text))
        whole = _INTERPOLATION.fullmatch(text)
        if whole:
            value = self._expand(whole.group(1), depth)
            return text if value is _UNRESOLVED else value

        def substitute(match):
            value = self._expand(match.group(1), depth)
            # Only scalars splice into text; a null (OmegaConf would print 'None') keeps the reference.
            spliceable = value is not _UNRESOLVED and value is not None and not isinstance(value, (dict, list))
            return str(value) if spliceable else match.group(0)
        result = _INTERPOLATION.sub(substitute, text)
        self._budget.interpolation(len(self._expanding), len(result))
        return result

    def _expand(self, dotted, depth):
        target = self._lookup(dotted, 0)
        if target is None or id(target) in self._expanding:
            return _UNRESOLVED
        self._expanding.add(id(target))
        self._budget.interpolation(len(self._expanding), 0)
        try:
            value = self.plain(target, depth + 1)
        finally:
            self._expanding.discard(id(target))
        return value

    def _lookup(self, dotted, hops):
        """The node at an absolute key path, following interpolated containers on the way."""
        if hops > _MAX_INDIRECTIONS or ":" in dotted:  # a reference loop, or a custom resolver
            return None
        node = self.root
        for part in dotted.strip().split("."):
            self._budget.visit(hops)
            raw = node.raw if isinstance(node, PickledConfigNode) else node
            link = _INTERPOLATION.fullmatch(raw) if isinstance(raw, str) else None
            if link:  # e.g. model.generator.dataset is '${dataset}'
                node = self._lookup(link.group(1), hops + 1)
                raw = node.raw if isinstance(node, PickledConfigNode) else node
            if isinstance(raw, dict) and part in raw:
                node = raw[part]
            elif isinstance(raw, list) and part.isdigit() and len(part) < 10 and int(part) < len(raw):
                node = raw[int(part)]
            else:
                return None
        return node
