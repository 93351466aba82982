"""Reading geometry in a real viewer window with real X input (xdotool): depth chosen in the Render
panel and coloured with viridis, picked with the mouse; the legend's min/max equal the depth range of
the frame on screen (rendered again here, in this process, from the same request: exact renders are
deterministic); the readout under the pointer lies on the object and reprojects to the pointer's
pixel; normalise off keeps the range, a typed min/max applies and min above max is refused in one
red line; invert swaps the legend; the choices survive a restart (settings).

Issue 34 ("Read geometry"). The window is 1280x800. Run only these:
`python -m pytest -m gui tests/test_viewer_gui_geometry.py`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from gui_harness import DEMO, START_TIMEOUT, Viewer, screen_fixture, type_number, value_of, values_of, write_settings_at
from trigan.core.cameras import Pose
from trigan.core.colormaps import apply_colormap
from trigan.viewer.render_request import RenderRequest
from trigan.viewer.scene import Scene

SCREEN = (1280, 800)
RESOLUTION = 128
FRAME_TIMEOUT = 240.0
SHOTS = Path(os.environ.get("TRIGAN_GUI_SHOTS", "/tmp/trigan-gui-geometry"))  # screenshots to look at

xserver = screen_fixture(SCREEN)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("viewer_geometry")
    write_settings_at(folder, SCREEN, resolution=RESOLUTION, seed=0, last_export_folder=str(folder / "exports"),
                      runs_folder=str(folder / "runs"))
    return folder


@pytest.fixture(scope="module")
def viewer(xserver, folder):
    v = Viewer(xserver, folder, model=DEMO)
    try:
        v.wait_for(lambda s: s.get("model") is not None, START_TIMEOUT, "the demo model to load")
        v.settled()
        yield v
    finally:
        if v.proc.poll() is None:
            code = v.close()
            assert code == 0, v.log_text()[-3000:]


# -- real input ------------------------------------------------------------------------------------------
def scroll_controls_to(v: Viewer, tag: str) -> None:
    """Turn the wheel over the Controls window until `tag` is inside it (the Render panel is below
    the fold at 800 px)."""
    cx, cy, cw, ch, _ = v.rect_of("controls_window")
    for _ in range(12):
        v.send(watch=[tag])
        rect = v.wait_for(lambda s: (s.get("items") or {}).get(tag) is not None, 30, tag)["items"][tag]
        if rect[4] and cy + 20 < rect[1] and rect[1] + rect[3] < cy + ch - 100:     # room for a combo's list below
            return
        v.move(cx + cw // 2, cy + ch // 2)
        time.sleep(0.2)
        v.xdotool("click", "--repeat", 3, "--delay", 60, 5 if rect[1] > cy + 20 else 4)
        time.sleep(0.6)
    raise AssertionError(f"{tag} not scrolled into view")


def choose_in_combo(v: Viewer, tag: str, index: int, expected: str) -> None:
    """Open a combo with a click, click its entry `index` (the list opens under the combo, one entry
    every h - 2 px, the first 14 px below: test_viewer_gui_inputs measured it)."""
    for _ in range(3):
        x, y, w, h, _ = v.rect_of(tag)
        v.move(x + w // 3, y + h // 2)
        time.sleep(0.3)
        v.xdotool("click", 1)
        time.sleep(1.0)
        v.move(x + w // 3, y + h + 14 + index * (h - 2))
        time.sleep(0.3)
        v.xdotool("click", 1)
        time.sleep(0.5)
        if value_of(v, tag) == expected:
            return
    raise AssertionError(f"{tag} holds {value_of(v, tag)!r}, not {expected!r}")


def click_checkbox(v: Viewer, tag: str, expected: bool) -> None:
    x, y, w, h, _ = v.rect_of(tag)
    v.move(x + 9, y + h // 2)                 # the box is at the left of the checkbox's rectangle
    time.sleep(0.2)
    v.xdotool("click", 1)
    time.sleep(0.5)
    assert value_of(v, tag) is expected


def display_state(s) -> dict:
    return (s.get("panels") or {}).get("display") or {}


def frame_is(mode: str):
    def done(s):
        f, o = s.get("frame"), s.get("orbit")
        return (f and o and f["mode"] == mode and f["quality"] == "exact" and not s["worker_busy"]
                and abs(f["yaw"] - o["yaw"]) < 1e-9)
    return done


# -- the independent answer ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rendered_here():
    """The frame of a request rendered in this process (CPU, as the viewer under test renders)."""
    scene = Scene(device="cpu", use_preview_module=False)
    cache = {}

    def frame(s):
        o = s["orbit"]
        pose = Pose(yaw=o["yaw"], pitch=o["pitch"], radius=o["radius"], fov=o["fov"], look_at=o["look_at"],
                    pivot=o["pivot"])
        v = s["view"]
        request = RenderRequest(str(DEMO), seed=v["seed"], class_index=v["class_index"], psi=v["psi"],
                                noise_mode=v["noise_mode"], pose=pose, resolution=RESOLUTION, mode="depth",
                                quality="exact", sample_multiplier=v["sample_multiplier"], background=v["background"])
        if request not in cache:
            cache[request] = scene.render(request)
            assert cache[request].ok, cache[request].error
        return cache[request]
    return frame


def object_depth_range(frame):
    """The depth range normalise promises, computed here from the raw maps: pixels at least half
    opaque, short of the far end (within 5% of the ray interval of ray_end), not on the silhouette
    (their four neighbours qualify too)."""
    near, far = frame.stats["ray_interval"]
    dist = frame.depth / np.maximum(frame.opacity, 1e-4)
    mask = (frame.opacity >= 0.5) & (dist < far - 0.05 * (far - near))
    inner = np.zeros_like(mask)
    inner[1:-1, 1:-1] = mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
    return float(dist[inner].min()), float(dist[inner].max())


def pixel_of_point(pose: Pose, point, res: int):
    """(row, col) where the camera sees `point`: pinhole projection with the camera's frame (corner-
    aligned pixel centres, as core.cameras documents)."""
    right, up, forward = (np.array(v) for v in pose.frame())
    d = np.array(point) - np.array(pose.origin())
    focal = 1.0 / math.tan(math.radians(pose.fov) / 2)
    x, y = focal * (d @ right) / (d @ forward), focal * (d @ up) / (d @ forward)
    return (1 - y) * (res - 1) / 2, (x + 1) * (res - 1) / 2


def bar_end_colours(v: Viewer, tmp_path: Path, name: str):
    """The legend bar's leftmost and rightmost colours on screen."""
    x, y, w, h, shown = v.rect_of("display_legend_bar")
    assert shown
    shot = v.screenshot(tmp_path / name)
    row = shot[y + h // 2]
    return row[x + 2], row[x + w - 3], shot


# -- the tests ------------------------------------------------------------------------------------------------
@pytest.mark.gui
def test_depth_in_viridis_chosen_with_the_mouse_and_the_legend_spans_the_frames_depth(viewer, rendered_here, tmp_path):
    scroll_controls_to(viewer, "render_mode")
    choose_in_combo(viewer, "render_mode", 1, "depth")                 # rgb, depth, normals, opacity
    s = viewer.wait_for(frame_is("depth"), FRAME_TIMEOUT, "the exact depth frame")
    s = viewer.wait_for(lambda s: display_state(s).get("legend"), 30, "the legend")
    choose_in_combo(viewer, "display_colormap", 1, "viridis")          # gray, viridis, turbo
    s = viewer.wait_for(lambda s: (display_state(s).get("legend") or {}).get("colormap") == "viridis", 30,
                        "the viridis legend")
    legend = display_state(s)["legend"]
    assert legend["source"] == "frame" and legend["quantity"] == "depth"
    low, high = object_depth_range(rendered_here(s))
    # the same request rendered twice on one device: equal up to float32 printing
    assert legend["min"] == pytest.approx(low, abs=1e-5) and legend["max"] == pytest.approx(high, abs=1e-5)
    assert low < high
    # what a person sees: the bar runs from near (viridis' yellow end) to far (its purple end), and the
    # numbers under its ends are the range's
    left, right, shot = bar_end_colours(viewer, tmp_path, "viridis.png")
    np.testing.assert_allclose(left, apply_colormap(np.array(1.0), "viridis") * 255, atol=12)
    np.testing.assert_allclose(right, apply_colormap(np.array(0.0), "viridis") * 255, atol=12)
    texts = values_of(viewer, "display_legend_min", "display_legend_max")
    assert float(texts["display_legend_min"]["value"]) == pytest.approx(low, abs=6e-4)
    assert float(texts["display_legend_max"]["value"]) == pytest.approx(high, abs=6e-4)
    SHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(tmp_path / "viridis.png", SHOTS / "C-depth-viridis-legend.png")


@pytest.mark.gui
def test_the_readout_under_the_pointer_lies_on_the_object_and_reprojects_to_its_pixel(viewer, rendered_here):
    s = viewer.wait_for(frame_is("depth"), FRAME_TIMEOUT, "the exact depth frame")
    frame = rendered_here(s)
    x, y, w, h = s["image_rect"]
    dist = frame.depth / np.maximum(frame.opacity, 1e-4)
    near, far = frame.stats["ray_interval"]
    on_object = (frame.opacity > 0.9) & (dist < far - 0.1 * (far - near))
    rows, cols = np.nonzero(on_object)
    pick = np.argmin((rows - RESOLUTION / 2) ** 2 + (cols - RESOLUTION / 2) ** 2)    # the object pixel nearest the centre
    row, col = int(rows[pick]), int(cols[pick])
    viewer.move(x + (col + 0.5) * w / RESOLUTION, y + (row + 0.5) * h / RESOLUTION)
    s = viewer.wait_for(lambda s: (display_state(s).get("readout") or {}).get("point"), 30, "a readout with a point")
    readout = display_state(s)["readout"]
    assert abs(readout["pixel"][0] - row) <= 1 and abs(readout["pixel"][1] - col) <= 1     # the pointer's pixel
    r, c = readout["pixel"]
    assert readout["depth"] == pytest.approx(float(dist[r, c]), abs=1e-5)
    o = s["orbit"]
    pose = Pose(yaw=o["yaw"], pitch=o["pitch"], radius=o["radius"], fov=o["fov"], look_at=o["look_at"], pivot=o["pivot"])
    assert pixel_of_point(pose, readout["point"], RESOLUTION) == (pytest.approx(r, abs=1e-6), pytest.approx(c, abs=1e-6))
    coordinates = ", ".join(f"{v:.3f}".replace("-0.000", "0.000") for v in readout["point"])
    assert readout["text"] == f"depth {readout['depth']:.3f}  point ({coordinates})"
    assert value_of(viewer, "display_readout") == readout["text"]             # the line under the image says it
    SHOTS.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(SHOTS / "C-depth-readout.png")                          # for the docs: legend and readout
    viewer.move(x + 2, y + 2)                                                 # a corner: nothing there
    s = viewer.wait_for(lambda s: (display_state(s).get("readout") or {}).get("text", "").startswith("background"),
                        30, "the background readout")
    assert display_state(s)["readout"]["point"] is None


@pytest.mark.gui
def test_a_typed_range_invert_and_a_restart(viewer, folder, tmp_path, xserver):
    s = viewer.wait_for(lambda s: display_state(s).get("legend"), 30, "the legend")
    shown = display_state(s)["legend"]
    scroll_controls_to(viewer, "display_normalize")
    click_checkbox(viewer, "display_normalize", False)       # off: the range on screen stays, now editable
    s = viewer.wait_for(lambda s: display_state(s)["legend"]["source"] == "typed", 30, "the kept range")
    assert (display_state(s)["legend"]["min"], display_state(s)["legend"]["max"]) == (shown["min"], shown["max"])
    assert value_of(viewer, "display_min") == pytest.approx(shown["min"], abs=1e-4)
    low, high = round(shown["min"] - 0.01, 3), round(shown["max"] + 0.02, 3)
    type_number(viewer, "display_max", high)
    type_number(viewer, "display_min", low)
    s = viewer.wait_for(lambda s: display_state(s)["legend"]["min"] == low, 30, "the typed range")
    assert display_state(s)["legend"]["max"] == high
    type_number(viewer, "display_min", high + 1)                # above max: refused in one line, nothing changes
    message = value_of(viewer, "display_message")
    assert message == f"depth range {high + 1:g}..{high:g}: expected min < max"
    assert display_state(viewer.state())["legend"]["min"] == low
    type_number(viewer, "display_min", low)
    assert value_of(viewer, "display_message") == ""
    click_checkbox(viewer, "display_invert", True)
    s = viewer.wait_for(lambda s: display_state(s)["legend"]["invert"], 30, "the inverted legend")
    left, right, _ = bar_end_colours(viewer, tmp_path, "inverted.png")
    np.testing.assert_allclose(left, apply_colormap(np.array(0.0), "viridis") * 255, atol=12)
    np.testing.assert_allclose(right, apply_colormap(np.array(1.0), "viridis") * 255, atol=12)
    want = {"colormap": "viridis", "normalize": False, "invert": True, "range_min": low, "range_max": high}
    assert display_state(s)["display"] == want
    assert viewer.close() == 0
    settings = json.loads(viewer.settings_path.read_text())
    assert settings["panels"]["display"] == want
    again = Viewer(xserver, folder, model=DEMO)
    try:
        s = again.wait_for(lambda s: s.get("model") is not None and display_state(s).get("display"), START_TIMEOUT,
                           "the viewer again")
        assert display_state(s)["display"] == want
        assert values_of(again, "display_colormap")["display_colormap"]["value"] == "viridis"
    finally:
        assert again.close() == 0
