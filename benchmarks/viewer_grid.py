"""The compare grid's frame rate while the camera is dragged: a real `trigan view` window on a
private Xvfb screen (1280x800), driven with real X input (xdotool), as a person uses it.

For the single view and then a 2x2 grid of seeds 0-3 (switched on in the Compare tab with real
clicks and key strokes), each at 256^2 per cell, it prints (and writes as JSON with --json):
- `drag_preview_fps`: preview frames/s the View received while the mouse kept dragging (the
  viewer's own count over its last 2 s, averaged over the drag after its first 2 s);
  `drag_frames_seen_per_s`: distinct preview frames seen in the state file (rewritten 5 times a
  second, so a lower bound);
- `drag_preview_ms`: their mean render time (a grid's: all four cells);
- `drag_gui_ms` / `drag_gui_ms_max`: the GUI's mean and worst frame time meanwhile (the window stays
  responsive while the worker renders);
- `exact_s`: the time from releasing the mouse to the exact frame (the grid's: four exact cells,
  after their previews).

    python benchmarks/viewer_grid.py
    python benchmarks/viewer_grid.py --drag-seconds 12 --json grid.json

Needs Xvfb, xdotool and ImageMagick (as the GUI tests do) and the tests' GUI harness.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))             # the GUI tests' harness: Xvfb, viewer process, X input
from gui_harness import Viewer, image_center, running_xserver, type_into, write_settings_at


def _viewer_benchmark():
    """benchmarks/viewer.py (its drag and busy-loop helpers), loaded by path: the name `viewer`
    would otherwise be ambiguous next to the package's viewer/."""
    spec = importlib.util.spec_from_file_location("viewer_benchmark", REPO / "benchmarks" / "viewer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BENCH = _viewer_benchmark()
SCREEN = (1280, 800)
RESOLUTION = 256
SEEDS = "0-3"
WINDOW_S = 2.0          # the status bar counts frames over the last 2 s (viewer/panels/status.py WINDOW_SECONDS)


def compare_state(s) -> dict:
    return (s.get("panels") or {}).get("compare") or {}


def settled(v: Viewer, grid: bool, timeout: float = 900.0) -> dict:
    def done(s):
        f, o = s.get("frame"), s.get("orbit")
        shown = compare_state(s).get("shown")
        return (f and o and not s["worker_busy"] and f["quality"] == "exact" and abs(f["yaw"] - o["yaw"]) < 1e-9
                and (shown is not None) == grid)
    return v.wait_for(done, timeout, "the exact " + ("grid" if grid else "view"))


def drag_and_count(v: Viewer, seconds: float, start) -> dict:
    """Drag for `seconds` (as benchmarks/viewer.py's drag_for does: 3 px steps every 50 ms), reading
    the state file at each step: the viewer's frame rate and GUI frame times, and the distinct
    preview frames shown (by their camera and render time)."""
    x0, y0 = start
    v.move(x0, y0)
    time.sleep(0.2)
    v.xdotool("mousedown", 1)
    seen, gui_ms, gui_max, ms, fps = set(), [], 0.0, [], []
    began = time.monotonic()
    end, i = began + seconds, 0
    try:
        while time.monotonic() < end:
            i += 1
            v.move(x0 + (i % 40) * 3, y0)
            s = v.state()
            f = s.get("frame")
            if f and f["quality"] == "preview" and (f["yaw"], f["ms"]) not in seen:
                seen.add((f["yaw"], f["ms"]))
                ms.append(f["ms"])
            t = s.get("timing") or {}
            if t:
                if time.monotonic() - began >= WINDOW_S:     # its window then lies inside the drag
                    fps.append(t["preview_fps"])
                gui_ms.append(t["gui_ms"])
                gui_max = max(gui_max, t["gui_ms_max"])
            time.sleep(0.05)
    finally:
        v.xdotool("mouseup", 1)
    span = time.monotonic() - began
    return {"drag_preview_fps": sum(fps) / len(fps) if fps else float("nan"),
            "drag_frames_seen_per_s": len(seen) / span, "drag_preview_ms": sum(ms) / len(ms) if ms else float("nan"),
            "drag_gui_ms": sum(gui_ms) / len(gui_ms) if gui_ms else float("nan"), "drag_gui_ms_max": gui_max}


def measure_drag(v: Viewer, grid: bool, seconds: float) -> dict:
    s = settled(v, grid)
    out = drag_and_count(v, seconds, image_center(s))
    released = time.monotonic()
    settled(v, grid)
    out["exact_s"] = time.monotonic() - released
    return out


def switch_grid_on(v: Viewer) -> None:
    v.click_item("tab_compare")
    v.wait_for(lambda s: s.get("tasks_tab") == "tab_compare", 30, "the Compare tab")
    type_into(v, "compare_values", SEEDS)
    v.wait_for(lambda s: compare_state(s).get("values") == SEEDS, 30, "the seeds typed")
    v.click_item("compare_enabled")
    v.wait_for(lambda s: compare_state(s).get("enabled"), 30, "the grid switched on")


def measure(display: str, folder: Path, seconds: float) -> dict:
    write_settings_at(folder, SCREEN, resolution=RESOLUTION, seed=0, runs_folder=str(folder / "runs"),
                      last_export_folder=str(folder / "exports"))
    v = Viewer(display, folder)
    try:
        v.wait_for(lambda s: s.get("model") is not None, 300, "the demo model")
        single = measure_drag(v, grid=False, seconds=seconds)
        switch_grid_on(v)
        grid = measure_drag(v, grid=True, seconds=seconds)
    finally:
        v.close()
    return {"single": single, "grid_2x2": grid}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--drag-seconds", type=float, default=8.0, help="how long the mouse drags (default 8)")
    parser.add_argument("--loads", type=int, nargs="+", default=[0],
                        help="busy-loop processes next to the viewer, one measurement each (default 0)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    results = {"cpus": os.cpu_count(), "screen": list(SCREEN), "resolution_per_cell": RESOLUTION, "loads": {}}
    with running_xserver(SCREEN) as display:
        for load in args.loads:
            with BENCH.busy_loops(load), tempfile.TemporaryDirectory(prefix="trigan-grid-bench-") as tmp:
                row = measure(display, Path(tmp), args.drag_seconds)
                row["load_average"] = os.getloadavg()[0]
            results["loads"][str(load)] = row
            for name in ("single", "grid_2x2"):
                print(f"busy loops {load}, {name}: " + ", ".join(f"{k} {v:.2f}" for k, v in row[name].items()),
                      flush=True)
    print(json.dumps(results, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
