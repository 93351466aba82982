"""SLURM launcher: write an sbatch script that runs `trigan train` under torchrun on every node.

Upstream (EpiGRAF 10.4) submits with sbatch and spawns one process per GPU itself; here each node
runs one SLURM task, that task runs torchrun (`python -m torch.distributed.run`), and torchrun
starts one training process per GPU. The nodes meet at a c10d rendezvous on the job's first host,
so no port or address has to be known when the script is written.

    script = sbatch_script(["--config", "demo", "--resume", str(run_dir)], run_dir, SlurmOptions(nodes=2))
    job_id = submit(write_sbatch(run_dir / "slurm.sbatch", script))

The script is self-contained and can be resubmitted by hand (`sbatch run/slurm.sbatch`); with
`--resume RUN_DIR` in the training arguments every resubmission continues the run from its newest
snapshot. Putting that argument there is the caller's job.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Union

from trigan.core.atomic import atomic_path
from trigan.core.errors import TriganError

PathLike = Union[str, os.PathLike]
SUBMIT_TIMEOUT_S = 120


@dataclass
class SlurmOptions:
    nodes: int = 1
    gpus_per_node: int = 1
    cpus_per_task: int = 8              # one task per node, so these are the CPUs of a node's share
    mem: str = "64G"                    # per node
    time: str = "1-00:00:00"
    partition: Optional[str] = None
    account: Optional[str] = None
    constraint: Optional[str] = None
    job_name: str = "trigan"
    extra_sbatch: List[str] = field(default_factory=list)  # raw "#SBATCH ..." lines or "--key=value" items
    setup: List[str] = field(default_factory=list)         # shell lines run before training (module load, venv)
    rdzv_port: int = 29500


def _sbatch_value(name: str, value) -> str:
    """A value as sbatch reads it from a #SBATCH line: bare, or double-quoted when it has spaces."""
    text = str(value)
    if not text or "\n" in text or "\r" in text:
        raise TriganError(f"SLURM option {name}: {value!r} is not a usable value")
    if any(ch.isspace() for ch in text) or "'" in text:
        if '"' in text:
            raise TriganError(f"SLURM option {name}: {value!r} mixes spaces and double quotes")
        return f'"{text}"'
    return text


def _extra_line(item: str) -> str:
    item = item.strip()
    if "\n" in item or "\r" in item or not item:
        raise TriganError(f"extra sbatch option {item!r}: expected one '#SBATCH ...' line or '--key=value'")
    if item.startswith("#SBATCH"):
        return item
    if item.startswith("-"):
        return f"#SBATCH {item}"
    return f"#SBATCH --{item}"  # "key=value" written without dashes


def _check(opts: SlurmOptions) -> None:
    for name in ("nodes", "gpus_per_node", "cpus_per_task"):
        if int(getattr(opts, name)) < 1:
            raise TriganError(f"SLURM option {name} must be at least 1, got {getattr(opts, name)}")
    if not 0 < int(opts.rdzv_port) < 65536:
        raise TriganError(f"SLURM option rdzv_port must be a TCP port (1-65535), got {opts.rdzv_port}")
    for line in opts.setup:
        if "\n" in line or "\r" in line:
            raise TriganError(f"setup line {line!r}: give one shell line per item")


