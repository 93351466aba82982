"""The viewer's run monitor: parsing run files (torn last lines, missing status, dead pids),
listing runs, and starting / stopping / resuming real `trigan train` processes."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from train_helpers import TINY_TRAIN, write_tiny_dataset
from trigan.core.errors import TriganError
from trigan.viewer.panels.training import details_lines, typed_float
from trigan.viewer.run_monitor import (
    METRIC_PREFIX,
    StatsFollower,
    field_rows,
    format_eta,
    latest_sample,
    launched_run_dir,
    list_runs,
    log_tail,
    pair_rows,
    read_run,
    read_stats,
    resume_run,
    snapshot_path,
    start_run,
    stop_run,
)

DEMO_RUN = Path("/work/demo_runs/00000-demo-shapes64-demo")
STATS_LINES = [
    {"tick": 1, "kimg": 1.0, "step": 63, "images_per_sec": 4.5, "loss_G": 1.3, "loss_D": 1.35, "blur_sigma": 9.5},
    {"tick": 2, "kimg": 2.0, "step": 126, "images_per_sec": 1.7, "loss_G": 1.6, "loss_D": 0.97, "blur_sigma": 9.0},
    {"event": "rollback", "reason": "non-finite loss", "kimg": 2.5, "restored_kimg": 2.0},
    {"tick": 3, "kimg": 3.0, "step": 189, "images_per_sec": 2.2, "loss_G": 1.26, "loss_D": 1.3, "blur_sigma": 8.5},
]


def make_run(folder: Path, status=None, stats=STATS_LINES, metrics=None) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text("model: {}\n")
    (folder / "samples").mkdir()
    if status is not None:
        (folder / "status.json").write_text(json.dumps(status))
    if stats is not None:
        (folder / "stats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in stats))
    if metrics is not None:
        (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in metrics))
    return folder


def status_for(pid, phase="training", host=None, heartbeat=None, **extra):
    return {"phase": phase, "kimg": 3.0, "total_kimg": 300.0, "pid": pid, "host": host or socket.gethostname(),
            "heartbeat": time.time() if heartbeat is None else heartbeat, "images_per_sec": 2.2,
            "eta_seconds": 1000.0, "losses": {"loss_G": 1.26, "loss_D": 1.3}, **extra}


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_read_stats_of_the_demo_runs_format(tmp_path):
    # A copy of the live demo run's stats (never touched in place), or the same format written here.
    run = tmp_path / "run"
    if (DEMO_RUN / "stats.jsonl").is_file():
        run.mkdir()
        shutil.copyfile(DEMO_RUN / "stats.jsonl", run / "stats.jsonl")
        lines = [json.loads(x) for x in (run / "stats.jsonl").read_text().splitlines() if x.strip()]
        complete = [r for r in lines if isinstance(r, dict) and "event" not in r]
    else:
        make_run(run)
        complete = [r for r in STATS_LINES if "event" not in r]
    stats = read_stats(run)
    assert stats["loss_G"] == [(r["kimg"], r["loss_G"]) for r in complete]
    assert [k for k, _ in stats["images_per_sec"]] == [r["kimg"] for r in complete]
    assert "tick" not in stats and "kimg" not in stats


def test_a_half_written_last_line_is_skipped_until_complete(tmp_path):
    run = make_run(tmp_path / "run", metrics=[{"kimg": 2.0, "fid2k": 80.5}])
    follower = StatsFollower(run / "stats.jsonl")
    first = {k: list(v) for k, v in follower.update().items()}
    assert first["loss_D"] == [(1.0, 1.35), (2.0, 0.97), (3.0, 1.3)]      # the rollback event is no sample
    record = json.dumps({"tick": 4, "kimg": 4.0, "loss_G": 0.93, "loss_D": 1.36})
    with open(run / "stats.jsonl", "a") as f:
        f.write(record[:25])                                             # the trainer is mid-write
    assert read_stats(run)["loss_G"] == first["loss_G"]
    assert follower.update()["loss_G"] == first["loss_G"]
    with open(run / "stats.jsonl", "a") as f:
        f.write(record[25:] + "\n")
    assert follower.update()["loss_G"][-1] == (4.0, 0.93)
    assert read_stats(run)["loss_G"] == follower.series["loss_G"]
    assert read_stats(run)[METRIC_PREFIX + "fid2k"] == [(2.0, 80.5)]


def test_a_torn_line_in_the_middle_is_skipped_and_the_rest_kept(tmp_path):
    run = make_run(tmp_path / "run", stats=None)
    lines = [json.dumps(STATS_LINES[0]), '{"tick": 2, "kimg": 2.0, "loss_G"', json.dumps(STATS_LINES[3]), ""]
    (run / "stats.jsonl").write_text("\n".join(lines))
    follower = StatsFollower(run / "stats.jsonl")
    assert follower.update()["loss_G"] == [(1.0, 1.3), (3.0, 1.26)] and follower.bad_lines == 1


def test_a_replaced_stats_file_is_read_again_from_the_start(tmp_path):
    run = make_run(tmp_path / "run")
    follower = StatsFollower(run / "stats.jsonl")
    assert len(follower.update()["loss_G"]) == 3
    (run / "stats.jsonl").write_text(json.dumps(STATS_LINES[0]) + "\n")
    assert follower.update()["loss_G"] == [(1.0, 1.3)]


def test_missing_status_json(tmp_path):
    run = make_run(tmp_path / "runs" / "00000-demo-x")
    info = read_run(run)
    assert info.phase == "unknown" and info.state == "unknown" and not info.alive
    assert info.kimg is None and info.losses == {} and info.fraction is None
    assert [r.name for r in list_runs(tmp_path / "runs")] == ["00000-demo-x"]


def test_a_dead_pid_is_not_alive(tmp_path):
    run = make_run(tmp_path / "run", status=status_for(dead_pid()))
    info = read_run(run)
    assert info.phase == "training" and not info.alive and info.state == "interrupted"
    assert info.kimg == 3.0 and info.total_kimg == 300.0 and info.fraction == pytest.approx(0.01)
    assert info.losses == {"loss_G": 1.26, "loss_D": 1.3} and info.eta_seconds == 1000.0
    with pytest.raises(TriganError, match="not running"):
        stop_run(run)


def test_another_host(tmp_path):
    fresh = make_run(tmp_path / "fresh", status=status_for(12345, host="elsewhere-node"))
    stale = make_run(tmp_path / "stale", status=status_for(12345, host="elsewhere-node", heartbeat=time.time() - 3600))
    assert read_run(fresh).alive and read_run(fresh).state == "running"
    assert not read_run(stale).alive and read_run(stale).heartbeat_age > 3000
    with pytest.raises(TriganError, match="elsewhere-node"):
        stop_run(fresh)


SLEEPER = """
import signal, sys, time
def on_term(*_):
    open(sys.argv[1], "w").write("SIGTERM")
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
open(sys.argv[1] + ".ready", "w").close()
time.sleep(120)
"""


def test_stop_sends_sigterm_to_a_live_owner(tmp_path):
    marker = tmp_path / "got"
    proc = subprocess.Popen([sys.executable, "-c", SLEEPER, str(marker)])
    try:
        deadline = time.time() + 60
        while not Path(str(marker) + ".ready").exists() and time.time() < deadline:
            time.sleep(0.05)
        run = make_run(tmp_path / "run", status=status_for(proc.pid))
        assert read_run(run).alive and "pid" in read_run(run).owner
        assert stop_run(run) == proc.pid
        assert proc.wait(60) == 0
        assert marker.read_text() == "SIGTERM"
    finally:
        proc.kill()
        proc.wait()
    assert not read_run(run).alive


def test_list_runs_and_samples(tmp_path):
    runs = tmp_path / "runs"
    b = make_run(runs / "00001-demo-b", status=status_for(dead_pid(), phase="done", last_sample="samples/fakes_000002000.png"))
    a = make_run(runs / "00000-demo-a", status=status_for(dead_pid(), phase="stopped"))
    (runs / "not-a-run").mkdir()
    (runs / "launch-20260101-000000-1.log").write_text("run: x\n")
    for name in ("fakes_000001000.png", "fakes_000002000.png"):
        (b / "samples" / name).write_bytes(b"png")
    (a / "samples" / "fakes_000000000.png").write_bytes(b"png")
    (a / "samples" / "fakes_000004000.png").write_bytes(b"png")
    infos = list_runs(runs)
    assert [i.name for i in infos] == ["00000-demo-a", "00001-demo-b"]
    assert [i.state for i in infos] == ["stopped", "done"]
    assert latest_sample(b) == b / "samples" / "fakes_000002000.png"      # status.json names it
    assert latest_sample(a) == a / "samples" / "fakes_000004000.png"      # else the newest by name
    assert infos[0].last_sample == latest_sample(a)
    assert list_runs(tmp_path / "no-such-folder") == []
    with pytest.raises(TriganError, match="not a folder"):
        list_runs(runs / "launch-20260101-000000-1.log")
    assert snapshot_path(a) is None
    (a / "latest.ckpt").write_bytes(b"x")
    assert snapshot_path(a, "latest") == a / "latest.ckpt" and snapshot_path(a, "best") is None


def test_start_run_errors(tmp_path):
    with pytest.raises(TriganError, match="no such dataset"):
        start_run(tmp_path / "missing.zip", tmp_path / "runs")
    data = write_tiny_dataset(tmp_path / "data")
    with pytest.raises(TriganError, match="override"):
        start_run(data, tmp_path / "runs", overrides={"bad key": 1})
    with pytest.raises(TriganError, match="not a training run"):
        resume_run(tmp_path / "data")


@pytest.mark.slow
def test_start_stop_resume_a_real_training_process(tmp_path):
    data = write_tiny_dataset(tmp_path / "data")
    runs = tmp_path / "runs"
    overrides = dict(item.split("=", 1) for item in TINY_TRAIN)
    proc = start_run(data, runs, preset="demo", overrides=overrides, desc="viewer", kimg=100, device="cpu")
    try:
        assert os.getsid(proc.pid) == proc.pid              # its own session: outlives the viewer
        deadline = time.time() + 300
        run = None
        while time.time() < deadline:
            run = run or launched_run_dir(proc)
            if run is not None and read_run(run).alive and read_stats(run).get("loss_G"):
                break
            assert proc.poll() is None, "\n".join(log_tail(proc.log_path))
            time.sleep(0.3)
        else:
            raise AssertionError("no first tick:\n" + "\n".join(log_tail(proc.log_path)))
        assert run.parent == runs.resolve() and run.name.endswith("-viewer")
        info = read_run(run)
        assert info.state == "running" and info.pid == proc.pid and info.total_kimg == 100
        with pytest.raises(TriganError, match="right now"):
            resume_run(run)
        assert stop_run(run) == proc.pid
        assert proc.wait(180) == 0, "\n".join(log_tail(proc.log_path))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stopped = read_run(run)
    assert stopped.phase == "stopped" and stopped.state == "stopped" and not stopped.alive
    assert snapshot_path(run, "latest") is not None
    again = resume_run(run, kimg=stopped.kimg + 0.008)
    try:
        assert again.wait(300) == 0, "\n".join(log_tail(again.log_path))
    finally:
        if again.poll() is None:
            again.kill()
    assert read_run(run).phase == "done"
    assert any("resumed from" in line for line in (run / "log.txt").read_text().splitlines())
    assert again.log_path == run / "resume.log"


# --------------------------------------------------------------------------------------------------
# What the panel shows of a run (no display needed)

def test_what_each_button_can_do_follows_the_run(tmp_path):
    live = make_run(tmp_path / "live", status=status_for(_live_pid(tmp_path)))
    info = read_run(live)
    assert info.alive and info.can_stop and not info.can_resume and info.summary == "training"
    assert not info.has_latest and not info.has_best
    elsewhere = read_run(make_run(tmp_path / "elsewhere", status=status_for(12345, host="elsewhere-node")))
    assert elsewhere.alive and not elsewhere.can_stop            # stop_run would refuse it
    stopped_dir = make_run(tmp_path / "stopped", status=status_for(dead_pid(), phase="stopped"))
    assert read_run(stopped_dir).summary == "stopped" and not read_run(stopped_dir).can_resume   # no checkpoint
    (stopped_dir / "latest.ckpt").write_bytes(b"x")
    stopped = read_run(stopped_dir)
    assert stopped.has_latest and stopped.can_resume and not stopped.can_stop and not stopped.has_best
    assert stopped.summary == "stopped (resumable)"
    done_dir = make_run(tmp_path / "done", status=status_for(dead_pid(), phase="done"))
    (done_dir / "latest.ckpt").write_bytes(b"x")
    (done_dir / "best.ckpt").write_bytes(b"x")
    done = read_run(done_dir)
    assert done.summary == "done" and not done.can_resume and done.has_best
    interrupted_dir = make_run(tmp_path / "gone", status=status_for(dead_pid(), phase="stopping"))
    (interrupted_dir / "latest.ckpt").write_bytes(b"x")
    assert read_run(interrupted_dir).state == "interrupted" and read_run(interrupted_dir).can_resume


_SLEEPERS = []


def _live_pid(tmp_path) -> int:
    """A process that stays alive for the test (reaped at exit)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    _SLEEPERS.append(proc)
    return proc.pid


