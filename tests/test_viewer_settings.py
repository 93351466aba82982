"""Viewer settings: round trip, where the file lives, and files that are corrupt in whole or part."""

from __future__ import annotations

import json
import warnings

import pytest

import trigan.core.atomic as atomic
from trigan.viewer.settings import (
    MAX_RECENT,
    SettingsWarning,
    ViewerSettings,
    layout_path,
    load_settings,
    save_settings,
    settings_dir,
    settings_path,
)


def full_settings():
    s = ViewerSettings(seed=77, class_index=3, psi=0.55, noise_mode="random", mode="normals", resolution=512,
                       quality="preview", sample_multiplier=2.0, background="white", runs_folder="/data/runs",
                       window_width=1920, window_height=1080, window_x=-5, window_y=40,
                       last_export_folder="/tmp/exports", export={"video": {"frames": 64, "fps": 30}},
                       panels={"training": {"open": True}})
    for p in ["a.ckpt", "b.ckpt", "c.ckpt"]:
        s.add_recent(p)
    return s


def test_round_trip(tmp_path):
    s = full_settings()
    path = save_settings(s, tmp_path / "cfg" / "viewer.json")
    assert path == tmp_path / "cfg" / "viewer.json"
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # a good file gives no warning
        back = load_settings(path)
    assert back == s and back.problem is None
    assert back.recent_files == ["c.ckpt", "b.ckpt", "a.ckpt"] and back.last_model == "c.ckpt"
    assert json.loads(path.read_text())["version"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["viewer.json"]      # no temporary files left


def test_recent_files_are_unique_newest_first_and_capped():
    s = ViewerSettings()
    for k in range(15):
        s.add_recent(f"m{k}.ckpt")
    s.add_recent("m12.ckpt")
    assert len(s.recent_files) == MAX_RECENT
    assert s.recent_files[:3] == ["m12.ckpt", "m14.ckpt", "m13.ckpt"]
    assert len(set(s.recent_files)) == MAX_RECENT


def test_missing_file_gives_defaults(tmp_path):
    assert load_settings(tmp_path / "none.json") == ViewerSettings()


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe\x00garbage", b"[1, 2, 3]", b"", b"null"])
def test_corrupt_file_is_ignored_with_a_warning(tmp_path, content):
    path = tmp_path / "viewer.json"
    path.write_bytes(content)
    with pytest.warns(SettingsWarning, match="viewer.json"):
        s = load_settings(path)
    assert s == ViewerSettings() and "viewer.json" in s.problem
    # saving over it works and gives a good file again
    save_settings(full_settings(), path)
    assert load_settings(path) == full_settings()


def test_bad_values_fall_back_one_by_one(tmp_path):
    data = full_settings().to_dict()
    data.update(seed=-3, mode="x-ray", resolution=4096, psi="strong", recent_files="a.ckpt", future_option=True)
    path = tmp_path / "viewer.json"
    path.write_text(json.dumps(data))
    with pytest.warns(SettingsWarning) as record:
        s = load_settings(path)
    message = str(record[0].message)
    for key in ("seed", "mode", "resolution", "psi", "recent_files"):
        assert key in message
    assert "future_option" not in message                       # unknown keys: silently ignored
    defaults = ViewerSettings()
    assert (s.seed, s.mode, s.resolution, s.psi, s.recent_files) == (defaults.seed, defaults.mode,
                                                                    defaults.resolution, defaults.psi, [])
    good = full_settings()
    assert (s.class_index, s.background, s.export, s.window_x) == (good.class_index, good.background,
                                                                  good.export, good.window_x)


def test_location_follows_xdg_config_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert settings_dir() == tmp_path / "xdg" / "trigan"
    assert settings_path() == tmp_path / "xdg" / "trigan" / "viewer.json"
    assert layout_path().parent == settings_dir()
    save_settings(full_settings())
    assert load_settings() == full_settings()
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert settings_path() == tmp_path / "home" / ".config" / "trigan" / "viewer.json"


def test_unwritable_location_warns_instead_of_raising(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("I am a file, not a folder")
    with pytest.warns(SettingsWarning, match="not saved"):
        assert save_settings(full_settings(), blocker / "viewer.json") is None


def test_a_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    path = save_settings(full_settings(), tmp_path / "viewer.json")
    before = path.read_bytes()

    def crash(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(atomic.os, "replace", crash)
    changed = full_settings()
    changed.seed = 1
    with pytest.warns(SettingsWarning, match="disk full"):
        assert save_settings(changed, path) is None
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["viewer.json"]


# -- the Interface header's choices (issue 34): UI scale and theme ----------------------------------

def test_ui_scale_and_theme_round_trip(tmp_path):
    s = ViewerSettings(ui_scale=1.5, theme="light")
    back = load_settings(save_settings(s, tmp_path / "viewer.json"))
    assert (back.ui_scale, back.theme) == (1.5, "light")
    assert (ViewerSettings().ui_scale, ViewerSettings().theme) == (1.0, "dark")     # a first start


@pytest.mark.parametrize("value", [0.5, 2.6, "1.5", True, None, float("nan")])
def test_a_bad_ui_scale_falls_back_to_one(tmp_path, value):
    path = tmp_path / "viewer.json"
    path.write_text(json.dumps({"ui_scale": value, "theme": "light", "seed": 5}))   # nan -> NaN, which json reads
    with pytest.warns(SettingsWarning, match="ui_scale"):
        s = load_settings(path)
    assert (s.ui_scale, s.theme, s.seed) == (1.0, "light", 5)       # only the bad value is dropped


@pytest.mark.parametrize("value", ["Light", "blue", 1, None])
def test_an_unknown_theme_falls_back_to_dark(tmp_path, value):
    path = tmp_path / "viewer.json"
    path.write_text(json.dumps({"theme": value, "ui_scale": 2.0}))
    with pytest.warns(SettingsWarning, match="theme"):
        s = load_settings(path)
    assert (s.theme, s.ui_scale) == ("dark", 2.0)
