"""The viewer's numeric inputs without a display: seed parsing and stepping, the resolution choices,
the error line's sources and fitting, and the Latent, Camera and Render panels built in a DearPyGui
context (no window) and driven through their own callbacks.

The GUI half (real X input into a real window) is tests/test_viewer_gui_inputs.py.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import dearpygui.dearpygui as dpg
import pytest

from trigan.core.cameras import Pose
from trigan.core.errors import TriganError
from trigan.viewer.app import ViewerApp
from trigan.viewer.orbit import FOV_MAX, FOV_MIN, RADIUS_MIN_FACTOR, OrbitController
from trigan.viewer.panels import camera, latent, render
from trigan.viewer.panels.view import ERROR_SOURCES, ErrorMessages, fit_line
from trigan.viewer.render_request import MAX_SAMPLE_MULTIPLIER, MIN_SAMPLE_MULTIPLIER, ViewValues
from trigan.viewer.settings import ViewerSettings

INT32_MAX = 2 ** 31 - 1


# --------------------------------------------------------------------------------------------------
# Seeds

@pytest.mark.parametrize("text, seed", [("0", 0), ("12", 12), (" 7 ", 7), ("007", 7), ("4294967295", 2 ** 32 - 1),
                                        (5, 5)])
def test_parse_seed_takes_every_seed_a_request_takes(text, seed):
    assert latent.parse_seed(text) == seed


@pytest.mark.parametrize("text", ["", " ", "-1", "4294967296", "99999999999999999999", "1.5", "1e3", "+3", "abc",
                                  "0x10", "\u0661\u0662", "3 4"])
def test_parse_seed_refuses_with_one_line_naming_the_value_and_the_range(text):
    with pytest.raises(TriganError) as info:
        latent.parse_seed(text)
    message = str(info.value)
    assert "\n" not in message
    assert repr(text.strip()) in message or text.strip() in message
    assert "0 to 4294967295" in message


@pytest.mark.parametrize("seed, delta, expected", [(0, 1, 1), (0, -1, 0), (5, -1, 4), (2 ** 32 - 1, 1, 2 ** 32 - 1),
                                                   (2 ** 32 - 2, 1, 2 ** 32 - 1), (2 ** 31 - 1, 1, 2 ** 31)])
def test_stepping_holds_the_seed_within_its_range(seed, delta, expected):
    assert latent.stepped_seed(seed, delta) == expected


# --------------------------------------------------------------------------------------------------
# Resolution choices

def test_resolution_choices_are_the_usual_sizes():
    assert render.resolution_choices(256) == ["64", "128", "256", "384", "512", "768", "1024"]


def test_a_saved_resolution_outside_the_list_is_kept_in_its_place():
    assert render.resolution_choices(300) == ["64", "128", "256", "300", "384", "512", "768", "1024"]
    assert render.resolution_choices(5000) == [str(r) for r in render.RESOLUTIONS]   # not a valid size: not added


@pytest.mark.parametrize("text, pixels", [("384", 384), (" 1024 ", 1024), ("10", 64), ("4096", 1024), (300, 300)])
def test_parse_resolution(text, pixels):
    assert render.parse_resolution(text) == pixels


# --------------------------------------------------------------------------------------------------
# The view's error line

def test_a_newer_good_result_clears_only_its_own_source():
    errors = ErrorMessages()
    errors.set("render failed: out of memory", "render")
    errors.set("camera radius -1: expected a positive distance", "camera")
    assert errors.shown == "camera radius -1: expected a positive distance"       # the newest
    errors.set(None, "camera")
    assert errors.shown == "render failed: out of memory"
    errors.set(None, "request")                                                    # nothing to clear
    assert errors.shown == "render failed: out of memory"
    errors.set(None, "render")
    assert errors.shown == ""


def test_a_message_set_again_becomes_the_newest():
    errors = ErrorMessages()
    errors.set("a", "render")
    errors.set("b", "camera")
    errors.set("c", "render")
    assert errors.shown == "c" and errors.all() == {"camera": "b", "render": "c"}


def test_clearing_without_a_source_clears_everything_and_a_sourceless_message_is_general():
    errors = ErrorMessages()
    errors.set("x.ckpt: not a checkpoint")
    assert errors.all() == {"general": "x.ckpt: not a checkpoint"}
    errors.set("render failed", "render")
    errors.set(None)
    assert errors.shown == "" and errors.all() == {}


def test_an_unknown_error_source_is_a_bug():
    with pytest.raises(ValueError, match="error source"):
        ErrorMessages().set("x", "typo")
    assert "request" in ERROR_SOURCES and "render" in ERROR_SOURCES


def test_fit_line_keeps_short_text_and_cuts_the_middle_of_long_text():
    def measure(t):
        return 7 * len(t)
    assert fit_line("short", 100, measure) == "short"
    assert fit_line("", 10, measure) == ""
    long = "render failed: " + "d" * 200 + " not a checkpoint"
    cut = fit_line(long, 350, measure)
    head, _, tail = cut.partition("...")
    assert measure(cut) <= 350 and measure(cut) > 350 - 7         # the most that fits
    assert long.startswith(head) and long.endswith(tail) and tail.endswith("not a checkpoint")
    assert len(head) < len(tail)                                  # the reason at the end matters most


def test_fit_line_drops_the_folders_of_paths_first():
    def measure(t):
        return 7 * len(t)
    text = "/tmp/pytest-of-root/pytest-147/test_a_model0/broken.ckpt: not a checkpoint (neither a pickle)"
    assert fit_line(text, 7 * 70, measure) == ".../broken.ckpt: not a checkpoint (neither a pickle)"
    assert ".../" not in fit_line("render failed: 3/4 of the rays" + "x" * 40, 7 * 40, measure)   # not a path
    assert fit_line("a/b: x " * 30, 7 * 40, measure).count("...") == 1


# --------------------------------------------------------------------------------------------------
# The panels in a DearPyGui context (no window): every number takes its whole range

class FakeApp:
    """What these panels read and call (panels/interface.py): the view values, the camera pose,
    update_view, move_camera, draw_camera."""

    def __init__(self):
        self.view = ViewValues()
        self.orbit = OrbitController(Pose(yaw=0.0, pitch=math.pi / 2, radius=2.0, fov=18.0))
        self.messages = []
        self.settings = ViewerSettings()        # the Render panel restores its display choices from it
        self.display = None

    def set_display(self, **values):
        pass

    @property
    def pose(self):
        return self.orbit.pose

    @property
    def pose_version(self):
        return self.orbit.version

    def update_view(self, **values):
        self.view = ViewValues(**{**self.view.__dict__, **values})

    def move_camera(self, move):
        try:
            move(self.orbit)
        except (TriganError, ValueError) as exc:
            self.messages.append(("camera", str(exc)))

    def draw_camera(self):
        pass


@pytest.fixture
def panels():
    dpg.create_context()
    try:
        app = FakeApp()
        with dpg.window():
            panels = SimpleNamespace(app=app, latent=latent.LatentPanel(app, app),
                                     camera=camera.CameraPanel(app, app), render=render.RenderPanel(app, app))
            panels.latent.build()
            panels.camera.build()
            panels.render.build()
        yield panels
    finally:
        dpg.destroy_context()


def _callback(tag, value):
    """Set a widget and run its callback, as DearPyGui does after an edit."""
    dpg.set_value(tag, value)
    dpg.get_item_callback(tag)(tag, dpg.get_value(tag))


def test_typed_seeds_cover_the_whole_range_and_a_bad_one_keeps_the_last_good_seed(panels):
    app, panel = panels.app, panels.latent
    _callback(latent.SEED, "12")
    assert app.view.seed == 12 and panel.seed_message() == ""
    _callback(latent.SEED, "4294967295")
    assert app.view.seed == 2 ** 32 - 1
    _callback(latent.SEED, "4294967296")
    assert app.view.seed == 2 ** 32 - 1
    assert "4294967296" in panel.seed_message() and "still using 4294967295" in panel.seed_message()
    assert dpg.is_item_shown(latent.SEED_MESSAGE)
    _callback(latent.SEED, "5")
    assert app.view.seed == 5 and panel.seed_message() == "" and not dpg.is_item_shown(latent.SEED_MESSAGE)


def test_seed_buttons_step_and_draw_within_range(panels):
    app, panel = panels.app, panels.latent
    dpg.get_item_callback(latent.SEED_PLUS)()
    assert app.view.seed == 1 and dpg.get_value(latent.SEED) == "1"
    dpg.get_item_callback(latent.SEED_MINUS)()
    dpg.get_item_callback(latent.SEED_MINUS)()
    assert app.view.seed == 0 and dpg.get_value(latent.SEED) == "0"
    _callback(latent.SEED, "4294967295")
    dpg.get_item_callback(latent.SEED_PLUS)()
    assert app.view.seed == 2 ** 32 - 1 and dpg.get_value(latent.SEED) == "4294967295"
    dpg.get_item_callback(latent.SEED_RANDOM)()
    assert 0 <= app.view.seed < latent.RANDOM_SEED_LIMIT and dpg.get_value(latent.SEED) == str(app.view.seed)
    assert panel.seed_message() == ""


def test_no_numeric_widget_of_these_panels_promises_more_than_it_can_hold(panels):
    """DearPyGui's int widgets hold an int32 (2**32 - 1 turns into -1): none may be used for a range
    beyond it. Float fields take their ends exactly (input_double, not float32)."""
    int_kinds = ("mvInputInt", "mvSliderInt", "mvDragInt")
    for item in dpg.get_all_items():
        kind = dpg.get_item_type(item).rpartition("::")[2]
        if kind.startswith(int_kinds):
            config = dpg.get_item_configuration(item)
            assert config["min_value"] <= config["max_value"] <= INT32_MAX, dpg.get_item_alias(item)
        assert kind not in ("mvInputFloat", "mvSliderFloat", "mvDragFloat"), (
            f"{dpg.get_item_alias(item)}: a float32 widget shows 0.7 as 0.699999988")


def test_psi_and_samples_take_their_range_and_clamp_beyond_it(panels):
    app = panels.app
    for typed, expected in ((0.55, 0.55), (latent.PSI_MIN, latent.PSI_MIN), (latent.PSI_MAX, latent.PSI_MAX)):
        _callback(latent.PSI, typed)
        assert app.view.psi == pytest.approx(expected, abs=1e-12)
    for typed, expected in ((MIN_SAMPLE_MULTIPLIER, MIN_SAMPLE_MULTIPLIER), (MAX_SAMPLE_MULTIPLIER, MAX_SAMPLE_MULTIPLIER),
                            (2.5, 2.5)):
        _callback(render.SAMPLES, typed)
        assert app.view.sample_multiplier == expected


def test_resolution_combo_gives_pixels_and_keeps_an_odd_saved_size(panels):
    app = panels.app
    _callback(render.RESOLUTION, "384")
    assert app.view.resolution == 384
    app.view = ViewValues(resolution=300)
    panels.render.sync()
    assert dpg.get_value(render.RESOLUTION) == "300"
    assert "300" in dpg.get_item_configuration(render.RESOLUTION)["items"]
    _callback(render.RESOLUTION, "768")
    assert app.view.resolution == 768 and "300" not in dpg.get_item_configuration(render.RESOLUTION)["items"]


def test_camera_fields_move_the_camera_and_show_clamped_values(panels):
    app, panel = panels.app, panels.camera
    _callback(camera.YAW, 30.0)
    assert app.pose.yaw == pytest.approx(math.radians(30.0))
    _callback(camera.YAW, 270.0)                                   # the same direction as -90
    assert app.pose.yaw == pytest.approx(math.radians(-90.0))
    _callback(camera.PITCH, 60.0)
    assert app.pose.pitch == pytest.approx(math.radians(60.0))
    _callback(camera.FOV, 500.0)
    assert app.pose.fov == FOV_MAX
    _callback(camera.FOV, 0.0)
    assert app.pose.fov == FOV_MIN
    _callback(camera.RADIUS, 0.0)                                  # on the way to typing 0.5: the zoom's limit
    assert app.pose.radius == pytest.approx(2.0 * RADIUS_MIN_FACTOR)
    assert not [m for m in app.messages if m[1]]
    panel.tick()
    assert dpg.get_value(camera.RADIUS) == pytest.approx(2.0 * RADIUS_MIN_FACTOR)
    assert dpg.get_value(camera.YAW) == pytest.approx(-90.0)
    _callback(camera.RADIUS, 100.0)                                # beyond the zoom: clamped, and shown
    panel.tick()
    assert dpg.get_value(camera.RADIUS) == pytest.approx(app.pose.radius)


# --------------------------------------------------------------------------------------------------
# The app refuses values a request could not take, and a good value clears the message at once

def test_update_view_refuses_bad_values_and_a_good_one_clears_the_message(tmp_path):
    app = ViewerApp(settings_path=tmp_path / "viewer.json")
    shown = ErrorMessages()
    app.image = SimpleNamespace(set_error=shown.set)
    app.update_view(seed=2 ** 32)
    assert app.view.seed == 0 and "seed 4294967296" in shown.shown
    app.update_view(resolution=5000)
    assert app.view.resolution == ViewValues().resolution and "resolution 5000" in shown.shown
    app.update_view(seed=7)
    assert app.view.seed == 7 and shown.shown == ""