@pytest.fixture(autouse=True)
def _reap_sleepers():
    yield
    while _SLEEPERS:
        proc = _SLEEPERS.pop()
        proc.kill()
        proc.wait()


@pytest.mark.parametrize(("seconds", "text"), [
    (None, "-"), (-0.3, "-"), (-86400.5, "-"), (float("nan"), "-"), (float("inf"), "-"), (0, "0.0s"),
    (59.9, "59.9s"), (247, "4m07s"), (3600, "1h00m"), (3900, "1h05m"), (86399, "23h59m"),
    (86400 * 2 + 3 * 3600 + 5, "2d03h"),
])
def test_eta_text_is_never_negative(seconds, text):
    assert format_eta(seconds) == text


def test_loss_pairs_wrap_between_pairs_only():
    losses = {"loss_G": 0.6931471805599453, "loss_D": 1.3862943611198906, "D_real": -0.01234567,
              "D_fake": 0.0234, "r1_penalty": 6.9e-06}
    for width in (10, 20, 40, 44, 60, 200):
        rows = pair_rows(losses, width)
        # every pair is whole on one row, as "name value" with the value as formatted
        tokens = [row.split() for row in rows]
        assert all(len(t) % 2 == 0 for t in tokens)
        pairs = [(t[i], t[i + 1]) for t in tokens for i in range(0, len(t), 2)]
        assert [name for name, _ in pairs] == list(losses)
        assert [float(value) for _, value in pairs] == pytest.approx(list(losses.values()), rel=1e-3)
        cell = max(map(len, losses)) + 1 + max(len(f"{v:.4g}") for v in losses.values())
        assert all(len(row) <= max(width, cell) for row in rows)     # one pair a row when none fit
        # aligned: every row's cells start at the same columns
        starts = [[i for i in range(len(row)) if row[i] != " " and (i == 0 or row[i - 1] == " ")][::2]
                  for row in rows]
        assert all(s == starts[0][:len(s)] for s in starts)
    assert len(pair_rows(losses, 44)) == 3 and len(pair_rows(losses, 200)) == 1
    assert pair_rows({}, 40) == []


