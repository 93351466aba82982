"""Training runs against hostile and broken input (issue 29): overrides on --resume apply; a full or
read-only disk and a double Ctrl-C end with one line, a final phase in status.json and latest.ckpt
intact; bad flags, configs and datasets are refused before a run folder exists; stats.jsonl logs
each tick once across a resume; temporaries of dead writers are swept."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from train_helpers import TINY_TRAIN, fitted_tiny_config, tiny_session, write_tiny_dataset
from trigan.cli.main import main
from trigan.core import atomic
from trigan.core.atomic import WriteError
from trigan.core.checkpoint import load_checkpoint
from trigan.training.loop import LATEST


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_tiny_dataset(tmp_path_factory.mktemp("data") / "squares")


def _train(*argv):
    """(exit code, stderr) of `trigan train ...` on the CPU."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["train", "--device", "cpu", *argv])
    return code, err.getvalue()


def _only_run(out: Path) -> Path:
    runs = [p for p in out.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def _status(run: Path) -> dict:
    return json.loads((run / "status.json").read_text())


def _temporaries(run: Path) -> list:
    return [p for p in run.rglob(".*") if ".tmp" in p.name]


# -- 2: overrides on --resume ----------------------------------------------------------------------

def test_learning_rate_and_beta_overrides_on_resume_reach_the_optimisers(tmp_path, data):
    out = tmp_path / "runs"
    assert _train("--data", str(data), "--out", str(out), "--kimg", "0.008", *TINY_TRAIN)[0] == 0
    run = _only_run(out)
    code, err = _train("--resume", str(run), "--kimg", "0.016", "training.g_lr=0.001", "training.d_lr=0.0005",
                       "training.betas=[0.5,0.9]", "training.eps=1e-6")
    assert code == 0, err
    ckpt = load_checkpoint(run / LATEST)
    g, d = ckpt.extra["G_opt"]["param_groups"][0], ckpt.extra["D_opt"]["param_groups"][0]
    assert g["lr"] == 0.001 and tuple(g["betas"]) == (0.5, 0.9) and g["eps"] == 1e-6
    # D's Adam with lazy R1 every k = 2 steps (TINY_TRAIN): lr and betas scaled by c = k / (k + 1)
    c = 2 / 3
    assert d["lr"] == pytest.approx(0.0005 * c, rel=1e-12)
    assert tuple(d["betas"]) == pytest.approx((0.5 ** c, 0.9 ** c), rel=1e-12) and d["eps"] == 1e-6
    assert int(ckpt.extra["G_opt"]["state"][0]["step"]) == 2     # the moments went on, not restarted
    log = (run / "log.txt").read_text()
    assert "resume: G lr 0.0025 -> 0.001" in log and "resume: G betas (0, 0.99) -> (0.5, 0.9)" in log
    assert f"resume: D lr {0.002 * c:.6g} -> {0.0005 * c:.6g}" in log


# -- 5: a full or read-only disk, a double Ctrl-C ---------------------------------------------------

def test_a_full_disk_at_a_checkpoint_stops_in_one_line_and_keeps_latest(tmp_path, data, monkeypatch):
    real_save, calls = torch.save, []

    def save_until_full(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:   # the first checkpoint after the start one: the disk is full now
            f.write(b"PK\x03\x04 part of a checkpoint")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_until_full)
    out = tmp_path / "runs"
    code, err = _train("--data", str(data), "--out", str(out), "--kimg", "0.024", *TINY_TRAIN, "training.snapshot_ticks=1")
    run = _only_run(out)
    assert code == 2 and err.strip() == f"trigan: error: cannot write {run / LATEST}: no space left on device"
    status = _status(run)
    assert status["phase"] == "failed" and "no space left on device" in status["message"]
    assert load_checkpoint(run / LATEST).progress["cur_nimg"] == 0     # the last good state, intact
    assert not _temporaries(run)


def test_a_disk_gone_read_only_mid_run_fails_in_one_line_and_still_says_so(tmp_path, data, monkeypatch):
    # The run folder becomes read-only for new files after the first step (as a remount would; root
    # ignores permissions, so the write layer is made to fail as a read-only disk does). status.json
    # can then only be rewritten in place, which is how the failure gets recorded.
    cfg, ds = fitted_tiny_config(data, "training.kimg=0.024", "training.snapshot_ticks=1")
    real_mkstemp, read_only = atomic.tempfile.mkstemp, []

    def mkstemp(*args, **kwargs):
        if read_only:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), kwargs.get("dir"))
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(atomic.tempfile, "mkstemp", mkstemp)
    run = tmp_path / "run"
    def remount_read_only(trainer):
        if trainer.step >= 1:    # after the checkpoint of tick 1
            read_only.append(True)

    with pytest.raises(WriteError) as caught:
        tiny_session(run, cfg).run(ds, step_hook=remount_read_only)
    assert str(caught.value).startswith(f"cannot write {run}") and str(caught.value).endswith(": read-only file system")
    assert len(str(caught.value).splitlines()) == 1
    status = _status(run)
    assert status["phase"] == "failed" and "read-only file system" in status["message"]
    assert load_checkpoint(run / LATEST).progress["cur_nimg"] == 8


