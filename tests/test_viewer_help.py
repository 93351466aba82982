"""Help where the user is (issue 34, part D), without a display: the tooltip check, tooltips on the
old panels' controls, Clear finished in job lists, the light theme's colours, the UI scale's widths,
the shortcut sheet, and "Open folder" (a fake opener on PATH records what it was asked to open).
The same with real X input: tests/test_viewer_gui_help.py."""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import dearpygui.dearpygui as dpg
import pytest

from test_viewer_panels import FakeRunner, FakeViewer  # the panels' fake viewer (tests/ is on sys.path)
from trigan.viewer import desktop
from trigan.viewer.file_picker import file_picker
from trigan.viewer.help import HelpSheet
from trigan.viewer.panels import appearance, common, export
from trigan.viewer.panels.appearance import AppearancePanel
from trigan.viewer.panels.camera import CameraPanel
from trigan.viewer.panels.export import ExportPanel
from trigan.viewer.panels.invert import InvertPanel
from trigan.viewer.panels.latent import LatentPanel
from trigan.viewer.panels.model import ModelPanel
from trigan.viewer.panels.training import TrainingPanel
from trigan.viewer.settings import ViewerSettings
from trigan.viewer.ui_style import PALETTES, controls_without_tooltip, recolour_texts, set_ui, tip


@pytest.fixture
def context():
    dpg.create_context()
    dpg.create_viewport(width=800, height=600)     # configured, never shown
    set_ui(theme="dark", scale=1.0)
    try:
        yield
    finally:
        set_ui(theme="dark", scale=1.0)
        dpg.destroy_context()


# -- the tooltip check ---------------------------------------------------------------------------------

def test_the_check_finds_exactly_the_controls_without_a_tooltip(context):
    with dpg.window():
        dpg.add_button(tag="tipped", label="A")
        tip("tipped", "does A")
        dpg.add_button(tag="bare", label="B")
        with dpg.group(horizontal=True):
            dpg.add_input_int(tag="bare_in_group")
            dpg.add_checkbox(label="tipped later")            # no alias: named by its label
            dpg.add_text("a text is not a control")
        dpg.add_slider_float(tag="slider")
        with dpg.tooltip("slider"):                          # a tooltip made the plain way counts too
            dpg.add_text("slides")
        dpg.add_combo(tag="combo_tipped_late")
    tip("combo_tipped_late", "tipped after other items were added")
    missing = controls_without_tooltip()
    assert "bare" in missing and "bare_in_group" in missing
    assert any(m.startswith("'tipped later' (mvCheckbox") for m in missing)
    assert len(missing) == 3


def test_every_control_of_the_old_panels_has_a_tooltip(context, tmp_path):
    """Model, Latent, Camera, Export, Training and Invert, the Interface header, the shortcut sheet and
    the file picker: no control without a tooltip (the whole app is checked in the GUI test)."""
    fake, runner = FakeViewer(tmp_path), FakeRunner()
    panels = [ModelPanel(fake, fake), LatentPanel(fake, fake), CameraPanel(fake, fake), ExportPanel(fake, runner),
              TrainingPanel(fake, runner, open_model=lambda p: None, retire_texture=lambda t: None),
              InvertPanel(fake, fake, runner), AppearancePanel(fake, fake)]
    dpg.add_texture_registry(tag="view_textures")        # the training panel's sample texture lives there
    try:
        with dpg.window():
            with dpg.collapsing_header(tag="interface_header"):
                for panel in panels:
                    panel.build()
        HelpSheet(fake, fake).build()
        file_picker()._build()
        assert controls_without_tooltip() == []
        assert dpg.does_item_exist("help_open_button")    # the sheet's button sits in the Interface header
    finally:
        panels[4].shutdown()


def test_a_path_fields_tooltip_says_what_it_is_for_and_its_whole_value(context):
    with dpg.window():
        common.path_field("some_path", "file", default="/a/very/long/folder/model.ckpt",
                          description="The model to show.")
    texts = [dpg.get_value(t) for t in dpg.get_item_children("some_path_tip", 1)]
    assert texts == ["The model to show.", "/a/very/long/folder/model.ckpt"]
    dpg.set_value("some_path", "/elsewhere/b.ckpt")           # the value line follows the field (source)
    assert dpg.get_value(dpg.get_item_children("some_path_tip", 1)[1]) == "/elsewhere/b.ckpt"
    assert controls_without_tooltip() == []                    # the "..." button has one too


# -- job lists: Clear finished ---------------------------------------------------------------------------

