"""Atomic replacement: readers see the old file or the new one, never a part; failures leave no trace
but one line naming the file; what dead writers left is swept, what live ones write is not."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trigan.core import atomic
from trigan.core.atomic import (
    WriteError,
    append_text,
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    sweep_stale_temporaries,
)
from trigan.core.errors import TriganError


def test_replaces_the_target_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "status.json"
    target.write_text("old")
    atomic_write_text(target, "new", durable=True)
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["status.json"]


def test_a_failure_mid_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "latest.ckpt"
    target.write_bytes(b"good")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert target.read_bytes() == b"good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.ckpt"]


def test_temporary_names_are_hidden_beside_the_target_and_permissions_follow_the_umask(tmp_path):
    target = tmp_path / "sub" / "video.mp4"
    old = os.umask(0o022)
    try:
        with atomic_path(target, keep_suffix=True) as tmp:
            assert tmp.parent == target.parent and tmp.name.startswith(".video.mp4.") and tmp.suffix == ".mp4"
            tmp.write_bytes(b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


# -- a place that cannot take the file: one line naming it, the old file kept ---------------------

def _only_target_left(folder, name):
    return sorted(p.name for p in folder.iterdir()) == [name]


def test_a_full_disk_mid_write_is_one_line_naming_the_file_and_keeps_the_old_one(tmp_path):
    target = tmp_path / "latest.ckpt"
    target.write_bytes(b"good")
    with pytest.raises(WriteError) as caught:
        with atomic_path(target, durable=True) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"half")
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))   # what a full disk's write raises
    assert str(caught.value) == f"cannot write {target}: no space left on device"
    assert isinstance(caught.value, OSError) and isinstance(caught.value, TriganError)   # old callers still catch it
    assert caught.value.errno == errno.ENOSPC
    assert target.read_bytes() == b"good" and _only_target_left(tmp_path, "latest.ckpt")


@pytest.mark.parametrize("free, reason", [(0, "no space left on device"), (10 << 30, "the write failed")])
def test_torchs_cryptic_write_failure_says_what_happened(tmp_path, monkeypatch, free, reason):
    # torch.save to a path reports a full disk as "[enforce fail at inline_container.cc:672] ..."
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(atomic.shutil, "disk_usage", lambda _: usage._replace(free=free))
    target = tmp_path / "latest.ckpt"
    with pytest.raises(WriteError, match=f"^cannot write {target}: {reason}"):
        with atomic_path(target):
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
    assert not list(tmp_path.iterdir())


def test_a_read_only_disk_is_one_line(tmp_path, monkeypatch):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), kwargs.get("dir"))
    monkeypatch.setattr(atomic.tempfile, "mkstemp", read_only)
    with pytest.raises(WriteError, match=f"^cannot write {tmp_path / 'status.json'}: read-only file system$"):
        atomic_write_text(tmp_path / "status.json", "{}")


def test_a_file_where_the_folder_should_be_is_named(tmp_path):
    # Works for root too (permissions would not stop it).
    (tmp_path / "samples").write_text("not a folder")
    target = tmp_path / "samples" / "fakes.png"
    with pytest.raises(WriteError, match=f"cannot write {target}: {tmp_path / 'samples'} is a file, not a folder"):
        atomic_write_bytes(target, b"png")
    with pytest.raises(WriteError, match="cannot write"):
        append_text(tmp_path / "samples" / "log.txt", "line\n")


def test_errors_that_are_not_about_the_place_pass_unchanged(tmp_path):
    with pytest.raises(FileNotFoundError) as caught:
        with atomic_path(tmp_path / "video.mp4"):
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", "ffmpeg")   # a missing tool
    assert not isinstance(caught.value, WriteError)
    with pytest.raises(ValueError):
        with atomic_path(tmp_path / "x.json"):
            raise ValueError("a bug")
    assert not list(tmp_path.iterdir())


# -- leftovers of writers that died mid-write -----------------------------------------------------

WRITER = """
import os, sys, time
from trigan.core.atomic import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_text("half")
    print(tmp, flush=True)
    if sys.argv[2] == "die":
        os._exit(0)          # like kill -9: no cleanup
    time.sleep(60)
"""


def _writer(target, how):
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target), how], stdout=subprocess.PIPE, text=True)
    return proc, Path(proc.stdout.readline().strip())


def test_sweep_removes_what_dead_writers_left_and_never_a_live_writers_file(tmp_path):
    dead, dead_tmp = _writer(tmp_path / "status.json", "die")
    dead.wait(timeout=60)
    live, live_tmp = _writer(tmp_path / "latest.ckpt", "live")
    try:
        assert dead_tmp.is_file() and live_tmp.is_file()
        # An unnamed writer's (earlier versions) or another host's: judged by age.
        old = tmp_path / ".config.yaml.abcd_123.tmp"
        fresh = tmp_path / ".log.txt.efgh4567.tmp"
        foreign = tmp_path / ".best.ckpt.4242@elsewhere.ijkl8901.tmp"
        for path in (old, fresh, foreign):
            path.write_text("x")
        hours_ago = time.time() - 2 * 3600
        os.utime(old, (hours_ago, hours_ago))
        keep = tmp_path / ".hidden.tmp.notes"      # not an atomic temporary's name
        keep.write_text("mine")
        removed = sweep_stale_temporaries(tmp_path)
        assert sorted(removed) == sorted([dead_tmp, old])
        assert live_tmp.is_file() and fresh.is_file() and foreign.is_file() and keep.is_file()
    finally:
        live.kill()
        live.wait()
