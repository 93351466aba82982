"""Hostile-input sweep: craft broken and malicious inputs, run `trigan` on each, count what happens.

This is the measurement harness behind issue 29's numbers ("cases tried, refused cleanly,
tracebacks, hangs"). It fixes nothing: it builds every input itself in a scratch folder (small
files, mostly mutations of the bundled fixtures), runs `python -m trigan.cli.main ...` on each in a
subprocess with a wall-clock timeout and an address-space limit, and classifies the run.

Usage (from the repository root, with the project's interpreter, which has torch, numpy and Pillow
for crafting the inputs):

    .venv/bin/python tools/hostile_sweep.py                       # every category, this checkout
    .venv/bin/python tools/hostile_sweep.py --json sweep.json     # ... and a JSON report
    .venv/bin/python tools/hostile_sweep.py --only checkpoints --quick
    .venv/bin/python tools/hostile_sweep.py -k laughs --keep      # the cases whose name holds 'laughs'
    .venv/bin/python tools/hostile_sweep.py --list                # the cases, without running them
    .venv/bin/python tools/hostile_sweep.py -k train --json rerun.json    # rerun a subset, then merge:
    .venv/bin/python tools/hostile_sweep.py --tables-from sweep.json rerun.json --json merged.json

    # another copy of the package (e.g. the last commit, to measure a baseline):
    mkdir -p /tmp/oldroot /tmp/oldpkg && git archive HEAD | tar -x -C /tmp/oldpkg \
        && ln -sfn /tmp/oldpkg /tmp/oldroot/trigan
    .venv/bin/python tools/hostile_sweep.py --pythonpath /tmp/oldroot --json baseline.json

Categories (--only):
    checkpoints  crafted .ckpt / .pkl files x `info`, `convert`, `render`, `mesh`
    cli          bad command lines: numeric flags given nan, inf, -1, 0, 1e9, 'abc'; bad config
                 overrides; missing files; unwritable outputs
    datasets     odd dataset zips and folders x `dataset check | resize | select` (and `train`):
                 archive entries that try to escape the destination, absurd dataset.json values,
                 huge and corrupt images

Outcomes, worst first:
    executed   a marker file that a malicious input tries to create exists: code ran
    escape     a file outside the command's declared outputs was created or changed
    hang       killed at the timeout
    memory     MemoryError, or killed by a signal (the address-space limit, usually)
    traceback  stderr holds a Python traceback
    multiline  an error, but not one line (stray warnings, a message over several lines)
    other      anything else (e.g. a non-zero exit without a `trigan: error:` line)
    refused    exit 2 and one line `trigan: error: ...` (`dataset check` exiting 1 with its list of
               problems counts too: that is its documented answer)
    usage      argparse refused the command line (usage text, then `trigan X: error: ...`, exit 2)
    ok         exit 0
"Clean" = refused + usage. An `ok` on a case that should have been refused is counted again in the
`ok!` column (bad input accepted silently), and a train run refused or crashed that left a run folder
behind in its --out is counted in `left`.

A refusal may follow status lines trigan printed itself before failing ("trigan render: ...",
"reading X", progress bars: lines without "error", "warning", "exception"); the total line says how
many did, and --strict counts those as multiline instead (stderr must be exactly one line).
A train case still training at the timeout (it printed `run: ...` or wrote stats.jsonl) is `ok`: it
accepted the input, and a tiny run takes minutes on a busy CPU. info and convert on a checkpoint get
30 s (they finish in under 10), everything else --timeout.

A full sweep is about 540 runs: 20-30 minutes with --jobs 2 on a 2-core machine, most of it spent
waiting for hangs to time out. Each run gets its own folder (workdir/cases/CATEGORY/NAME) as its
working directory; files meant to run code touch workdir/markers/NAME.

Whether a case "should be refused" (the `ok!` column) is this harness's reading of issue 29, written
next to each case (should_refuse / refuse_in); the outcome columns do not depend on it.
"""

from __future__ import annotations

import argparse
import copyreg
import io
import json
import math
import os
import pickle
import random
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar, Dict, List, Optional

REPO_ROOT = Path(__file__).resolve().parent.parent
EPIGRAF_FIXTURE = REPO_ROOT / "tests" / "fixtures" / "epigraf" / "uncond_gpc.pkl"
THREEDGP_FIXTURES = sorted((REPO_ROOT / "tests" / "fixtures" / "3dgp").glob("*.pkl"))
DEMO_CKPT = REPO_ROOT / "assets" / "demo.ckpt"

CATEGORIES = ("checkpoints", "cli", "datasets")
OUTCOMES = ("executed", "escape", "hang", "memory", "traceback", "multiline", "other", "refused", "usage", "ok")
CLEAN = ("refused", "usage")
# Values for numeric flags. A flag argparse reads as int refuses nan, inf and 1e9 alike (usage), so
# int flags get the huge value spelled as an integer instead; every other flag gets the full set.
BAD_NUMBERS = ("nan", "inf", "-1", "0", "1e9", "abc")
BAD_INTS = ("-1", "0", "1000000000", "abc")
INT_FLAGS = {"--resolution", "--frames", "--interp-steps", "--num-steps", "--batch", "--chunk", "--num",
             "--classes", "--seed", "--batch-size", "--workers"}
QUICK_VALUES = ("nan", "1000000000")
# Values a flag may legitimately take although they look odd: an `ok` on them is not "bad input accepted".
ACCEPTABLE = {("--psi", "-1"), ("--psi", "0"), ("--batch", "1000000000"), ("--chunk", "1000000000"),
              ("--num", "1000000000")}
FAST_TIMEOUT = 30.0        # info, convert and check finish in under 10 s on a busy 2-core machine
# Every train case: a batch of 4 without loader processes, so that an accepted run trains at once
# (the case's own override comes after these and wins).
TRAIN_SETTINGS = ("training.batch_size=4", "training.num_workers=0")


def bad_values(flag: str) -> tuple:
    return BAD_INTS if flag in INT_FLAGS else BAD_NUMBERS
STDIO_KEEP = 4000          # characters of stdout/stderr kept in the report (the tail)


# =============================================================================================
# Cases and how a run is judged.

@dataclass
class Case:
    category: str
    name: str
    argv: List[str]                     # after `trigan`
    should_refuse: bool = True          # an `ok` exit means the bad input was accepted silently
    outputs: List[str] = field(default_factory=list)   # paths (relative to the case folder) it may write
    markers: List[str] = field(default_factory=list)   # files a malicious input tries to create
    run_dirs: List[str] = field(default_factory=list)  # train --out folders: must stay empty on refusal
    report_exit: Optional[int] = None   # an exit status that is a documented answer (dataset check: 1)
    quick: bool = False                 # part of --quick
    timeout: Optional[float] = None     # overrides --timeout (never longer)

    @property
    def command(self) -> str:
        """The row of the table: the subcommand (two words for `dataset ACTION`)."""
        words = [w for w in self.argv[:2] if not w.startswith("-")]
        return " ".join(words[:2]) if words and words[0] == "dataset" else (words[0] if words else "?")


def classify(returncode: Optional[int], stderr: str, timed_out: bool, strict: bool = False,
             report_exit: Optional[int] = None) -> str:
    """The outcome of one run from its exit status and stderr (file checks come on top)."""
    if timed_out:
        return "hang"
    if returncode is not None and returncode < 0:
        return "memory"         # killed by a signal: the address-space or file-size limit, or worse
    if "Traceback (most recent call last)" in stderr:
        return "memory" if "MemoryError" in stderr else "traceback"
    if returncode == 0:
        return "ok"
    lines = [line for line in stderr.replace("\r", "\n").splitlines() if line.strip()]
    if returncode == 2 and lines and lines[0].startswith("usage:") and " error: " in lines[-1]:
        return "usage"
    if report_exit is not None and returncode == report_exit:
        return "refused"
    errors = [i for i, line in enumerate(lines) if line.startswith("trigan: error:")]
    if returncode == 2 and len(errors) == 1 and errors[0] == len(lines) - 1:
        before = lines[:-1]
        if not before or (not strict and all(_is_status_line(line) for line in before)):
            return "refused"
        return "multiline"
    if errors or any("error" in line.lower() for line in lines):
        return "multiline"
    return "other"


def _is_status_line(line: str) -> bool:
    """trigan's own progress notes ('trigan render: ...', 'reading X') and tqdm bars, printed before the
    failure: not part of the error. Warnings, exceptions and other errors are."""
    lowered = line.lower()
    return not any(word in lowered for word in ("error", "warning", "exception", "traceback"))


# =============================================================================================
# Running one case.

