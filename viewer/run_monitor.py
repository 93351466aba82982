"""Following training runs through their files, and starting / stopping / resuming them as separate
`trigan train` processes.

A run is its directory (training/run_dir.py describes the files). The viewer never talks to the
trainer: it reads status.json (replaced atomically, so always whole), stats.jsonl and metrics.jsonl
(appended line by line, so the last line may be caught half-written: it is skipped until complete),
and samples/. Processes are started in their own session with their output in a log file, so they
outlive the viewer; reopening the viewer finds them again through the same files.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from trigan.core.checkpoint_meta import RUN_BEST, RUN_LATEST
from trigan.core.errors import TriganError
from trigan.core.summary import format_duration
from trigan.training.run_dir import ACTIVE_PHASES, active_owner, is_run_dir, read_status

STATS_FILE, METRICS_FILE = "stats.jsonl", "metrics.jsonl"
METRIC_PREFIX = "metric/"          # read_stats names metric series metric/<name>
# stats.jsonl bookkeeping that is not worth a plot of its own
NOT_PLOTTED = ("tick", "kimg", "step", "time", "sec_per_tick", "event", "restored_kimg")
Series = Dict[str, List[Tuple[float, float]]]


@dataclass
class RunInfo:
    path: Path
    name: str
    phase: str                          # status.json's phase, "unknown" without one
    kimg: Optional[float] = None
    total_kimg: Optional[float] = None
    images_per_sec: Optional[float] = None
    eta_seconds: Optional[float] = None
    alive: bool = False                 # a trainer owns the run right now (process alive / fresh heartbeat)
    losses: Dict[str, float] = field(default_factory=dict)    # the last status's running means
    metrics: Dict[str, float] = field(default_factory=dict)   # the last evaluation
    best_metric: Optional[float] = None
    owner: Optional[str] = None         # who trains it ("pid 123 on this machine ..."), when alive
    pid: Optional[int] = None
    host: Optional[str] = None
    heartbeat_age: Optional[float] = None   # seconds since the trainer last wrote status.json
    message: Optional[str] = None       # e.g. why it failed, or where a stopped run stands
    last_sample: Optional[Path] = None
    img_resolution: Optional[int] = None    # the resolution it trains at (after the dataset fitted it)
    notes: List[str] = field(default_factory=list)   # what the setup changed, e.g. the resolution
    has_latest: bool = False            # latest.ckpt exists (View latest, Resume)
    has_best: bool = False              # best.ckpt exists (View best)

    @property
    def state(self) -> str:
        """What a person wants to know: running, queued, stopped, done, failed, interrupted (an
        active phase but nobody training: killed or crashed; resume continues it) or unknown."""
        if self.alive:
            return "running"
        if self.phase in ACTIVE_PHASES:
            return "interrupted"
        if self.phase in ("queued", "stopped", "done", "failed"):
            return self.phase
        return "unknown"

    @property
    def on_this_machine(self) -> bool:
        return self.host == socket.gethostname()

    @property
    def can_stop(self) -> bool:
        """Stop can do something: a live trainer on this machine (stop_run signals only those)."""
        return self.alive and self.on_this_machine and self.pid is not None

    @property
    def can_resume(self) -> bool:
        """Resume can do something: nobody trains it, it did not finish, and it has a checkpoint."""
        return not self.alive and self.state in ("stopped", "interrupted", "failed") and self.has_latest

    @property
    def summary(self) -> str:
        """A word or two for lists: what it is doing while alive, else how it ended (a stopped run
        says it can go on, so that it never looks finished)."""
        if self.alive:
            return self.phase
        return {"stopped": "stopped (resumable)" if self.has_latest else "stopped",
                "interrupted": "interrupted (resumable)" if self.has_latest else "interrupted",
                "done": "done", "failed": "failed", "queued": "queued"}.get(self.state, "unknown")

    @property
    def fraction(self) -> Optional[float]:
        if self.kimg is None or not self.total_kimg:
            return None
        return min(1.0, max(0.0, self.kimg / self.total_kimg))


def _number(value) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _numbers(d) -> Dict[str, float]:
    if not isinstance(d, dict):
        return {}
    return {str(k): float(v) for k, v in d.items() if _number(v) is not None}


def read_run(path) -> RunInfo:
    """The run's state from its status.json (a missing or unreadable one gives phase "unknown")."""
    path = Path(path)
    if not path.is_dir():
        raise TriganError(f"{path}: no such run directory")
    status = read_status(path)
    owner = active_owner(path) if status else None
    heartbeat = _number(status.get("heartbeat"))
    pid = status.get("pid")
    return RunInfo(
        path=path, name=path.name, phase=str(status.get("phase") or "unknown"),
        kimg=_number(status.get("kimg")), total_kimg=_number(status.get("total_kimg")),
        images_per_sec=_number(status.get("images_per_sec")), eta_seconds=_number(status.get("eta_seconds")),
        alive=owner is not None, losses=_numbers(status.get("losses")), metrics=_numbers(status.get("last_metric")),
        best_metric=_number(status.get("best_metric")), owner=owner,
        pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
        host=status.get("host") if isinstance(status.get("host"), str) else None,
        heartbeat_age=None if heartbeat is None else max(0.0, time.time() - heartbeat),
        message=status.get("message") if isinstance(status.get("message"), str) else None,
        last_sample=latest_sample(path), img_resolution=_positive_int(status.get("img_resolution")),
        notes=[n for n in status.get("notes") or [] if isinstance(n, str)] if isinstance(status.get("notes"), list) else [],
        has_latest=(path / RUN_LATEST).is_file(), has_best=(path / RUN_BEST).is_file())