def test_fields_wrap_between_fields():
    fields = ["kimg 0.512 of 300", "images/s 6.3", "ETA 13h12m"]
    assert field_rows(fields, 80) == ["kimg 0.512 of 300   images/s 6.3   ETA 13h12m"]
    assert field_rows(fields, 35) == ["kimg 0.512 of 300   images/s 6.3", "ETA 13h12m"]
    assert field_rows(fields, 5) == fields


@pytest.mark.parametrize(("typed", "text"), [(0.05, "0.05"), (0.5, "0.5"), (1e-05, "1e-05"), (300.0, "300.0"),
                                             (0.1234567, "0.1234567"), (2.0, "2.0"), (0.3, "0.3")])
def test_float_inputs_go_on_the_command_line_as_typed(typed, text):
    import numpy as np  # noqa: PLC0415 (only this test)
    as_stored = float(np.float32(typed))            # what DearPyGui's float input gives back
    assert as_stored != typed or typed in (0.5, 300.0, 2.0)
    assert typed_float(as_stored) == text
    assert np.float32(float(typed_float(as_stored))) == np.float32(as_stored)


def test_details_show_resolution_notes_eta_and_aligned_losses(tmp_path):
    status = status_for(_live_pid(tmp_path), img_resolution=16, eta_seconds=-5.0,
                        notes=["note: the images are 16^2; model.img_resolution 64 -> 16"],
                        losses={"loss_G": 0.6931, "loss_D": 1.386, "D_real": -0.01234, "r1_penalty": 6.9e-06})
    info = read_run(make_run(tmp_path / "run", status=status))
    assert info.img_resolution == 16 and info.notes == ["note: the images are 16^2; model.img_resolution 64 -> 16"]
    lines = details_lines(info, 44)
    text = "\n".join(lines)
    assert "ETA -" in text and "-5" not in text and "-1d" not in text
    words = " ".join(text.split())                   # the note wraps between its words
    assert "resolution 16^2" in text and "the images are 16^2; model.img_resolution 64 -> 16" in words
    assert all(len(line) <= 44 for line in lines)
    loss_rows = lines[lines.index("losses") + 1:lines.index("metrics -")]
    assert len(loss_rows) == 2 and "loss_G" in loss_rows[0] and "0.6931" in loss_rows[0]
