"""The SLURM launcher: script syntax and contents, argument quoting, submission, and a dry run of the
script body with fake srun / scontrol executables."""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from trigan.core.errors import TriganError
from trigan.training.slurm import SlurmOptions, sbatch_script, submit, write_sbatch

TRICKY_ARGV = ["--config", "demo", "--resume", "/runs/my run", "desc=it's \"quoted\"", "x=$HOME", "a;b", ""]


def _fake_exe(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def _srun_line(script: str) -> str:
    lines = [line for line in script.splitlines() if line.startswith("srun ")]
    assert len(lines) == 1
    return lines[0]


def _opts(**kw) -> SlurmOptions:
    base = dict(nodes=3, gpus_per_node=4, cpus_per_task=12, mem="200G", time="2-12:00:00", partition="gpu",
                account="proj42", constraint="a100", job_name="ffhq run", rdzv_port=29611,
                extra_sbatch=["#SBATCH --exclusive", "--qos=high", "mail-type=END"],
                setup=["module load cuda/12.1", 'export TRIGAN_SETUP_RAN="yes"'])
    base.update(kw)
    return SlurmOptions(**base)


def test_script_parses_with_bash(tmp_path):
    script = sbatch_script(TRICKY_ARGV, tmp_path / "run", _opts())
    path = write_sbatch(tmp_path / "job.sbatch", script)
    assert path.read_text() == script
    assert os.access(path, os.X_OK)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind
    subprocess.run(["bash", "-n", str(path)], check=True)


def test_sbatch_lines_carry_the_options(tmp_path):
    run_dir = tmp_path / "run"
    script = sbatch_script(["--resume", str(run_dir)], run_dir, _opts())
    sbatch = [line for line in script.splitlines() if line.startswith("#SBATCH")]
    for expected in ['--job-name="ffhq run"', "--nodes=3", "--ntasks-per-node=1", "--gpus-per-node=4",
                     "--cpus-per-task=12", "--mem=200G", "--time=2-12:00:00", "--partition=gpu",
                     "--account=proj42", "--constraint=a100", f"--output={run_dir.resolve()}/slurm-%j.out",
                     f"--error={run_dir.resolve()}/slurm-%j.err", "--exclusive", "--qos=high", "--mail-type=END"]:
        assert f"#SBATCH {expected}" in sbatch, expected
    assert script.startswith("#!/bin/bash\n")
    assert "set -euo pipefail" in script
    assert "Resubmitting this file resumes the run" in script.split("#SBATCH")[0]
    # Every #SBATCH line comes before the first command, or sbatch ignores it.
    body_start = script.splitlines().index("set -euo pipefail")
    assert all(i < body_start for i, line in enumerate(script.splitlines()) if line.startswith("#SBATCH"))


def test_optional_sbatch_lines_left_out(tmp_path):
    script = sbatch_script([], tmp_path, SlurmOptions())
    assert "--partition" not in script and "--account" not in script and "--constraint" not in script
    assert "#SBATCH --gpus-per-node=1" in script and "#SBATCH --mem=64G" in script
    assert "set +u" not in script  # no setup lines, no setup block


def test_train_argv_round_trips_through_the_shell_quoting(tmp_path):
    script = sbatch_script(TRICKY_ARGV, tmp_path, _opts(), python="/opt/my env/bin/python")
    words = shlex.split(_srun_line(script))
    assert words[:3] == ["srun", "--kill-on-bad-exit=1", "/opt/my env/bin/python"]
    tail = words[words.index("trigan.cli.main"):]
    assert tail == ["trigan.cli.main", "train", *TRICKY_ARGV]


def test_bad_options_are_user_errors(tmp_path):
    with pytest.raises(TriganError, match="nodes"):
        sbatch_script([], tmp_path, SlurmOptions(nodes=0))
    with pytest.raises(TriganError, match="job-name"):
        sbatch_script([], tmp_path, SlurmOptions(job_name="a\n#SBATCH --nodes=99"))
    with pytest.raises(TriganError, match="extra"):
        sbatch_script([], tmp_path, SlurmOptions(extra_sbatch=["--qos=a\nrm -rf /"]))


def test_script_body_runs_torchrun_on_every_node(tmp_path):
    """Execute the script with fake srun/scontrol: srun records its argv, one line per word."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "srun-argv.txt"
    _fake_exe(bin_dir, "srun", f'for a in "$@"; do printf "%s\\n" "$a"; done > "{record}"\n'
                               f'printf "%s\\n" "SETUP=$TRIGAN_SETUP_CHECK" >> "{record}"')
    _fake_exe(bin_dir, "scontrol", 'if [ "$1 $2" = "show hostnames" ]; then\n'
                                   '  printf "gpu-node017\\ngpu-node018\\ngpu-node021\\n"; else exit 3; fi')
    _fake_exe(bin_dir, "module", "exit 0")
    opts = _opts(setup=["module load cuda/12.1", "export TRIGAN_SETUP_CHECK=ran"])
    workdir = tmp_path / "work dir"
    workdir.mkdir()
    script_path = write_sbatch(tmp_path / "job.sbatch",
                               sbatch_script(TRICKY_ARGV, tmp_path / "run", opts, python="/usr/bin/python3",
                                             workdir=workdir))
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "HOME": str(tmp_path),
           "SLURM_JOB_NODELIST": "gpu-node[017-018,021]", "SLURM_NNODES": "3", "SLURM_JOB_ID": "777"}
    proc = subprocess.run(["bash", str(script_path)], check=False, env=env, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "rendezvous at gpu-node017:29611" in proc.stdout

    argv = record.read_text().split("\n")[:-1]
    assert argv[-1] == "SETUP=ran"  # setup lines ran before srun, in the same shell
    argv = argv[:-1]
    assert argv[:4] == ["--kill-on-bad-exit=1", "/usr/bin/python3", "-m", "torch.distributed.run"]
    assert "--nnodes=3" in argv and "--nproc_per_node=4" in argv
    assert "--rdzv_id=777" in argv and "--rdzv_backend=c10d" in argv
    assert "--rdzv_endpoint=gpu-node017:29611" in argv
    assert argv[argv.index("trigan.cli.main") - 1] == "-m"
    assert argv[argv.index("trigan.cli.main"):] == ["trigan.cli.main", "train", *TRICKY_ARGV]


def test_script_stops_when_the_nodelist_is_empty(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake_exe(bin_dir, "srun", f'touch "{tmp_path / "srun-ran"}"')
    _fake_exe(bin_dir, "scontrol", "exit 0")
    script_path = write_sbatch(tmp_path / "job.sbatch", sbatch_script([], tmp_path, SlurmOptions(),
                                                                      workdir=tmp_path))
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SLURM_JOB_NODELIST": "",
           "SLURM_NNODES": "1", "SLURM_JOB_ID": "1"}
    proc = subprocess.run(["bash", str(script_path)], check=False, env=env, capture_output=True, text=True)
    assert proc.returncode != 0 and "no hosts" in proc.stderr
    assert not (tmp_path / "srun-ran").exists()


def test_submit_returns_the_job_id(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake_exe(bin_dir, "sbatch", f'printf "%s\\n" "$1" > "{tmp_path / "submitted"}"\necho "Submitted batch job 4242"')
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    script = write_sbatch(tmp_path / "job.sbatch", sbatch_script([], tmp_path, SlurmOptions()))
    assert submit(script) == "4242"
    assert (tmp_path / "submitted").read_text().strip() == str(script)


def test_submit_reports_sbatch_failure_in_one_line(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake_exe(bin_dir, "sbatch", 'echo "sbatch: error: Batch job submission failed: Invalid account" >&2\n'
                                 'echo "second line" >&2\nexit 1')
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(TriganError) as info:
        submit(tmp_path / "job.sbatch")
    message = str(info.value)
    assert "Invalid account" in message and "second line" not in message and "\n" not in message


def test_submit_without_sbatch_is_a_user_error(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert shutil.which("sbatch") is None
    with pytest.raises(TriganError, match="sbatch not found"):
        submit(tmp_path / "job.sbatch")