def _positive_int(value) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def list_runs(runs_folder) -> List[RunInfo]:
    """Every run directory directly inside the folder, in name (= number) order. A folder that does
    not exist yet has no runs."""
    folder = Path(os.path.expanduser(str(runs_folder)))
    if not folder.exists():
        return []
    if not folder.is_dir():
        raise TriganError(f"{folder}: not a folder (expected the folder that holds training runs)")
    runs = []
    for child in sorted(folder.iterdir()):
        if child.is_dir() and is_run_dir(child):
            try:
                runs.append(read_run(child))
            except OSError:
                continue          # removed while listing
    return runs


# --------------------------------------------------------------------------------------------------
# Curves

class StatsFollower:
    """Reads a .jsonl file incrementally: each update() parses only what was appended since the last,
    and a last line without its newline (caught mid-write) is left for the next update."""

    def __init__(self, path, prefix: str = ""):
        self.path, self.prefix = Path(path), prefix
        self.series: Series = {}
        self._offset = 0
        self._inode = None
        self.bad_lines = 0

    def update(self) -> Series:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return self.series
        if self._inode is not None and (st.st_ino != self._inode or st.st_size < self._offset):
            self.series, self._offset = {}, 0          # replaced or truncated: start over
        self._inode = st.st_ino
        if st.st_size == self._offset:
            return self.series
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            chunk = f.read()
        end = chunk.rfind(b"\n")
        if end < 0:
            return self.series                      # only a partial line so far
        self._offset += end + 1
        for line in chunk[:end].split(b"\n"):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                self.bad_lines += 1                 # a torn line from a crash: skip it, keep the rest
                continue
            self._add(record)
        return self.series

    def _add(self, record) -> None:
        if not isinstance(record, dict) or "event" in record:
            return                                  # rollbacks etc. are events, not samples
        kimg = _number(record.get("kimg"))
        if kimg is None:
            return
        for key, value in record.items():
            v = _number(value)
            if v is None or key in NOT_PLOTTED:
                continue
            self.series.setdefault(self.prefix + key, []).append((kimg, v))