def test_a_folder_replaced_by_a_file_mid_run_fails_in_one_line(tmp_path, data):
    cfg, ds = fitted_tiny_config(data, "training.kimg=0.016", "training.image_ticks=1")
    run = tmp_path / "run"

    def break_samples(trainer):
        if trainer.step == 1 and (run / "samples").is_dir():
            (run / "samples").rename(run / "samples.moved")
            (run / "samples").write_text("in the way")

    with pytest.raises(WriteError, match=f"{run / 'samples'} is a file, not a folder"):
        tiny_session(run, cfg).run(ds, step_hook=break_samples)
    assert _status(run)["phase"] == "failed"
    assert load_checkpoint(run / LATEST).progress["cur_nimg"] == 16   # the final one, written before the samples


def _ctrl_c_twice(trainer):
    if trainer.step == 2:
        os.kill(os.getpid(), signal.SIGINT)    # the first: stop after this step
        os.kill(os.getpid(), signal.SIGINT)    # the second: abort now


def test_a_second_ctrl_c_ends_the_run_with_its_phase_set(tmp_path, data):
    cfg, ds = fitted_tiny_config(data, "training.kimg=0.080", "training.snapshot_ticks=1")
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        tiny_session(tmp_path / "run", cfg).run(ds, step_hook=_ctrl_c_twice)
    assert signal.getsignal(signal.SIGINT) is before
    status = _status(tmp_path / "run")
    held = load_checkpoint(tmp_path / "run" / LATEST).progress["cur_nimg"]
    assert status["phase"] == "stopped" and "aborted by Ctrl-C" in status["message"]
    assert held == 16 and status["kimg"] == pytest.approx(held / 1000)    # where --resume continues


