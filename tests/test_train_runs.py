"""Whole training runs on a CPU: a run directory, exact resume, distributed equivalence (two gloo
processes), clean stops on SIGTERM, kill -9 mid-checkpoint, and rollback after a divergence."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest
import torch

from conftest import tiny_config
from train_helpers import TINY_TRAIN, fitted_tiny_config, tiny_session, write_tiny_dataset
from trigan.cli.main import main
from trigan.core import metrics
from trigan.core.checkpoint import load_checkpoint
from trigan.core.errors import ConfigError
from trigan.core.generator import Generator
from trigan.training.loop import LATEST, TrainingDiverged
from trigan.training.run_dir import RunWriter, active_owner
from trigan.training.session import eta_seconds, format_clock_duration, save_run_config
from trigan.training.visuals import SampleSet, SamplingStopped

REPO = Path(__file__).resolve().parents[1]


def _weights(path):
    ckpt = load_checkpoint(path)
    return {"G": ckpt.extra["G"], "D": ckpt.extra["D"], "G_ema": ckpt.G_ema}, ckpt


def _max_diff(a, b):
    return max(float((a[n][k].float() - b[n][k].float()).abs().max()) for n in a for k in a[n])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_tiny_dataset(tmp_path_factory.mktemp("data") / "squares")


def test_a_run_directory_has_what_a_monitor_reads(tmp_path, data):
    cfg, ds = fitted_tiny_config(data, "training.kimg=0.032", "training.image_ticks=2")
    phase = tiny_session(tmp_path / "run", cfg).run(ds)
    run = tmp_path / "run"
    assert phase == "done"
    status = json.loads((run / "status.json").read_text())
    assert status["phase"] == "done" and status["kimg"] == pytest.approx(0.032)
    assert status["pid"] == os.getpid() and status["heartbeat"] <= time.time()
    for key in ("images_per_sec", "losses", "step", "total_kimg"):
        assert key in status
    ticks = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert [t["kimg"] for t in ticks] == pytest.approx([0.008, 0.016, 0.024, 0.032])
    assert all(k in ticks[0] for k in ("loss_G", "loss_D", "blur_sigma", "nerf_noise_std", "patch_beta"))
    assert ticks[0]["blur_sigma"] > ticks[-1]["blur_sigma"]          # schedules follow images seen
    assert (run / "samples" / "reals.png").is_file()
    assert (run / "samples" / "fakes_000000000.png").is_file() and (run / "samples" / "fakes_000000032.png").is_file()
    ckpt = load_checkpoint(run / LATEST)
    assert ckpt.progress["cur_nimg"] == 32 and ckpt.progress["step"] == 4
    assert ckpt.config.model.c_dim == 3                                 # fitted to the dataset
    assert ckpt.config.model.img_resolution == 16
    assert not (run / "snapshots").exists()                             # kept only when asked for


def test_keep_snapshots_keeps_a_loadable_copy_of_every_checkpoint(tmp_path, data):
    cfg, ds = fitted_tiny_config(data, "training.kimg=0.032", "training.snapshot_ticks=2",
                                 "training.keep_snapshots=true")
    tiny_session(tmp_path / "run", cfg).run(ds)
    kept = sorted((tmp_path / "run" / "snapshots").glob("*.ckpt"))
    assert [p.name for p in kept] == ["snapshot_000000016.ckpt", "snapshot_000000032.ckpt"]
    first, last = (_weights(p) for p in kept)
    assert first[1].progress["cur_nimg"] == 16 and last[1].progress["cur_nimg"] == 32
    latest, _ = _weights(tmp_path / "run" / LATEST)
    assert _max_diff(last[0], latest) == 0                               # the last one is latest.ckpt
    assert _max_diff(first[0], latest) > 0                               # the first one kept its moment


def test_resume_continues_exactly(tmp_path, data):
    cfg, ds = fitted_tiny_config(data, "training.kimg=0.048")
    tiny_session(tmp_path / "straight", cfg).run(ds)
    half, _ = fitted_tiny_config(data, "training.kimg=0.024")
    tiny_session(tmp_path / "halves", half).run(ds)
    first_half, ckpt = _weights(tmp_path / "halves" / LATEST)
    assert ckpt.progress["step"] == 3
    half.training.kimg = 0.048
    tiny_session(tmp_path / "halves", half, resume=True).run(ds)
    straight, a = _weights(tmp_path / "straight" / LATEST)
    resumed, b = _weights(tmp_path / "halves" / LATEST)
    assert a.progress["step"] == b.progress["step"] == 6
    for net in ("G", "D", "G_ema"):
        for key, value in straight[net].items():
            assert torch.equal(value, resumed[net][key]), f"{net}.{key} differs after resume"
    assert _max_diff(first_half, resumed) > 1e-4        # and training really moved the weights


def test_a_non_finite_loss_rolls_back_and_training_goes_on(tmp_path, data):
    cfg, ds = fitted_tiny_config(data, "training.kimg=0.040", "training.snapshot_ticks=2")
    injected = []

    def poison(trainer):
        if trainer.step == 3 and not injected:
            injected.append(trainer.cur_nimg)
            with torch.no_grad():
                trainer.G.synthesis.tri_plane_mlp.model[0].weight.fill_(float("nan"))

    session = tiny_session(tmp_path / "nan", cfg)
    assert session.run(ds, step_hook=poison) == "done"
    assert injected and session.trainer.rollbacks == 1
    log = (tmp_path / "nan" / "log.txt").read_text()
    assert "rollback 1/3: non-finite loss" in log
    events = [json.loads(x) for x in (tmp_path / "nan" / "stats.jsonl").read_text().splitlines()]
    rollback = [e for e in events if e.get("event") == "rollback"]
    assert rollback and rollback[0]["restored_kimg"] == pytest.approx(0.016)   # the tick-2 checkpoint
    final, ckpt = _weights(tmp_path / "nan" / LATEST)
    assert ckpt.progress["cur_nimg"] == 40
    assert all(torch.isfinite(t).all() for net in final.values() for t in net.values() if t.is_floating_point())


def test_repeated_divergence_gives_up_with_a_clear_message(tmp_path, data):
    cfg, ds = fitted_tiny_config(data, "training.kimg=0.040", "training.max_rollbacks=2")

    def always_poison(trainer):
        if trainer.step >= 1:
            with torch.no_grad():
                trainer.D.b4.out.weight.fill_(float("inf"))

    with pytest.raises(TrainingDiverged, match="3 times in a row.*max_rollbacks=2"):
        tiny_session(tmp_path / "bad", cfg).run(ds, step_hook=always_poison)
    status = json.loads((tmp_path / "bad" / "status.json").read_text())
    assert status["phase"] == "failed" and "giving up" in status["message"]
    load_checkpoint(tmp_path / "bad" / LATEST)   # the last good state is still there


# -- separate processes -----------------------------------------------------------------------------

def _cli(*args):
    return [sys.executable, "-m", "trigan.cli.main", "train", *args]


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    return env


def _only_run(out: Path) -> Path:
    runs = [p for p in out.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


@pytest.mark.slow
def test_two_gloo_processes_equal_one_process_with_the_same_global_batch(tmp_path, data):
    args = ["--data", str(data), "--kimg", "0.032", "--device", "cpu", *TINY_TRAIN]
    single = subprocess.run(_cli("--out", str(tmp_path / "one"), *args), check=False, env=_env(), capture_output=True,
                            text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-2000:]
    with socket.socket() as sock:   # a free port of our own: two test runs must not meet in one rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dist = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
                           "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}",
                           "-m", "trigan.cli.main", "train", "--out", str(tmp_path / "two"), *args],
                          check=False, env=_env(), capture_output=True, text=True, timeout=300)
    assert dist.returncode == 0, dist.stderr[-3000:]
    one, a = _weights(_only_run(tmp_path / "one") / LATEST)
    two, b = _weights(_only_run(tmp_path / "two") / LATEST)
    assert b.progress["world_size"] == 2 and a.progress["world_size"] == 1
    assert a.progress["step"] == b.progress["step"] == 4
    assert _max_diff(one, two) < 1e-4
    # only rank 0 wrote: one run directory, one line per tick
    lines = (_only_run(tmp_path / "two") / "stats.jsonl").read_text().splitlines()
    assert len(lines) == 4


def _wait_for(predicate, timeout, what):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
@pytest.mark.parametrize("target", ["process", "group"])
def test_sigterm_stops_cleanly_with_a_checkpoint_and_resume_finishes(tmp_path, data, target):
    """SIGTERM to the trainer, or to its whole process group with data-loading workers running (what
    Ctrl-C in a terminal and SLURM's scancel do), stops after the step with a checkpoint."""
    out = tmp_path / "runs"
    workers = ["training.num_workers=1"] if target == "group" else []
    proc = subprocess.Popen(_cli("--data", str(data), "--out", str(out), "--kimg", "100", "--device", "cpu",
                                 *TINY_TRAIN, *workers), env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        _wait_for(lambda: out.exists() and any(out.iterdir()) and
                  (_only_run(out) / "stats.jsonl").exists(), 120, "the first tick")
        if target == "group":
            os.killpg(proc.pid, signal.SIGTERM)
        else:
            proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, output[-2000:]
    run = _only_run(out)
    status = json.loads((run / "status.json").read_text())
    assert status["phase"] == "stopped"
    ckpt = load_checkpoint(run / LATEST)
    assert ckpt.progress["step"] >= 1 and ckpt.progress["cur_nimg"] == status["kimg"] * 1000
    assert "SIGTERM" in output and "--resume" in output
    done = subprocess.run(_cli("--resume", str(run), "--kimg", str(status["kimg"] + 0.008)), check=False, env=_env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((run / "status.json").read_text())["phase"] == "done"
    assert load_checkpoint(run / LATEST).progress["step"] == ckpt.progress["step"] + 1


CRASH_SCRIPT = textwrap.dedent("""
    import sys
    from trigan.cli.main import main
    from trigan.training.loop import Trainer
    step = Trainer.train_step
    def failing_step(self):
        if self.step >= 2:
            raise RuntimeError("injected failure")
        return step(self)
    Trainer.train_step = failing_step
    sys.exit(main(sys.argv[1:]))
""")


@pytest.mark.slow
def test_a_run_that_fails_with_workers_running_exits(tmp_path, data):
    # Data-loading workers ignore SIGTERM (so that a group's Ctrl-C stops the run cleanly); a run that
    # fails must still stop them, or the process waits on them forever after its traceback.
    script = tmp_path / "crash.py"
    script.write_text(CRASH_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), "train", "--data", str(data), "--out", str(tmp_path / "runs"),
                             "--kimg", "100", "--device", "cpu", *TINY_TRAIN, "training.num_workers=2"],
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:          # hung: end it and its workers
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0 and "injected failure" in output


KILL_SCRIPT = textwrap.dedent("""
    import os, stat, sys, time
    import trigan.core.atomic as atomic
    marker = sys.argv[1]
    class SlowFsync:
        # os for the atomic writer, except that the 2nd checkpoint's fsync announces itself
        # and hangs: the temporary file is written but not yet renamed over latest.ckpt.
        calls = 0
        def __getattr__(self, name):
            return getattr(os, name)
        def fsync(self, fd):
            if not stat.S_ISREG(os.fstat(fd).st_mode):   # the folder's fsync after a rename
                return os.fsync(fd)
            SlowFsync.calls += 1
            if SlowFsync.calls == 2:
                open(marker, "w").close()
                time.sleep(600)
            os.fsync(fd)
    atomic.os = SlowFsync()
    from trigan.cli.main import main
    sys.exit(main(sys.argv[2:]))
""")


@pytest.mark.slow
def test_kill_9_during_a_checkpoint_write_leaves_a_loadable_checkpoint(tmp_path, data):
    out, marker = tmp_path / "runs", tmp_path / "writing"
    script = tmp_path / "kill_me.py"
    script.write_text(KILL_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(marker), "train", "--data", str(data), "--out", str(out),
                             "--kimg", "100", "--device", "cpu", *TINY_TRAIN, "training.snapshot_ticks=1"],
                            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(marker.exists, 120, "the second checkpoint write")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    run = _only_run(out)
    leftovers = list(run.glob(".latest.ckpt.*.tmp"))
    assert leftovers, "the kill should have interrupted a write"
    ckpt = load_checkpoint(run / LATEST)             # the previous checkpoint, intact
    assert ckpt.progress["step"] == 0
    resumed = subprocess.run(_cli("--resume", str(run), "--kimg", "0.016"), check=False, env=_env(), capture_output=True,
                             text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert load_checkpoint(run / LATEST).progress["cur_nimg"] == 16
    assert not list(run.glob(".latest.ckpt.*.tmp"))   # stale temporaries cleaned on resume


def test_train_command_errors_are_one_line(tmp_path, data):
    for argv, expected in [
        (["train", "--out", str(tmp_path)], "pass --data DATA"),
        (["train", "--data", str(tmp_path / "nope.zip"), "--out", str(tmp_path)], "nope.zip"),
        (["train", "--resume", str(tmp_path)], "not a training run"),
        (["train", "--data", str(data), "--out", str(tmp_path / "r"), *TINY_TRAIN, "training.batch_size=6"],
         "not a multiple of the minibatch-std group size"),
        (["train", "--data", str(data), "--out", str(tmp_path / "r"), "training.nonsense=1"], "nonsense"),
        (["train", "--data", str(data), "--out", str(tmp_path / "r"), "--device", "gpu7"], "--device gpu7: not a device"),
    ]:
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main(argv)
        assert code == 2 and expected in err.getvalue(), err.getvalue()
        assert len(err.getvalue().strip().splitlines()) == 1


def test_slurm_prepares_a_run_and_an_sbatch_script_that_resumes_it(tmp_path, data):
    code = main(["train", "--slurm", "--nodes", "2", "--gpus-per-node", "4", "--partition", "gpu",
                 "--data", str(data), "--out", str(tmp_path / "runs"), *TINY_TRAIN])
    assert code == 0
    run = _only_run(tmp_path / "runs")
    script = (run / "slurm.sbatch").read_text()
    assert "#SBATCH --nodes=2" in script and "--nproc_per_node=4" in script
    assert f"--resume {run.resolve()}" in script
    assert json.loads((run / "status.json").read_text())["phase"] == "queued"
    assert (run / "config.yaml").is_file()


class _StandInInception(torch.nn.Module):
    """A fixed random projection of pooled pixels: a feature network for FID without downloads."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Parameter(torch.randn(3 * 16, 8, generator=torch.Generator().manual_seed(0)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.nn.functional.adaptive_avg_pool2d(x.float() / 255, 4).flatten(1)
        return pooled @ self.proj


def test_metrics_pick_the_best_checkpoint(tmp_path, data, monkeypatch):
    # The registry's own FID with fewer fakes, to keep the test short.
    monkeypatch.setitem(metrics.METRICS, "fid2k_full", dict(kind="fid", num_fake=96, max_real=None))
    net = tmp_path / "standin.pt"
    with warnings.catch_warnings():   # TorchScript is deprecated in newer torch, still what Inception ships as
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(_StandInInception()), str(net))
    cfg, ds = fitted_tiny_config(data, "training.kimg=0.016", "training.metrics=[fid2k_full]",
                                 f"training.inception={net}", "training.metric_ticks=1")
    tiny_session(tmp_path / "m", cfg).run(ds)
    lines = [json.loads(x) for x in (tmp_path / "m" / "metrics.jsonl").read_text().splitlines()]
    assert [round(x["kimg"], 3) for x in lines] == [0.008, 0.016]
    best = load_checkpoint(tmp_path / "m" / "best.ckpt")
    values = [x["fid2k_full"] for x in lines]
    assert best.progress["best_metric"] == pytest.approx(min(values))
    assert best.progress["cur_nimg"] == 8 * (1 + values.index(min(values)))
    status = json.loads((tmp_path / "m" / "status.json").read_text())
    assert status["last_metric"]["fid2k_full"] == pytest.approx(values[-1])


def test_metrics_without_a_feature_network_fail_before_training(tmp_path, data):
    cfg, ds = fitted_tiny_config(data, "training.metrics=[fid2k_full]")
    with pytest.raises(ConfigError, match="training.inception"):
        tiny_session(tmp_path / "x", cfg).run(ds)
    assert not (tmp_path / "x" / LATEST).exists()


def test_the_demo_preset_trains_on_a_synthesized_dataset(tmp_path):
    data = tmp_path / "shapes.zip"
    assert main(["dataset", "synth", str(data), "--num", "32", "--resolution", "64", "--classes", "4", "--seed", "1"]) == 0
    code = main(["train", "--config", "demo", "--data", str(data), "--out", str(tmp_path / "runs"), "--kimg", "0.008",
                 "--device", "cpu", "training.batch_size=4", "training.num_workers=0", "training.samples=4",
                 "training.tick_kimg=0.004"])
    assert code == 0
    run = _only_run(tmp_path / "runs")
    ckpt = load_checkpoint(run / LATEST)
    assert ckpt.progress["step"] == 2 and ckpt.config.model.name == "demo"
    assert ckpt.config.model.c_dim == 4 and ckpt.config.model.img_resolution == 64
    assert ckpt.config.model.class_names == ["mushroom", "table", "snowman", "rocket"]
    start = Path(run / "samples" / "fakes_000000000.png")
    assert start.is_file() and (run / "samples" / "fakes_000000008.png").is_file()
    G = torch.load(run / LATEST, weights_only=True)
    assert any(not torch.equal(G["G"][k], G["G_ema"][k]) for k in G["G"])   # EMA lags G


def test_resume_refuses_a_run_that_another_live_process_is_training(tmp_path, data):
    cfg, ds = fitted_tiny_config(data)
    run = tmp_path / "live"
    (run / "samples").mkdir(parents=True)
    save_run_config(run, cfg)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        writer = RunWriter(run, tensorboard=False)
        writer.update_status(phase="training")
        status = json.loads((run / "status.json").read_text())
        status["pid"] = sleeper.pid
        (run / "status.json").write_text(json.dumps(status))
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            assert main(["train", "--resume", str(run)]) == 2
        assert f"pid {sleeper.pid}" in err.getvalue() and "stop it first" in err.getvalue()
    finally:
        sleeper.kill()
        sleeper.wait()
    # once that process is gone, the run is free again (kill -9 leaves a stale status behind)
    assert active_owner(run) is None


# --------------------------------------------------------------------------------------------------
# Short runs and quick stops (what the viewer's training panel shows)

def test_a_run_shorter_than_a_tick_logs_its_partial_tick_with_a_sane_eta(tmp_path, data):
    # tick_kimg 1 and a run of 0.02 kimg (three steps of 8: the last overshoots the total by 4)
    cfg, ds = fitted_tiny_config(data, "training.tick_kimg=1", "training.kimg=0.02")
    session = tiny_session(tmp_path / "run", cfg)
    assert session.run(ds) == "done"
    run = tmp_path / "run"
    ticks = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert len(ticks) == 1 and ticks[0]["kimg"] == pytest.approx(0.024) and ticks[0]["step"] == 3
    assert ticks[0]["loss_G"] > 0 and ticks[0]["loss_D"] > 0
    status = json.loads((run / "status.json").read_text())
    assert status["phase"] == "done" and status["eta_seconds"] == 0
    assert status["img_resolution"] == 16
    log = (run / "log.txt").read_text()
    assert "eta 0h00m00s" in log and "eta -" not in log


def test_eta_is_never_negative():
    assert eta_seconds(-4, 2.0) == 0.0 and eta_seconds(100, 4.0) == 25.0
    assert eta_seconds(100, 0.0) is None and eta_seconds(100, float("nan")) is None
    assert format_clock_duration(None) == "unknown" and format_clock_duration(-2.0) == "unknown"
    assert format_clock_duration(0.0) == "0h00m00s" and format_clock_duration(90061) == "1d 01h01m"


def test_sigterm_says_stopping_at_once_and_skips_samples_video_and_metrics(tmp_path, data, monkeypatch):
    # Samples, a video and metrics at every tick: a stop must write none of them, only latest.ckpt.
    cfg, ds = fitted_tiny_config(data, "training.tick_kimg=1", "training.kimg=10", "training.image_ticks=1",
                                 "training.video_ticks=1")
    cfg.training.metrics = ["fid2k"]            # would need a feature network: it must not be asked for
    monkeypatch.setattr("trigan.training.session.check_run_setup", lambda *a: None)
    run = tmp_path / "run"
    seen = {}

    def hook(trainer):
        if trainer.step == 2:
            os.kill(os.getpid(), signal.SIGTERM)          # during the third step ...
            seen["phase"] = json.loads((run / "status.json").read_text())["phase"]
        seen["steps"] = trainer.step

    evaluated = []
    monkeypatch.setattr("trigan.training.session.evaluate_metrics", lambda *a, **k: evaluated.append(1) or {})
    session = tiny_session(run, cfg)
    assert session.run(ds, step_hook=hook) == "stopped"
    assert seen == {"phase": "stopping", "steps": 2}          # ... which is finished, and no other
    status = json.loads((run / "status.json").read_text())
    assert status["phase"] == "stopped" and status["kimg"] == pytest.approx(0.024)
    assert "SIGTERM" in status["message"] and "resume" in status["message"].lower()
    assert load_checkpoint(run / LATEST).progress["step"] == 3
    assert not evaluated
    samples = sorted(p.name for p in (run / "samples").iterdir())
    assert samples == ["fakes_000000000.png", "reals.png"]    # the start's grid only: none on the way out
    ticks = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert [t["kimg"] for t in ticks] == pytest.approx([0.024])     # the partial tick has its line


def test_a_stop_while_the_run_starts_is_clean(tmp_path, data, monkeypatch):
    """SIGTERM before the first step (the viewer's Stop right after Start): no kill that leaves the
    phase "starting", and no step begun: latest.ckpt of the start and phase "stopped"; no sample
    grid is made."""
    from trigan.training import session as session_module  # noqa: PLC0415 (the module patched)
    cfg, ds = fitted_tiny_config(data, "training.kimg=10")
    save_reals = session_module.Session._save_reals

    def stop_while_starting(self, dataset):
        os.kill(os.getpid(), signal.SIGTERM)
        return save_reals(self, dataset)

    monkeypatch.setattr(session_module.Session, "_save_reals", stop_while_starting)
    run = tmp_path / "run"
    assert tiny_session(run, cfg).run(ds) == "stopped"
    assert json.loads((run / "status.json").read_text())["phase"] == "stopped"
    assert load_checkpoint(run / LATEST).progress["step"] == 0
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["reals.png"]
    assert not (run / "stats.jsonl").exists()                 # no step, no tick


def test_a_stop_during_a_ticks_samples_begins_no_new_step(tmp_path, data, monkeypatch):
    from trigan.training import session as session_module  # noqa: PLC0415 (the module patched)
    cfg, ds = fitted_tiny_config(data, "training.kimg=10", "training.image_ticks=1")
    save_samples = session_module.Session._save_samples

    def stop_while_sampling(self, trainer, video):
        if trainer.step == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return save_samples(self, trainer, video)

    monkeypatch.setattr(session_module.Session, "_save_samples", stop_while_sampling)
    run = tmp_path / "run"
    assert tiny_session(run, cfg).run(ds) == "stopped"
    assert load_checkpoint(run / LATEST).progress["step"] == 2      # the tick's step, and no other
    status = json.loads((run / "status.json").read_text())
    assert status["phase"] == "stopped" and status["kimg"] == pytest.approx(0.016)
    assert not (run / "samples" / "fakes_000000016.png").exists()   # no grid on the way out


def test_a_stop_gives_up_a_grid_or_video_in_progress_and_leaves_no_file(tmp_path):
    G = Generator(tiny_config().model)
    samples = SampleSet.create(G, 4, rows=1, cols=4)
    asked = []

    def stop_on_second_question():
        asked.append(1)
        return len(asked) >= 2

    with pytest.raises(SamplingStopped):
        samples.render_orbit_video(G, tmp_path / "orbit.mp4", frames=8, fps=10, resolution=8,
                                   stop=stop_on_second_question)
    assert len(asked) == 2 and list(tmp_path.iterdir()) == []
    with pytest.raises(SamplingStopped):
        samples.render_grid(G, resolution=8, batch=2, stop=lambda: True)
    assert samples.render_grid(G, resolution=8, batch=2, stop=lambda: False).shape == (8, 32, 3)