def read_stats(path) -> Series:
    """{name: [(kimg, value), ...]} of a run: every numeric column of stats.jsonl (losses, schedules,
    images_per_sec, memory ...) and, named metric/<name>, of metrics.jsonl. A half-written last line
    is ignored. Which names are losses: the keys of RunInfo.losses."""
    path = Path(path)
    out = dict(StatsFollower(path / STATS_FILE).update())
    out.update(StatsFollower(path / METRICS_FILE, METRIC_PREFIX).update())
    return out


def latest_sample(path) -> Optional[Path]:
    """The newest sample grid: status.json's last_sample, else the highest samples/fakes_*.png."""
    path = Path(path)
    named = read_status(path).get("last_sample")
    if isinstance(named, str) and (path / named).is_file():
        return path / named
    grids = sorted((path / "samples").glob("fakes_*.png"))
    return grids[-1] if grids else None


def snapshot_path(path, which: str = "best") -> Optional[Path]:
    """best.ckpt or latest.ckpt of a run (None when the run has not written it yet)."""
    if which not in ("best", "latest"):
        raise ValueError(f"which={which!r}: expected 'best' or 'latest'")
    file = Path(path) / (RUN_BEST if which == "best" else RUN_LATEST)
    return file if file.is_file() else None


# --------------------------------------------------------------------------------------------------
# Processes

def _launch(argv: List[str], log_path: Path) -> subprocess.Popen:
    """`python -m trigan.cli.main ARGV` in a new session (Ctrl-C in the viewer's terminal and closing
    the viewer leave it running), output appended to log_path."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "trigan.cli.main", *argv]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log_path, "ab") as log:
        log.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env, close_fds=True)
    proc.log_path = log_path          # type: ignore[attr-defined]
    proc.command = cmd                # type: ignore[attr-defined]
    return proc


def start_run(data, runs_folder, preset: str = "demo", overrides: Optional[Dict[str, object]] = None,
              desc: Optional[str] = None, kimg: Optional[float] = None, device: Optional[str] = None
              ) -> subprocess.Popen:
    """Start `trigan train --config PRESET --data DATA --out RUNS [--desc] [key=value ...]`.

    Its output goes to RUNS/launch-<time>.log (`proc.log_path`); the run directory it creates is
    printed there (`launched_run_dir(proc)`). Errors the trainer finds (a bad dataset, a bad
    override) end the process with exit status 2 and a one-line message in that log."""
    folder = Path(os.path.expanduser(str(runs_folder)))
    if folder.exists() and not folder.is_dir():
        raise TriganError(f"{folder}: not a folder (expected the folder that holds training runs)")
    if not Path(os.path.expanduser(str(data))).exists():
        raise TriganError(f"{data}: no such dataset (expected a zip or folder made by `trigan dataset`)")
    argv = ["train", "--config", str(preset), "--data", str(Path(os.path.expanduser(str(data))).resolve()),
            "--out", str(folder.resolve())]
    if desc:
        argv += ["--desc", str(desc)]
    if kimg is not None:
        argv += ["--kimg", str(kimg)]
    if device:
        argv += ["--device", str(device)]
    for key, value in (overrides or {}).items():
        if not re.match(r"^[A-Za-z_][\w.]*$", str(key)):
            raise TriganError(f"override {key!r}: expected a dotted config key like training.gamma")
        argv.append(f"{key}={value}")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return _launch(argv, folder.resolve() / f"launch-{stamp}-{os.getpid()}.log")


def resume_run(path, kimg: Optional[float] = None, device: Optional[str] = None) -> subprocess.Popen:
    """Continue a stopped or interrupted run (`trigan train --resume RUN`); output appended to
    RUN/resume.log (`proc.log_path`). Refuses a run that is being trained right now."""
    path = Path(path).resolve()
    if not is_run_dir(path):
        raise TriganError(f"{path}: not a training run directory (no config.yaml or status.json)")
    owner = active_owner(path)
    if owner:
        raise TriganError(f"{path.name}: is being trained right now by {owner}")
    argv = ["train", "--resume", str(path)]
    if kimg is not None:
        argv += ["--kimg", str(kimg)]
    if device:
        argv += ["--device", str(device)]
    return _launch(argv, path / "resume.log")


def stop_run(path) -> int:
    """Ask the trainer of a run to stop cleanly: SIGTERM to the pid in status.json, which makes it
    finish the step, write latest.ckpt and exit with phase "stopped". Returns the pid signalled.
    Only a live process on this machine that owns the run is signalled (never a reused pid of a run
    that already ended); otherwise a one-line TriganError says why not."""
    path = Path(path)
    status = read_status(path)
    owner = active_owner(path)
    if owner is None:
        phase = status.get("phase", "unknown")
        raise TriganError(f"{path.name}: not running (phase {phase}); nothing to stop")
    pid, host = status.get("pid"), status.get("host")
    if host != socket.gethostname():
        raise TriganError(f"{path.name}: is trained on {host} (pid {pid}); stop it there")
    try:
        os.kill(int(pid), signal.SIGTERM)
    except ProcessLookupError:
        raise TriganError(f"{path.name}: its trainer (pid {pid}) has just exited") from None
    except PermissionError:
        raise TriganError(f"{path.name}: its trainer (pid {pid}) belongs to another user") from None
    return int(pid)


_RUN_LINE = re.compile(r"^run: (.+?)(?:  \(|$)")


def launched_run_dir(proc_or_log) -> Optional[Path]:
    """The run directory a started `trigan train` printed to its log ("run: DIR  (...)"), or None yet."""
    log = getattr(proc_or_log, "log_path", proc_or_log)
    try:
        text = Path(log).read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        m = _RUN_LINE.match(line)
        if m:
            return Path(m.group(1))
    return None


def log_tail(path, lines: int = 20) -> List[str]:
    """The last lines of a log (e.g. why a launched process exited)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            text = f.read().decode(errors="replace")
    except OSError:
        return []
    return text.splitlines()[-lines:]


