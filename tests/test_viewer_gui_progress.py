"""GUI tests of the viewer's waits (issue 30): a sign of life from the first frame and a first image
soon after, exact frames that refine in steps with their progress and time left in the info line,
a real drag that cancels a refinement at once, and the class named in the status bar.

Real X input (xdotool) on a private Xvfb; the state file says what the window shows. Nothing here
asserts a wall-clock time (the machine is shared): times are printed (-s) for the record.
"""

from __future__ import annotations

import re
import time

import pytest

from gui_harness import START_TIMEOUT, Viewer, crop, image_center, screen_fixture, write_settings

pytestmark = pytest.mark.gui

PROGRESS = re.compile(r"^exact (\d+)\^2: (\d+) %")


xserver = screen_fixture((1600, 1000))


def sample_until(viewer, predicate, timeout, what, every=0.1):
    """Every state until (and including) the first that satisfies predicate."""
    seen = []
    deadline = time.time() + timeout
    while True:
        s = viewer.state()
        if s:
            seen.append(s)
            if predicate(s):
                return seen
        if time.time() > deadline:
            last = {k: seen[-1].get(k) for k in ("frame", "frame_partial", "progress", "info_line")} if seen else {}
            raise AssertionError(f"timed out waiting for {what}; last: {last}")
        time.sleep(every)


def is_exact_of_view(s) -> bool:
    f, o = s.get("frame"), s.get("orbit")
    return bool(f and o and f["quality"] == "exact" and not s["worker_busy"] and abs(f["yaw"] - o["yaw"]) < 1e-9)


def refining(s, resolution) -> bool:
    """An exact frame of `resolution` is being refined on screen, its progress in the info line."""
    p = s.get("frame_partial")
    m = PROGRESS.match(s.get("info_line") or "")
    return bool(p and p["quality"] == "refining" and p["request_quality"] == "exact"
                and p["resolution"] == resolution and m and int(m.group(1)) == resolution)


def test_the_view_shows_a_sign_of_life_at_once_and_a_first_image_soon(xserver, tmp_path):
    viewer = Viewer(xserver, tmp_path)
    try:
        t0 = time.time()
        first = sample_until(viewer, lambda s: True, START_TIMEOUT, "the window", every=0.05)[-1]
        t_window = time.time()
        shot = viewer.screenshot(tmp_path / "start.png")
        states = [first] + sample_until(viewer, lambda s: s.get("frame") or s.get("frame_partial"),
                                        START_TIMEOUT, "the first image", every=0.05)
        t_image = time.time()
        # a person sees a sign of life on the first frame: the strip of the View above the image holds
        # text, not an empty grey
        x, y, _, _, _ = viewer.rect_of("view_overlay")          # the info line's row (not the title bar)
        strip = crop(shot, (x, y, 300, 14))
        assert (strip.max(axis=2) > 150).sum() > 30, "no text in the View at start"
        # ... and until the first image the info line says what is going on
        before = [s for s in states if not (s.get("frame") or s.get("frame_partial"))]
        lines = [s.get("info_line") for s in before]
        assert before and all(lines), lines
        assert lines[0].startswith("loading demo.ckpt") and all(line.endswith("...") for line in lines), lines
        # the first image is a picture, not a flat square
        s = viewer.wait_for(lambda s: s.get("frame") or s.get("frame_partial"), 30, "the image")
        time.sleep(0.3)
        image = crop(viewer.screenshot(tmp_path / "first.png"), s["image_rect"])
        assert image.std() > 10, f"the first image is flat (std {image.std():.1f})"
        print(f"\nstart: window after {t_window - t0:.1f} s of polling, first image {t_image - t_window:.1f} s "
              f"after the window ({(states[-1].get('frame') or states[-1].get('frame_partial'))['path_used']}); "
              f"info lines: {sorted(set(lines))}")
    finally:
        viewer.close()


