"""The panels' narrow interface (viewer/panels/interface.py): every panel is built and driven against
a fake viewer that has the members of ViewerState and ViewerActions and nothing else, and the
panel and automation sources are checked statically: no panel reads a member of `state` or
`actions` that the protocols do not declare, none holds the app, and neither they nor the scripting
hooks touch another object's private (`_name`) attributes.
"""

from __future__ import annotations

import ast
import math
from pathlib import Path
from types import SimpleNamespace

import dearpygui.dearpygui as dpg
import pytest

from trigan.core.cameras import Pose
from trigan.core.errors import TriganError
from trigan.viewer.automation import call_item_callback
from trigan.viewer.help import HelpSheet
from trigan.viewer.orbit import OrbitController
from trigan.viewer.panels import camera, export, invert, latent, model, render, status, training, view
from trigan.viewer.panels.appearance import AppearancePanel
from trigan.viewer.panels.camera import CameraPanel
from trigan.viewer.panels.camera_path import CameraPathPanel
from trigan.viewer.panels.compare import ComparePanel
from trigan.viewer.panels.export import ExportPanel
from trigan.viewer.panels.interface import ViewerActions, ViewerState
from trigan.viewer.panels.interpolate import InterpolatePanel
from trigan.viewer.panels.invert import InvertPanel
from trigan.viewer.panels.latent import LatentPanel
from trigan.viewer.panels.model import ModelPanel
from trigan.viewer.panels.render import RenderPanel
from trigan.viewer.panels.status import StatusBar, Timing
from trigan.viewer.panels.training import TrainingPanel
from trigan.viewer.panels.view import ImageView
from trigan.viewer.render_request import ViewValues
from trigan.viewer.settings import ViewerSettings

VIEWER = Path(__file__).resolve().parents[1] / "viewer"
PANEL_FILES = sorted((VIEWER / "panels").glob("*.py"))


def members(protocol) -> set:
    return {name for name in vars(protocol) if not name.startswith("_")}


STATE, ACTIONS = members(ViewerState), members(ViewerActions)


class FakeViewer:
    """ViewerState and ViewerActions and nothing else (test_the_fake_is_exactly_the_interface):
    a panel reaching for anything more fails here with AttributeError."""

    def __init__(self, tmp_path):
        self._orbit = OrbitController(Pose(yaw=0.0, pitch=math.pi / 2, radius=2.0, fov=18.0))
        self._calls = []
        self._settings = ViewerSettings(runs_folder=str(tmp_path / "runs"),
                                        last_export_folder=str(tmp_path / "exports"))
        self._view = ViewValues()
        self._display = None

    # -- ViewerState -----------------------------------------------------------------------------------
    @property
    def settings(self):
        return self._settings

    @property
    def view(self):
        return self._view

    @property
    def model_info(self):
        return None

    @property
    def pose(self):
        return self._orbit.pose

    @property
    def pose_version(self):
        return self._orbit.version

    @property
    def last_frame(self):
        return None

    @property
    def device(self):
        return None

    @property
    def device_name(self):
        return "cpu"

    @property
    def display(self):
        return self._display

    def worker_status(self):
        return None

    def worker_busy(self):
        return False

    # -- ViewerActions ---------------------------------------------------------------------------------
    def update_view(self, **values):
        self._calls.append(("update_view", values))
        self._view = ViewValues(**{**self._view.__dict__, **values})

    def move_camera(self, move):
        try:
            move(self._orbit)
        except (TriganError, ValueError) as exc:
            self._calls.append(("camera error", str(exc)))

    def draw_camera(self):
        self._calls.append(("draw_camera",))

    def open_model(self, source, latest=False):
        self._calls.append(("open_model", source, latest))

    def reload_model(self):
        self._calls.append(("reload_model",))

    def show_inversion(self, model_file, latent_file, pose=None):
        self._calls.append(("show_inversion", model_file, latent_file))
        self._view = ViewValues(**{**self._view.__dict__, "latent_file": latent_file})

    def show_seeds(self):
        self._calls.append(("show_seeds",))
        self._view = ViewValues(**{**self._view.__dict__, "latent_file": None})

    def set_display(self, **values):
        self._calls.append(("set_display", values))