def _job(state, progress=0.5, label="job"):
    return SimpleNamespace(state=state, progress=progress, message="", output_path=None, label=label,
                           finished=state != "running", cancel=lambda: None)


def test_clear_finished_drops_done_failed_and_cancelled_rows_only(context):
    jobs = [_job("done", 1.0, "a"), _job("running", 0.3, "b"), _job("failed", 0.2, "c"), _job("cancelled", 0.4, "d")]
    lst = common.JobList("jl", lambda: jobs)
    with dpg.window():
        lst.build()
    lst.tick()
    assert [dpg.get_value(f"jl_{i}_bar") for i in range(4)] == pytest.approx([1.0, 0.3, 0.2, 0.4])
    assert dpg.get_item_configuration("jl_clear")["show"]          # offered: there are finished rows
    assert dpg.get_item_configuration("jl_3_bar")["overlay"] == "cancelled at 40%"
    lst.clear_finished()
    lst.tick()
    assert [j.label for j in lst.shown()] == ["b"] and not dpg.does_item_exist("jl_1_bar")
    assert dpg.get_item_configuration("jl_0_bar")["overlay"] == "running 30%"
    assert not dpg.get_item_configuration("jl_clear")["show"]      # nothing finished left to clear
    assert len(jobs) == 4                                        # the owner's list is left alone
    jobs[1].state, jobs[1].finished = "done", True               # the running job finishes later
    jobs.append(_job("running", 0.0, "e"))
    lst.tick()
    assert [j.label for j in lst.shown()] == ["b", "e"]
    lst.clear_finished()
    assert [j.label for j in lst.shown()] == ["e"]
    assert controls_without_tooltip() == []                      # Cancel and Clear finished have tooltips


# -- theme and scale -----------------------------------------------------------------------------------

def test_the_light_theme_recolours_message_texts_and_back(context):
    dark, light = PALETTES["dark"], PALETTES["light"]
    with dpg.window():
        dpg.add_text("error", tag="t_bad", color=common.BAD)
        dpg.add_text("muted", tag="t_muted", color=common.MUTED)
        dpg.add_text("other", tag="t_other", color=(10, 200, 250))
        dpg.add_text("plain", tag="t_plain")

    def rgb(tag):
        c = dpg.get_item_configuration(tag)["color"]
        return None if c[0] < 0 else tuple(int(round(255 * v)) for v in c[:3])
    assert recolour_texts("light") == 2
    assert (rgb("t_bad"), rgb("t_muted")) == (light["BAD"], light["MUTED"])
    assert rgb("t_other") == (10, 200, 250) and rgb("t_plain") is None      # others are left alone
    assert recolour_texts("dark") == 2 and (rgb("t_bad"), rgb("t_muted")) == (dark["BAD"], dark["MUTED"])


