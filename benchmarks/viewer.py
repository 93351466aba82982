"""The viewer's first minutes, measured as a person meets them: a real `trigan view` window on a
private Xvfb screen (1280x800), driven with real X input (xdotool), on a quiet machine and under
load (busy-loop processes at nice 0 next to it).

For each load level it prints and returns (JSON with --json):
- `window_s`: process start to the first drawn window frame;
- `first_image_after_window_s` / `first_exact_after_window_s`: from that frame to the first picture of
  any kind (target: 3 s on a quiet machine) and to the first exact frame (the viewer's own clock);
- `drag_preview_fps_256` / `drag_gui_ms_256`: frames/s received from the renderer while the mouse keeps
  dragging at 256^2, and the GUI's mean frame time then;
- `exact_s_256`: one exact frame at 256^2 after a camera move;
- `idle_cpu_percent` / `idle_frames_per_s`: CPU of the viewer process while nothing happens, over 10 s;
- `stop_to_stopped_s`: from a real click on the Training panel's Stop to the run's phase "stopped"
  (a demo-preset run on a synthetic dataset, started from the panel; --no-training skips it).

    python benchmarks/viewer.py                    # quiet, then 2 busy loops
    python benchmarks/viewer.py --loads 0 4 --json viewer.json

Needs Xvfb, xdotool and ImageMagick (as the GUI tests do) and the tests' GUI harness.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))             # the GUI tests' harness: Xvfb, viewer process, X input
from gui_harness import Viewer, image_center, running_xserver, write_settings

SCREEN = (1280, 800)


@contextmanager
def busy_loops(count: int):
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def drag_for(v: Viewer, seconds: float, start) -> None:
    x0, y0 = start
    v.move(x0, y0)
    time.sleep(0.2)
    v.xdotool("mousedown", 1)
    end, i = time.time() + seconds, 0
    while time.time() < end:
        i += 1
        v.move(x0 + (i % 40) * 3, y0)
        time.sleep(0.05)
    v.xdotool("mouseup", 1)


def first_frames(v: Viewer, window_at: float) -> dict:
    """Seconds from the window to the first picture and the first exact frame: the viewer's own
    clock (state "startup"), or, for a viewer without it (a baseline), this process's polling of
    the state file (+-0.2 s: the file is rewritten five times a second)."""
    seen = {}
    def done(s):
        now = time.monotonic()
        if s.get("frame") is not None:
            seen.setdefault("image", now)
            if s["frame"]["quality"] == "exact":
                seen.setdefault("exact", now)
        start = s.get("startup") or {}
        return start.get("first_exact_s") is not None or "exact" in seen
    s = v.wait_for(done, 600, "the first exact frame")
    start = s.get("startup")
    if start and start.get("first_exact_s") is not None:
        return {"first_image_after_window_s": start["first_image_s"] - start["window_s"],
                "first_exact_after_window_s": start["first_exact_s"] - start["window_s"]}
    return {"first_image_after_window_s": seen["image"] - window_at,
            "first_exact_after_window_s": seen["exact"] - window_at}


def measure_start_drag_idle(display: str, folder: Path) -> dict:
    write_settings(folder, resolution=256, runs_folder=str(folder / "runs"),
                   last_export_folder=str(folder / "exports"))
    t0 = time.monotonic()
    v = Viewer(display, folder)
    out = {}
    try:
        s = v.wait_for(lambda s: s.get("frames", 0) > 0, 300, "the window")
        out["window_s"] = time.monotonic() - t0
        out.update(first_frames(v, out["window_s"] + t0))
        s = v.settled()
        drag_for(v, 8.0, image_center(s))
        t = v.state()["timing"]
        out["drag_preview_fps_256"], out["drag_gui_ms_256"] = t["preview_fps"], t["gui_ms"]
        t1 = time.monotonic()
        v.settled(600)
        out["exact_s_256"] = time.monotonic() - t1
        v.move(3, 3)
        time.sleep(3.0)
        f0, c0, w0 = v.state()["frames"], cpu_seconds(v.proc.pid), time.monotonic()
        time.sleep(10.0)
        f1, c1, w1 = v.state()["frames"], cpu_seconds(v.proc.pid), time.monotonic()
        out["idle_cpu_percent"] = 100.0 * (c1 - c0) / (w1 - w0)
        out["idle_frames_per_s"] = (f1 - f0) / (w1 - w0)
    finally:
        v.close()
    return out


def measure_stop(display: str, folder: Path) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "shapes.zip"
    subprocess.run([sys.executable, "-m", "trigan.cli.main", "dataset", "synth", str(data), "--num", "200",
                    "--resolution", "32"], check=True, capture_output=True)
    write_settings(folder, resolution=64, runs_folder=str(folder / "runs"))
    v = Viewer(display, folder)
    try:
        v.wait_for(lambda s: s.get("model") is not None, 300, "the model")
        v.send(tab="tab_training")
        v.set("train_data", str(data))
        v.set("train_preset", "demo")
        v.set("train_kimg", 1000)
        v.click_item("train_start_button")
        s = v.wait_for(lambda s: any(r["alive"] and (r["kimg"] or 0) > 0 for r in s["training"]["runs"]), 900,
                       "the run to train")
        run = next(r for r in s["training"]["runs"] if r["alive"])
        time.sleep(5.0)
        v.click_item("train_stop_button")
        t0 = time.monotonic()
        v.wait_for(lambda s: any(r["path"] == run["path"] and r["phase"] == "stopped" and not r["alive"]
                                 for r in s["training"]["runs"]), 900, "the run to stop")
        return {"stop_to_stopped_s": time.monotonic() - t0}
    finally:
        v.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loads", type=int, nargs="+", default=[0, 2],
                        help="busy-loop processes next to the viewer, one measurement each (default 0 2)")
    parser.add_argument("--no-training", action="store_true", help="skip the Stop-to-stopped measurement")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--screen", type=int, nargs=2, default=SCREEN, metavar=("W", "H"),
                        help="the Xvfb screen (default 1280 800; a baseline whose window does not fit needs more)")
    args = parser.parse_args(argv)
    results = {"cpus": os.cpu_count(), "screen": list(args.screen), "loads": {}}
    with running_xserver(tuple(args.screen)) as display:
        for load in args.loads:
            with busy_loops(load), tempfile.TemporaryDirectory(prefix="trigan-viewer-bench-") as tmp:
                row = measure_start_drag_idle(display, Path(tmp) / "view")
                print(f"busy loops {load}: " + ", ".join(f"{k} {v:.2f}" for k, v in row.items()), flush=True)
                if not args.no_training:
                    row.update(measure_stop(display, Path(tmp) / "train"))
                row["load_average"] = os.getloadavg()[0]
            results["loads"][str(load)] = row
            print(f"busy loops {load}: " + ", ".join(f"{k} {v:.2f}" for k, v in row.items()), flush=True)
    print(json.dumps(results, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