class FakeRunner:
    """The export jobs' runner, as far as the panels use it."""

    def __init__(self):
        self.jobs, self.active = [], []

    def cancel_all(self, wait=None):
        pass


def test_the_fake_is_exactly_the_interface(tmp_path):
    fake = FakeViewer(tmp_path)
    public = {name for name in dir(fake) if not name.startswith("_")}
    assert public == STATE | ACTIONS
    assert not STATE & ACTIONS


@pytest.fixture
def built(tmp_path):
    dpg.create_context()
    dpg.create_viewport(width=800, height=600)     # configured, never shown: no display needed
    fake, runner, opened, retired = FakeViewer(tmp_path), FakeRunner(), [], []
    panels = None
    try:
        image = ImageView(fake, fake)
        image.build(pos=(0, 0), size=(400, 400), window_id=_window(view.WINDOW))
        panels = SimpleNamespace(
            image=image, model=ModelPanel(fake, fake), latent=LatentPanel(fake, fake),
            camera=CameraPanel(fake, fake), render=RenderPanel(fake, fake), export=ExportPanel(fake, runner),
            training=TrainingPanel(fake, runner, open_model=opened.append, retire_texture=retired.append),
            status=StatusBar(fake, Timing()), invert=InvertPanel(fake, fake, runner),
            compare=ComparePanel(fake, fake), interpolate=InterpolatePanel(fake, fake, runner),
            camera_path=CameraPathPanel(fake, fake, runner), appearance=AppearancePanel(fake, fake),
            help=HelpSheet(fake, fake))
        with dpg.window():
            for name in ("model", "latent", "camera", "render", "export", "training", "invert", "compare",
                         "interpolate", "camera_path", "appearance"):
                getattr(panels, name).build()
        panels.status.build(window_id=_window(status.WINDOW))
        panels.help.build()
        yield SimpleNamespace(fake=fake, panels=panels, opened=opened)
    finally:
        if panels is not None:
            for name in ("training", "compare", "interpolate", "camera_path"):
                getattr(panels, name).shutdown()
        dpg.destroy_context()


def _window(alias):
    """A window id under the alias the panel names its window by (the app's WINDOW_IDS)."""
    uuid = dpg.generate_uuid()
    dpg.add_alias(alias, uuid)
    return uuid


def _callback(tag, value=None):
    """Set a widget (when a value is given) and run its callback, as DearPyGui does after an edit."""
    if value is not None:
        dpg.set_value(tag, value)
    call_item_callback(tag, dpg.get_value(tag))


def test_every_panel_builds_and_works_through_the_interface_alone(built):
    fake, p = built.fake, built.panels
    # Latent and Render: values go through update_view
    _callback(latent.SEED, "12")
    _callback(render.MODE, "depth")
    assert fake.view.seed == 12 and fake.view.mode == "depth"
    # Camera: fields, presets, reset and the draw button move the camera through move_camera
    _callback(camera.YAW, 30.0)
    assert fake.pose.yaw == pytest.approx(math.radians(30.0))
    _callback("camera_side")
    assert fake.pose.yaw == pytest.approx(math.pi / 2)
    _callback("camera_reset")
    assert fake.pose == Pose(yaw=0.0, pitch=math.pi / 2, radius=2.0, fov=18.0)
    _callback("camera_draw")
    assert ("draw_camera",) in fake._calls
    _callback(camera.PITCH, 60.0)
    p.camera.tick()
    assert dpg.get_value(camera.PITCH) == pytest.approx(60.0)
    # Model: open and reload are actions
    _callback(model.CKPT_FIELD, "some.ckpt")
    _callback("model_reload")
    assert ("open_model", "some.ckpt", False) in fake._calls and ("reload_model",) in fake._calls
    # Export: without a model or a frame each export says why, and starts no job
    _callback(export.SHOT)
    assert dpg.get_value(export.MESSAGE) == "nothing rendered yet"
    _callback(export.MESH_BUTTON)
    assert dpg.get_value(export.MESSAGE) == "no model is open yet"
    assert p.export.job_states() == [] and not p.export.any_running()
    # Training, status bar and image view read what the state offers
    p.training.tick(0.0)
    assert p.training.runs_state()["runs"] == []
    p.status.tick(10.0)
    assert "device cpu" in dpg.get_value(status.TEXT) and "seed 12" in dpg.get_value(status.TEXT)
    p.image.poll_input()
    assert not p.image.dragging
    p.model.open_dropped(["notes.txt"])
    assert "expected a checkpoint" in dpg.get_value(model.MESSAGE)
    assert training.MESSAGE                # the module's tags stay importable for scripts
    # Invert: without a model it says why in one line and starts nothing; back to seeds is an action
    _callback(invert.START)
    assert dpg.get_value(invert.MESSAGE) == "no model is open yet" and not p.invert.any_running()
    p.invert.tick(0.0)
    p.latent.tick()
    assert not dpg.is_item_shown(latent.INVERTED_NOTE)
    fake.show_inversion("m.pti.ckpt", "m.inversion.npz")
    p.invert.tick(0.0)
    p.latent.tick()
    assert "m.inversion.npz" in dpg.get_value(invert.SHOWING)
    # the seed field says it is not what the view shows while the inverted latent is on screen
    assert dpg.is_item_shown(latent.INVERTED_NOTE)
    assert dpg.get_value(latent.INVERTED_NOTE).startswith("The view shows the inverted latent m, not this seed")
    _callback(invert.BACK)
    assert ("show_seeds",) in fake._calls and fake.view.latent_file is None
    p.latent.tick()
    assert not dpg.is_item_shown(latent.INVERTED_NOTE) and dpg.get_value(latent.INVERTED_NOTE) == ""