def _contrast(a, b) -> float:
    """WCAG contrast ratio of two sRGB colours (0..255)."""
    def lum(c):
        lin = [(v / 255) / 12.92 if v / 255 <= 0.04045 else ((v / 255 + 0.055) / 1.055) ** 2.4 for v in c]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
    hi, lo = sorted((lum(a), lum(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_the_light_palette_is_readable_on_the_light_background():
    background = appearance.LIGHT_COLOURS["mvThemeCol_WindowBg"][:3]
    for name, value in PALETTES["light"].items():
        assert _contrast(value, background) >= 4.5, name          # WCAG AA for normal text


def test_ui_scale_widens_pixel_sized_widgets_and_comes_back(context, tmp_path):
    fake = FakeViewer(tmp_path)
    panel = AppearancePanel(fake, fake)
    with dpg.window():
        panel.build()
        dpg.add_input_int(tag="w_neg", width=-90)
        dpg.add_button(tag="w_pos", width=80)
        dpg.add_input_text(tag="w_auto")
    panel.tick(0.0)                                     # scale 1: nothing changes
    assert dpg.get_item_width("w_neg") == -90 and dpg.get_item_width("w_pos") == 80
    panel.set_scale(1.5)
    panel.tick(1.0)
    assert dpg.get_global_font_scale() == pytest.approx(1.5)
    assert (dpg.get_item_width("w_neg"), dpg.get_item_width("w_pos"), dpg.get_item_width("w_auto")) == (-135, 120, 0)
    assert common.px(70) == 105                                   # rows made later size themselves
    panel.set_scale(2.5)
    panel.tick(2.0)
    assert (dpg.get_item_width("w_neg"), dpg.get_item_width("w_pos")) == (-225, 200)
    panel.set_scale(0.1)                                          # held at the smallest scale
    assert panel.scale == 0.75
    panel.set_scale(1.0)
    panel.tick(3.0)
    assert (dpg.get_item_width("w_neg"), dpg.get_item_width("w_pos")) == (-90, 80)   # no drift
    panel.set_theme("light")
    panel.set_scale(None)                                         # nothing typed: no change
    panel.set_scale(float("nan"))
    panel.tick(4.0)
    s = ViewerSettings()
    panel.store_settings(s)
    assert (s.ui_scale, s.theme) == (1.0, "light")
    assert panel.panel_state()["applied_theme"] == "light"


def test_the_saved_scale_and_theme_apply_at_the_first_tick(context, tmp_path):
    fake = FakeViewer(tmp_path)
    fake.settings.ui_scale, fake.settings.theme = 1.25, "light"
    panel = AppearancePanel(fake, fake)
    with dpg.window():
        panel.build()
    assert dpg.get_value(appearance.SCALE) == pytest.approx(1.25) and dpg.get_value(appearance.THEME) == "light"
    panel.tick(0.0)
    assert dpg.get_global_font_scale() == pytest.approx(1.25) and common.colour("BAD") == PALETTES["light"]["BAD"]


# -- the shortcut sheet ----------------------------------------------------------------------------------

def test_the_sheet_opens_closes_and_reports_missing_tooltips(context, tmp_path):
    fake = FakeViewer(tmp_path)
    sheet = HelpSheet(fake, fake)
    with dpg.window():
        dpg.add_button(tag="lonely_button")
    sheet.build()
    assert sheet.panel_state() == {"open": False, "missing_tooltips": ["lonely_button"]}
    sheet.open()
    assert sheet.panel_state()["open"]
    sheet.close()
    assert not sheet.is_open


# -- Open folder -------------------------------------------------------------------------------------------

@pytest.fixture
def fake_opener(tmp_path, monkeypatch):
    """An xdg-open (open on macOS) on PATH that writes the folder it was given to a file."""
    bin_dir, record = tmp_path / "bin", tmp_path / "opened.txt"
    bin_dir.mkdir()
    script = bin_dir / desktop.OPENERS.get(sys.platform, desktop.DEFAULT_OPENER)
    script.write_text(f"#!/bin/sh\nprintf '%s' \"$1\" > '{record}'\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", str(bin_dir))
    return record


def _wait_for_file(path: Path, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return path.read_text()


@pytest.mark.skipif(sys.platform.startswith("win"), reason="Windows opens folders with os.startfile")
def test_open_folder_starts_the_opener_on_the_folder(tmp_path, fake_opener):
    folder = tmp_path / "exports"
    folder.mkdir()
    assert desktop.open_folder(str(folder)) == ""
    assert _wait_for_file(fake_opener) == str(folder)


def test_open_folder_says_why_not_in_one_line(tmp_path, monkeypatch):
    missing = desktop.open_folder(str(tmp_path / "nope"))
    assert missing == f"export folder {tmp_path / 'nope'}: does not exist yet (nothing exported there)"
    (tmp_path / "f.txt").write_text("x")
    assert "is a file, not a folder" in desktop.open_folder(str(tmp_path / "f.txt"))
    assert desktop.open_folder("  ") == "choose an export folder first"
    if not sys.platform.startswith("win"):
        monkeypatch.setenv("PATH", str(tmp_path / "empty"))
        problem = desktop.open_folder(str(tmp_path))
        assert problem.startswith(f"cannot open {tmp_path}: no ") and "\n" not in problem


@pytest.mark.skipif(sys.platform.startswith("win"), reason="Windows opens folders with os.startfile")
def test_the_export_panels_button_opens_the_export_folder(context, tmp_path, fake_opener):
    fake = FakeViewer(tmp_path)
    os.makedirs(fake.settings.last_export_folder)
    panel = ExportPanel(fake, FakeRunner())
    with dpg.window():
        panel.build()
    panel.open_folder()
    assert _wait_for_file(fake_opener) == fake.settings.last_export_folder
    assert not dpg.get_item_configuration(export.OPEN_MESSAGE)["show"]
    dpg.set_value(export.FOLDER, str(tmp_path / "missing"))
    panel.open_folder()
    assert dpg.get_item_configuration(export.OPEN_MESSAGE)["show"]
    assert "does not exist yet" in dpg.get_value(export.OPEN_MESSAGE)
