"""A training run's directory: the files a monitor (the viewer's training panel, a script, a person)
reads to follow a run without talking to the process.

    RUNS/00003-demo-shapes/
        config.yaml        the resolved config (model, discriminator, training), enough to resume
        command.txt        the command line that started (and resumed) the run
        version.json       trigan version, git commit of the code, torch, python, host
        status.json        phase, kimg, images/s, ETA, last losses and metric, pid, heartbeat
        stats.jsonl        one line per tick: losses, schedules, speed, memory (each tick once: a resume
                           drops the ticks logged after the checkpoint it continues from)
        metrics.jsonl      one line per metric evaluation
        log.txt            the human-readable log
        latest.ckpt        the newest checkpoint (full training state), written atomically
        best.ckpt          the best checkpoint by the first metric (when metrics are configured)
        snapshots/         snapshot_<images seen>.ckpt, a copy of every checkpoint (training.keep_snapshots)
        samples/           reals.png, fakes_<kimg>.png, fakes_<kimg>.mp4
        slurm.sbatch       when launched through SLURM

Only the main process writes. Every file that a reader may open mid-write is replaced atomically.
A write that fails for a reason of the disk (full, read-only, no permission) raises
core.atomic.WriteError, one line naming the file and the reason.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import socket
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import torch

from trigan.core.atomic import WriteError, append_text, atomic_write_text, writing
from trigan.core.errors import TriganError

PHASES = ("queued", "starting", "training", "sampling", "checkpointing", "evaluating", "rolling_back", "stopping",
          "stopped", "done", "failed")


def _slug(text: str, limit: int = 64) -> str:
    """A safe part of a run folder's name; `limit` keeps the whole under a file name's 255 bytes."""
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", text)[:limit].strip("-") or "run"


def new_run_dir(out_root, preset: str, data: Optional[str], desc: Optional[str] = None) -> Path:
    """RUNS/<5-digit number>-<preset>-<dataset name>[-desc], numbered after the highest present."""
    root = Path(out_root)
    if root.exists() and not root.is_dir():
        raise TriganError(f"{root}: exists and is not a folder (--out takes the folder that holds runs)")
    try:
        with writing(root):
            root.mkdir(parents=True, exist_ok=True)
            numbers = [int(m.group(1)) for p in root.iterdir() if (m := re.match(r"^(\d+)-", p.name))]
    except WriteError as exc:
        raise TriganError(f"--out {root}: cannot make a run folder there ({exc.reason})") from None
    parts = [f"{max(numbers, default=-1) + 1:05d}", _slug(Path(preset).stem)]
    if data:
        parts.append(_slug(Path(data.rstrip("/")).stem))
    if desc:
        parts.append(_slug(desc))
    run = root / "-".join(parts)
    try:
        with writing(run):
            run.mkdir()
            (run / "samples").mkdir()
    except WriteError as exc:
        raise TriganError(f"--out {root}: cannot make a run folder there ({exc.reason})") from None
    return run


def is_run_dir(path) -> bool:
    """A folder made by `trigan train`: it holds config.yaml or status.json."""
    return Path(path, "config.yaml").is_file() or Path(path, "status.json").is_file()


def code_version() -> Dict[str, Any]:
    """What code produced the run: package version and, from a git checkout, the commit."""
    try:
        pkg = version("trigan")
    except PackageNotFoundError:
        pkg = "unknown"
    info = {"trigan": pkg, "torch": torch.__version__, "python": platform.python_version(),
            "host": socket.gethostname()}
    repo = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], check=False, capture_output=True, text=True,
                                timeout=5)
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               check=False, capture_output=True, text=True, timeout=5)
        if commit.returncode == 0:
            info["git_commit"] = commit.stdout.strip()
            info["git_dirty"] = bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return info


class RunWriter:
    """Writes the run's logs and status (main process only; other ranks get a silent one)."""

    def __init__(self, run_dir: Path, enabled: bool = True, tensorboard: bool = True):
        self.dir = Path(run_dir)
        self.enabled = enabled
        self.status: Dict[str, Any] = {}
        self.stopping = False           # a stop was asked for: active phases are written as "stopping"
        self._writing_status = False    # inside update_status (a signal handler must not write then)
        self._tb = None
        if enabled and tensorboard:
            try:  # optional: only when the tensorboard package is installed
                from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415 (optional package)
                self._tb = SummaryWriter(str(self.dir / "tensorboard"))
            except Exception:  # noqa: BLE001 - optional: any failure to start it leaves the run without TensorBoard
                self._tb = None

    # -- text log ---------------------------------------------------------------------------------
    def log(self, message: str, echo: bool = True) -> None:
        if not self.enabled:
            return
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}"
        if echo:
            print(message, flush=True)
        append_text(self.dir / "log.txt", line + "\n")

    # -- machine-readable -------------------------------------------------------------------------
    def append_jsonl(self, name: str, record: Dict[str, Any]) -> None:
        if not self.enabled:
            return
        append_text(self.dir / name, json.dumps(record) + "\n")

    def drop_records(self, name: str, stale: Callable[[Dict[str, Any]], bool]) -> int:
        """Rewrite RUN/name (atomically) without the records for which `stale` is true, and without a
        torn last line (a kill mid-append). Returns how many lines went."""
        path = self.dir / name
        if not self.enabled or not path.is_file():
            return 0
        with writing(path):
            text = path.read_text()
        lines = text.splitlines(keepends=True)
        kept = []
        for i, line in enumerate(lines):
            try:
                record = json.loads(line)
            except ValueError:
                torn = i == len(lines) - 1 and not line.endswith("\n")
                if not torn:
                    kept.append(line)     # not ours to judge: keep it
                continue
            if not (isinstance(record, dict) and stale(record)):
                kept.append(line)
        if len(kept) != len(lines):
            atomic_write_text(path, "".join(kept))
        return len(lines) - len(kept)

    def scalars(self, values: Dict[str, float], kimg: float) -> None:
        if self._tb is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)):
                    self._tb.add_scalar(key, value, global_step=int(round(kimg * 1000)))
            self._tb.flush()

    def update_status(self, **fields) -> None:
        """Merge fields into status.json (atomically replaced) with a fresh heartbeat. Once a stop was
        asked for, an active phase is written as "stopping": what the run still does on its way out
        (the step in progress, the last checkpoint) is part of the stop, and a monitor says so."""
        self._writing_status = True
        try:
            self.status.update(fields)
            if self.stopping and self.status.get("phase") in ACTIVE_PHASES:
                self.status["phase"] = "stopping"
            self.status["pid"] = os.getpid()
            self.status["host"] = socket.gethostname()
            self.status["heartbeat"] = time.time()
            if self.enabled:
                atomic_write_text(self.dir / "status.json", json.dumps(self.status, indent=1))
        finally:
            self._writing_status = False

    def announce_stopping(self) -> None:
        """For a stop-signal handler: from now on the run is "stopping", and status.json says so at
        once (the step in progress may take a while), unless the signal interrupted a status write
        of this process, or the disk refuses: then the next status write after the step says it."""
        self.stopping = True
        if self._writing_status or self.status.get("phase") not in ACTIVE_PHASES:
            return
        try:
            self.update_status()
        except OSError:
            pass   # best effort from a signal handler; the run's own next write reports the disk

    def final_status(self, **fields) -> bool:
        """update_status for the last word of a failing run, which must not fail in turn: when the
        atomic replace cannot be written (a full disk has no block for a new file), status.json is
        rewritten in place, in the blocks it already has. Returns whether either worked."""
        try:
            self.update_status(**fields)
            return True
        except OSError:
            pass
        if not self.enabled:
            return False
        try:
            with open(self.dir / "status.json", "r+") as f:
                f.write(json.dumps(self.status, separators=(",", ":")))
                f.truncate()
            return True
        except OSError:
            return False   # a read-only disk: nothing can say it; the command's error line does

    def close(self) -> None:
        if self._tb is not None:
            try:
                self._tb.close()
            except Exception:  # noqa: BLE001 - optional TensorBoard (e.g. its flush on a full disk) must not hide the run's own outcome
                pass