def test_exact_frames_refine_in_steps_with_progress_before_the_exact_frame(xserver, tmp_path):
    write_settings(tmp_path, resolution=512, sample_multiplier=2.0)
    viewer = Viewer(xserver, tmp_path)
    try:
        states = sample_until(viewer, is_exact_of_view, START_TIMEOUT * 2, "the first exact frame")
        yaw = states[-1]["frame"]["yaw"]
        steps = [s for s in states if refining(s, 512) and abs(s["frame_partial"]["yaw"] - yaw) < 1e-9]
        assert steps, "no partial frame of the exact render was on screen before the exact frame"
        assert all(s.get("frame") is None or s["frame"]["quality"] != "exact" for s in steps)
        percents = [int(PROGRESS.match(s["info_line"]).group(2)) for s in steps]
        assert percents == sorted(percents) and all(0 <= p < 100 for p in percents), percents
        assert any("left" in s["info_line"] for s in steps), [s["info_line"] for s in steps]
        refined = [s["frame_partial"]["refined"] for s in steps]
        assert refined == sorted(refined) and refined[-1] < 1
        final = states[-1]
        assert final["frame_partial"] is None and not PROGRESS.match(final["info_line"] or "")
        print(f"\n512^2 x2 exact: {final['frame']['ms']:.0f} ms; {len(steps)} samples while refining, "
              f"progress {percents[0]}..{percents[-1]} %; e.g. {steps[len(steps) // 2]['info_line']!r}")
    finally:
        viewer.close()


def test_a_real_drag_cancels_the_refinement_at_once(xserver, tmp_path):
    write_settings(tmp_path, resolution=1024, sample_multiplier=2.0)
    viewer = Viewer(xserver, tmp_path)
    try:
        s = sample_until(viewer, lambda s: refining(s, 1024), START_TIMEOUT * 2, "a 1024^2 refinement")[-1]
        old_yaw = s["orbit"]["yaw"]
        assert abs(s["frame_partial"]["yaw"] - old_yaw) < 1e-9
        cx, cy = image_center(s)
        t0 = time.time()
        viewer.drag((cx, cy), (120, 0))
        after = sample_until(
            viewer, lambda s: s.get("frame") and s["frame"]["quality"] == "preview"
            and abs(s["frame"]["yaw"] - s["orbit"]["yaw"]) < 1e-9 and abs(s["orbit"]["yaw"] - old_yaw) > 0.1,
            START_TIMEOUT, "a preview of the new camera")
        waited = time.time() - t0
        new_yaw = after[-1]["orbit"]["yaw"]
        # the refinement of the old camera never finished: no exact frame of it came after the drag
        assert not any(s.get("frame") and s["frame"]["quality"] == "exact" and abs(s["frame"]["yaw"] - old_yaw) < 1e-9
                       for s in after)
        # ... and it is not what the worker is busy with: it refines the new camera
        s = sample_until(viewer, lambda s: (s.get("progress") or {}).get("quality") == "exact"
                         and abs(s["progress"]["yaw"] - new_yaw) < 1e-9, START_TIMEOUT, "the new camera's refinement")[-1]
        assert abs(s["progress"]["yaw"] - old_yaw) > 0.1
        print(f"\ndrag during a 1024^2 x2 refinement: preview of the new camera {waited:.1f} s after the drag began "
              f"(the drag itself takes about 1.5 s)")
    finally:
        viewer.close()


def test_the_status_bar_names_the_class(xserver, tmp_path):
    viewer = Viewer(xserver, tmp_path)
    try:
        s = viewer.settled()
        names = s["model"]["class_names"]
        assert names[:2] == ["mushroom", "table"], names
        assert "class mushroom" in s["status_line"] and "class 0" not in s["status_line"]
        # pick "table" in the class combo with the mouse: open it, click its second entry (the list
        # opens below the combo, one entry every 17-18 px: measured on a screenshot)
        x, y, w, h, _ = viewer.rect_of("latent_class")
        viewer.move(x + w // 2, y + h // 2)
        time.sleep(0.2)
        viewer.xdotool("click", 1)
        time.sleep(0.8)
        viewer.move(x + 20, y + h // 2 + 24 + 18)
        time.sleep(0.2)
        viewer.xdotool("click", 1)
        s = viewer.wait_for(lambda s: s["view"]["class_index"] == 1, 30, "class 1 chosen")
        s = viewer.wait_for(lambda s: "class table" in (s.get("status_line") or ""), 30, "the status bar naming it")
        shot = viewer.screenshot(tmp_path / "status.png")
        vw, vh = s["viewport"]
        bar = crop(shot, (0, vh - 34, vw, 34))
        assert (bar.max(axis=2) > 150).sum() > 100       # the bar is drawn (its text read from the state)
        assert "class 1" not in s["status_line"]
    finally:
        viewer.close()
