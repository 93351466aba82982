"""The viewer's remembered state: last model, recent files, latent and render choices, runs folder,
window geometry, export choices. One JSON file, $XDG_CONFIG_HOME/trigan/viewer.json (default
~/.config/trigan/viewer.json), written atomically; DearPyGui's window layout ini sits beside it.

Reading never fails: a missing file gives the defaults; a file that is not JSON (or not an object)
is ignored with a warning; a single value of the wrong type or out of range falls back to its
default (with a warning) and the rest is kept; unknown keys are ignored (a newer viewer's file
still opens). `ViewerSettings.problem` carries the warning text for the status bar.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Optional

from trigan.core.atomic import atomic_write_text
from trigan.core.limits import MAX_SEED
from trigan.viewer.render_request import (
    BACKGROUNDS,
    MAX_RESOLUTION,
    MAX_SAMPLE_MULTIPLIER,
    MIN_RESOLUTION,
    MIN_SAMPLE_MULTIPLIER,
    MODES,
    NOISE_MODES,
    QUALITIES,
)

SETTINGS_FILE = "viewer.json"
LAYOUT_FILE = "viewer_layout.ini"
MAX_RECENT = 10
FORMAT_VERSION = 1
# The Interface header's choices (viewer/panels/appearance.py): how large text and widgets are drawn
# (high-DPI screens), and the colour theme.
UI_SCALE_MIN, UI_SCALE_MAX = 0.75, 2.5
THEMES = ("dark", "light")


class SettingsWarning(UserWarning):
    """A settings file that could not be used as a whole or in part."""


def settings_dir() -> Path:
    """$XDG_CONFIG_HOME/trigan, else ~/.config/trigan (not created here)."""
    base = os.environ.get("XDG_CONFIG_HOME")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".config"
    return root / "trigan"


def settings_path() -> Path:
    return settings_dir() / SETTINGS_FILE


def layout_path() -> Path:
    """Where DearPyGui keeps the window layout (dpg.configure_app(init_file=..., docking...))."""
    return settings_dir() / LAYOUT_FILE


@dataclass
class ViewerSettings:
    last_model: Optional[str] = None
    recent_files: List[str] = field(default_factory=list)     # newest first, at most MAX_RECENT
    seed: int = 0
    class_index: Optional[int] = None
    psi: float = 0.7
    noise_mode: str = "const"
    mode: str = "rgb"
    resolution: int = 256
    quality: str = "exact"                 # what the resting camera refines to
    sample_multiplier: float = 1.0
    background: str = "model"
    runs_folder: Optional[str] = None
    window_width: Optional[int] = None     # None: fitted to the screen (viewer.window_geometry)
    window_height: Optional[int] = None
    window_x: Optional[int] = None
    window_y: Optional[int] = None
    last_export_folder: Optional[str] = None
    export: Dict[str, Any] = field(default_factory=dict)  # the export panel's last choices, as it wrote them
    panels: Dict[str, Any] = field(default_factory=dict)  # anything else the app wants back (collapsed, tabs...)
    ui_scale: float = 1.0                  # text and widget size, UI_SCALE_MIN..UI_SCALE_MAX
    theme: str = "dark"                    # one of THEMES
    # Not saved: why (part of) the file could not be used, for the status bar.
    problem: Optional[str] = field(default=None, compare=False, metadata={"persist": False})

    def add_recent(self, path) -> None:
        """Put a model path first in the recent list (once), keep at most MAX_RECENT, remember it as last."""
        path = str(path)
        self.recent_files = [path] + [p for p in self.recent_files if p != path][:MAX_RECENT - 1]
        self.last_model = path

    def to_dict(self) -> Dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.metadata.get("persist", True)}
        data = json.loads(json.dumps(data, default=str))   # plain JSON types only (deep copy)
        return {"version": FORMAT_VERSION, **data}


# --------------------------------------------------------------------------------------------------
# Checking values one by one

def _opt_str(v):
    if v is None or isinstance(v, str):
        return v
    raise ValueError("expected a string or null")


def _int(lo=None, hi=None, optional=False):
    def check(v):
        if v is None and optional:
            return None
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError("expected an integer")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise ValueError(f"expected {lo}..{hi}")
        return v
    return check


def _float(lo=None, hi=None):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError("expected a number")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise ValueError(f"expected {lo:g}..{hi:g}")
        return float(v)
    return check


def _choice(options):
    def check(v):
        if v not in options:
            raise ValueError(f"expected one of {', '.join(options)}")
        return v
    return check


def _recent(v):
    if not isinstance(v, list) or not all(isinstance(p, str) for p in v):
        raise ValueError("expected a list of paths")
    out: List[str] = []
    for p in v:
        if p not in out:
            out.append(p)
    return out[:MAX_RECENT]


def _dict(v):
    if not isinstance(v, dict):
        raise ValueError("expected an object")
    return v


_CHECKS = {
    "last_model": _opt_str, "recent_files": _recent, "seed": _int(0, MAX_SEED),
    "class_index": _int(0, optional=True), "psi": _float(), "noise_mode": _choice(NOISE_MODES),
    "mode": _choice(MODES), "resolution": _int(MIN_RESOLUTION, MAX_RESOLUTION), "quality": _choice(QUALITIES),
    "sample_multiplier": _float(MIN_SAMPLE_MULTIPLIER, MAX_SAMPLE_MULTIPLIER), "background": _choice(BACKGROUNDS),
    "runs_folder": _opt_str, "window_width": _int(100, 100_000, optional=True), "window_height": _int(100, 100_000, optional=True),
    "window_x": _int(-100_000, 100_000, optional=True), "window_y": _int(-100_000, 100_000, optional=True),
    "last_export_folder": _opt_str, "export": _dict, "panels": _dict,
    "ui_scale": _float(UI_SCALE_MIN, UI_SCALE_MAX), "theme": _choice(THEMES),
}


def settings_from_dict(data: Dict[str, Any], source: str = "settings") -> ViewerSettings:
    """ViewerSettings from a parsed file; bad values fall back to defaults (listed in .problem)."""
    settings = ViewerSettings()
    bad = []
    for f in fields(ViewerSettings):
        if f.name not in data or f.name not in _CHECKS:
            continue
        try:
            setattr(settings, f.name, _CHECKS[f.name](data[f.name]))
        except ValueError as exc:
            bad.append(f"{f.name}={data[f.name]!r} ({exc})")
    if bad:
        settings.problem = f"{source}: ignored " + "; ".join(bad) + " (defaults used)"
    return settings


def load_settings(path=None) -> ViewerSettings:
    """The saved settings, or the defaults. Never raises for a bad file: warns (SettingsWarning)."""
    path = Path(path) if path is not None else settings_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ViewerSettings()
    except (OSError, UnicodeDecodeError) as exc:
        return _unusable(path, f"cannot be read ({type(exc).__name__}: {exc})")
    try:
        data = json.loads(text)
    except ValueError as exc:
        return _unusable(path, f"is not valid JSON ({exc})")
    if not isinstance(data, dict):
        return _unusable(path, f"holds a JSON {type(data).__name__}, expected an object")
    settings = settings_from_dict(data, str(path))
    if settings.problem:
        warnings.warn(settings.problem, SettingsWarning, stacklevel=2)
    return settings


def _unusable(path: Path, why: str) -> ViewerSettings:
    message = f"{path}: {why}; starting with default settings (the file is overwritten on exit)"
    warnings.warn(message, SettingsWarning, stacklevel=3)
    return ViewerSettings(problem=message)


def save_settings(settings: ViewerSettings, path=None) -> Optional[Path]:
    """Write the settings atomically (a reader never sees half a file). Returns the path, or None
    with a SettingsWarning when the folder cannot be written (the viewer must still close cleanly)."""
    path = Path(path) if path is not None else settings_path()
    text = json.dumps(settings.to_dict(), indent=1, sort_keys=False)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text + "\n")
    except OSError as exc:
        warnings.warn(f"{path}: settings not saved ({type(exc).__name__}: {exc})", SettingsWarning, stacklevel=2)
        return None
    return path


__all__ = ["ViewerSettings", "load_settings", "save_settings", "settings_dir", "settings_path", "layout_path",
           "settings_from_dict", "SettingsWarning", "MAX_RECENT", "UI_SCALE_MIN", "UI_SCALE_MAX",
           "THEMES"]
