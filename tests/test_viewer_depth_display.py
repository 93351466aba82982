"""viewer/depth_display.py: display values, the colour range (normalise, typed, ray interval),
invert, the legend, and the 3-D point under a pixel, against independent answers (core's gray
depth picture, Camera.rays, a rendered analytic sphere); and the scene's frames carrying the raw
geometry the view colours (a tiny random model)."""

from __future__ import annotations

import math

import dearpygui.dearpygui as dpg
import numpy as np
import pytest
import torch

from analytic_fields import RadialField, sphere
from conftest import tiny_config
from test_viewer_panels import FakeViewer
from trigan.core.cameras import Pose
from trigan.core.checkpoint import save_checkpoint
from trigan.core.colormaps import apply_colormap
from trigan.core.errors import TriganError
from trigan.core.generator import Generator
from trigan.core.images import depth_image
from trigan.core.renderer import RenderOptions, render
from trigan.viewer.automation import call_item_callback
from trigan.viewer.depth_display import (
    DisplayValues,
    coloured,
    geometry_range,
    pixel_direction,
    point_at_pixel,
    project_point,
    readout_at,
    shows_geometry,
)
from trigan.viewer.panels import render as render_panel
from trigan.viewer.panels.render import RenderPanel
from trigan.viewer.panels.view import ImageView
from trigan.viewer.render_request import Frame, RenderRequest
from trigan.viewer.scene import PATH_PREVIEW_FALLBACK, Scene, frame_geometry
from trigan.viewer.settings import ViewerSettings

RES = 64


def synthetic_frame(depth, opacity, mode="depth", pose=None, stats=None):
    """A Frame whose geometry is given (depth = sum w t, as the renderer's)."""
    h, w = depth.shape
    request = RenderRequest("model", pose=pose or Pose(), resolution=RES, mode=mode)
    return Frame(request, np.zeros((h, w, 4), np.float32), 1.0, "test", None, dict(stats or {}),
                 depth=np.asarray(depth, np.float32), opacity=np.asarray(opacity, np.float32))


def ramp_distance():
    """0.9 .. 1.1 left to right, flat over the outer two columns (normalise looks inside the silhouette)."""
    return np.clip(np.linspace(0.88, 1.12, RES), 0.9, 1.1)


def ramp_frame(stats=None):
    """Distances 0.9 .. 1.1 (left to right) on an opaque object, with a see-through stripe at the top."""
    dist = np.tile(ramp_distance().astype(np.float32), (RES, 1))
    opacity = np.ones((RES, RES), np.float32)
    opacity[:4] = 0.1                       # haze: not the object, its depth must not count
    dist[:4] = 3.0
    return synthetic_frame(dist * opacity, opacity, stats=stats)


# -- display values ---------------------------------------------------------------------------------
def test_display_values_refuse_bad_input_in_one_line():
    d = DisplayValues()
    assert (d.colormap, d.normalize, d.invert, d.range_min, d.range_max) == ("gray", True, False, None, None)
    for values, message in (({"colormap": "jet"}, "colormap 'jet'"),
                            ({"range_min": 2.0, "range_max": 1.0}, "expected min < max"),
                            ({"range_min": 1.0, "range_max": 1.0}, "expected min < max"),
                            ({"range_min": float("nan")}, "expected a finite number"),
                            ({"range_max": "far"}, "expected a number"),
                            ({"contrast": 2}, "unknown value 'contrast'")):
        with pytest.raises(TriganError, match=message) as info:
            d.with_values(**values)
        assert "\n" not in str(info.value)


def test_display_values_from_settings_keep_the_good_values_and_default_the_bad():
    back = DisplayValues.from_dict({"colormap": "turbo", "normalize": False, "invert": True, "range_min": 0.8,
                                    "range_max": 1.2})
    assert back == DisplayValues("turbo", False, True, 0.8, 1.2)
    assert DisplayValues.from_dict(back.as_dict()) == back
    bad = DisplayValues.from_dict({"colormap": "jet", "range_min": "x", "range_max": 1.2, "other": 1})
    assert bad == DisplayValues(range_max=1.2)
    assert DisplayValues.from_dict(["not", "a", "dict"]) == DisplayValues()


