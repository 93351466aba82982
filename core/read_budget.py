"""Budgets for reading untrusted model files: one place for every limit, and the checks that apply them.

A checkpoint or snapshot is a pickle, and a pickle is a program: a few hundred bytes can describe an
object graph whose tree expansion is astronomically large (a "billion laughs" of shared lists), a
string or a memo table of terabytes, or a nesting deep enough to overflow the C stack. The readers
(`epigraf_pickle` for EpiGRAF/3DGP `.pkl`, `checkpoint` for trigan `.ckpt`) therefore

1. refuse anything but a regular file before reading from it (`open_regular_file`: a named pipe
   would block `open()` forever, `/dev/zero` never ends);
2. read through `BoundedFile`, whose `read(n)` never asks for more than the bytes left, so a length
   field claiming terabytes cannot make the reader allocate them;
3. dry-run the opcode stream (`scan_pickle`) before any object is built: claimed lengths against the
   bytes left, memo indices against the objects stored so far, opcode count, MARK depth, object
   nesting depth, and the elements a constructor call would copy;
4. walk the loaded data with a `TreeBudget` that counts every object each time it is reached (the
   tree size, not the graph size), so a shared-reference bomb is refused after a bounded amount of
   work instead of being expanded.

Each refusal is a one-line CheckpointError: `FILE: refuses to load: WHAT exceeds LIMIT (a real
snapshot has about N)`. The limits leave wide headroom over the real files measured below (the
fixtures in tests/fixtures, the bundled assets/demo.ckpt and a 512^2 FFHQ-size training checkpoint).
"""

from __future__ import annotations

import os
import pickletools
import stat
from dataclasses import dataclass

from trigan.core.errors import CheckpointError, TriganError

# ---------------------------------------------------------------------------------------------
# The limits. "Measured" numbers are the largest over tests/fixtures/epigraf/*.pkl,
# tests/fixtures/3dgp/*.pkl (3dgp_cond.pkl is the largest, 6.5 MB) and assets/demo.ckpt; a trigan
# training checkpoint of a 512^2 FFHQ model (G, D, both Adam states) was measured at ~3x the opcodes
# and objects of a G_ema-only one, which is still far below the 3DGP snapshots.


@dataclass(frozen=True)
class Limits:
    # Opcodes in one pickle stream. Measured: 279,898 (3dgp_cond.pkl), 3,880 (demo.ckpt data.pkl).
    pickle_opcodes: int = 5_000_000
    # Elements the unpickler may copy or hash, summed over the stream: the tree size of every
    # constructor call's arguments and of every dict key / set element (what a stream of `list(L)`
    # calls on one big L, or a tuple-bomb dict key, would multiply). Measured: 2,435,302 (3dgp_cond.pkl:
    # each module's arguments hold its submodules), 1,569 (demo.ckpt).
    copied_elements: int = 50_000_000
    # Open MARKs at once. Measured: 29 (3DGP), 5 (demo.ckpt).
    mark_depth: int = 500
    # Nesting depth in the opcode scan, where each constructor call adds two levels (its argument
    # tuple and its result). Measured: 51 (3DGP), 5 (demo.ckpt). Far below what would overflow
    # the C stack when hashing a nested tuple (~100,000 levels).
    pickle_depth: int = 500
    # Nesting depth of loaded data in every walk. Measured: 10 (3DGP snapshot: modules, attributes,
    # config nodes); a trigan checkpoint's payload: 5.
    nesting_depth: int = 100
    # A trigan config nests only a few levels (model.camera.look_at_yaw_range is 4); OmegaConf
    # needs ~10 Python frames per level, so deeper ones would hit the recursion limit.
    config_depth: int = 32
    # Objects reached while turning loaded data into plain data, counting a shared object every time
    # it is reached (the tree size). Measured: 9,313 (3dgp_cond.pkl), 1,312 (demo.ckpt); a full
    # 512^2 training checkpoint (G, D, two Adam states) has ~10,000.
    tree_objects: int = 2_000_000
    # Items in one container. Measured: 89 (3DGP attributes), ~110 (demo.ckpt's G_ema state dict);
    # a 512^2 model's state dict has < 2,000.
    container_items: int = 1_000_000
    # Characters of text reached in a walk (shared strings counted each time). Measured: 16,486
    # (3dgp_cond.pkl, mostly config keys and values).
    text_chars: int = 16 * 1024 * 1024
    # Config interpolation: references followed inside one another, and characters produced by
    # resolving them in one file. Measured: 3 levels and 9,252 characters (3dgp_cond.pkl).
    interpolation_depth: int = 32
    interpolation_chars: int = 4 * 1024 * 1024
    # The pickle inside a trigan .ckpt zip. Measured: 17,433 bytes (demo.ckpt, G_ema only); a full
    # 512^2 training checkpoint's is ~0.3 MB.
    ckpt_pickle_bytes: int = 256 * 1024 * 1024
    # Bytes a .ckpt zip may claim uncompressed, as a multiple of its size on disk: torch.save stores
    # entries uncompressed (ratio 1.0); a zip bomb claims thousands.
    ckpt_unzip_ratio: float = 4.0