def test_a_second_ctrl_c_during_a_checkpoint_write_keeps_the_previous_checkpoint(tmp_path, data, monkeypatch):
    real_save, calls = torch.save, []

    def interrupted_save(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            f.write(b"PK\x03\x04 part")
            raise KeyboardInterrupt     # what the handler raises on a second Ctrl-C
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", interrupted_save)
    cfg, ds = fitted_tiny_config(data, "training.kimg=0.080", "training.snapshot_ticks=1")
    with pytest.raises(KeyboardInterrupt):
        tiny_session(tmp_path / "run", cfg).run(ds)
    status = _status(tmp_path / "run")
    assert status["phase"] == "stopped" and status["kimg"] == pytest.approx(0.008)
    assert load_checkpoint(tmp_path / "run" / LATEST).progress["cur_nimg"] == 8
    assert not _temporaries(tmp_path / "run")


# -- 7: refused before anything is made --------------------------------------------------------------

@pytest.fixture(scope="module")
def huge_images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("huge")
    Image.new("1", (10000, 10000)).save(folder / "big.png")    # 10000^2 pixels, a few kB on disk
    return folder


BAD_FLAGS = {
    "kimg nan": (["--kimg", "nan"], "--kimg nan"),
    "kimg inf": (["--kimg", "inf"], "--kimg inf"),
    "kimg negative": (["--kimg", "-1"], "--kimg -1"),
    "kimg zero": (["--kimg", "0"], "--kimg 0"),
    "kimg huge": (["--kimg", "1e12"], "--kimg 1e12"),
    "batch 0": (["training.batch_size=0"], "training.batch_size"),
    "negative lr": (["training.g_lr=-1"], "training.g_lr"),
    "negative workers": (["training.num_workers=-1"], "training.num_workers"),
    "no ray steps": (["model.render.num_steps=0"], "model.render.num_steps"),
    "batch not split": (["training.batch_size=6"], "minibatch-std group size"),
    "slurm nodes": (["--slurm", "--nodes", "0"], "--nodes 0"),
    "slurm cpus": (["--slurm", "--cpus-per-task", "1e9"], "--cpus-per-task 1e9"),
    "slurm time": (["--slurm", "--time", "1\n#SBATCH --x"], "SLURM option time"),
}


@pytest.mark.parametrize("extra, expected", BAD_FLAGS.values(), ids=BAD_FLAGS.keys())
def test_bad_flags_and_config_are_one_line_and_make_no_run_folder(tmp_path, data, extra, expected):
    out = tmp_path / "runs"
    code, err = _train("--data", str(data), "--out", str(out), *TINY_TRAIN, "training.kimg=0.008", *extra)
    assert code == 2 and expected in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert not out.exists() or not any(out.iterdir())


def test_huge_training_images_are_one_line_and_make_no_run_folder(tmp_path, huge_images):
    out = tmp_path / "runs"
    code, err = _train("--data", str(huge_images), "--out", str(out), *TINY_TRAIN)
    assert code == 2 and "10000" in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_an_output_folder_that_cannot_be_made_is_one_line(tmp_path, data):
    (tmp_path / "file").write_text("not a folder")
    for out in (tmp_path / "file", tmp_path / "file" / "runs"):
        code, err = _train("--data", str(data), "--out", str(out), *TINY_TRAIN)
        assert code == 2 and str(tmp_path / "file") in err and len(err.strip().splitlines()) == 1, err
    assert (tmp_path / "file").read_text() == "not a folder"


def test_a_read_only_output_folder_is_one_line(tmp_path, data, monkeypatch):
    # Root writes into any folder whatever its mode; a read-only mount refuses even root, as here.
    def read_only_mkdir(self, *args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))

    out = tmp_path / "runs"
    out.mkdir()
    monkeypatch.setattr(Path, "mkdir", read_only_mkdir)
    code, err = _train("--data", str(data), "--out", str(out), *TINY_TRAIN)
    assert code == 2 and err.strip() == f"trigan: error: --out {out}: cannot make a run folder there (read-only file system)"
    assert not any(out.iterdir())


def test_a_run_that_fails_before_its_first_checkpoint_leaves_no_folder(tmp_path, data, monkeypatch):
    def full(obj, f, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full)
    out = tmp_path / "runs"
    code, err = _train("--data", str(data), "--out", str(out), "--kimg", "0.008", *TINY_TRAIN)
    assert code == 2 and "no space left on device" in err and len(err.strip().splitlines()) == 1
    assert not any(out.iterdir())


# -- 8: bookkeeping ----------------------------------------------------------------------------------

class _Killed(BaseException):
    """Ends a run the way kill -9 does: no handler of the session sees it."""


def _die_at_step(step):
    def hook(trainer):
        if trainer.step == step:
            raise _Killed
    return hook


LEFT_BY_DEAD_WRITER = """
import os, sys
from trigan.core.atomic import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_text("half")
    os._exit(0)
"""


def test_a_resume_logs_each_tick_once_and_sweeps_dead_writers_temporaries(tmp_path, data):
    cfg, ds = fitted_tiny_config(data, "training.kimg=0.040", "training.snapshot_ticks=2")
    run = tmp_path / "run"
    with pytest.raises(_Killed):   # ticks 1-3 logged, latest.ckpt from tick 2
        tiny_session(run, cfg).run(ds, step_hook=_die_at_step(3))
    assert [json.loads(x)["tick"] for x in (run / "stats.jsonl").read_text().splitlines()] == [1, 2, 3]
    with open(run / "stats.jsonl", "a") as f:
        f.write('{"tick": 4, "kimg": 0.0')            # a line torn by the kill
    for target in (run / "status.json", run / "samples" / "fakes_000000024.png"):
        subprocess.run([sys.executable, "-c", LEFT_BY_DEAD_WRITER, str(target)], check=True, timeout=60)
    assert len(_temporaries(run)) == 2

    tiny_session(run, cfg, resume=True).run(ds)
    ticks = [json.loads(x) for x in (run / "stats.jsonl").read_text().splitlines()]
    assert [t["tick"] for t in ticks] == [1, 2, 3, 4, 5]
    assert [t["kimg"] for t in ticks] == pytest.approx([0.008, 0.016, 0.024, 0.032, 0.040])
    assert not _temporaries(run)
    assert "dropped 2 line(s) of stats.jsonl" in (run / "log.txt").read_text()   # tick 3 and the torn one