# -- the range and the colours ------------------------------------------------------------------------
def test_normalise_takes_the_visible_objects_depth_range():
    frame = ramp_frame(stats={"ray_interval": [0.5, 1.5]})
    low, high, source = geometry_range(frame, "depth", DisplayValues())
    # the hazy stripe (opacity 0.1 < OBJECT_OPACITY) at distance 3 does not count
    assert (low, high, source) == (pytest.approx(0.9, abs=1e-6), pytest.approx(1.1, abs=1e-6), "frame")
    rgba, legend = coloured(frame, DisplayValues(colormap="viridis"))
    assert (legend.low, legend.high) == (low, high)
    # near (left column) is the bright end of the map, far (right column) the dark end
    np.testing.assert_allclose(rgba[RES // 2, 0, :3], apply_colormap(np.array(1.0), "viridis"), atol=1e-6)
    np.testing.assert_allclose(rgba[RES // 2, -1, :3], apply_colormap(np.array(0.0), "viridis"), atol=1e-6)
    inverted, _ = coloured(frame, DisplayValues(colormap="viridis", invert=True))
    np.testing.assert_allclose(inverted[RES // 2, 0, :3], apply_colormap(np.array(0.0), "viridis"), atol=1e-6)
    np.testing.assert_allclose(inverted[RES // 2, -1, :3], apply_colormap(np.array(1.0), "viridis"), atol=1e-6)
    assert np.all(rgba[..., 3] == 1)


def test_a_typed_range_maps_linearly_and_clamps_outside():
    frame = ramp_frame()
    display = DisplayValues(normalize=False, range_min=0.95, range_max=1.05)
    assert geometry_range(frame, "depth", display) == (0.95, 1.05, "typed")
    rgba, _ = coloured(frame, display)
    dist = ramp_distance()
    want = np.clip((1.05 - dist) / 0.1, 0, 1)          # gray: near (0.95) white, far (1.05) black
    np.testing.assert_allclose(rgba[RES // 2, :, 0], want, atol=1e-5)


def test_without_normalise_or_a_range_gray_depth_is_cores_depth_picture():
    # the default picture of `trigan render --output depth`: the ray interval, near white, times opacity
    gen = torch.Generator().manual_seed(3)
    opacity = torch.rand(1, 1, RES, RES, generator=gen)
    dist = 0.7 + 0.6 * torch.rand(1, 1, RES, RES, generator=gen)
    frame = synthetic_frame((dist * opacity)[0, 0].numpy(), opacity[0, 0].numpy(), stats={"ray_interval": [0.8, 1.2]})
    rgba, legend = coloured(frame, DisplayValues(normalize=False))
    want = (depth_image(dist * opacity, opacity, 0.8, 1.2)[0].permute(1, 2, 0).numpy() + 1) / 2
    np.testing.assert_allclose(rgba[..., :3], want, atol=1e-5)       # float32 rounding
    assert (legend.low, legend.high, legend.source) == (0.8, 1.2, "ray interval")


def test_opacity_is_coloured_over_zero_to_one_or_its_own_range():
    opacity = np.tile(np.linspace(0.2, 0.6, RES, dtype=np.float32), (RES, 1))
    frame = synthetic_frame(opacity, opacity, mode="opacity")
    rgba, legend = coloured(frame, DisplayValues(normalize=False))
    np.testing.assert_allclose(rgba[0, :, 0], np.linspace(0.2, 0.6, RES), atol=1e-6)
    assert (legend.low, legend.high, legend.quantity) == (0.0, 1.0, "opacity")
    rgba, legend = coloured(frame, DisplayValues())
    assert (legend.low, legend.high) == (pytest.approx(0.2), pytest.approx(0.6))
    np.testing.assert_allclose(rgba[0, [0, -1], 0], [0.0, 1.0], atol=1e-6)


def test_the_legend_bar_runs_from_its_min_to_its_max_colour():
    frame = ramp_frame()
    for display in (DisplayValues(colormap="turbo"), DisplayValues(colormap="turbo", invert=True)):
        rgba, legend = coloured(frame, display)
        bar = legend.bar(RES)[0]
        # the bar's left end is the colour of the nearest depth, its right end of the farthest
        np.testing.assert_allclose(bar[0, :3], rgba[RES // 2, 0, :3], atol=1e-5)
        np.testing.assert_allclose(bar[-1, :3], rgba[RES // 2, -1, :3], atol=1e-5)
        assert legend.as_dict()["min"] == pytest.approx(0.9) and legend.as_dict()["max"] == pytest.approx(1.1)
    assert shows_geometry(frame) and not shows_geometry(synthetic_frame(frame.depth, frame.opacity, mode="rgb"))


# -- the point under a pixel ---------------------------------------------------------------------------
PANNED = Pose(yaw=0.7, pitch=1.2, radius=1.3, fov=25.0, look_at=(0.03, -0.02, 0.01), pivot=(0.03, -0.02, 0.01))


def test_a_pixels_direction_is_the_cameras_ray_and_projects_back():
    h, w = 12, 16                                      # not square: rows and columns must not mix
    origins, dirs = PANNED.to_camera(dtype=torch.float64).rays((h, w))
    np.testing.assert_allclose(origins[0, 0].numpy(), PANNED.origin(), atol=1e-12)
    for row in range(h):
        for col in range(w):
            got = pixel_direction(PANNED, (h, w), row, col)
            np.testing.assert_allclose(got, dirs[0, row * w + col].numpy(), atol=1e-12)
            point = point_at_pixel(PANNED, (h, w), row, col, 1.1)
            assert project_point(PANNED, (h, w), point) == (pytest.approx(row, abs=1e-9), pytest.approx(col, abs=1e-9))


def sphere_frame(pose, radius=0.22, mode="depth"):
    """A rendered analytic sphere. The far end is opaque (the default, as most models): rays that miss
    the sphere end at ray_end with opacity 1, and must still read as background."""
    # dense (activated density about 1000: a mean free path of 0.001), so the expected depth is the surface's
    field = RadialField(sphere(radius=radius, edge=0.0005, rise=1020.0))
    opts = RenderOptions(num_steps=128, ray_start=pose.radius - 0.4, ray_end=pose.radius + 0.4)
    out = render(field, pose.to_camera(), RES, opts)
    depth, opacity = frame_geometry(out, RES)
    return synthetic_frame(depth, opacity, mode=mode, pose=pose, stats={"ray_interval": [opts.ray_start, opts.ray_end]})


def test_the_readout_lies_on_a_rendered_sphere_and_reprojects_to_its_pixel():
    radius = 0.22
    frame = sphere_frame(PANNED, radius)
    _, dirs = PANNED.to_camera(dtype=torch.float64).rays(RES)
    origin = np.array(PANNED.origin())
    hits = 0
    for row in range(0, RES, 3):
        for col in range(0, RES, 3):
            readout = readout_at(frame, row, col)
            d = dirs[0, row * RES + col].numpy()
            # the ray passes the sphere's centre (0) at `closest`; it meets the sphere where |o + t d| = radius
            b = float(origin @ d)
            closest = math.sqrt(max(float(origin @ origin) - b * b, 0.0))
            if closest > radius + 0.01:                  # a clear miss: background (the far end is opaque)
                assert readout.text.startswith("background") and readout.point is None
                continue
            if closest > radius - 0.03:
                continue     # grazing the silhouette: the pixel mixes the sphere and the far end behind it
            t = -b - math.sqrt(radius * radius - closest * closest)
            hits += 1
            # 0.01: the sphere's soft edge (density 1 is reached about 0.002 outside the radius), its mean
            # free path (0.001) and the samples' error
            assert readout.depth == pytest.approx(t, abs=0.01)
            assert np.linalg.norm(readout.point) == pytest.approx(radius, abs=0.01)
            assert project_point(PANNED, (RES, RES), readout.point) == (pytest.approx(row, abs=1e-6),
                                                                         pytest.approx(col, abs=1e-6))
            assert readout.text.startswith(f"depth {readout.depth:.3f}  point (")
    assert hits > 50
    misses = [(r, c) for r in range(RES) for c in range(RES)
              if readout_at(frame, r, c).text == "background (far end)"]
    assert len(misses) > 500 and all(frame.opacity[r, c] > 0.99 for r, c in misses)   # the far end is opaque
    low, high, _ = geometry_range(frame, "depth", DisplayValues())
    # normalise spans the sphere's near and far visible points, not the far end at ray_end
    assert PANNED.radius - radius - 0.01 < low < high < PANNED.radius + 0.01 < frame.stats["ray_interval"][1]


def test_the_readout_of_a_grid_uses_the_cells_own_pixel():
    single = sphere_frame(PANNED)
    gap = 4
    depth = np.full((RES, 2 * RES + gap), np.inf, np.float32)
    opacity = np.zeros_like(depth)
    for x in (0, RES + gap):
        depth[:, x:x + RES], opacity[:, x:x + RES] = single.depth, single.opacity
    interval = single.stats["ray_interval"]
    cells = [{"label": "seed 0", "box": [0, 0, RES, RES], "ray_interval": interval},
             {"label": "seed 1", "box": [RES + gap, 0, RES, RES], "ray_interval": interval}]
    grid = synthetic_frame(depth, opacity, pose=PANNED, stats={"cells": cells})      # each cell says its interval
    row, col = RES // 2, RES // 2
    alone = readout_at(single, row, col)
    second = readout_at(grid, row, RES + gap + col)
    assert alone.point is not None and second.cell == "seed 1"
    assert second.point == pytest.approx(alone.point, abs=1e-9)
    assert second.text == "seed 1: " + alone.text
    assert readout_at(grid, row, RES + 1).text == "between cells"
    assert readout_at(grid, 0, RES + gap).text == "seed 1: background (far end)"     # a corner: the opaque far end
    # normalise over the grid: the cells' object, not their far ends nor the gap
    assert geometry_range(grid, "depth", DisplayValues()) == geometry_range(single, "depth", DisplayValues())
    rgba, _ = coloured(grid, DisplayValues())
    assert np.all(rgba[:, RES:RES + gap, :3] == 0)                   # the gap is black, not NaN


# -- the scene's frames ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("display") / "tiny.ckpt"
    cfg = tiny_config(**{"model.camera.fov": 30.0})
    save_checkpoint(path, cfg, Generator(cfg.model))
    return str(path)


def test_scene_frames_carry_their_geometry_and_gray_depth_is_the_rendered_picture(tiny_ckpt):
    scene = Scene(device="cpu", use_preview_module=False)
    scene.partial_after_s = scene.partial_every_s = 0.0          # every step of the refinement is shown
    partials = []
    request = RenderRequest(tiny_ckpt, seed=1, pose=Pose(yaw=0.2, pitch=1.4, radius=1.0, fov=30.0), resolution=128,
                            mode="depth")
    frame = scene.render(request, partial=partials.append)
    assert frame.ok and partials
    for f in partials + [frame]:
        assert f.depth.shape == f.opacity.shape == (128, 128) and f.depth.dtype == np.float32
        near, far = f.stats["ray_interval"]
        # what `trigan render` draws (core.views.picture) is the gray map over the ray interval
        rgba, _ = coloured(f, DisplayValues(normalize=False))
        np.testing.assert_allclose(rgba[..., :3], f.image[..., :3], atol=1e-5)
    preview = scene.render(RenderRequest(tiny_ckpt, seed=1, pose=request.pose, resolution=128, mode="opacity",
                                         quality="preview"))
    assert preview.path_used == PATH_PREVIEW_FALLBACK and preview.stats["rendered_resolution"] == 64
    assert preview.opacity.shape == (128, 128)                  # upsampled like the image
    np.testing.assert_allclose(preview.image[..., 0], preview.opacity.clip(0, 1), atol=1e-5)


# -- the view and the Render panel's display controls (DearPyGui, no window shown) ----------------------
@pytest.fixture
def view_and_panel(tmp_path):
    class Fake(FakeViewer):
        """The panels' fake, with the display values kept by a real ImageView."""

        @property
        def display(self):
            return self.image.display

        def set_display(self, **values):
            self.image.set_display(**values)

    dpg.create_context()
    dpg.create_viewport(width=800, height=600)     # configured, never shown: no display needed
    try:
        fake = Fake(tmp_path)
        fake.image = ImageView(fake, fake)
        fake.image.build(pos=(0, 0), size=(600, 600), window_id=dpg.generate_uuid())
        fake._view = fake._view.__class__(**{**fake._view.__dict__, "mode": "depth"})
        with dpg.window():
            panel = RenderPanel(fake, fake)
            panel.build()
        yield fake.image, panel, dpg
    finally:
        dpg.destroy_context()


def test_the_view_recolours_the_frame_on_screen_when_the_display_changes(view_and_panel):
    image, _, _ = view_and_panel
    frame = ramp_frame()
    image.show_frame(frame)
    want, legend = coloured(frame, DisplayValues())
    np.testing.assert_allclose(image.texture_pixels(), want, atol=1e-7)
    assert image.panel_state()["legend"] == legend.as_dict()
    image.set_display(colormap="turbo")                       # no new frame: the same one, other colours
    want, _ = coloured(frame, DisplayValues(colormap="turbo"))
    np.testing.assert_allclose(image.texture_pixels(), want, atol=1e-7)
    with pytest.raises(TriganError, match="colormap 'jet'"):
        image.set_display(colormap="jet")
    assert image.display.colormap == "turbo"
    image.set_display(normalize=False)                        # off: the range on screen stays, now editable
    assert (image.display.range_min, image.display.range_max) == (legend.low, legend.high)
    image.show_frame(synthetic_frame(frame.depth, frame.opacity, mode="rgb"))
    assert image.panel_state()["legend"] is None              # rgb: as rendered, no legend


def test_compare_cell_labels_are_drawn_at_each_cells_top_left(view_and_panel):
    image, _, _ = view_and_panel
    size, gap = 128, 4
    picture = np.full((size, 2 * size + gap, 4), 0.8, np.float32)
    cells = [{"label": "seed 3", "box": [0, 0, size, size]}, {"label": "psi 0.5", "box": [size + gap, 0, size, size]}]
    request = RenderRequest("model", resolution=size, mode="rgb")
    image.show_frame(Frame(request, picture, 1.0, "test", None, {"cells": cells}))
    shown = image.texture_pixels()
    assert image.panel_state()["labels"] == ["seed 3", "psi 0.5"]
    for x in (0, size + gap):
        corner = shown[:12, x:x + 40, :3]
        assert (corner < 0.5).mean() > 0.3 and (corner > 0.9).any()     # a dark backdrop with white text
    np.testing.assert_array_equal(shown[40:, :, :], picture[40:, :, :])   # the rest is the picture as it is


def test_the_render_panel_types_a_range_and_refuses_min_above_max(view_and_panel):
    image, panel, dpg = view_and_panel
    image.show_frame(ramp_frame())
    assert dpg.is_item_shown(render_panel.DISPLAY_GROUP)
    assert not dpg.is_item_shown(render_panel.RANGE_GROUP)              # normalise on: the range is the frame's
    dpg.set_value(render_panel.NORMALIZE, False)
    call_item_callback(render_panel.NORMALIZE, False)
    assert image.display.normalize is False and image.display.range_min == pytest.approx(0.9)
    assert dpg.is_item_shown(render_panel.RANGE_GROUP) and dpg.get_value(render_panel.RANGE_MIN) == pytest.approx(0.9)
    dpg.set_value(render_panel.RANGE_MIN, 1.2)
    dpg.set_value(render_panel.RANGE_MAX, 1.0)
    call_item_callback(render_panel.RANGE_MAX, 1.0)
    assert dpg.get_value(render_panel.DISPLAY_MESSAGE) == "depth range 1.2..1: expected min < max"
    assert image.display.range_min == pytest.approx(0.9)           # nothing changed
    dpg.set_value(render_panel.RANGE_MIN, 0.95)
    call_item_callback(render_panel.RANGE_MIN, 0.95)
    assert dpg.get_value(render_panel.DISPLAY_MESSAGE) == ""
    assert image.panel_state()["legend"]["min"] == 0.95 and image.panel_state()["legend"]["max"] == 1.0
    s = ViewerSettings()
    panel.store_settings(s)
    assert DisplayValues.from_dict(s.panels["display"]) == image.display