@dataclass
class Result:
    case: Case
    outcome: str
    returncode: Optional[int]
    seconds: float
    accepted_bad: bool = False
    left_run_dir: bool = False
    detail: str = ""
    stdout_tail: str = ""
    stderr_tail: str = ""


@dataclass
class Settings:
    python: str
    pythonpath: Optional[str]
    timeout: float
    mem_bytes: int
    fsize_bytes: int
    strict: bool
    workdir: Path
    keep: bool


def _limits(mem_bytes: int, fsize_bytes: int) -> Callable[[], None]:
    def apply() -> None:   # runs in the child between fork and exec
        resource.setrlimit(resource.RLIMIT_AS, (mem_bytes, mem_bytes))
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize_bytes, fsize_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    return apply


def _child_env(settings: Settings) -> Dict[str, str]:
    env = dict(os.environ)
    if settings.pythonpath:
        env["PYTHONPATH"] = os.pathsep.join([settings.pythonpath, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update({
        "CUDA_VISIBLE_DEVICES": "",          # the sweep measures input handling, on the CPU
        "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",   # --jobs processes share a small machine
        "XDG_CACHE_HOME": str(settings.workdir / "cache"),
        "XDG_CONFIG_HOME": str(settings.workdir / "config"),
        "PYTHONDONTWRITEBYTECODE": "1", "PYTHONWARNINGS": "ignore",
        "PYTHONUNBUFFERED": "1",             # what a killed run printed last still reaches its log
        "TQDM_DISABLE": "1",
    })
    return env


def _snapshot(root: Path) -> Dict[str, tuple]:
    """path -> (size, mtime_ns) of every file under root (links not followed)."""
    seen = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            seen[path] = (st.st_size, st.st_mtime_ns)
    return seen


def _is_output(path: str, case_dir: Path, outputs: List[str]) -> bool:
    """Inside a declared output, or inside the hidden temporary sibling an atomic writer makes for
    it (`.dst.zip.x1y2.partial/`, left behind when the run is killed at the timeout)."""
    try:
        first = Path(path).relative_to(case_dir).parts[0]
    except (ValueError, IndexError):
        return False
    return any(first == o or first.startswith(f".{o}.") for o in (Path(o).parts[0] for o in outputs))


def _read_bounded(path: Path, head: int = 1 << 20, tail: int = 1 << 16) -> str:
    """The file, or its first MiB and last 64 KiB when it is longer: a traceback starts at the top of
    stderr and its last line ends it, and a runaway command must not fill this process's memory."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(0)
        if size <= head + tail:
            return f.read().decode("utf-8", "replace")
        first = f.read(head)
        f.seek(size - tail)
        return (first + b"\n[...]\n" + f.read()).decode("utf-8", "replace")


def run_case(case: Case, case_dir: Path, outside_dir: Path, settings: Settings) -> Result:
    watched = [case_dir, outside_dir]
    existed = {m for m in case.markers if os.path.lexists(m)}   # left by another command on the same file
    before = {p: s for root in watched for p, s in _snapshot(root).items()}
    log_dir = settings.workdir / "logs"
    out_path, err_path = log_dir / f"{case.category}-{case.name}.out", log_dir / f"{case.category}-{case.name}.err"
    timeout = min(settings.timeout, case.timeout or settings.timeout)
    cmd = [settings.python, "-m", "trigan.cli.main", *case.argv]
    start = time.monotonic()
    timed_out = False
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(cmd, cwd=case_dir, env=_child_env(settings), stdin=subprocess.DEVNULL,
                                stdout=out, stderr=err, start_new_session=True,
                                preexec_fn=_limits(settings.mem_bytes, settings.fsize_bytes))  # noqa: PLW1509 - sets rlimits only, no threads touched
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            _kill_group(proc)
    seconds = time.monotonic() - start
    stderr, stdout = _read_bounded(err_path), _read_bounded(out_path)
    outcome = classify(None if timed_out else proc.returncode, stderr, timed_out, settings.strict, case.report_exit)
    detail = f"signal {signal.Signals(-proc.returncode).name}" if (proc.returncode or 0) < 0 and not timed_out else ""
    if timed_out and _training_started(case, case_dir, stdout):
        # A tiny run takes minutes on a busy CPU (samples, snapshots): the input was accepted, not hung.
        outcome, detail = "ok", "accepted: still training at the timeout"

    # What the files say outranks the exit status: code ran, or something was written where it must not be.
    after = {p: s for root in watched for p, s in _snapshot(root).items()}
    strays = sorted(p for p, s in after.items() if before.get(p) != s and not _is_output(p, case_dir, case.outputs))
    strays += sorted(p for p in before if p not in after and not _is_output(p, case_dir, case.outputs))
    if strays:
        outcome, detail = "escape", f"wrote or removed outside its outputs: {', '.join(strays[:3])}"
    ran = [m for m in case.markers if os.path.lexists(m) and m not in existed]
    if ran:
        outcome, detail = "executed", f"code from the input ran: {ran[0]} exists"
    left = outcome != "ok" and any(_non_empty(case_dir / d) for d in case.run_dirs)
    return Result(case, outcome, None if timed_out else proc.returncode, seconds,
                  accepted_bad=outcome == "ok" and case.should_refuse, left_run_dir=left, detail=detail,
                  stdout_tail=stdout[-STDIO_KEEP:], stderr_tail=_head_and_tail(stderr))


def _training_started(case: Case, case_dir: Path, stdout: str) -> bool:
    if case.argv[:1] != ["train"]:
        return False
    started = any(line.startswith("run: ") for line in stdout.splitlines())
    return started or any((case_dir / d).glob("*/stats.jsonl") for d in case.run_dirs)


def _head_and_tail(text: str) -> str:
    if len(text) <= STDIO_KEEP:
        return text
    return text[: STDIO_KEEP // 4] + "\n[...]\n" + text[-(STDIO_KEEP * 3) // 4:]


def _kill_group(proc: subprocess.Popen) -> None:
    """The command may have started helpers (ffmpeg, data-loader workers): end its whole session."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _non_empty(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


# =============================================================================================
# Pickle crafting. Official snapshots are rewritten through a recording unpickler: every global
# becomes a stand-in type that remembers its module and name, so the object graph can be edited
# and written back with the very same globals, and nothing from the file is ever imported or run.

class Recorded:
    """An object the stream built from a global: its constructor arguments, BUILD state and items."""
    origin = ("?", "?")

    def __new__(cls, *args):
        self = object.__new__(cls)
        self.args, self.mode, self.state, self.items, self.elements = args, "newobj", None, [], []
        return self

    def __init__(self, *args):
        self.mode = "reduce"        # called (REDUCE), not just allocated (NEWOBJ)

    def __setstate__(self, state):
        self.state = state

    def __setitem__(self, key, value):
        self.items.append((key, value))

    def append(self, value):
        self.elements.append(value)

    def extend(self, values):
        self.elements.extend(values)

    def __reduce_ex__(self, protocol):
        elements = iter(self.elements) if self.elements else None
        items = iter(self.items) if self.items else None
        if self.mode == "newobj":
            return copyreg.__newobj__, (type(self), *self.args), self.state, elements, items
        return type(self), self.args, self.state, elements, items


_RECORDED_TYPES: Dict[tuple, type] = {}


def recorded_type(module: str, name: str) -> type:
    key = (module, name)
    if key not in _RECORDED_TYPES:
        _RECORDED_TYPES[key] = type(name, (Recorded,), {"origin": key})
    return _RECORDED_TYPES[key]


def recorded(module: str, name: str, *args, state=None, mode="reduce") -> Recorded:
    obj = recorded_type(module, name).__new__(recorded_type(module, name), *args)
    obj.mode, obj.state = mode, state
    return obj


class PersistentId:
    """A persistent id of a torch.save stream (a storage record), kept as is."""

    def __init__(self, pid):
        self.pid = pid


class Raw:
    """Opcodes spliced into a pickle as they are; they must push exactly one object. Used for
    structures the pickler itself cannot write (100,000 levels of nesting)."""

    def __init__(self, data: bytes):
        self.data = data


class RecordingUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        return recorded_type(module, name)

    def persistent_load(self, pid):
        return PersistentId(pid)


class RecordingPickler(pickle._Pickler):   # the pure-Python pickler: its save_global can be replaced
    def save_global(self, obj, name=None):
        origin = getattr(obj, "origin", None)
        if not (isinstance(obj, type) and issubclass(obj, Recorded)):
            return super().save_global(obj, name)
        self.write(pickle.GLOBAL + f"{origin[0]}\n{origin[1]}\n".encode())
        self.memoize(obj)

    def save_raw(self, obj):
        self.write(obj.data)

    def persistent_id(self, obj):
        return obj.pid if isinstance(obj, PersistentId) else None

    dispatch: ClassVar[dict] = dict(pickle._Pickler.dispatch)
    dispatch[type] = save_global
    dispatch[Raw] = save_raw


def read_recorded(data: bytes):
    return RecordingUnpickler(io.BytesIO(data)).load()


def write_recorded(obj, protocol: int) -> bytes:
    buf = io.BytesIO()
    RecordingPickler(buf, protocol=protocol).dump(obj)
    return buf.getvalue()


def op_str(text: str) -> bytes:
    data = text.encode()
    return pickle.BINUNICODE + struct.pack("<I", len(data)) + data


def op_global(module: str, name: str) -> bytes:
    return pickle.GLOBAL + f"{module}\n{name}\n".encode()


# The EpiGRAF reader is chosen by a sniff of the first 64 KiB; this puts the name it looks for in a
# string that is dropped at once, so hand-made streams reach the restricted unpickler.
SNIFF = op_str("_reconstruct_persistent_obj") + pickle.POP
PROTO4 = pickle.PROTO + b"\x04"


def deep_list_opcodes(levels: int) -> bytes:
    """[[[...]]] `levels` deep without recursion: push the lists, then append each into its parent."""
    return pickle.EMPTY_LIST * (levels + 1) + pickle.APPEND * levels


def deep_dict_opcodes(levels: int, key: str = "a") -> bytes:
    """{'a': {'a': ... {}}} `levels` deep."""
    return (pickle.EMPTY_DICT + op_str(key)) * levels + pickle.EMPTY_DICT + pickle.SETITEM * levels


def laughs(depth: int = 30, width: int = 10, leaf="lol") -> list:
    """A 'billion laughs' of shared lists: a few hundred bytes pickled, width**depth leaves expanded."""
    node = [leaf]
    for _ in range(depth):
        node = [node] * width
    return node


def code_payloads(marker: str) -> Dict[str, bytes]:
    """Streams whose only purpose is to run a command that creates `marker` (each must be refused)."""
    touch = f"touch {marker}"
    call = lambda fn, arg: fn + arg + pickle.TUPLE1 + pickle.REDUCE
    return {
        "os_system": call(op_global("os", "system"), op_str(touch)),
        "posix_system": call(op_global("posix", "system"), op_str(touch)),
        "builtins_eval": call(op_global("builtins", "eval"), op_str(f"__import__('os').system({touch!r})")),
        "subprocess_call": call(op_global("subprocess", "call"),
                                pickle.EMPTY_LIST + pickle.MARK + op_str("touch") + op_str(marker) + pickle.APPENDS),
    }


# =============================================================================================
# Checkpoint files.

class CheckpointFactory:
    """Writes the crafted checkpoint files into `inputs`; each builder returns its path."""

    def __init__(self, inputs: Path, outside: Path):
        self.inputs, self.outside = inputs, outside
        self._epigraf = None

    # -- official EpiGRAF / 3DGP snapshots ------------------------------------------------------

    def epigraf(self):
        """A fresh recorded copy of the EpiGRAF fixture (cached bytes, re-read each time)."""
        if self._epigraf is None:
            self._epigraf = EPIGRAF_FIXTURE.read_bytes()
        return read_recorded(self._epigraf)

    def write_pickle(self, name: str, top) -> Path:
        path = self.inputs / name
        path.write_bytes(write_recorded(top, protocol=4))
        return path

    def write_bytes(self, name: str, data: bytes) -> Path:
        path = self.inputs / name
        path.write_bytes(data)
        return path

    @staticmethod
    def g_ema_state(top) -> dict:
        return top["G_ema"].args[0]["state"]

    @staticmethod
    def config_root(top) -> Recorded:
        node = CheckpointFactory.g_ema_state(top)["cfg"]
        while isinstance(node.state.get("_parent"), Recorded):
            node = node.state["_parent"]
        return node

    def omegaconf_bomb(self, top, levels: int = 40):
        """Each key `bombN` is the string `${bombN-1}${bombN-1}`: resolving bomb40 spells 2**40 'lol's."""
        root = self.config_root(top)
        content = root.state["_content"]
        metadata = next(v.state["_metadata"] for v in content.values()
                        if isinstance(v, Recorded) and v.origin == ("omegaconf.nodes", "AnyNode"))
        for i in range(levels + 1):
            value = "lol" if i == 0 else f"${{bomb{i - 1}}}${{bomb{i - 1}}}"
            content[f"bomb{i}"] = recorded("omegaconf.nodes", "AnyNode", mode="newobj",
                                           state={"_metadata": metadata, "_parent": root, "_val": value})
        return top

    @staticmethod
    def first_tensor(node, seen=None):
        """The first `_rebuild_tensor_v2` record (a tensor of at least two dimensions) under node."""
        seen = seen if seen is not None else set()
        if id(node) in seen:
            return None
        seen.add(id(node))
        if isinstance(node, Recorded):
            if node.origin == ("torch._utils", "_rebuild_tensor_v2") and len(node.args[2]) >= 2:
                return node
            children = [node.args, node.state, node.items, node.elements]
        elif isinstance(node, dict):
            children = list(node.values())
        elif isinstance(node, (list, tuple)):
            children = list(node)
        else:
            return None
        for child in children:
            found = CheckpointFactory.first_tensor(child, seen)
            if found is not None:
                return found
        return None

    # -- trigan checkpoints ---------------------------------------------------------------------

    def demo_payload(self) -> dict:
        import torch  # noqa: PLC0415 (heavy; only the crafting needs it)
        return torch.load(DEMO_CKPT, map_location="cpu", weights_only=True)

    def save_payload(self, name: str, payload) -> Path:
        import torch  # noqa: PLC0415 (heavy; only the crafting needs it)
        path = self.inputs / name
        torch.save(payload, path)
        return path

    def demo_data_pkl(self):
        """The demo checkpoint's data.pkl as a recorded tree (storages kept as persistent ids)."""
        with zipfile.ZipFile(DEMO_CKPT) as zf:
            name = next(n for n in zf.namelist() if n.endswith("/data.pkl"))
            return read_recorded(zf.read(name))

    def replace_data_pkl(self, name: str, data_pkl: bytes) -> Path:
        """A copy of the demo .ckpt zip whose data.pkl is `data_pkl`: what torch.save cannot write."""
        path = self.inputs / name
        with zipfile.ZipFile(DEMO_CKPT) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as dst:
            for info in src.infolist():
                data = data_pkl if info.filename.endswith("/data.pkl") else src.read(info)
                dst.writestr(info, data)
        return path

    def write_tree_ckpt(self, name: str, tree) -> Path:
        return self.replace_data_pkl(name, write_recorded(tree, protocol=2))


def mutate_bytes(data: bytes, flips: int, seed: int) -> bytes:
    rng = random.Random(seed)
    out = bytearray(data)
    for _ in range(flips):
        pos = rng.randrange(2, len(out))    # keep the magic, so the file reaches the parser
        out[pos] ^= 1 << rng.randrange(8)
    return bytes(out)


CHECKPOINT_COMMANDS = ("info", "convert", "render", "mesh")
USING_WEIGHTS = ("convert", "render", "mesh")   # info describes a file; these must not use bad weights


@dataclass
class CraftedFile:
    name: str
    path: Path
    refuse_in: tuple      # the commands that must refuse it (an `ok` there is bad input accepted)
    demo_based: bool      # a copy of the conditional demo model: render and mesh need --classes 0
    key: bool             # part of --quick


def checkpoint_files(f: CheckpointFactory, marker_dir: Path) -> List[CraftedFile]:
    """Every crafted checkpoint. A file meant to run code creates marker_dir/<its name>."""
    files = []

    def add(name, path, should_refuse=True, demo_based=False, key=False, refuse_in=CHECKPOINT_COMMANDS):
        files.append(CraftedFile(name, path, refuse_in if should_refuse else (), demo_based, key))

    def marker(name):
        return str(marker_dir / name)

    # ---- EpiGRAF-style pickles ----
    epigraf_bytes = EPIGRAF_FIXTURE.read_bytes()
    add("epi_reference", f.write_bytes("epi_reference.pkl", epigraf_bytes), should_refuse=False, key=True)

    top = f.epigraf()
    top["vis"] = laughs()
    add("epi_laughs_vis", f.write_pickle("epi_laughs_vis.pkl", top), key=True)

    add("epi_omegaconf_bomb", f.write_pickle("epi_omegaconf_bomb.pkl", f.omegaconf_bomb(f.epigraf())), key=True)

    top = f.epigraf()
    top["vis"] = Raw(deep_list_opcodes(100_000))
    add("epi_deep_vis", f.write_pickle("epi_deep_vis.pkl", top))

    top = f.epigraf()
    root = f.config_root(top)
    root.state["_content"]["deep"] = Raw(deep_dict_opcodes(100_000))
    add("epi_deep_config", f.write_pickle("epi_deep_config.pkl", top))

    top = f.epigraf()
    cyclic = []
    cyclic.append(cyclic)
    top["vis"] = {"loop": cyclic}
    add("epi_cyclic_vis", f.write_pickle("epi_cyclic_vis.pkl", top), should_refuse=False)

    top = f.epigraf()
    state = f.g_ema_state(top)
    state["img_resolution"] = 10**9
    state["_init_kwargs"]["img_resolution"] = 10**9
    top["training_set_kwargs"]["resolution"] = 10**9
    add("epi_img_resolution_1e9", f.write_pickle("epi_img_resolution_1e9.pkl", top), key=True)

    top = f.epigraf()
    tensor = f.first_tensor(top["G_ema"])
    size = list(tensor.args[2])
    size[-1] = max(1, size[-1] - 1)
    tensor.args = (tensor.args[0], tensor.args[1], tuple(size), *tensor.args[3:])
    add("epi_wrong_shape", f.write_pickle("epi_wrong_shape.pkl", top))

    top = f.epigraf()
    top["vis"] = recorded("numpy.core.multiarray", "_reconstruct", recorded_type("numpy", "ndarray"),
                          (2**40,), b"b")
    add("epi_numpy_huge_shape", f.write_pickle("epi_numpy_huge_shape.pkl", top), key=True)

    top = f.epigraf()
    meta = top["G_ema"].args[0]
    top["G_ema"].args = ({**meta, "module_src": f"import os\nos.system('touch {marker('epi_module_src_empty_state')}')\n",
                          "state": {}},)
    add("epi_module_src_empty_state", f.write_pickle("epi_module_src.pkl", top), key=True)

    top = f.epigraf()
    meta = top["G_ema"].args[0]
    top["G_ema"].args = ({**meta, "module_src": f"import os\nos.system('touch {marker('epi_module_src_with_state')}')\n"},)
    add("epi_module_src_with_state", f.write_pickle("epi_module_src_state.pkl", top), should_refuse=False)

    top = f.epigraf()
    top["vis"] = recorded("os", "system", f"touch {marker('epi_hidden_os_system')}")
    add("epi_hidden_os_system", f.write_pickle("epi_hidden_os_system.pkl", top), key=True)

    for kind in ("os_system", "builtins_eval"):
        body = code_payloads(marker(f"pkl_{kind}"))[kind]
        add(f"pkl_{kind}", f.write_bytes(f"pkl_{kind}.pkl", PROTO4 + SNIFF + body + pickle.STOP), key=kind == "os_system")

    add("pkl_memo_index_2e32", f.write_bytes("pkl_memo.pkl", PROTO4 + SNIFF + pickle.EMPTY_LIST + pickle.LONG_BINPUT
                                             + struct.pack("<I", 2**32 - 1) + pickle.STOP), key=True)
    add("pkl_huge_unicode8", f.write_bytes("pkl_huge_unicode.pkl", PROTO4 + SNIFF + pickle.BINUNICODE8
                                           + struct.pack("<Q", 2**40) + b"lol" * 8 + pickle.STOP), key=True)
    add("pkl_not_a_dict", f.write_bytes("pkl_list.pkl", PROTO4 + SNIFF + pickle.EMPTY_LIST + pickle.STOP))

    for label, cut in (("half", len(epigraf_bytes) // 2), ("100b", 100)):
        add(f"epi_truncated_{label}", f.write_bytes(f"epi_truncated_{label}.pkl", epigraf_bytes[:cut]))
    for flips, seed in ((16, 2), (256, 3)):
        add(f"epi_flipped_{flips}", f.write_bytes(f"epi_flipped_{flips}.pkl", mutate_bytes(epigraf_bytes, flips, seed)),
            should_refuse=False)
    for fixture in THREEDGP_FIXTURES[:1]:
        data = fixture.read_bytes()
        add(f"3dgp_{fixture.stem}_truncated", f.write_bytes(f"3dgp_{fixture.stem}_trunc.pkl", data[: len(data) // 3]))
        top = read_recorded(data)
        top["vis"] = laughs()
        add(f"3dgp_{fixture.stem}_laughs", f.write_pickle(f"3dgp_{fixture.stem}_laughs.pkl", top))

    # ---- trigan checkpoints (torch.save zips) ----
    add("ckpt_reference", f.save_payload("ckpt_reference.ckpt", f.demo_payload()), should_refuse=False,
        demo_based=True, key=True)

    def payload_case(name, edit, should_refuse=True, key=False, refuse_in=CHECKPOINT_COMMANDS):
        payload = f.demo_payload()
        edit(payload)
        add(name, f.save_payload(f"{name}.ckpt", payload), should_refuse, demo_based=True, key=key, refuse_in=refuse_in)

    def model(p):
        return p["config"]["model"]

    def first_weight(p, min_dims=2):
        return next(k for k, v in p["G_ema"].items() if v.ndim >= min_dims)

    import torch  # noqa: PLC0415 (heavy; only the crafting needs it)

    payload_case("ckpt_img_resolution_1e9", lambda p: model(p).update(img_resolution=10**9), key=True)
    payload_case("ckpt_feat_dim_1e7", lambda p: model(p)["triplane"].update(feat_dim=10**7), key=True)
    payload_case("ckpt_c_dim_1e9", lambda p: model(p).update(c_dim=10**9, class_names=None))
    payload_case("ckpt_mlp_layers_1e6", lambda p: model(p)["triplane"].update(mlp_layers=10**6))
    payload_case("ckpt_num_steps_0", lambda p: model(p)["render"].update(num_steps=0))
    payload_case("ckpt_num_steps_1e9", lambda p: model(p)["render"].update(num_steps=10**9))
    payload_case("ckpt_fov_nan", lambda p: model(p)["camera"].update(fov=float("nan")))
    payload_case("ckpt_radius_negative", lambda p: model(p)["camera"].update(radius=-1.0))

    def wrong_shape(p):
        k = first_weight(p)
        p["G_ema"][k] = p["G_ema"][k][..., :-1].clone()
    payload_case("ckpt_wrong_shape", wrong_shape, key=True)
    payload_case("ckpt_missing_key", lambda p: p["G_ema"].pop(first_weight(p)), key=True)
    payload_case("ckpt_int64_weights", lambda p: p.update(G_ema={k: v.long() for k, v in p["G_ema"].items()}),
                 key=True)
    payload_case("ckpt_all_nan_weights", lambda p: p.update(G_ema={k: torch.full_like(v, float("nan"))
                                                                  for k, v in p["G_ema"].items()}), key=True,
                 refuse_in=USING_WEIGHTS)
    payload_case("ckpt_version_99", lambda p: p.update(version=99))
    payload_case("ckpt_wrong_format", lambda p: p.update(format="something-else"))
    payload_case("ckpt_no_config", lambda p: p.pop("config"))
    payload_case("ckpt_progress_laughs", lambda p: p.update(progress={"kimg": laughs()}), should_refuse=False)

    # Hand-written data.pkl inside a copy of the demo zip: what torch.save cannot or would not write.
    tree = f.demo_data_pkl()
    tree["config"]["model"]["class_names"] = laughs()
    add("ckpt_laughs_config", f.write_tree_ckpt("ckpt_laughs_config.ckpt", tree), demo_based=True, key=True)

    tree = f.demo_data_pkl()   # class_names[i] = '${model.class_names[i+1]}' twice: 2**40 letters resolved
    tree["config"]["model"]["class_names"] = (
        [f"${{model.class_names[{i + 1}]}}${{model.class_names[{i + 1}]}}" for i in range(40)] + ["lol"])
    add("ckpt_interpolation_bomb", f.write_tree_ckpt("ckpt_interpolation_bomb.ckpt", tree), demo_based=True, key=True)

    tree = f.demo_data_pkl()
    tree["config"]["model"]["camera"] = Raw(deep_dict_opcodes(100_000))
    add("ckpt_deep_config", f.write_tree_ckpt("ckpt_deep_config.ckpt", tree), demo_based=True, key=True)

    tree = f.demo_data_pkl()
    _claim_huge_storage(tree)
    add("ckpt_storage_claims_2e40", f.write_tree_ckpt("ckpt_storage_huge.ckpt", tree), demo_based=True, key=True)

    for kind in ("os_system", "subprocess_call"):
        body = code_payloads(marker(f"ckpt_{kind}"))[kind]
        add(f"ckpt_{kind}", f.replace_data_pkl(f"ckpt_{kind}.ckpt", pickle.PROTO + b"\x02" + body + pickle.STOP),
            demo_based=True, key=kind == "os_system")

    demo_bytes = DEMO_CKPT.read_bytes()
    for label, cut in (("half", len(demo_bytes) // 2), ("minus22", len(demo_bytes) - 22)):
        add(f"ckpt_truncated_{label}", f.write_bytes(f"ckpt_truncated_{label}.ckpt", demo_bytes[:cut]),
            demo_based=True)
    for flips, seed in ((16, 12), (256, 13)):
        add(f"ckpt_flipped_{flips}", f.write_bytes(f"ckpt_flipped_{flips}.ckpt", mutate_bytes(demo_bytes, flips, seed)),
            should_refuse=False, demo_based=True)

    # ---- not checkpoints at all ----
    add("empty_file", f.write_bytes("empty.ckpt", b""), key=True)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("hello.txt", "not torch")
    add("zip_not_torch", f.write_bytes("zip_not_torch.ckpt", buf.getvalue()), key=True)
    folder = f.inputs / "x.ckpt"
    folder.mkdir()
    add("folder_named_ckpt", folder, key=True)
    fifo = f.inputs / "f.ckpt"
    os.mkfifo(fifo)
    add("fifo_named_ckpt", fifo, key=True)
    add("dev_zero", Path("/dev/zero"))
    add("missing_file", f.inputs / "does_not_exist.ckpt")
    return files


def _claim_huge_storage(tree) -> None:
    """Make the first storage record of G_ema claim 2**40 elements (the data file stays small)."""
    for value in tree["G_ema"].items if isinstance(tree["G_ema"], Recorded) else tree["G_ema"].values():
        value = value[1] if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str) else value
        if isinstance(value, Recorded) and isinstance(value.args[0], PersistentId):
            pid = list(value.args[0].pid)
            pid[4] = 2**40
            value.args[0].pid = tuple(pid)
            value.args = (value.args[0], value.args[1], (2**20, 2**20), (2**20, 1), *value.args[4:])
            return
    raise RuntimeError("no storage record found in the demo checkpoint")


def checkpoint_cases(workdir: Path) -> List[Case]:
    inputs = workdir / "inputs" / "checkpoints"
    inputs.mkdir(parents=True, exist_ok=True)
    marker_dir = workdir / "markers"
    marker_dir.mkdir(parents=True, exist_ok=True)
    factory = CheckpointFactory(inputs, workdir / "outside")
    cases = []
    for crafted in checkpoint_files(factory, marker_dir):
        path = str(crafted.path)
        classes = ["--classes", "0"] if crafted.demo_based else []
        # Sizes read from the file (img_resolution) only bite when the command line does not set them.
        resolution = [] if "resolution" in crafted.name else ["--resolution", "32"]
        runs = {
            "info": (["info", path], []),
            "convert": (["convert", path, "out.ckpt"], ["out.ckpt"]),
            "render": (["render", path, "--out", "render", "--seeds", "0", *resolution, *classes, "--quiet"], ["render"]),
            "mesh": (["mesh", path, "--out", "mesh", "--resolution", "32", *classes, "--quiet"], ["mesh"]),
        }
        for command, (argv, outputs) in runs.items():
            cases.append(Case("checkpoints", f"{crafted.name}.{command}", argv,
                              should_refuse=command in crafted.refuse_in, outputs=outputs,
                              timeout=FAST_TIMEOUT if command in ("info", "convert") else None,
                              markers=[str(marker_dir / crafted.name)],
                              quick=crafted.key and command in ("info", "render")))
    return cases


# =============================================================================================
# Bad command lines.

def cli_cases(workdir: Path) -> List[Case]:
    inputs = workdir / "inputs" / "cli"
    inputs.mkdir(parents=True, exist_ok=True)
    demo = str(DEMO_CKPT)
    not_a_folder = inputs / "plain_file"
    not_a_folder.write_text("a regular file, used as a parent folder\n")
    dataset = make_train_dataset(inputs / "train64.zip")
    trajectories = write_trajectories(inputs)
    cases: List[Case] = []

    def add(name, argv, outputs=(), should_refuse=True, run_dirs=(), quick=False, timeout=None):
        cases.append(Case("cli", name, list(argv), should_refuse, list(outputs), run_dirs=list(run_dirs),
                          quick=quick, timeout=timeout))

    render = ["render", demo, "--out", "o", "--seeds", "0", "--classes", "0", "--quiet"]
    flag_vis = {"--psi": [], "--resolution": [], "--frames": ["--vis", "view_grid"], "--fps": ["--vis", "video"],
                "--quality": ["--vis", "video"], "--interp-steps": ["--vis", "interp", "--seeds", "0-1"],
                "--num-steps": ["--plain"], "--batch": []}
    for flag, vis in flag_vis.items():
        for value in bad_values(flag):
            res = [] if flag == "--resolution" else ["--resolution", "16"]
            add(f"render{flag}={value}", [*render, *res, *vis, flag, value], outputs=["o"],
                should_refuse=(flag, value) not in ACCEPTABLE, quick=value in QUICK_VALUES)
    for spec in ("0-1000000000", "-1", "a-b", "5-2", "99999999999999999999"):
        add(f"render--seeds={spec}", [*render[:4], "--seeds", spec, "--classes", "0", "--resolution", "16", "--quiet"], ["o"])
    for spec in ("4", "-1", "1000000000", "0-1000000"):
        add(f"render--classes={spec}", [*render[:6], "--classes", spec, "--resolution", "16", "--quiet"], ["o"])
    for spec in ("yaw=nan", "fov=0", "fov=inf", "radius=-1", "pitch=abc", "garbage"):
        add(f"render--camera={spec}", [*render, "--resolution", "16", "--camera", spec], ["o"], quick=spec == "fov=0")
    for label, path in trajectories.items():
        add(f"render--trajectory={label}", [*render, "--resolution", "16", "--vis", "video", "--format", "png",
                                             "--trajectory", str(path)], ["o"], should_refuse=label != "valid")
    add("render--device=cuda:7", [*render, "--resolution", "16", "--device", "cuda:7"], ["o"])
    add("render--device=bogus", [*render, "--resolution", "16", "--device", "bogus"], ["o"])
    add("render-missing-ckpt", ["render", str(inputs / "nope.ckpt"), "--out", "o"], ["o"], quick=True)
    add("render--out-under-file", [*render[:2], "--out", str(not_a_folder / "sub"), *render[4:], "--resolution", "16"],
        quick=True)
    add("render--out-proc", [*render[:2], "--out", "/proc/x", *render[4:], "--resolution", "16"])

    mesh = ["mesh", demo, "--out", "m", "--classes", "0", "--quiet"]
    for flag in ("--psi", "--resolution", "--chunk", "--threshold"):
        for value in bad_values(flag):
            res = [] if flag == "--resolution" else ["--resolution", "16"]
            add(f"mesh{flag}={value}", [*mesh, *res, flag, value], ["m"], should_refuse=(flag, value) not in ACCEPTABLE,
                quick=value in QUICK_VALUES)
    for spec in ("0-1000000000", "-1", "a-b"):
        add(f"mesh--seeds={spec}", [*mesh, "--resolution", "16", "--seeds", spec], ["m"])
    add("mesh--format=exe", [*mesh, "--resolution", "16", "--format", "exe"], ["m"])
    add("mesh--out-under-file", ["mesh", demo, "--out", str(not_a_folder / "sub"), "--classes", "0",
                                 "--resolution", "16", "--quiet"])
    add("mesh--out-proc", ["mesh", demo, "--out", "/proc/x", "--classes", "0", "--resolution", "16", "--quiet"])

    for override in ("model.camera.fov=nan", "model.camera.radius=-1", "model.render.num_steps=0",
                     "model.triplane.feat_dim=10000000", "model.img_resolution=1000000000", "model.nope=1",
                     "model.camera.fov", "model.render.density_shift=nan"):
        add(f"convert--set={override}", ["convert", demo, "out.ckpt", "--set", override], ["out.ckpt"],
            quick=override.endswith("nan"))
    add("convert-dst-under-file", ["convert", demo, str(not_a_folder / "out.ckpt")], quick=True)
    add("convert-dst-proc", ["convert", demo, "/proc/x.ckpt"])
    add("convert-dst-missing-folder", ["convert", demo, "missing/out.ckpt"], ["missing"], should_refuse=False)
    add("convert-missing-src", ["convert", str(inputs / "nope.pkl"), "out.ckpt"], ["out.ckpt"])
    copied = inputs / "self.ckpt"
    shutil.copyfile(DEMO_CKPT, copied)
    add("convert-onto-itself", ["convert", str(copied), str(copied), "--force"], should_refuse=False)

    for override in ("model.c_dim=1000000000", "model.triplane.feat_dim=10000000", "model.img_resolution=1000000000",
                     "model.camera.fov=nan", "model.nope=1", "novalue"):
        add(f"info--preset-{override}", ["info", "--preset", "demo", override], quick=override == "model.c_dim=1000000000")
    add("info--preset-unknown", ["info", "--preset", "nope"])
    add("info-missing-file", ["info", str(inputs / "nope.ckpt")])

    train = ["train", "--config", "demo", "--data", str(dataset), "--out", "runs", "--device", "cpu"]
    for override in ("model.camera.fov=nan", "model.camera.radius=-1", "model.render.num_steps=0",
                     "model.triplane.feat_dim=10000000", "model.img_resolution=1000000000", "training.batch_size=0",
                     "training.g_lr=-1", "training.num_workers=-1", "training.batch_size=1000000000"):
        add(f"train-{override}", [*train, "--kimg", "0.004", *TRAIN_SETTINGS, override], ["runs"], run_dirs=["runs"],
            quick=override in ("training.batch_size=0", "model.triplane.feat_dim=10000000"))
    for value in ("nan", "inf", "-1", "abc"):
        add(f"train--kimg={value}", [*train, "--kimg", value, *TRAIN_SETTINGS], ["runs"], run_dirs=["runs"],
            quick=value == "nan")
    add("train-missing-data", ["train", "--data", str(inputs / "nope.zip"), "--out", "runs", "--kimg", "0.004"],
        ["runs"], run_dirs=["runs"])
    add("train-data-not-dataset", ["train", "--data", demo, "--out", "runs", "--kimg", "0.004"], ["runs"],
        run_dirs=["runs"])
    add("train--config-unknown", ["train", "--config", "nope", "--data", str(dataset), "--out", "runs"], ["runs"],
        run_dirs=["runs"])
    add("train--resume-missing", ["train", "--resume", str(inputs / "no_run")], ["runs"])
    add("train--init-missing", [*train, "--kimg", "0.004", "--init", str(inputs / "nope.ckpt"), *TRAIN_SETTINGS], ["runs"],
        run_dirs=["runs"])
    add("train--out-under-file", [*train[:5], "--out", str(not_a_folder / "runs"), "--kimg", "0.004",
                                  *TRAIN_SETTINGS], quick=True)
    add("train--out-proc", [*train[:5], "--out", "/proc/x", "--kimg", "0.004", *TRAIN_SETTINGS])

    synth = ["dataset", "synth", "s.zip", "--num", "4", "--resolution", "16"]
    for flag in ("--num", "--resolution", "--classes", "--fov", "--radius"):
        for value in bad_values(flag):
            argv = [a for a in synth]
            if flag in argv:
                argv[argv.index(flag) + 1] = value
            else:
                argv += [flag, value]
            add(f"synth{flag}={value}", argv, ["s.zip"], quick=value in QUICK_VALUES)
    add("synth--pitch-range=nan", [*synth, "--pitch-range", "nan", "nan"], ["s.zip"])
    add("synth--pitch-range=reversed", [*synth, "--pitch-range", "3", "0"], ["s.zip"])
    add("synth--near>far", [*synth, "--near", "2", "--far", "1"], ["s.zip"])
    add("synth-out-under-file", ["dataset", "synth", str(not_a_folder / "s.zip"), "--num", "4", "--resolution", "16"])
    add("synth-out-proc", ["dataset", "synth", "/proc/x.zip", "--num", "4", "--resolution", "16"])

    for value in bad_values("--resolution"):
        add(f"resize--resolution={value}", ["dataset", "resize", str(dataset), "r", "--resolution", value], ["r"],
            quick=value == "1000000000")
    add("resize-dst-under-file", ["dataset", "resize", str(dataset), str(not_a_folder / "r"), "--resolution", "16"])
    add("resize-dst-proc", ["dataset", "resize", str(dataset), "/proc/x", "--resolution", "16"])
    add("resize-missing-src", ["dataset", "resize", str(inputs / "nope.zip"), "r", "--resolution", "16"], ["r"])
    for flag, values in (("--keep-ratio", BAD_NUMBERS), ("--num", BAD_INTS), ("--reg-covar", ("nan", "inf", "-1")),
                         ("--batch", ("0", "1000000000"))):
        for value in values:
            base = [] if flag in ("--keep-ratio", "--num") else ["--num", "2"]
            add(f"select{flag}={value}", ["dataset", "select", str(dataset), "sel", *base, flag, value], ["sel"],
                should_refuse=(flag, value) not in ACCEPTABLE, quick=value == "nan")
    add("select--embedder-missing", ["dataset", "select", str(dataset), "sel", "--num", "2", "--embedder",
                                     str(inputs / "nope.pt")], ["sel"])
    add("select--embedder=tiny:0", ["dataset", "select", str(dataset), "sel", "--num", "2", "--embedder", "tiny:0"],
        ["sel"])
    add("select--embedder=tiny:100000", ["dataset", "select", str(dataset), "sel", "--num", "2", "--embedder",
                                         "tiny:100000"], ["sel"])
    add("select-dst-proc", ["dataset", "select", str(dataset), "/proc/x", "--num", "2"])
    add("pack-missing-folder", ["dataset", "pack", str(inputs / "nope"), "p.zip"], ["p.zip"])
    add("pack-out-proc", ["dataset", "pack", str(inputs), "/proc/x.zip", "--no-check"])
    add("check-missing", ["dataset", "check", str(inputs / "nope.zip")])
    for flag in ("--batch-size",):
        for value in ("0", "-1"):
            add(f"features{flag}={value}", ["dataset", "features", str(dataset), "--out", "f.memmap", "--weights",
                                            str(inputs / "nope.pth"), flag, value], ["f.memmap", "f_desc.json"])
    for flag, value in (("--batch", "0"), ("--batch", "-1"), ("--metrics", "nfs1000000000"), ("--metrics", "nfs0"),
                        ("--metrics", "bogus")):
        add(f"metrics{flag}={value}", ["metrics", demo, "--metrics", "nfs4", flag, value, "--no-log", "--quiet"])
    add("metrics--inception-missing", ["metrics", demo, "--data", str(dataset), "--metrics", "fid2k",
                                       "--inception", str(inputs / "nope.pt"), "--no-log", "--quiet"])
    add("no-such-command", ["frobnicate"])
    return cases


def write_trajectories(folder: Path) -> Dict[str, Path]:
    """Keyframe files for --trajectory: one valid, the others broken in one way each."""
    frames = [{"yaw": 1.5, "pitch": 1.4, "fov": 30, "radius": 1.0, "time": 0.0},
              {"yaw": 1.7, "pitch": 1.4, "fov": 30, "radius": 1.0, "time": 0.1}]
    texts = {
        "valid": json.dumps(frames),
        "empty_list": "[]",
        "object": json.dumps({"yaw": 1}),
        "string_values": json.dumps([{**frames[0], "yaw": "x"}, frames[1]]),
        "nan": json.dumps([{**frames[0], "yaw": float("nan")}, frames[1]]),
        "time_1e9": json.dumps([frames[0], {**frames[1], "time": 1e9}]),
        "deep": "[" * 100_000 + "]" * 100_000,
    }
    paths = {}
    for label, text in texts.items():
        paths[label] = folder / f"traj_{label}.json"
        paths[label].write_text(text)
    return paths


# =============================================================================================
# Odd datasets.

def png_bytes(array) -> bytes:
    from PIL import Image  # noqa: PLC0415 (optional until a dataset is crafted)
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def random_image(seed: int, res: int = 16):
    import numpy as np  # noqa: PLC0415 (optional until a dataset is crafted)
    return np.random.default_rng(seed).integers(0, 255, (res, res, 3), dtype=np.uint8)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb_header(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG signature and IHDR claiming width x height RGB, with one tiny IDAT: decoders that
    trust the header allocate 30 GB."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + png_chunk(b"IEND", b""))


def huge_solid_png(side: int) -> bytes:
    """A side x side grey PNG written row by row (a few hundred KB; decoding it takes side**2 * 3 bytes)."""
    row = b"\x00" + b"\x80" * (side * 3)
    compressor = zlib.compressobj(6)
    data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b"")


def write_zip(path: Path, entries: Dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return path


def make_train_dataset(path: Path, count: int = 8, res: int = 64, labels=None) -> Path:
    """A small dataset that the demo preset trains on: images, camera angles, class labels."""
    names = [f"img{i:03d}.png" for i in range(count)]
    meta = {"camera_angles": {n: [0.3 * i - 1.0, 1.4, 0.0] for i, n in enumerate(names)},
            "labels": {n: (i % 4 if labels is None else labels[i % len(labels)]) for i, n in enumerate(names)}}
    entries = {n: png_bytes(random_image(i, res)) for i, n in enumerate(names)}
    entries["dataset.json"] = json.dumps(meta).encode()
    return write_zip(path, entries)


def dataset_cases(workdir: Path) -> List[Case]:
    inputs = workdir / "inputs" / "datasets"
    inputs.mkdir(parents=True, exist_ok=True)
    cases: List[Case] = []
    good = {f"img{i}.png": png_bytes(random_image(i)) for i in range(3)}

    def runs(name, data, commands=("check", "resize", "select"), should_refuse=True, key=False, accepted_by=()):
        """Run a dataset through the tools that read it; each writes only under its DST. `accepted_by`:
        commands for which the oddity is not an error (resize copies dataset.json unchanged, by design)."""
        argv_of = {
            "check": (["dataset", "check", str(data)], []),
            "resize": (["dataset", "resize", str(data), "dst", "--resolution", "16"], ["dst"]),
            "resize_zip": (["dataset", "resize", str(data), "dst.zip", "--resolution", "16"], ["dst.zip"]),
            "select": (["dataset", "select", str(data), "dst", "--keep-ratio", "1"], ["dst"]),
            "pack": (["dataset", "pack", str(data), "dst.zip"], ["dst.zip"]),
            "train": (["train", "--config", "demo", "--data", str(data), "--out", "runs", "--kimg", "0.004",
                       "--device", "cpu", *TRAIN_SETTINGS], ["runs"]),
        }
        for command in commands:
            argv, outputs = argv_of[command]
            cases.append(Case("datasets", f"{name}.{command}", argv, should_refuse and command not in accepted_by, outputs,
                              run_dirs=["runs"] if command == "train" else [],
                              report_exit=1 if command == "check" else None, quick=key))

    # ---- archive entries aimed outside the destination: sentinels sit where they would land ----
    outside = workdir / "outside"
    escapes = {
        "abs": lambda target: str(target),
        "double_slash": lambda target: "/" + str(target),
        "dotdot": lambda target: "../" + target.name,
        "nested_dotdot": lambda target: "a/../../" + target.name,
        "backslash_dotdot": lambda target: "..\\" + target.name,
    }
    for kind, entry_name in escapes.items():
        for command in ("check", "resize", "resize_zip", "select"):
            case_name = f"zip_escape_{kind}.{command}"
            # absolute targets live in the case's own outside folder, relative ones beside its DST
            target = (outside / case_name / "escaped.png") if kind in ("abs", "double_slash") \
                else (workdir / "cases" / "datasets" / case_name / "escaped.png")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(b"sentinel: must stay as it is\n")
            data = write_zip(inputs / f"escape_{kind}_{command}.zip",
                             {**good, entry_name(target): png_bytes(random_image(9))})
            # `..` entries staying inside DST (dropped or kept as literal names) is the right answer.
            contained = kind not in ("abs", "double_slash")
            runs(f"zip_escape_{kind}", data, commands=(command,), should_refuse=not contained,
                 key=kind in ("abs", "double_slash"))

    # ---- dataset.json with absurd contents ----
    def with_json(name, text, commands=("check", "resize"), key=False, res=16):
        images = {f"img{i}.png": png_bytes(random_image(i, res)) for i in range(4)}
        data = write_zip(inputs / f"{name}.zip", {**images, "dataset.json": text.encode() if isinstance(text, str)
                                                   else text})
        runs(name, data, commands, key=key, accepted_by=("resize",))

    def labels_json(value) -> str:
        angles = {f"img{i}.png": [0.3 * i - 1.0, 1.4, 0.0] for i in range(4)}
        return json.dumps({"labels": {f"img{i}.png": (value if i == 3 else i % 2) for i in range(4)},
                           "camera_angles": angles})
    train_too = ("check", "resize", "select", "train")
    with_json("labels_1e9", labels_json(10**9), train_too, key=True, res=64)
    with_json("labels_1e6", labels_json(10**6), train_too, key=True, res=64)
    with_json("labels_negative", labels_json(-1), train_too, res=64)
    with_json("labels_string", labels_json("x"))
    with_json("labels_float", labels_json(1.5))
    with_json("labels_huge_int", labels_json(10**400))
    with_json("json_nested_1e5_lists", "[" * 100_000 + "]" * 100_000, ("check", "resize", "select"), key=True)
    with_json("json_nested_1e5_labels", '{"labels": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with_json("json_nested_1e5_objects", '{"a":' * 100_000 + "1" + "}" * 100_000)
    with_json("angles_nan", json.dumps({"camera_angles": {f"img{i}.png": [float("nan"), 1.4, 0] for i in range(4)}}))
    with_json("angles_strings", json.dumps({"camera_angles": {f"img{i}.png": ["a", "b", "c"] for i in range(4)}}))
    with_json("angles_1e400", '{"camera_angles": {"img0.png": [1e400, 1, 0]}}')
    with_json("json_not_object", "[1, 2, 3]")
    with_json("json_invalid", "{not json")
    with_json("json_binary", bytes(range(256)))
    with_json("json_keys_escape", json.dumps({"labels": {"../../img0.png": 1, "/etc/passwd": 0}}),
              ("check", "resize", "select"))

    # ---- images ----
    def with_images(name, entries, commands=("check", "resize", "select"), key=False, should_refuse=True,
                    accepted_by=()):
        runs(name, write_zip(inputs / f"{name}.zip", entries), commands, should_refuse, key, accepted_by)
    big = huge_solid_png(10_000)
    with_images("image_10000x10000", {"big.png": big, **good}, ("check", "resize", "select", "train"), key=True,
                accepted_by=("resize",))
    with_images("png_bomb_header", {"bomb.png": png_bomb_header(), **good}, key=True)
    with_images("png_truncated", {"cut.png": good["img0.png"][:40], "img1.png": good["img1.png"]})
    with_images("png_zero_bytes", {"zero.png": b"", "img1.png": good["img1.png"]})
    with_images("png_garbage", {"junk.png": bytes(random.Random(5).randrange(256) for _ in range(4096)),
                                "img1.png": good["img1.png"]})
    with_images("png_named_jpg", {"a.jpg": good["img0.png"], "img1.png": good["img1.png"]}, should_refuse=False)
    with_images("images_mixed_sizes", {"a.png": png_bytes(random_image(1, 16)), "b.png": png_bytes(random_image(2, 32))},
                should_refuse=False)
    with_images("depth_wrong_size", {**good, "img0_depth.png": png_bytes(random_image(3, 8)[..., 0])},
                accepted_by=("resize",))
    with_images("only_text_files", {"readme.txt": b"hello", "notes.md": b"# notes"})
    with_images("empty_zip", {}, key=True)
    with_images("deflated_300mb_png", {"big.png": b"\x00" * (300 << 20), "img1.png": good["img1.png"]})

    # ---- containers that are not what they claim ----
    runs("not_a_zip", _write(inputs / "not_a_zip.zip", b"this is not a zip file\n"))
    runs("truncated_zip", _write(inputs / "truncated.zip", (inputs / "png_truncated.zip").read_bytes()[:60]))
    runs("missing_dataset", inputs / "missing.zip")
    folder = inputs / "folder_fifo"
    folder.mkdir()
    (folder / "img0.png").write_bytes(good["img0.png"])
    os.mkfifo(folder / "img1.png")
    runs("folder_fifo_image", folder, ("check", "resize", "select", "pack"), key=True)
    folder = inputs / "folder_symlink_loop"
    folder.mkdir()
    (folder / "img0.png").write_bytes(good["img0.png"])
    os.symlink("loop.png", folder / "loop.png")
    runs("folder_symlink_loop", folder, ("check", "pack"))
    folder = inputs / "folder_dev_zero"
    folder.mkdir()
    (folder / "img0.png").write_bytes(good["img0.png"])
    os.symlink("/dev/zero", folder / "zero.png")
    runs("folder_dev_zero", folder, ("check", "resize", "select", "pack"), key=True)
    folder = inputs / "folder_json_fifo"
    folder.mkdir()
    (folder / "img0.png").write_bytes(good["img0.png"])
    os.mkfifo(folder / "dataset.json")
    runs("folder_json_fifo", folder, ("check", "pack"))
    return cases


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# =============================================================================================
# The sweep.

BUILDERS = {"checkpoints": checkpoint_cases, "cli": cli_cases, "datasets": dataset_cases}


def build_cases(workdir: Path, only: Optional[str], quick: bool, name_filter: Optional[str]) -> List[Case]:
    cases = []
    for category in CATEGORIES:
        if only and category != only:
            continue
        cases += BUILDERS[category](workdir)
    if quick:
        cases = [c for c in cases if c.quick]
    if name_filter:
        cases = [c for c in cases if name_filter in c.name]
    return cases


def run_all(cases: List[Case], settings: Settings, jobs: int) -> List[Result]:
    (settings.workdir / "logs").mkdir(parents=True, exist_ok=True)
    results: List[Optional[Result]] = [None] * len(cases)

    def one(index: int) -> None:
        case = cases[index]
        case_dir = settings.workdir / "cases" / case.category / case.name
        case_dir.mkdir(parents=True, exist_ok=True)
        outside_dir = settings.workdir / "outside" / case.name
        outside_dir.mkdir(parents=True, exist_ok=True)
        try:
            result = run_case(case, case_dir, outside_dir, settings)
        except OSError as exc:   # the interpreter could not be started, the disk is full, ...: one case lost, not the sweep
            result = Result(case, "other", None, 0.0, detail=f"harness: {exc}")
        results[index] = result
        flag = " (accepted bad input)" if result.accepted_bad else ""
        print(f"[{sum(r is not None for r in results):4d}/{len(cases)}] {result.outcome:9s} {result.seconds:6.1f}s "
              f"{case.category}/{case.name}{flag}", flush=True)
        if not settings.keep:   # outputs can be large (renders, resized datasets); the verdict is taken
            for output in case.outputs:
                target = case_dir / output
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target, ignore_errors=True)

    # Long cases (every train run, the decompression bombs) first, so the pool ends together.
    order = sorted(range(len(cases)), key=lambda i: cases[i].argv[0] != "train")
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        list(pool.map(one, order))
    return [r for r in results if r is not None]


def summarize(results: List[Result]) -> dict:
    total = Counter(r.outcome for r in results)
    return {
        "cases": len(results),
        "clean": sum(total[o] for o in CLEAN),
        "refused_after_status_lines": sum(r.outcome == "refused" and not _strictly_refused(r) for r in results),
        "outcomes": {o: total[o] for o in OUTCOMES},
        "accepted_bad": sum(r.accepted_bad for r in results),
        "left_run_dir": sum(r.left_run_dir for r in results),
    }


def _strictly_refused(result: Result) -> bool:
    """Refused with stderr exactly one line (or a documented report exit)."""
    return classify(result.returncode, result.stderr_tail, False, strict=True,
                    report_exit=result.case.report_exit) == "refused"


def print_tables(results: List[Result]) -> None:
    columns = OUTCOMES + ("ok!", "left")
    for category in CATEGORIES:
        rows = defaultdict(list)
        for r in results:
            if r.case.category == category:
                rows[r.case.command].append(r)
        if not rows:
            continue
        print(f"\n{category}")
        print(f"  {'command':16s} {'cases':>5s} " + " ".join(f"{c:>9s}" for c in columns))
        for command, group in sorted(rows.items()):
            print("  " + _row(command, group, columns))
        print("  " + _row("all", [r for g in rows.values() for r in g], columns))
    s = summarize(results)
    o = s["outcomes"]
    print(f"\nTOTAL: {s['cases']} cases, {s['clean']} refused cleanly ({o['refused']} one-line error, "
          f"{s['refused_after_status_lines']} of them after status lines; {o['usage']} usage), "
          f"{o['ok']} ok ({s['accepted_bad']} of them bad input accepted), {o['traceback']} tracebacks, "
          f"{o['multiline']} multi-line errors, {o['hang']} hangs, {o['memory']} memory, {o['other']} other, "
          f"{o['escape']} escapes, {o['executed']} code executed; {s['left_run_dir']} left a run folder")


def _row(command: str, group: List[Result], columns) -> str:
    counts = Counter(r.outcome for r in group)
    counts["ok!"] = sum(r.accepted_bad for r in group)
    counts["left"] = sum(r.left_run_dir for r in group)
    return f"{command:16s} {len(group):5d} " + " ".join(f"{counts[c]:9d}" for c in columns)


def settings_record(settings: Settings) -> dict:
    return {"python": settings.python, "pythonpath": settings.pythonpath, "timeout_s": settings.timeout,
            "address_space_bytes": settings.mem_bytes, "strict": settings.strict}


def write_json(path: Path, results: List[Result], settings: dict) -> None:
    report = {
        "settings": settings,
        "summary": summarize(results),
        "cases": [{"category": r.case.category, "name": r.case.name, "command": r.case.command,
                   "argv": r.case.argv, "outcome": r.outcome, "returncode": r.returncode,
                   "seconds": round(r.seconds, 2), "should_refuse": r.case.should_refuse,
                   "accepted_bad": r.accepted_bad, "left_run_dir": r.left_run_dir, "detail": r.detail,
                   "stderr_tail": r.stderr_tail, "stdout_tail": r.stdout_tail[-600:]} for r in results],
    }
    path.write_text(json.dumps(report, indent=1))


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--python", default=sys.executable, help="interpreter that runs trigan (default: this one)")
    p.add_argument("--pythonpath", help="prepended to PYTHONPATH: test another copy of the package")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per run before it counts as a hang")
    p.add_argument("--mem-gib", type=float, default=4.0, help="address-space limit per run, GiB (RLIMIT_AS)")
    p.add_argument("--fsize-gib", type=float, default=2.0, help="largest file a run may write, GiB (RLIMIT_FSIZE)")
    p.add_argument("--jobs", type=int, default=2, help="runs at once")
    p.add_argument("--only", choices=CATEGORIES, help="one category")
    p.add_argument("--quick", action="store_true", help="a representative subset")
    p.add_argument("-k", dest="name_filter", metavar="TEXT", help="only the cases whose name contains TEXT")
    p.add_argument("--workdir", type=Path, help="scratch folder (default: a new temporary one)")
    p.add_argument("--keep", action="store_true", help="keep the scratch folder and every output")
    p.add_argument("--strict", action="store_true", help="a refusal is exactly one stderr line, no status lines")
    p.add_argument("--json", type=Path, help="write the report here")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    p.add_argument("--tables-from", nargs="+", type=Path, metavar="REPORT",
                   help="run nothing: print the tables of JSON reports (a later report's case replaces an earlier "
                        "one of the same name, e.g. a rerun of a subset); with --json, write the merged report")
    return p.parse_args(argv)


def results_from_reports(paths: List[Path]) -> List[Result]:
    merged: Dict[tuple, dict] = {}
    for path in paths:
        for c in json.loads(path.read_text())["cases"]:
            merged[(c["category"], c["name"])] = c
    return [Result(Case(c["category"], c["name"], c["argv"], c["should_refuse"],
                        report_exit=1 if c["argv"][:2] == ["dataset", "check"] else None),
                   c["outcome"], c["returncode"],
                   c["seconds"], c["accepted_bad"], c["left_run_dir"], c["detail"], c["stdout_tail"], c["stderr_tail"])
            for c in merged.values()]


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if args.tables_from:
        results = results_from_reports(args.tables_from)
        print_tables(results)
        if args.json:
            write_json(args.json, results, json.loads(args.tables_from[-1].read_text())["settings"])
        return 0
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="trigan-hostile-"))).resolve()
    if workdir.exists() and any(workdir.iterdir()):
        print(f"hostile_sweep: {workdir} is not empty; give a new or empty --workdir", file=sys.stderr)
        return 2
    workdir.mkdir(parents=True, exist_ok=True)
    settings = Settings(python=args.python, pythonpath=os.path.abspath(args.pythonpath) if args.pythonpath else None,
                        timeout=args.timeout, mem_bytes=int(args.mem_gib * 2**30),
                        fsize_bytes=int(args.fsize_gib * 2**30), strict=args.strict, workdir=workdir, keep=args.keep)
    cases = build_cases(workdir, args.only, args.quick, args.name_filter)
    if args.list:
        for case in cases:
            print(f"{case.category:12s} {case.name:48s} trigan {' '.join(case.argv)}")
        return 0
    print(f"hostile_sweep: {len(cases)} cases in {workdir} (timeout {args.timeout:g} s, {args.mem_gib:g} GiB, "
          f"{args.jobs} at once)", flush=True)
    started = time.monotonic()
    results = run_all(cases, settings, args.jobs)
    print_tables(results)
    print(f"({math.ceil(time.monotonic() - started)} s)")
    if args.json:
        write_json(args.json, results, settings_record(settings))
        print(f"report: {args.json}")
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