# --------------------------------------------------------------------------------------------------
# Text for the panel (pure functions: the panel only places it)

def format_eta(seconds) -> str:
    """A run's time left as the model summary writes durations (core.summary.format_duration:
    "45.0s", "4m07s", "1h05m", "2d03h"); "-" for an unknown, negative or non-finite time."""
    value = _number(seconds)
    if value is None or value < 0:
        return "-"
    return format_duration(value)


def format_value(value: float) -> str:
    """A loss or metric in at most 9 characters: 0.6931, -0.01234, 1.235e-05, 1234."""
    return f"{value:.4g}"


def pair_rows(pairs: Dict[str, float], width_chars: int, gap: int = 3) -> List[str]:
    """"name value" pairs in aligned columns, as many per row as fit in width_chars. Rows are cut
    between pairs only, never inside a number (Dear ImGui's word wrap would break "0.693" at its
    point). Every cell has the width of the widest; values are right-aligned."""
    if not pairs:
        return []
    names = [str(k) for k in pairs]
    values = [format_value(v) for v in pairs.values()]
    name_w, value_w = max(map(len, names)), max(map(len, values))
    cells = [f"{n:<{name_w}} {v:>{value_w}}" for n, v in zip(names, values, strict=True)]
    cell_w = name_w + 1 + value_w
    per_row = max(1, (max(width_chars, cell_w) + gap) // (cell_w + gap))
    return [(" " * gap).join(cells[i:i + per_row]).rstrip() for i in range(0, len(cells), per_row)]


def field_rows(fields: List[str], width_chars: int, gap: int = 3) -> List[str]:
    """Fields ("kimg 0.5 of 300", "ETA 4m07s") joined on rows of at most width_chars, broken
    between fields only (a field longer than a row gets a row of its own)."""
    rows: List[str] = []
    for f in fields:
        if rows and len(rows[-1]) + gap + len(f) <= width_chars:
            rows[-1] += " " * gap + f
        else:
            rows.append(f)
    return rows