LIMITS = Limits()

# What a real file has, for the refusal messages (the measured maxima above, rounded).
TYPICAL = {
    "pickle_opcodes": "280,000", "copied_elements": "2,400,000", "mark_depth": "30", "pickle_depth": "50", "nesting_depth": "10",
    "config_depth": "4", "tree_objects": "10,000", "container_items": "2,000", "text_chars": "16,000",
    "interpolation_depth": "3", "interpolation_chars": "9,000", "ckpt_pickle_bytes": "20,000 to 300,000",
}


def refusal(name, what: str, limit_key: str, limits: Limits = LIMITS) -> CheckpointError:
    """`FILE: refuses to load: WHAT exceeds LIMIT (a real snapshot has about N)`."""
    limit = getattr(limits, limit_key)
    return CheckpointError(f"{name}: refuses to load: {what} exceeds {limit:,} "
                           f"(a real snapshot has about {TYPICAL[limit_key]})")


# ---------------------------------------------------------------------------------------------
# Files

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _not_regular(name, mode, expected: str, error: type) -> TriganError:
    kind = next((label for test, label in _KINDS if test(mode)), "not a plain file")
    return error(f"{name}: is not a regular file ({kind}); expected {expected}")


def require_regular_file(path, name=None, expected: str = "a checkpoint file", error: type = CheckpointError) -> int:
    """The size of `path`, a regular file (symlinks followed); else a one-line `error` (by default
    CheckpointError; other readers pass their own, and what they expect).

    Checked before anything opens the path: opening a named pipe blocks until a writer appears."""
    name = os.fspath(path) if name is None else name
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise error(f"{name}: no such file") from None
    except OSError as exc:
        raise error(f"{name}: cannot be read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise _not_regular(name, info.st_mode, expected, error)
    return info.st_size


class NotRegularFile(ValueError):
    """What `open_without_blocking` opened is a pipe, a device, a folder, ...; `mode` says which."""

    def __init__(self, mode: int):
        super().__init__("not a regular file")
        self.mode = mode


def open_without_blocking(path, buffering: int = -1):
    """`open(path, 'rb')` that cannot block or stream forever: the open is non-blocking (opening a
    named pipe for reading would otherwise wait for a writer forever, and a pipe swapped in after a
    check still cannot hang it), and the opened descriptor must be a regular file, else
    NotRegularFile. OSError from the open passes through."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise NotRegularFile(mode)
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)  # regular files never block; reads behave as usual
    return os.fdopen(fd, "rb", buffering=buffering)


def open_regular_file(path, name=None, buffering: int = 1 << 20):
    """`open_without_blocking` for a checkpoint: every failure is a one-line CheckpointError naming it."""
    name = os.fspath(path) if name is None else name
    require_regular_file(path, name)
    try:
        return open_without_blocking(path, buffering)
    except FileNotFoundError:
        raise CheckpointError(f"{name}: no such file") from None
    except NotRegularFile as exc:
        raise _not_regular(name, exc.mode, "a checkpoint file", CheckpointError) from None
    except OSError as exc:
        raise CheckpointError(f"{name}: cannot be read: {exc.strerror or exc}") from None


class BoundedFile:
    """A read-only view of a binary file that never reads past `size` bytes from where it starts, and
    whose read(n) never asks the underlying file for more than the bytes left: a length field that
    claims terabytes makes a short read (then a clean "truncated"), never a terabyte allocation."""

    def __init__(self, raw, size: int):
        self._raw, self._size = raw, max(0, int(size))
        self._left = self._size

    def tell(self) -> int:
        return self._size - self._left

    def remaining(self) -> int:
        return self._left

    def read(self, n: int = -1) -> bytes:
        n = self._left if n is None or n < 0 else min(int(n), self._left)
        data = self._raw.read(n) if n else b""
        self._left -= len(data)
        return data

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[:len(data)] = data
        return len(data)

    def readline(self, limit: int = -1) -> bytes:
        limit = self._left if limit is None or limit < 0 else min(int(limit), self._left)
        line = self._raw.readline(limit) if limit else b""
        self._left -= len(line)
        return line


# ---------------------------------------------------------------------------------------------
# The opcode scan: a dry run of the pickle machine over abstract values.

_TREE_CAP = 1 << 62  # tree sizes are counts; capping them keeps the arithmetic on small ints


class _Abstract:
    """What the scan knows of one object: its top-level item count, its nesting depth and its tree
    size (objects reached when walking it, shared ones counted each time). All three grow as
    APPENDS/SETITEMS add to it, also after it was memoised."""
    __slots__ = ("items", "depth", "tree", "children")

    def __init__(self, items: int = 0, depth: int = 0, tree: int = 1, children=()):
        self.items, self.depth, self.tree = items, depth, tree
        self.children = children  # a tuple's elements (fixed), to price a shallow copy of each


_MARK = object()
_SCALAR = _Abstract()  # numbers, strings, None, globals: nothing inside (shared, never mutated)

_PUSH_SCALAR = frozenset((
    "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "STRING", "BINSTRING", "SHORT_BINSTRING",
    "BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8", "UNICODE", "SHORT_BINUNICODE", "BINUNICODE",
    "BINUNICODE8", "FLOAT", "BINFLOAT", "NONE", "NEWTRUE", "NEWFALSE", "EXT1", "EXT2", "EXT4",
    "NEXT_BUFFER", "PERSID"))
_PUSH_EMPTY = frozenset(("EMPTY_LIST", "EMPTY_TUPLE", "EMPTY_DICT", "EMPTY_SET"))
_GET = frozenset(("GET", "BINGET", "LONG_BINGET"))
_PUT = frozenset(("PUT", "BINPUT", "LONG_BINPUT"))


class _ScanError(ValueError):
    """The stream is malformed (stack underflow, a missing mark, an unknown memo entry)."""


class PickleScan:
    """Dry-runs one pickle stream; `run()` returns the opcode count or raises a CheckpointError.

    `refused_globals` maps 'module name' to why the format never names it (checked on GLOBAL)."""

    def __init__(self, file: "BoundedFile", name, limits: Limits = LIMITS, refused_globals=None):
        self._file, self._name, self._limits = file, name, limits
        self._refused = refused_globals or {}
        self._stack: list = []
        self._marks: list = []       # stack lengths at each open MARK
        self._memo: dict = {}
        self.opcodes = 0
        self.work = 0                # elements copied or hashed by the unpickler
        self.max_depth = 0
        self.max_marks = 0

    # -- stack helpers ------------------------------------------------------------------------
    def _floor(self) -> int:
        return self._marks[-1] if self._marks else 0

    def _pop(self) -> _Abstract:
        if len(self._stack) <= self._floor():
            raise _ScanError("the pickle pops from an empty stack")
        return self._stack.pop()

    def _pop_mark(self) -> list:
        if not self._marks:
            raise _ScanError("the pickle closes a MARK it never opened")
        start = self._marks.pop()
        items = self._stack[start:]
        del self._stack[start:]
        return items

    def _top(self) -> _Abstract:
        if len(self._stack) <= self._floor():
            raise _ScanError("the pickle uses an empty stack")
        return self._stack[-1]

    def _check_depth(self, depth: int):
        self.max_depth = max(self.max_depth, depth)
        if depth > self._limits.pickle_depth:
            raise refusal(self._name, "the nesting depth of its pickled objects", "pickle_depth", self._limits)

    def _charge(self, amount: int):
        self.work += amount
        if self.work > self._limits.copied_elements:
            raise refusal(self._name, "the elements its unpickling copies or hashes", "copied_elements",
                          self._limits)

    def _new(self, children, items=None) -> _Abstract:
        depth = 1 + max((c.depth for c in children), default=0)
        self._check_depth(depth)
        tree = min(_TREE_CAP, 1 + sum(c.tree for c in children))
        return _Abstract(len(children) if items is None else items, depth, tree, tuple(children))

    def _add(self, target: _Abstract, children, keys=()):
        """APPEND(S), SETITEM(S), ADDITEMS: `keys` (dict keys, set elements) are hashed: their whole
        tree is work (a tuple's hash is not cached and visits every element, shared or not)."""
        if target is _SCALAR:
            raise _ScanError("the pickle adds items to a number, string or global")
        self._charge(sum(k.tree for k in keys))
        target.items += len(children) - len(keys) if keys and len(keys) * 2 == len(children) else len(children)
        target.depth = max(target.depth, 1 + max((c.depth for c in children), default=0))
        target.tree = min(_TREE_CAP, target.tree + sum(c.tree for c in children))
        self._check_depth(target.depth)

    def _call(self, *arguments: _Abstract) -> _Abstract:
        """A constructor call (REDUCE, NEWOBJ, BUILD): it may copy or hash all its arguments hold.
        A tree size is exact for what can be hashed (tuples of immutables); a list can grow after it
        was put in the argument tuple, so each argument's current item count is added."""
        self._charge(sum(a.tree + sum(c.items for c in a.children) for a in arguments))
        return self._new(list(arguments), items=sum(a.items for a in arguments))

    def _memo_index(self, index) -> int:
        # A pickler numbers memo entries 0, 1, 2, ...: an index past the entries stored so far is
        # forged (CPython's unpickler would resize its memo table to it: 2^32 entries is 32 GB).
        if not isinstance(index, int) or index < 0 or index > len(self._memo):
            raise _ScanError(f"memo index {index} is beyond the {len(self._memo)} objects stored so far")
        return index

    # -- the dry run ------------------------------------------------------------------------------
    def run(self) -> int:
        try:
            for opcode, arg, _pos in pickletools.genops(self._file):
                self.opcodes += 1
                if self.opcodes > self._limits.pickle_opcodes:
                    raise refusal(self._name, "the number of pickle opcodes", "pickle_opcodes", self._limits)
                if self._step(opcode.name, arg):
                    return self.opcodes
        except _ScanError as exc:
            raise CheckpointError(f"{self._name}: is corrupt: {exc}") from None
        except ValueError as exc:  # genops: a short read, bad UTF-8, an unknown opcode
            text = " ".join(str(exc).split())
            if "remain" in text or "exhausted" in text or "but only" in text or "EOF" in text:
                raise CheckpointError(f"{self._name}: is truncated or incomplete: the pickle stream ends "
                                      f"early ({text[:200]})") from None
            raise CheckpointError(f"{self._name}: is corrupt: {text[:200]}") from None
        raise CheckpointError(f"{self._name}: is truncated or incomplete: the pickle stream ends early")

    def _step(self, op: str, arg) -> bool:
        if op in _PUSH_SCALAR:
            self._stack.append(_SCALAR)
        elif op in _PUSH_EMPTY:
            self._stack.append(_Abstract())
        elif op == "MARK":
            self._marks.append(len(self._stack))
            self.max_marks = max(self.max_marks, len(self._marks))
            if len(self._marks) > self._limits.mark_depth:
                raise refusal(self._name, "the number of open pickle MARKs", "mark_depth", self._limits)
        else:
            return self._structural(op, arg)
        return False

    def _structural(self, op: str, arg) -> bool:
        if op in ("TUPLE", "LIST"):
            self._stack.append(self._new(self._pop_mark()))
        elif op == "FROZENSET":
            elements = self._pop_mark()
            self._charge(sum(e.tree for e in elements))
            self._stack.append(self._new(elements))
        elif op == "DICT":
            children = self._pop_mark()
            self._charge(sum(k.tree for k in children[::2]))
            self._stack.append(self._new(children, items=len(children) // 2))
        elif op in ("TUPLE1", "TUPLE2", "TUPLE3"):
            children = [self._pop() for _ in range(int(op[-1]))][::-1]
            self._stack.append(self._new(children))
        elif op == "APPEND":
            item = self._pop()
            self._add(self._top(), [item])
        elif op == "APPENDS":
            items = self._pop_mark()
            self._add(self._top(), items)
        elif op == "ADDITEMS":
            items = self._pop_mark()
            self._add(self._top(), items, keys=items)
        elif op in ("SETITEM", "SETITEMS"):
            items = [self._pop(), self._pop()][::-1] if op == "SETITEM" else self._pop_mark()
            if len(items) % 2:
                raise _ScanError("SETITEMS with an odd number of items")
            self._add(self._top(), items, keys=items[::2])
        elif op in _GET:
            if arg not in self._memo:
                raise _ScanError(f"the pickle reads memo entry {arg}, which was never stored")
            self._stack.append(self._memo[arg])
        elif op in _PUT:
            self._memo[self._memo_index(arg)] = self._top()
        elif op == "MEMOIZE":
            self._memo[len(self._memo)] = self._top()
        elif op == "DUP":
            self._stack.append(self._top())
        elif op == "POP":
            if self._marks and self._marks[-1] == len(self._stack):
                self._marks.pop()
            else:
                self._pop()
        elif op == "POP_MARK":
            self._pop_mark()
        elif op == "GLOBAL":
            self._global(str(arg))
        elif op == "STACK_GLOBAL":
            self._pop(), self._pop()
            self._stack.append(_SCALAR)
        elif op == "BINPERSID":
            self._pop()
            self._stack.append(_SCALAR)
        elif op in ("REDUCE", "NEWOBJ"):
            args = self._pop()
            self._pop()
            self._stack.append(self._call(args))
        elif op == "NEWOBJ_EX":
            kwargs, args = self._pop(), self._pop()
            self._pop()
            self._stack.append(self._call(args, kwargs))
        elif op in ("OBJ", "INST"):
            self._stack.append(self._call(*self._pop_mark()))
        elif op == "BUILD":
            state = self._pop()
            target = self._top()
            if target is _SCALAR:
                raise _ScanError("the pickle sets the state of a number, string or global")
            grown = self._call(state)
            target.items += grown.items
            target.depth = max(target.depth, grown.depth)
            target.tree = min(_TREE_CAP, target.tree + state.tree)
        elif op == "FRAME":
            if arg > self._file.remaining():
                raise ValueError(f"a frame claims {arg} bytes but only {self._file.remaining()} remain")
        elif op == "PROTO":
            if arg > 5:
                raise _ScanError(f"unsupported pickle protocol {arg}")
        elif op == "STOP":
            if len(self._stack) != 1 or self._marks:
                raise _ScanError("the pickle stops with a malformed stack")
            return True
        elif op != "READONLY_BUFFER":
            raise _ScanError(f"unknown opcode {op}")
        return False

    def _global(self, dotted: str):
        if dotted.startswith("__builtin__ "):  # protocol-2 pickles name Python 2's module
            dotted = "builtins " + dotted[len("__builtin__ "):]
        why = self._refused.get(dotted)
        if why:
            module, _, name = dotted.partition(" ")
            raise CheckpointError(f"{self._name}: refuses to load: its pickle calls '{module}.{name}', {why}")
        self._stack.append(_SCALAR)


def scan_pickle(file, size: int, name, limits: Limits = LIMITS, refused_globals=None) -> PickleScan:
    """Dry-run the pickle stream read from `file` (at most `size` bytes) and return the finished scan.
    Raises a one-line CheckpointError for a forged, oversized, too deep or truncated stream."""
    scan = PickleScan(BoundedFile(file, size), name, limits, refused_globals)
    scan.run()
    return scan


# ---------------------------------------------------------------------------------------------
# Walking loaded data

class TreeBudget:
    """Counts what a walk over loaded data reaches; refuses past the limits. One per file read."""

    def __init__(self, name, limits: Limits = LIMITS):
        self.name, self.limits = name, limits
        self.objects = 0
        self.text = 0
        self.interpolated = 0
        self.max_depth = 0       # for measuring real files
        self.max_items = 0

    def visit(self, depth: int, limit_key: str = "nesting_depth"):
        """One object reached at nesting `depth` (shared objects count every time)."""
        self.objects += 1
        if self.objects > self.limits.tree_objects:
            raise refusal(self.name, "the number of objects its data expands to", "tree_objects", self.limits)
        self.max_depth = max(self.max_depth, depth)
        if depth > getattr(self.limits, limit_key):
            raise refusal(self.name, "the nesting depth of its data", limit_key, self.limits)

    def items(self, count: int):
        self.max_items = max(self.max_items, count)
        if count > self.limits.container_items:
            raise refusal(self.name, f"a container of {count:,} items: the items in one container",
                          "container_items", self.limits)

    def chars(self, count: int):
        self.text += count
        if self.text > self.limits.text_chars:
            raise refusal(self.name, "the text its data expands to (characters)", "text_chars", self.limits)

    def interpolation(self, depth: int, produced: int):
        """A config reference resolved `depth` references deep, producing `produced` characters."""
        if depth > self.limits.interpolation_depth:
            raise refusal(self.name, "the depth of its config interpolations", "interpolation_depth", self.limits)
        self.interpolated += produced
        if self.interpolated > self.limits.interpolation_chars:
            raise refusal(self.name, "the text its config interpolations expand to (characters)",
                          "interpolation_chars", self.limits)


def walk_plain(value, budget: TreeBudget, depth: int = 0, limit_key: str = "nesting_depth"):
    """Visit plain loaded data (dicts, lists, tuples, sets; anything else is a leaf) under `budget`.
    Iterative, so a deep structure is refused by the budget rather than by the recursion limit; each
    object is counted when it is discovered, so the pending list never outgrows the budget."""
    budget.visit(depth, limit_key)
    pending = [(value, depth)]
    while pending:
        item, level = pending.pop()
        if isinstance(item, str):
            budget.chars(len(item))
            continue
        if isinstance(item, dict):
            budget.items(len(item))
            children = [part for pair in item.items() for part in pair]
        elif isinstance(item, (list, tuple, set, frozenset)):
            budget.items(len(item))
            children = list(item)
        else:
            continue
        for child in children:
            budget.visit(level + 1, limit_key)
            pending.append((child, level + 1))
