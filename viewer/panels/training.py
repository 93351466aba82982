"""Training panel: make or pick a dataset, start a `trigan train` process, follow the runs of a runs
folder (phase, kimg, images/s, ETA, loss and metric plots, the newest sample grid), stop, resume,
and load a run's snapshot into the view.

A run is its own OS process, started detached (viewer.run_monitor.start_run), and the viewer follows
it only through files in its run directory, so closing the viewer never stops a run and reopening it
shows the run again. Those files are read by `RunPoller`, a background thread, once a second; the
GUI thread only copies the poller's latest snapshot into widgets.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import dearpygui.dearpygui as dpg
import numpy as np
from PIL import Image

from trigan.core.config import list_presets
from trigan.core.errors import TriganError
from trigan.viewer import run_monitor
from trigan.viewer.panels.common import BAD, GOOD, MUTED, JobList, hint, path_field
from trigan.viewer.run_monitor import METRIC_PREFIX, METRICS_FILE, STATS_FILE, StatsFollower

DATA, RUNS_FOLDER = "train_data", "train_runs_folder"
PRESET, GAMMA, BATCH, RES, KIMG = "train_preset", "train_gamma", "train_batch", "train_resolution", "train_kimg"
OVERRIDES, DESC = "train_overrides", "train_desc"
START, MESSAGE = "train_start_button", "train_message"
RUN_LIST, DETAILS = "train_runs", "train_details"
STOP, RESUME, LOAD_LATEST, LOAD_BEST = "train_stop_button", "train_resume_button", "train_load_latest", "train_load_best"
LOSS_PLOT, METRIC_PLOT = "train_loss_plot", "train_metric_plot"
LOSS_Y, METRIC_Y = "train_loss_y", "train_metric_y"
LOSS_X, METRIC_X = "train_loss_x", "train_metric_x"
SAMPLE_IMAGE, SAMPLE_TEXT = "train_sample", "train_sample_text"
SYNTH_OUT, SYNTH_NUM, SYNTH_RES, SYNTH_CLASSES = "synth_out", "synth_num", "synth_resolution", "synth_classes"
SYNTH_BUTTON = "synth_button"
REMEMBERED = (DATA, PRESET, GAMMA, BATCH, RES, KIMG, OVERRIDES, SYNTH_OUT, SYNTH_NUM, SYNTH_RES, SYNTH_CLASSES)
POLL_SECONDS = 1.0
MESSAGE_LINES, DETAILS_LINES = 3, 7    # room for a wrapped error; the details' five lines wrap to seven
SAMPLE_SIDE = 380                      # the sample grid is shown this wide (the Tasks panel's width)


def _lines(n: int) -> int:
    """Height in pixels of n lines of Dear ImGui's built-in 13-pixel font, plus the item spacing."""
    return 13 * n + 4


@dataclass
class RunsSnapshot:
    """What the poller read: every run of the folder, and the selected run's curves and sample."""

    folder: str
    runs: list = field(default_factory=list)                 # run_monitor.RunInfo
    selected: Optional[str] = None
    stats: Dict[str, List[Tuple[float, float]]] = field(default_factory=dict)
    sample_path: Optional[str] = None
    sample: Optional[np.ndarray] = None                      # RGBA float32, for a texture
    error: Optional[str] = None
    launched: Optional[str] = None                           # a run started from the panel appeared
    launch_error: Optional[str] = None                       # ... or its process ended with an error
    stamp: float = 0.0