def test_the_invert_tabs_choices_come_back_after_a_restart_and_a_wrong_saved_type_is_skipped(built):
    p = built.panels
    assert dpg.get_value(invert.PTI_HOLD) == 1.0                 # InversionSettings().tune_hold
    dpg.set_value(invert.PTI_HOLD, 0.25)
    dpg.set_value(invert.STEPS, 7)
    saved = ViewerSettings()
    p.invert.store_settings(saved)
    dpg.set_value(invert.PTI_HOLD, 1.0)
    dpg.set_value(invert.STEPS, 200)
    p.invert.restore(saved)
    assert dpg.get_value(invert.PTI_HOLD) == 0.25 and dpg.get_value(invert.STEPS) == 7
    saved.panels["invert"][invert.PTI_HOLD] = "a lot"            # a hand-edited settings file
    dpg.set_value(invert.PTI_HOLD, 0.5)
    p.invert.restore(saved)
    assert dpg.get_value(invert.PTI_HOLD) == 0.5


# --------------------------------------------------------------------------------------------------
# Static checks over the sources

def _attribute_chains(tree):
    """(object name, attribute, line) for every `self.<holder>.<attribute>` in the tree."""
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                and isinstance(node.value.value, ast.Name) and node.value.value.id == "self"):
            yield node.value.attr, node.attr, node.lineno


@pytest.mark.parametrize("path", PANEL_FILES, ids=lambda p: p.name)
def test_panels_use_only_the_declared_interface(path):
    tree = ast.parse(path.read_text())
    allowed = {"state": STATE, "actions": ACTIONS}
    wrong = [f"{path.name}:{line}: self.{holder}.{attr}" for holder, attr, line in _attribute_chains(tree)
             if holder in allowed and attr not in allowed[holder]]
    assert not wrong, f"members not in panels/interface.py: {wrong}"
    holds_app = [f"{path.name}:{node.lineno}" for node in ast.walk(tree)
                 if (isinstance(node, ast.Attribute) and node.attr == "app")
                 or (isinstance(node, ast.arg) and node.arg == "app")]
    assert not holds_app, f"a panel takes or keeps the whole app: {holds_app}"


def _private_accesses(path):
    """`x._name` where x is not self or cls (dunder names are Python's, not private)."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
            yield f"{path.name}:{node.lineno}: {ast.unparse(node)}"


@pytest.mark.parametrize("path", [VIEWER / "automation.py", *PANEL_FILES], ids=lambda p: p.name)
def test_no_private_attributes_of_other_objects(path):
    found = list(_private_accesses(path))
    assert not found, found


def test_the_private_attribute_check_catches_what_automation_used_to_read(tmp_path):
    """The check is not a tautology: the old automation.py's reads are found."""
    old = tmp_path / "old_automation.py"
    old.write_text("def state(app):\n    return app._shown_frame, app._model_source is not None\n")
    assert len(list(_private_accesses(old))) == 2