def sbatch_script(train_argv: Sequence[str], run_dir: PathLike, opts: SlurmOptions,
                  python: str = sys.executable, workdir: Optional[PathLike] = None) -> str:
    """The text of a bash sbatch script that runs `trigan train <train_argv...>` on opts.nodes nodes.

    SLURM writes the job's stdout and stderr to <run_dir>/slurm-<jobid>.out / .err; the folder must
    exist when the job starts (SLURM does not create it). The job starts in `workdir` (default: the
    current folder), so relative paths in train_argv mean what they meant here.
    """
    _check(opts)
    run_dir = Path(run_dir).resolve()
    workdir = Path.cwd() if workdir is None else Path(workdir).resolve()
    q = shlex.quote

    sbatch = [
        ("job-name", opts.job_name),
        ("nodes", int(opts.nodes)),
        ("ntasks-per-node", 1),
        ("gpus-per-node", int(opts.gpus_per_node)),
        ("cpus-per-task", int(opts.cpus_per_task)),
        ("mem", opts.mem),
        ("time", opts.time),
        ("partition", opts.partition),
        ("account", opts.account),
        ("constraint", opts.constraint),
        ("output", run_dir / "slurm-%j.out"),
        ("error", run_dir / "slurm-%j.err"),
    ]
    lines = [
        "#!/bin/bash",
        "# trigan training job for SLURM (written by trigan.training.slurm; submit with `sbatch THIS_FILE`).",
        f"# Run directory: {run_dir}",
        "# Each node runs one task; the task runs torchrun, which starts one training process per GPU and",
        "# joins the other nodes at a c10d rendezvous on the job's first host.",
        "# Resubmitting this file resumes the run when the training arguments carry --resume RUN_DIR",
        "# (trigan's launcher puts it there): training continues from the newest snapshot in RUN_DIR.",
    ]
    lines += [f"#SBATCH --{key}={_sbatch_value(key, value)}" for key, value in sbatch if value is not None]
    lines += [_extra_line(item) for item in opts.extra_sbatch]
    lines += ["", "set -euo pipefail", f"cd {q(str(workdir))}"]
    if opts.setup:
        lines += ["", "# Setup, without nounset: module and conda scripts often read unset variables.",
                  "set +u", *opts.setup, "set -u"]

    train = [q(str(python)), "-m", "torch.distributed.run",
             '--nnodes="$SLURM_NNODES"', f"--nproc_per_node={int(opts.gpus_per_node)}",
             '--rdzv_id="$SLURM_JOB_ID"', "--rdzv_backend=c10d",
             f'--rdzv_endpoint="$HEAD_NODE":{int(opts.rdzv_port)}',
             "-m", "trigan.cli.main", "train", *(q(str(arg)) for arg in train_argv)]
    lines += [
        "",
        "# The rendezvous host: the first node of the allocation.",
        'HEAD_NODE=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
        'if [ -z "$HEAD_NODE" ]; then echo "trigan: no hosts in SLURM_JOB_NODELIST" >&2; exit 1; fi',
        f'echo "trigan: job $SLURM_JOB_ID on $SLURM_NNODES node(s), rendezvous at $HEAD_NODE:{int(opts.rdzv_port)}"',
        "",
        "# One torchrun per node (ntasks-per-node=1); if one fails, SLURM stops the others.",
        "srun --kill-on-bad-exit=1 " + " ".join(train),
        "",
    ]
    return "\n".join(lines)


def write_sbatch(path: PathLike, script: str) -> Path:
    """Write the script atomically (temporary file, then rename) and make it executable."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(script)
        tmp.chmod(0o755)
    return path


def _first_line(text: str) -> str:
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return ""


def submit(script_path: PathLike) -> str:
    """Submit with `sbatch` and return the job id; a TriganError (one line) if that is impossible."""
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise TriganError("sbatch not found on PATH: submit from a SLURM login node "
                          f"(or run `sbatch {script_path}` there)")
    try:
        proc = subprocess.run([sbatch, str(script_path)], check=False, capture_output=True, text=True,
                              timeout=SUBMIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise TriganError(f"sbatch {script_path}: no answer within {SUBMIT_TIMEOUT_S} s") from None
    except OSError as exc:
        raise TriganError(f"sbatch {script_path}: could not run sbatch ({exc})") from None
    if proc.returncode != 0:
        reason = _first_line(proc.stderr) or _first_line(proc.stdout) or f"exit status {proc.returncode}"
        raise TriganError(f"sbatch {script_path} failed: {reason}")
    match = re.search(r"Submitted batch job (\d+)", proc.stdout)
    if match is None:
        raise TriganError(f"sbatch {script_path}: unexpected answer {_first_line(proc.stdout)!r} "
                          "(expected 'Submitted batch job <id>')")
    return match.group(1)