def _load_sample(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        img = img.convert("RGBA")
        scale = min(1.0, SAMPLE_SIDE / max(img.size))
        if scale < 1.0:
            img = img.resize((max(1, int(img.width * scale)), max(1, int(img.height * scale))), Image.BILINEAR)
        return np.asarray(img, dtype=np.float32) / 255.0


class RunPoller:
    """Reads the runs folder in a daemon thread; `snapshot` is replaced whole, never mutated."""

    def __init__(self):
        self.folder: Optional[str] = None
        self.selected: Optional[str] = None
        self.snapshot: Optional[RunsSnapshot] = None
        self.launches: List = []              # Popen of `trigan train` started here, until placed
        self._followers = None
        self._wake = threading.Event()
        self._stop = False
        self._sample_key = None
        self._sample = None
        self._thread = threading.Thread(target=self._run, name="trigan-run-poller", daemon=True)
        self._thread.start()

    def watch(self, folder: Optional[str], selected: Optional[str]) -> None:
        if (folder, selected) != (self.folder, self.selected):
            self.folder, self.selected = folder, selected
            self._wake.set()

    def poke(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop = True
        self._wake.set()

    def _run(self) -> None:
        while not self._stop:
            folder, selected = self.folder, self.selected
            if folder:
                snap = RunsSnapshot(folder=folder, selected=selected, stamp=time.time())
                try:
                    self._follow_launches(snap)
                    selected = snap.selected
                    if os.path.isdir(folder):
                        snap.runs = run_monitor.list_runs(folder)
                    if selected and os.path.isdir(selected):
                        snap.stats = self._stats(selected)
                        sample = run_monitor.latest_sample(selected)
                        if sample is not None:
                            st = os.stat(sample)
                            key = (str(sample), st.st_mtime_ns)
                            if key != self._sample_key:
                                self._sample_key, self._sample = key, _load_sample(Path(sample))
                            snap.sample_path, snap.sample = str(sample), self._sample
                except Exception as exc:  # noqa: BLE001 - a half-written file now is fine a second later
                    snap.error = f"{type(exc).__name__}: {exc}"
                self.snapshot = snap
            self._wake.wait(POLL_SECONDS)
            self._wake.clear()

    def _stats(self, run: str):
        """read_stats, but incremental: only what was appended since the last poll is parsed."""
        if self._followers is None or self._followers[0] != run:
            self._followers = (run, StatsFollower(Path(run) / STATS_FILE),
                               StatsFollower(Path(run) / METRICS_FILE, METRIC_PREFIX))
        _, stats, metrics = self._followers
        out = {k: list(v) for k, v in stats.update().items()}
        out.update({k: list(v) for k, v in metrics.update().items()})
        return out

    def _follow_launches(self, snap: RunsSnapshot) -> None:
        """A started trainer prints its run directory to its log: select that run. One that exits
        with an error (bad dataset, bad override) leaves its last log line as the message."""
        for proc in list(self.launches):
            run = run_monitor.launched_run_dir(proc)
            code = proc.poll()
            if run is not None:
                self.launches.remove(proc)
                snap.selected = self.selected = str(run)
                snap.launched = str(run)
            elif code is not None:
                self.launches.remove(proc)
                tail = [line for line in run_monitor.log_tail(proc.log_path, 5) if line.strip()]
                snap.launch_error = f"trigan train exited ({code}): {tail[-1] if tail else 'no output'}"


TRAINER_NICE = 5


def _lower_priority(proc) -> None:
    """A trainer started from the viewer runs a little below it (nice +5), so that on a busy CPU the
    window stays smooth; it still takes every cycle the viewer leaves. Done right after the start,
    before the trainer makes its threads (they inherit it). Elsewhere than Linux, or if refused: no change."""
    if not sys.platform.startswith("linux") or os.environ.get("TRIGAN_VIEW_NO_NICE"):
        return
    try:
        os.setpriority(os.PRIO_PROCESS, proc.pid, min(19, os.getpriority(os.PRIO_PROCESS, proc.pid) + TRAINER_NICE))
    except (OSError, AttributeError):
        pass


def _kimg(value) -> str:
    return "-" if value is None else f"{value:.3g}"


def _format_eta(seconds) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


class TrainingPanel:
    def __init__(self, app):
        self.app = app
        self.poller = RunPoller()
        self._shown_stamp = None
        self._run_paths: List[str] = []
        self._series: Dict[str, int] = {}
        self._sample_texture = None
        self._sample_array = None
        self._processes = []                 # Popen of runs started here (reaped so none turns zombie)
        self.snapshot: Optional[RunsSnapshot] = None
        self.synth_jobs = []

    # -- building ------------------------------------------------------------------------------------
    def build(self) -> None:
        s = self.app.settings
        runs_folder = s.runs_folder or os.path.join(os.getcwd(), "runs")
        dpg.add_text("New run", color=MUTED)
        path_field(DATA, "data", default="", directory=False,
                   extensions=(".zip",), hint_text="dataset .zip or folder")
        with dpg.tree_node(label="make a synthetic dataset", default_open=False):
            path_field(SYNTH_OUT, "out", default=os.path.join(os.getcwd(), "data", "shapes64.zip"),
                       extensions=(".zip",))
            dpg.add_input_int(tag=SYNTH_NUM, label="images", default_value=2000, min_value=8, min_clamped=True,
                              width=-90)
            dpg.add_input_int(tag=SYNTH_RES, label="resolution", default_value=64, min_value=8, min_clamped=True,
                              width=-90)
            dpg.add_input_int(tag=SYNTH_CLASSES, label="classes", default_value=4, min_value=1, max_value=7,
                              min_clamped=True, max_clamped=True, width=-90)
            dpg.add_button(label="Make dataset (trigan dataset synth)", tag=SYNTH_BUTTON, callback=self._synth)
            self.synth_list = JobList("synth_jobs", lambda: self.synth_jobs)
            self.synth_list.build()
        presets = list_presets()
        dpg.add_combo(tag=PRESET, label="preset", items=presets, width=-90,
                      default_value="demo" if "demo" in presets else presets[0])
        dpg.add_input_float(tag=GAMMA, label="gamma (R1)", default_value=0.05, format="%.4g", width=-90, step=0)
        dpg.add_input_int(tag=BATCH, label="batch", default_value=16, min_value=1, min_clamped=True, width=-90)
        dpg.add_input_int(tag=RES, label="resolution", default_value=0, min_value=0, min_clamped=True, width=-90)
        dpg.add_input_float(tag=KIMG, label="duration kimg", default_value=300.0, format="%.4g", width=-90, step=0)
        dpg.add_input_text(tag=OVERRIDES, label="overrides", width=-90, hint="key=value ... (optional)")
        dpg.add_input_text(tag=DESC, label="name", width=-90, hint="a word for the run folder (optional)")
        hint("resolution 0 keeps the preset's; gamma and batch start at the demo preset's values.")
        path_field(RUNS_FOLDER, "runs", default=runs_folder, directory=True,
                   on_pick=lambda p: self._watch())
        dpg.add_button(label="Start training", tag=START, callback=self._start)
        # Text that changes while a run goes on sits in boxes of fixed height: wrapped lines come and
        # go with the values (a loss that is logged every other tick, the heartbeat's age), and
        # everything below would jump under the user's pointer a few times a second.
        with dpg.child_window(height=_lines(MESSAGE_LINES), border=False):
            dpg.add_text("", tag=MESSAGE, wrap=0)
        dpg.add_separator()
        dpg.add_text("Runs", color=MUTED)
        dpg.add_listbox(tag=RUN_LIST, items=[], num_items=5, width=-1, callback=lambda s, a: self._select(a))
        with dpg.group(horizontal=True):
            dpg.add_button(label="Stop", tag=STOP, callback=self._stop_run)
            dpg.add_button(label="Resume", tag=RESUME, callback=self._resume_run)
            dpg.add_button(label="View latest", tag=LOAD_LATEST, callback=lambda: self._load("latest"))
            dpg.add_button(label="View best", tag=LOAD_BEST, callback=lambda: self._load("best"))
        with dpg.child_window(height=_lines(DETAILS_LINES), border=False):
            dpg.add_text("no run selected", tag=DETAILS, wrap=0)
        with dpg.tab_bar(tag="train_views"):
            with dpg.tab(label="Losses", tag="train_tab_losses"):
                with dpg.plot(tag=LOSS_PLOT, height=260, width=-1):
                    dpg.add_plot_legend()
                    dpg.add_plot_axis(dpg.mvXAxis, label="kimg", tag=LOSS_X)
                    dpg.add_plot_axis(dpg.mvYAxis, label="loss", tag=LOSS_Y)
            with dpg.tab(label="Metrics", tag="train_tab_metrics"):
                with dpg.plot(tag=METRIC_PLOT, height=260, width=-1):
                    dpg.add_plot_legend()
                    dpg.add_plot_axis(dpg.mvXAxis, label="kimg", tag=METRIC_X)
                    dpg.add_plot_axis(dpg.mvYAxis, label="value", tag=METRIC_Y)
            with dpg.tab(label="Samples", tag="train_tab_samples"):
                dpg.add_text("", tag=SAMPLE_TEXT, color=MUTED)
                self._sample_array = np.zeros((8, 8, 4), np.float32)
                self._sample_texture = dpg.add_raw_texture(8, 8, self._sample_array, format=dpg.mvFormat_Float_rgba,
                                                           parent="view_textures")
                dpg.add_image(self._sample_texture, tag=SAMPLE_IMAGE, width=8, height=8, show=False)
        self.restore(s)
        self._watch()

    # -- actions -------------------------------------------------------------------------------------
    def _selected_path(self) -> Optional[str]:
        return self.poller.selected

    def _watch(self) -> None:
        folder = dpg.get_value(RUNS_FOLDER).strip() or None
        self.poller.watch(folder, self.poller.selected)

    def _select(self, label: str) -> None:
        items = dpg.get_item_configuration(RUN_LIST)["items"]
        if label in items:
            index = items.index(label)
            if index < len(self._run_paths):
                self.poller.watch(self.poller.folder, self._run_paths[index])
                self._series_clear()

    def _message(self, text: str, ok: bool = True) -> None:
        dpg.set_value(MESSAGE, text)
        dpg.configure_item(MESSAGE, color=GOOD if ok else BAD)

    def overrides(self) -> Dict[str, str]:
        """The main settings as config overrides, plus the free-form key=value field."""
        out = {"training.gamma": repr(float(dpg.get_value(GAMMA))),
               "training.batch_size": str(int(dpg.get_value(BATCH)))}
        if int(dpg.get_value(RES)) > 0:
            out["model.img_resolution"] = str(int(dpg.get_value(RES)))
        for item in dpg.get_value(OVERRIDES).split():
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise TriganError(f"override {item!r}: expected key=value, e.g. training.gamma=0.1")
            out[key] = value
        return out

    def _start(self) -> None:
        try:
            data = dpg.get_value(DATA).strip()
            if not data:
                raise TriganError("pick a dataset (.zip or folder) first, or make a synthetic one")
            if not os.path.exists(data):
                raise TriganError(f"{data}: no such dataset")
            folder = dpg.get_value(RUNS_FOLDER).strip()
            if not folder:
                raise TriganError("choose a runs folder")
            os.makedirs(folder, exist_ok=True)
            proc = run_monitor.start_run(data, folder, dpg.get_value(PRESET), self.overrides(),
                                         dpg.get_value(DESC).strip() or None, kimg=float(dpg.get_value(KIMG)),
                                         device=self.app.device)
        except (TriganError, OSError) as exc:
            self._message(str(exc), ok=False)
            return
        _lower_priority(proc)
        self._processes.append(proc)
        self.poller.launches.append(proc)
        self._message(f"started trigan train (pid {proc.pid}); it keeps running if the viewer closes")
        self.poller.watch(folder, self.poller.selected)
        self.poller.poke()

    def _stop_run(self) -> None:
        path = self._selected_path()
        if not path:
            return self._message("select a run first", ok=False)
        try:
            run_monitor.stop_run(path)
            self._message(f"asked {os.path.basename(path)} to stop (it saves latest.ckpt first)")
        except (TriganError, OSError) as exc:
            self._message(str(exc), ok=False)
        self.poller.poke()

    def _resume_run(self) -> None:
        path = self._selected_path()
        if not path:
            return self._message("select a run first", ok=False)
        try:
            proc = run_monitor.resume_run(path)
        except (TriganError, OSError) as exc:
            return self._message(str(exc), ok=False)
        _lower_priority(proc)
        self._processes.append(proc)
        self._message(f"resumed {os.path.basename(path)} (pid {proc.pid}); output in {proc.log_path}")
        self.poller.poke()

    def _load(self, which: str) -> None:
        path = self._selected_path()
        if not path:
            return self._message("select a run first", ok=False)
        try:
            snapshot = run_monitor.snapshot_path(path, which)
        except (TriganError, OSError) as exc:
            return self._message(str(exc), ok=False)
        if snapshot is None:
            return self._message(f"{os.path.basename(path)} has no {which} snapshot yet", ok=False)
        self.app.model_panel.open(str(snapshot))

    def _synth(self) -> None:
        out = os.path.expanduser(dpg.get_value(SYNTH_OUT).strip())
        if not out:
            return self._message("choose where the dataset zip goes", ok=False)
        if os.path.exists(out):
            return self._message(f"{out} exists; pick another name (nothing is overwritten)", ok=False)
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        try:
            job = self.app.jobs.start_synth_dataset(out, int(dpg.get_value(SYNTH_NUM)), int(dpg.get_value(SYNTH_RES)),
                                                    int(dpg.get_value(SYNTH_CLASSES)))
        except TriganError as exc:
            return self._message(str(exc), ok=False)
        self.synth_jobs.append(job)
        self._synth_target = (job, out)

    # -- per frame -----------------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        self.synth_list.tick()
        target = getattr(self, "_synth_target", None)
        if target is not None and target[0].state == "done":
            dpg.set_value(DATA, target[1])               # the new dataset becomes the one to train on
            self._synth_target = None
        self._processes = [p for p in self._processes if p.poll() is None]
        snap = self.poller.snapshot
        if snap is None or snap.stamp == self._shown_stamp:
            return
        self._shown_stamp = snap.stamp
        self.snapshot = snap
        self._show_runs(snap)
        self._show_details(snap)
        self._show_stats(snap)
        self._show_sample(snap)

    def _show_runs(self, snap: RunsSnapshot) -> None:
        paths = [str(r.path) for r in snap.runs]
        labels = [f"{r.name}  {r.phase}  {_kimg(r.kimg)}/{_kimg(r.total_kimg)} kimg" + ("  (running)" if r.alive else "")
                  for r in snap.runs]
        self._run_paths = paths
        dpg.configure_item(RUN_LIST, items=labels)
        if snap.launch_error:
            self._message(snap.launch_error, ok=False)
        if snap.launched:
            self._series_clear()
        if snap.selected in paths:
            dpg.set_value(RUN_LIST, labels[paths.index(snap.selected)])
        elif snap.selected is None and paths:
            alive = [p for p, r in zip(paths, snap.runs, strict=True) if r.alive]
            self.poller.watch(snap.folder, alive[0] if alive else paths[-1])

    def _selected_info(self, snap: RunsSnapshot):
        for r in snap.runs:
            if str(r.path) == snap.selected:
                return r
        return None

    def _show_details(self, snap: RunsSnapshot) -> None:
        r = self._selected_info(snap)
        if r is None:
            dpg.set_value(DETAILS, snap.error or "no run selected")
            return
        losses = ", ".join(f"{k} {v:.3g}" for k, v in (r.losses or {}).items() if isinstance(v, (int, float)))
        metrics = ", ".join(f"{k} {v:.4g}" for k, v in (r.metrics or {}).items() if isinstance(v, (int, float)))
        ips = f"{r.images_per_sec:.1f}" if r.images_per_sec else "-"
        lines = [f"{r.name}: {r.phase}" + (f" ({r.owner})" if r.alive and r.owner else ""),
                 f"kimg {_kimg(r.kimg)} of {_kimg(r.total_kimg)}   images/s {ips}   ETA {_format_eta(r.eta_seconds)}"]
        lines.append("loss " + (losses or "-"))
        lines.append("metrics " + (metrics or "-"))
        lines.append(r.message or "")
        dpg.set_value(DETAILS, "\n".join(lines))
        dpg.configure_item(STOP, enabled=bool(r.alive))
        dpg.configure_item(RESUME, enabled=not r.alive)

    def _series_clear(self) -> None:
        for tag in list(self._series.values()):
            if dpg.does_item_exist(tag):
                dpg.delete_item(tag)
        self._series = {}

    def _show_stats(self, snap: RunsSnapshot) -> None:
        run = self._selected_info(snap)
        losses = set(run.losses) if run is not None else set()
        for key, points in sorted(snap.stats.items()):
            if not points:
                continue
            if key.startswith(METRIC_PREFIX):
                axis = METRIC_Y
            elif key in losses or key.lower().startswith("loss"):
                axis = LOSS_Y
            else:
                continue                                  # schedules, memory ...: not plotted
            xs = [float(p[0]) for p in points]
            ys = [float(p[1]) for p in points]
            tag = self._series.get(key)
            if tag is None:
                tag = dpg.add_line_series(xs, ys, label=key, parent=axis)
                self._series[key] = tag
            else:
                dpg.set_value(tag, [xs, ys])
        for axis in (LOSS_X, LOSS_Y, METRIC_X, METRIC_Y):
            dpg.fit_axis_data(axis)

    def _show_sample(self, snap: RunsSnapshot) -> None:
        if snap.sample is None:
            dpg.configure_item(SAMPLE_IMAGE, show=False)
            dpg.set_value(SAMPLE_TEXT, "no sample grid yet" if snap.selected else "")
            return
        image = snap.sample
        if image.shape != self._sample_array.shape:
            h, w = image.shape[:2]
            self._sample_array = np.ascontiguousarray(image, dtype=np.float32).copy()
            old = self._sample_texture
            self._sample_texture = dpg.add_raw_texture(w, h, self._sample_array, format=dpg.mvFormat_Float_rgba,
                                                       parent="view_textures")
            scale = SAMPLE_SIDE / max(w, h)        # small grids (16 px samples) are shown enlarged
            dpg.configure_item(SAMPLE_IMAGE, texture_tag=self._sample_texture, width=int(w * scale),
                               height=int(h * scale))
            self.app.image.retire_texture(old)
        else:
            np.copyto(self._sample_array, image)
        dpg.configure_item(SAMPLE_IMAGE, show=True)
        dpg.set_value(SAMPLE_TEXT, f"latest samples: {os.path.basename(snap.sample_path)}")

    # -- app hooks -----------------------------------------------------------------------------------
    def any_alive(self) -> bool:
        snap = self.snapshot
        return bool(snap and any(r.alive for r in snap.runs))

    def state(self) -> dict:
        snap = self.snapshot
        if snap is None:
            return {"folder": None, "runs": [], "selected": None}
        return {"folder": snap.folder, "selected": snap.selected, "error": snap.error,
                "message": dpg.get_value(MESSAGE),
                "stats_keys": sorted(snap.stats), "sample": snap.sample_path,
                "runs": [{"path": str(r.path), "name": r.name, "phase": r.phase, "kimg": r.kimg,
                          "total_kimg": r.total_kimg, "alive": r.alive, "images_per_sec": r.images_per_sec,
                          "eta_seconds": r.eta_seconds} for r in snap.runs]}

    def store_settings(self, s) -> None:
        s.runs_folder = dpg.get_value(RUNS_FOLDER).strip() or None
        s.panels = dict(s.panels or {}, training={tag: dpg.get_value(tag) for tag in REMEMBERED})

    def restore(self, s) -> None:
        for tag, value in ((s.panels or {}).get("training") or {}).items():
            if tag in REMEMBERED and isinstance(value, type(dpg.get_value(tag))):
                dpg.set_value(tag, value)

    def shutdown(self) -> None:
        self.poller.stop()
