"""Atomic replacement: readers see the old file or the new one, never a part; failures leave no trace."""

from __future__ import annotations

import os
import stat

import pytest

from trigan.core.atomic import atomic_path, atomic_write_text


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