def read_status(run_dir) -> Dict[str, Any]:
    """status.json of a run ({} when missing or caught mid-replace on a filesystem without atomic rename)."""
    try:
        return json.loads(Path(run_dir, "status.json").read_text())
    except (OSError, ValueError):
        return {}


# "stopping": a stop signal came; the trainer finishes its step and writes latest.ckpt, then "stopped".
ACTIVE_PHASES = ("starting", "training", "sampling", "checkpointing", "evaluating", "rolling_back", "stopping")
HEARTBEAT_STALE_S = 120.0


def active_owner(run_dir) -> Optional[str]:
    """Who is training this run right now, or None: a process on this host that is still alive, or
    one elsewhere whose heartbeat is fresh. Two trainers on one run would overwrite each other."""
    status = read_status(run_dir)
    if status.get("phase") not in ACTIVE_PHASES:
        return None
    pid, host = status.get("pid"), status.get("host")
    age = time.time() - float(status.get("heartbeat") or 0)
    if host == socket.gethostname() and isinstance(pid, int):
        if pid == os.getpid():
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None          # died without a word (kill -9, power cut): free to resume
        except PermissionError:
            pass                 # alive, owned by someone else
        return f"pid {pid} on this machine (heartbeat {age:.0f} s ago)"
    if age < HEARTBEAT_STALE_S:
        return f"pid {pid} on {host} (heartbeat {age:.0f} s ago)"
    return None


def write_command(run_dir: Path, argv, resumed: bool) -> None:
    line = " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).name if sys.argv else "trigan", *argv])
    append_text(Path(run_dir) / "command.txt",
                ("# resumed " if resumed else "") + time.strftime("%Y-%m-%d %H:%M:%S") + "\n" + line + "\n")
