"""A training run's directory: the files a monitor (the viewer's training panel, a script, a person)
reads to follow a run without talking to the process.

    RUNS/00003-demo-shapes/
        config.yaml        the resolved config (model, discriminator, training), enough to resume
        command.txt        the command line that started (and resumed) the run
        version.json       trigan version, git commit of the code, torch, python, host
        status.json        phase, kimg, images/s, ETA, last losses and metric, pid, heartbeat
        stats.jsonl        one line per tick: losses, schedules, speed, memory
        metrics.jsonl      one line per metric evaluation
        log.txt            the human-readable log
        latest.ckpt        the newest checkpoint (full training state), written atomically
        best.ckpt          the best checkpoint by the first metric (when metrics are configured)
        snapshots/         snapshot_<images seen>.ckpt, a copy of every checkpoint (training.keep_snapshots)
        samples/           reals.png, fakes_<kimg>.png, fakes_<kimg>.mp4
        slurm.sbatch       when launched through SLURM

Only the main process writes. Every file that a reader may open mid-write is replaced atomically.
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
from typing import Any, Dict, Optional

import torch

from trigan.core.atomic import atomic_write_text
from trigan.core.errors import TriganError

PHASES = ("queued", "starting", "training", "sampling", "checkpointing", "evaluating", "rolling_back", "stopped",
          "done", "failed")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", text).strip("-") or "run"


def new_run_dir(out_root, preset: str, data: Optional[str], desc: Optional[str] = None) -> Path:
    """RUNS/<5-digit number>-<preset>-<dataset name>[-desc], numbered after the highest present."""
    root = Path(out_root)
    if root.exists() and not root.is_dir():
        raise TriganError(f"{root}: exists and is not a folder (--out takes the folder that holds runs)")
    root.mkdir(parents=True, exist_ok=True)
    numbers = [int(m.group(1)) for p in root.iterdir() if (m := re.match(r"^(\d+)-", p.name))]
    parts = [f"{max(numbers, default=-1) + 1:05d}", _slug(Path(preset).stem)]
    if data:
        parts.append(_slug(Path(data.rstrip("/")).stem))
    if desc:
        parts.append(_slug(desc))
    run = root / "-".join(parts)
    run.mkdir()
    (run / "samples").mkdir()
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
        with open(self.dir / "log.txt", "a") as f:
            f.write(line + "\n")

    # -- machine-readable -------------------------------------------------------------------------
    def append_jsonl(self, name: str, record: Dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.dir / name, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()

    def scalars(self, values: Dict[str, float], kimg: float) -> None:
        if self._tb is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)):
                    self._tb.add_scalar(key, value, global_step=int(round(kimg * 1000)))
            self._tb.flush()

    def update_status(self, **fields) -> None:
        """Merge fields into status.json (atomically replaced) with a fresh heartbeat."""
        self.status.update(fields)
        self.status["pid"] = os.getpid()
        self.status["host"] = socket.gethostname()
        self.status["heartbeat"] = time.time()
        if self.enabled:
            atomic_write_text(self.dir / "status.json", json.dumps(self.status, indent=1))

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_status(run_dir) -> Dict[str, Any]:
    """status.json of a run ({} when missing or caught mid-replace on a filesystem without atomic rename)."""
    try:
        return json.loads(Path(run_dir, "status.json").read_text())
    except (OSError, ValueError):
        return {}


ACTIVE_PHASES = ("starting", "training", "sampling", "checkpointing", "evaluating", "rolling_back")
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
    with open(Path(run_dir) / "command.txt", "a") as f:
        f.write(("# resumed " if resumed else "") + time.strftime("%Y-%m-%d %H:%M:%S") + "\n" + line + "\n")
