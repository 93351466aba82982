"""Where the window opens and how the panels share it (viewer/window_geometry.py), without a display."""

from __future__ import annotations

import pytest

from trigan.viewer.window_geometry import (
    CONTROLS_WIDTH,
    DECORATION_ALLOWANCE,
    DEFAULT_SIZE,
    MIN_SIZE,
    MIN_VIEW_WIDTH,
    STATUS_HEIGHT,
    TASKS_WIDTH,
    Rect,
    fit_window,
    tile_panels,
)

LAPTOP = Rect(0, 0, 1280, 800)


def _inside_with_frame(area: Rect, r: Rect) -> bool:
    return area.contains(Rect(r.x, r.y, r.width + DECORATION_ALLOWANCE[0], r.height + DECORATION_ALLOWANCE[1]))


def test_a_fresh_window_fits_a_small_screen_and_is_centred():
    r = fit_window(LAPTOP)
    assert _inside_with_frame(LAPTOP, r)
    assert r.width == LAPTOP.width - DECORATION_ALLOWANCE[0] and r.height == LAPTOP.height - DECORATION_ALLOWANCE[1]
    assert r.x == 0 and r.y == 0                   # the frame fills the screen exactly


def test_a_large_screen_gets_the_default_size():
    area = Rect(0, 0, 2560, 1440)
    r = fit_window(area)
    assert (r.width, r.height) == DEFAULT_SIZE and _inside_with_frame(area, r)


def test_saved_geometry_is_kept_only_while_it_fits():
    assert fit_window(LAPTOP, (1000, 600), (50, 60)) == Rect(50, 60, 1000, 600)
    # Saved on a 1920x1200 monitor: too large and partly off this screen -> shrunk and centred.
    r = fit_window(LAPTOP, (1800, 1100), (40, 40))
    assert _inside_with_frame(LAPTOP, r)
    # The right size but off screen (a second monitor that is gone) -> moved back.
    r = fit_window(LAPTOP, (1000, 600), (1900, 50))
    assert _inside_with_frame(LAPTOP, r) and (r.width, r.height) == (1000, 600)


def test_work_area_offsets_are_respected():
    area = Rect(0, 28, 1280, 772)           # a top panel of 28 px
    r = fit_window(area)
    assert r.y >= 28 and _inside_with_frame(area, r)


def test_a_tiny_screen_still_gets_the_minimum_size():
    r = fit_window(Rect(0, 0, 640, 480))
    assert (r.width, r.height) == MIN_SIZE


def test_unknown_screen_uses_the_saved_or_default_geometry():
    assert fit_window(None) == Rect(40, 40, *DEFAULT_SIZE)
    assert fit_window(None, (1000, 700), (5, 6)) == Rect(5, 6, 1000, 700)


@pytest.mark.parametrize("size", [(1264, 752), (1400, 900), (800, 560), (2560, 1400), (1024, 700)])
def test_panels_tile_the_window_without_overlap(size):
    w, h = size
    tiles = tile_panels(w, h)
    c, v, t, s = (tiles[k] for k in ("controls_window", "view_window", "tasks_window", "status_window"))
    assert c.x == 0 and v.x == c.width and t.x == v.x + v.width     # side by side
    assert t.x + t.width == w                                        # the Tasks column ends at the edge
    assert c.height == v.height == t.height == h - STATUS_HEIGHT
    assert s == Rect(0, h - STATUS_HEIGHT, w, STATUS_HEIGHT)
    assert v.width >= min(320, w - 630)                              # the View keeps a usable width


@pytest.mark.parametrize("scale", [1.25, 1.5, 2.0, 2.5])
def test_a_larger_ui_scale_widens_the_side_columns_but_keeps_the_view_usable(scale):
    plain = tile_panels(1280, 800)
    scaled = tile_panels(1280, 800, scale=scale, status_height=60)
    for name in ("controls_window", "tasks_window"):
        assert scaled[name].width >= plain[name].width
    assert scaled["controls_window"].width + scaled["tasks_window"].width > (
        plain["controls_window"].width + plain["tasks_window"].width)
    # the View keeps its minimum while the side columns can give way to their unscaled minimums
    assert scaled["view_window"].width >= MIN_VIEW_WIDTH
    assert sum(scaled[n].width for n in ("controls_window", "view_window", "tasks_window")) == 1280
    assert scaled["status_window"].height == 60 and scaled["controls_window"].height == 740
    # on a wide screen the columns take their full scaled widths
    wide = tile_panels(3000, 1600, scale=scale)
    assert wide["controls_window"].width == round(CONTROLS_WIDTH * scale)
    assert wide["tasks_window"].width == round(TASKS_WIDTH * scale)
