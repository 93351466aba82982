"""Training panel: make or pick a dataset, start a `trigan train` process, follow the runs of a runs
folder (phase, kimg, images/s, ETA, loss and metric plots, the newest sample grid), stop, resume,
and load a run's snapshot into the view.

Before a run starts (Start, or Check alone), the pre-flight check (training/preflight.py) compares
the chosen preset and overrides with the dataset in a background thread and lists its warnings,
one line each with the fix; the run still starts unless "strict" is ticked.

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
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Tuple

import dearpygui.dearpygui as dpg
import numpy as np
from PIL import Image

from trigan.core.errors import TriganError, one_line
from trigan.core.limits import MAX_IMAGE_SIDE, SYNTH_MAX_IMAGES, SYNTH_MAX_RESOLUTION
from trigan.training.config import list_presets, load_config
from trigan.training.preflight import dataset_facts, preflight
from trigan.viewer import run_monitor
from trigan.viewer.panels.common import (
    BAD,
    GOOD,
    MUTED,
    JobList,
    greyed_when_disabled,
    hint,
    is_theme,
    path_field,
    themed,
    tip,
)
from trigan.viewer.panels.interface import ViewerState

if TYPE_CHECKING:                     # annotations only: the jobs module loads torch
    from trigan.viewer.jobs import JobRunner
from trigan.viewer.run_monitor import (
    METRIC_PREFIX,
    METRICS_FILE,
    STATS_FILE,
    StatsFollower,
    field_rows,
    format_eta,
    pair_rows,
)

DATA, RUNS_FOLDER = "train_data", "train_runs_folder"
PRESET, GAMMA, BATCH, RES, KIMG = "train_preset", "train_gamma", "train_batch", "train_resolution", "train_kimg"
OVERRIDES, DESC = "train_overrides", "train_desc"
START, MESSAGE = "train_start_button", "train_message"
RUN_LIST, DETAILS, DETAILS_STATE, DETAILS_BOX = "train_runs", "train_details", "train_details_state", "train_details_box"
STOP, RESUME, LOAD_LATEST, LOAD_BEST = "train_stop_button", "train_resume_button", "train_load_latest", "train_load_best"
BUTTONS = (STOP, RESUME, LOAD_LATEST, LOAD_BEST)
LOSS_PLOT, METRIC_PLOT = "train_loss_plot", "train_metric_plot"
LOSS_Y, METRIC_Y = "train_loss_y", "train_metric_y"
LOSS_X, METRIC_X = "train_loss_x", "train_metric_x"
SAMPLE_IMAGE, SAMPLE_TEXT = "train_sample", "train_sample_text"
SYNTH_OUT, SYNTH_NUM, SYNTH_RES, SYNTH_CLASSES = "synth_out", "synth_num", "synth_resolution", "synth_classes"
SYNTH_BUTTON = "synth_button"
CHECK, STRICT = "train_check_button", "train_strict"
PREFLIGHT, PREFLIGHT_BOX = "train_preflight", "train_preflight_box"
REMEMBERED = (DATA, PRESET, GAMMA, BATCH, RES, KIMG, OVERRIDES, SYNTH_OUT, SYNTH_NUM, SYNTH_RES, SYNTH_CLASSES,
              STRICT)
POLL_SECONDS = 1.0
TIPS = {
    SYNTH_NUM: "How many images the synthetic dataset holds.",
    SYNTH_RES: "The side of the synthetic images in pixels.",
    SYNTH_CLASSES: "How many shape classes (1..7): more than one makes a conditional dataset.",
    SYNTH_BUTTON: "Render the synthetic dataset as a background job (trigan dataset synth); the data field "
                  "takes it when it is done.",
    PRESET: "The training configuration to start from (trigan train --preset).",
    GAMMA: "The R1 regularisation weight; passed on the command line as typed.",
    BATCH: "Images per training step.",
    RES: "The image resolution to train at; 0 keeps the preset's.",
    KIMG: "How long to train, in thousands of images shown to the discriminator.",
    OVERRIDES: "More config values as key=value, separated by spaces (optional).",
    DESC: "A word added to the run folder's name (optional).",
    START: "Check the run (pre-flight), then start `trigan train` as its own process in the runs folder; "
           "it keeps running when the viewer closes.",
    CHECK: "Check the preset and overrides against the dataset without starting: known ways to waste a run "
           "(pose conditioning, yaw centre, gamma for the patch size, resolution, labels), one line each with the fix.",
    STRICT: "Refuse to start while the pre-flight check warns (like trigan train --strict).",
    RUN_LIST: "Every run in the runs folder with what it is doing; select one to see its progress, curves and samples.",
    STOP: "Ask the selected run to stop cleanly: it finishes the step and writes latest.ckpt (resume it later).",
    RESUME: "Continue the selected stopped or interrupted run from its latest.ckpt.",
    LOAD_LATEST: "Open the selected run's newest snapshot (latest.ckpt) in the view.",
    LOAD_BEST: "Open the selected run's best snapshot (best.ckpt) in the view.",
}
MAX_PANEL_BATCH = 65536                # far above any batch that fits a device; the config check decides
# Room for a wrapped error; for the details: state, progress, resolution, a note, three rows of
# losses, metrics and the run's message (more scrolls).
MESSAGE_LINES, DETAILS_LINES = 3, 12
PREFLIGHT_LINES = 9                    # the warnings' box (shown only when there are some): more scrolls
SAMPLE_SIDE = 380                      # the sample grid is shown this wide (the Tasks panel's width)
CHAR_PX = 7                            # advance of Dear ImGui's built-in font, until a frame measured it
MARKERS_UP_TO = 60                     # a curve of so few points also shows them (one point has no line)
WARN = (230, 190, 90)                  # a run that stopped before its end: it can go on


def _lines(n: int) -> int:
    """Height in pixels of n lines of Dear ImGui's built-in 13-pixel font, plus the item spacing."""
    return 13 * n + 4


_THEMES: Dict[str, int] = {}


def _plot_theme() -> int:
    """A margin of a tenth around the fitted data: the first and last points, and the markers of a
    short curve, are not cut in half at the plot's edges."""
    if not is_theme(_THEMES.get("plot")):
        with dpg.theme() as theme:
            with dpg.theme_component(dpg.mvPlot):
                dpg.add_theme_style(dpg.mvPlotStyleVar_FitPadding, 0.1, 0.1, category=dpg.mvThemeCat_Plots)
        _THEMES["plot"] = theme
    return _THEMES["plot"]


def _marker_theme() -> int:
    """Circles on every point of a line series: a curve of one point draws no line at all."""
    if not is_theme(_THEMES.get("markers")):
        with dpg.theme() as theme:
            with dpg.theme_component(dpg.mvLineSeries):
                dpg.add_theme_style(dpg.mvPlotStyleVar_Marker, dpg.mvPlotMarker_Circle, category=dpg.mvThemeCat_Plots)
                dpg.add_theme_style(dpg.mvPlotStyleVar_MarkerSize, 3, category=dpg.mvThemeCat_Plots)
        _THEMES["markers"] = theme
    return _THEMES["markers"]


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
    """Three significant digits, without an exponent: 0.016, 2.5, 300, 1000 (not 1e+03)."""
    if value is None:
        return "-"
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def typed_float(value: float) -> str:
    """A float input's value as the person typed it. DearPyGui keeps input_float values as float32,
    so 0.05 comes back as 0.05000000074505806; the shortest decimal that is the same float32 is
    what was typed (numpy prints float32 that way)."""
    return repr(float(str(np.float32(value))))


def _state_line(r, stopping: bool = False) -> Tuple[str, tuple]:
    """The selected run's first line and its colour: what it is doing, or how it ended; a run that
    was stopped or interrupted never reads like one that is done."""
    if r.alive and stopping:
        return f"{r.name}: stopping (finishing its step, then latest.ckpt)", WARN
    if r.alive:
        return f"{r.name}: {r.phase}" + (f" ({r.owner})" if r.owner else ""), (255, 255, 255)
    if r.state == "done":
        return f"{r.name}: done, {_kimg(r.kimg)} kimg", GOOD
    if r.state == "failed":
        return f"{r.name}: failed", BAD
    if r.state in ("stopped", "interrupted"):
        how = "stopped" if r.state == "stopped" else "interrupted (its trainer is gone)"
        where = f" at {_kimg(r.kimg)} of {_kimg(r.total_kimg)} kimg"
        return f"{r.name}: {how}{where}", WARN       # the list says whether Resume can continue it
    return f"{r.name}: {r.state}", MUTED


def details_lines(r, width_chars: int) -> List[str]:
    """The selected run's details below its state line: progress and ETA, resolution and what the
    setup changed, losses and metrics as aligned "name value" columns, the run's message."""
    ips = f"{r.images_per_sec:.1f}" if r.images_per_sec else "-"
    eta = format_eta(r.eta_seconds) if r.alive else "-"
    lines = field_rows([f"kimg {_kimg(r.kimg)} of {_kimg(r.total_kimg)}", f"images/s {ips}", f"ETA {eta}"],
                       width_chars)
    res = f"{r.img_resolution}^2" if r.img_resolution else "-"
    lines.append(f"resolution {res}")
    for note in r.notes:                               # wrapped between words, never inside one
        lines += field_rows(note.removeprefix("note: ").split(), width_chars, gap=1)
    losses = pair_rows(r.losses or {}, width_chars)
    metrics = pair_rows(r.metrics or {}, width_chars)
    lines += (["losses"] + losses) if losses else ["losses -"]
    lines += (["metrics"] + metrics) if metrics else ["metrics -"]
    if r.message:                                       # wrapped between words (never in "0.144")
        lines += field_rows(r.message.split(), width_chars, gap=1)
    return lines


@dataclass(frozen=True)
class LaunchRequest:
    """What Start read from the form: the run it starts once the pre-flight check has looked at it."""

    data: str
    folder: str
    preset: str
    overrides: Tuple[Tuple[str, str], ...]
    desc: Optional[str]
    kimg: float


@dataclass
class PreflightResult:
    """The pre-flight check of one request: its warnings (one line each), or why it could not run."""

    request: LaunchRequest
    warnings: List[str] = field(default_factory=list)
    error: Optional[str] = None


def check_request(request: LaunchRequest) -> PreflightResult:
    """The pre-flight check of the config the trainer will build (preset + overrides) against the
    dataset; runs in a background thread (reading a large dataset.json takes seconds)."""
    try:
        cfg = load_config(request.preset, [f"{k}={v}" for k, v in request.overrides])
        facts = dataset_facts(os.path.expanduser(request.data))
        return PreflightResult(request, [str(w) for w in preflight(cfg, facts)])
    except Exception as exc:  # noqa: BLE001 - shown as one line; the trainer reports it again if started
        return PreflightResult(request, error=one_line(exc))


class TrainingPanel:
    """open_model(path) opens a run's snapshot as the Model panel does; retire_texture(texture)
    deletes a replaced sample texture once no widget shows it (ImageView.retire_texture)."""

    def __init__(self, state: ViewerState, runner: "JobRunner", open_model: Callable[[str], None],
                 retire_texture: Callable[[int], None]):
        self.state, self.runner = state, runner
        self.open_model, self.retire_texture = open_model, retire_texture
        self.poller = RunPoller()
        self._shown_stamp = None
        self._run_paths: List[str] = []
        self._series: Dict[str, int] = {}
        self._sample_texture = None
        self._sample_array = None
        self._processes = []                 # Popen of runs started here (reaped so none turns zombie)
        self._stop_asked: Dict[str, float] = {}   # run path -> when Stop signalled its trainer
        self.snapshot: Optional[RunsSnapshot] = None
        self.synth_jobs = []
        self._check_seq = 0                  # the newest check asked for; older results are dropped
        self._check_result: Optional[Tuple[int, PreflightResult]] = None   # set by the check thread
        self._shown_check: Optional[int] = None
        self._pending: Optional[LaunchRequest] = None   # Start pressed: launch once its check is done
        self._preflight_state = "idle"       # idle, checking, clean, warnings, error (the state file's)

    # -- building ------------------------------------------------------------------------------------
    def build(self) -> None:
        s = self.state.settings
        runs_folder = s.runs_folder or os.path.join(os.getcwd(), "runs")
        dpg.add_text("New run", color=MUTED)
        path_field(DATA, "data", default="", directory=False,
                   extensions=(".zip",), hint_text="dataset .zip or folder",
                   description="The training images: a dataset .zip or folder as `trigan dataset` writes it "
                               "(or make a synthetic one below).")
        with dpg.tree_node(label="make a synthetic dataset", default_open=False):
            path_field(SYNTH_OUT, "out", default=os.path.join(os.getcwd(), "data", "shapes64.zip"),
                       extensions=(".zip",), description="Where the synthetic dataset's .zip is written.")
            # Integer fields hold 32 bits in DearPyGui: every one gets an explicit ceiling below that.
            dpg.add_input_int(tag=SYNTH_NUM, label="images", default_value=2000, min_value=8, min_clamped=True,
                              max_value=SYNTH_MAX_IMAGES, max_clamped=True, width=-90)
            dpg.add_input_int(tag=SYNTH_RES, label="resolution", default_value=64, min_value=8, min_clamped=True,
                              max_value=SYNTH_MAX_RESOLUTION, max_clamped=True, width=-90)
            dpg.add_input_int(tag=SYNTH_CLASSES, label="classes", default_value=4, min_value=1, max_value=7,
                              min_clamped=True, max_clamped=True, width=-90)
            dpg.add_button(label="Make dataset (trigan dataset synth)", tag=SYNTH_BUTTON, callback=self._synth)
            self.synth_list = JobList("synth_jobs", lambda: self.synth_jobs)
            self.synth_list.build()
        presets = list_presets()
        dpg.add_combo(tag=PRESET, label="preset", items=presets, width=-90,
                      default_value="demo" if "demo" in presets else presets[0])
        dpg.add_input_float(tag=GAMMA, label="gamma (R1)", default_value=0.5, format="%.4g", width=-90, step=0)
        dpg.add_input_int(tag=BATCH, label="batch", default_value=16, min_value=1, min_clamped=True,
                          max_value=MAX_PANEL_BATCH, max_clamped=True, width=-90)
        dpg.add_input_int(tag=RES, label="resolution", default_value=0, min_value=0, min_clamped=True,
                          max_value=MAX_IMAGE_SIDE, max_clamped=True, width=-90)
        dpg.add_input_float(tag=KIMG, label="duration kimg", default_value=300.0, format="%.4g", width=-90, step=0)
        dpg.add_input_text(tag=OVERRIDES, label="overrides", width=-90, hint="key=value ... (optional)")
        dpg.add_input_text(tag=DESC, label="name", width=-90, hint="a word for the run folder (optional)")
        hint("resolution 0 keeps the preset's; gamma and batch start at the demo preset's values.")
        path_field(RUNS_FOLDER, "runs", default=runs_folder, directory=True,
                   on_pick=lambda p: self._watch(),
                   description="The folder of training runs: new runs go here, and the list below shows "
                               "every run in it. Enter or a pick follows the folder typed.")
        with dpg.group(horizontal=True):
            dpg.add_button(label="Start training", tag=START, callback=self._start)
            dpg.add_button(label="Check", tag=CHECK, callback=self._check_only)
            dpg.add_checkbox(label="strict", tag=STRICT, default_value=False)
        # Text that changes while a run goes on sits in boxes of fixed height: wrapped lines come and
        # go with the values (a loss that is logged every other tick, the heartbeat's age), and
        # everything below would jump under the user's pointer a few times a second.
        with dpg.child_window(height=_lines(MESSAGE_LINES), border=False):
            dpg.add_text("", tag=MESSAGE, wrap=0)
        # The pre-flight warnings: hidden while there are none, so a clean run moves nothing below.
        with dpg.child_window(tag=PREFLIGHT_BOX, height=_lines(PREFLIGHT_LINES), border=False, show=False):
            dpg.add_text("", tag=PREFLIGHT, wrap=0, color=WARN)
        dpg.add_separator()
        dpg.add_text("Runs", color=MUTED)
        dpg.add_listbox(tag=RUN_LIST, items=[], num_items=5, width=-1, callback=lambda s, a: self._select(a))
        # Each button is enabled only while it can do something for the selected run (_show_buttons).
        with dpg.group(horizontal=True):
            dpg.add_button(label="Stop", tag=STOP, callback=self._stop_run, enabled=False)
            dpg.add_button(label="Resume", tag=RESUME, callback=self._resume_run, enabled=False)
            dpg.add_button(label="View latest", tag=LOAD_LATEST, callback=lambda: self._load("latest"), enabled=False)
            dpg.add_button(label="View best", tag=LOAD_BEST, callback=lambda: self._load("best"), enabled=False)
        for tag in BUTTONS:
            dpg.bind_item_theme(tag, greyed_when_disabled())
        for tag, text in TIPS.items():
            tip(tag, text)
        with dpg.child_window(tag=DETAILS_BOX, height=_lines(DETAILS_LINES), border=False):
            dpg.add_text("no run selected", tag=DETAILS_STATE, wrap=0, color=MUTED)
            dpg.add_text("", tag=DETAILS, wrap=0)
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
            for plot in (LOSS_PLOT, METRIC_PLOT):
                dpg.bind_item_theme(plot, _plot_theme())
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
        dpg.configure_item(MESSAGE, color=themed(GOOD if ok else BAD))

    def overrides(self) -> Dict[str, str]:
        """The main settings as config overrides, plus the free-form key=value field."""
        out = {"training.gamma": typed_float(dpg.get_value(GAMMA)),
               "training.batch_size": str(int(dpg.get_value(BATCH)))}
        if int(dpg.get_value(RES)) > 0:
            out["model.img_resolution"] = str(int(dpg.get_value(RES)))
        for item in dpg.get_value(OVERRIDES).split():
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise TriganError(f"override {item!r}: expected key=value, e.g. training.gamma=0.1")
            out[key] = value
        return out

    def _request(self) -> LaunchRequest:
        """The run the form describes; TriganError (one line) for a missing dataset or runs folder."""
        data = dpg.get_value(DATA).strip()
        if not data:
            raise TriganError("pick a dataset (.zip or folder) first, or make a synthetic one")
        if not os.path.exists(os.path.expanduser(data)):
            raise TriganError(f"{data}: no such dataset")
        folder = dpg.get_value(RUNS_FOLDER).strip()
        if not folder:
            raise TriganError("choose a runs folder")
        return LaunchRequest(data, folder, dpg.get_value(PRESET), tuple(self.overrides().items()),
                             dpg.get_value(DESC).strip() or None, float(typed_float(dpg.get_value(KIMG))))

    def _start(self) -> None:
        """Start: check the run first (in the background); tick() launches it when the check is done."""
        try:
            request = self._request()
        except TriganError as exc:
            return self._message(str(exc), ok=False)
        self._pending = request
        self._message("checking the run before it starts (pre-flight) ...")
        self._run_check(request)

    def _check_only(self) -> None:
        try:
            request = self._request()
        except TriganError as exc:
            return self._message(str(exc), ok=False)
        self._pending = None
        self._message("")
        self._run_check(request)

    def _run_check(self, request: LaunchRequest) -> None:
        self._check_seq += 1
        seq = self._check_seq
        self._preflight_state = "checking"

        def work() -> None:
            self._check_result = (seq, check_request(request))   # one assignment: the GUI reads it whole
        threading.Thread(target=work, name="trigan-preflight", daemon=True).start()

    def _poll_check(self) -> None:
        """Show a finished check (the newest asked for), and launch the run Start was waiting for."""
        done = self._check_result
        if done is None or done[0] != self._check_seq or done[0] == self._shown_check:
            return
        self._shown_check = done[0]
        result = done[1]
        self._show_preflight(result)
        request, self._pending = self._pending, None
        if request is None or request != result.request:
            return
        if result.warnings and dpg.get_value(STRICT):
            n = len(result.warnings)
            return self._message(f"not started: {n} pre-flight warning{'s' if n > 1 else ''} and strict is on; "
                                 f"fix {'them' if n > 1 else 'it'} or untick strict", ok=False)
        self._launch(request)

    def _show_preflight(self, result: PreflightResult) -> None:
        if result.error:
            self._preflight_state = "error"
            text, colour = f"pre-flight check: {result.error}", BAD
        elif result.warnings:
            self._preflight_state = "warnings"
            text, colour = "\n".join(f"! {w}" for w in result.warnings), WARN
        else:
            self._preflight_state = "clean"
            text, colour = "", GOOD
        dpg.set_value(PREFLIGHT, text)
        dpg.configure_item(PREFLIGHT, color=themed(colour))
        dpg.configure_item(PREFLIGHT_BOX, show=bool(text))
        if not text and self._pending is None:
            self._message("pre-flight check: no warnings")

    def _launch(self, request: LaunchRequest) -> None:
        try:
            os.makedirs(request.folder, exist_ok=True)
            proc = run_monitor.start_run(request.data, request.folder, request.preset, dict(request.overrides),
                                         request.desc, kimg=request.kimg, device=self.state.device)
        except (TriganError, OSError) as exc:
            self._message(str(exc), ok=False)
            return
        folder = request.folder
        _lower_priority(proc)
        self._processes.append(proc)
        self.poller.launches.append(proc)
        warned = self._preflight_state == "warnings"
        self._message(f"started trigan train (pid {proc.pid}){' despite the pre-flight warnings below' if warned else ''}; "
                      f"it keeps running if the viewer closes")
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
            return self.poller.poke()
        # Said at once, before the trainer's own "stopping" arrives with the next poll; Stop has
        # nothing more to do for this run.
        self._stop_asked[path] = time.time()
        dpg.configure_item(STOP, enabled=False)
        name = os.path.basename(path)
        dpg.set_value(DETAILS_STATE, f"{name}: stopping (finishing its step, then latest.ckpt)")
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
        self.open_model(str(snapshot))

    def _synth(self) -> None:
        out = os.path.expanduser(dpg.get_value(SYNTH_OUT).strip())
        if not out:
            return self._message("choose where the dataset zip goes", ok=False)
        if os.path.exists(out):
            return self._message(f"{out} exists; pick another name (nothing is overwritten)", ok=False)
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        try:
            job = self.runner.start_synth_dataset(out, int(dpg.get_value(SYNTH_NUM)), int(dpg.get_value(SYNTH_RES)),
                                                  int(dpg.get_value(SYNTH_CLASSES)))
        except TriganError as exc:
            return self._message(str(exc), ok=False)
        self.synth_jobs.append(job)
        self._synth_target = (job, out)

    # -- per frame -----------------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        self.synth_list.tick()
        self._poll_check()
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
        self._stop_asked = {p: t for p, t in self._stop_asked.items()
                            if any(str(r.path) == p and r.alive for r in snap.runs)}
        labels = [f"{r.name}  {self._summary(r)}  {_kimg(r.kimg)}/{_kimg(r.total_kimg)} kimg" + ("  (running)" if r.alive else "")
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

    def _stopping(self, r) -> bool:
        """The run is on its way out: its trainer says so, or Stop signalled it from here."""
        return r.alive and (r.phase == "stopping" or str(r.path) in self._stop_asked)

    def _summary(self, r) -> str:
        return "stopping" if self._stopping(r) else r.summary

    def _selected_info(self, snap: RunsSnapshot):
        for r in snap.runs:
            if str(r.path) == snap.selected:
                return r
        return None

    def _details_width(self) -> int:
        """How many characters fit on a line of the details (the Tasks panel can be resized)."""
        width = dpg.get_item_rect_size(DETAILS_BOX)[0] if dpg.does_item_exist(DETAILS_BOX) else 0
        size = dpg.get_text_size("0000000000")
        char = size[0] / 10 if size and size[0] > 0 else CHAR_PX
        return max(20, int((width - 16) / char)) if width > 0 else 50     # 16: room for a scroll bar

    def _show_details(self, snap: RunsSnapshot) -> None:
        r = self._selected_info(snap)
        self._show_buttons(r)
        if r is None:
            dpg.set_value(DETAILS_STATE, snap.error or "no run selected")
            dpg.configure_item(DETAILS_STATE, color=themed(MUTED))
            dpg.set_value(DETAILS, "")
            return
        text, colour = _state_line(r, self._stopping(r))
        dpg.set_value(DETAILS_STATE, text)
        dpg.configure_item(DETAILS_STATE, color=themed(colour))
        dpg.set_value(DETAILS, "\n".join(details_lines(r, self._details_width())))

    def _show_buttons(self, r) -> None:
        """Enabled only where they can act: Stop for a live trainer on this machine, Resume for a run
        that ended early and has latest.ckpt, View latest / best once that file exists."""
        can = {STOP: bool(r and r.can_stop and not self._stopping(r)), RESUME: bool(r and r.can_resume),
               LOAD_LATEST: bool(r and r.has_latest), LOAD_BEST: bool(r and r.has_best)}
        for tag, enabled in can.items():
            dpg.configure_item(tag, enabled=enabled)

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
            # A run shorter than a tick or two has one or two points: a line of one point is
            # invisible, so short curves show their points (long ones would drown in markers).
            dpg.bind_item_theme(tag, _marker_theme() if len(xs) <= MARKERS_UP_TO else 0)
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
            self.retire_texture(old)
        else:
            np.copyto(self._sample_array, image)
        dpg.configure_item(SAMPLE_IMAGE, show=True)
        dpg.set_value(SAMPLE_TEXT, f"latest samples: {os.path.basename(snap.sample_path)}")

    # -- app hooks -----------------------------------------------------------------------------------
    def any_alive(self) -> bool:
        snap = self.snapshot
        return bool(snap and any(r.alive for r in snap.runs))

    def runs_state(self) -> dict:
        """The runs followed and what the panel shows of them (the state file's "training")."""
        shown = {"message": dpg.get_value(MESSAGE),
                 "details": dpg.get_value(DETAILS_STATE) + "\n" + dpg.get_value(DETAILS),
                 "buttons": {tag: bool(dpg.get_item_configuration(tag)["enabled"]) for tag in BUTTONS},
                 "plotted": self._plotted(),
                 "preflight": {"state": self._preflight_state, "strict": bool(dpg.get_value(STRICT)),
                               "text": dpg.get_value(PREFLIGHT), "shown": bool(dpg.is_item_shown(PREFLIGHT_BOX))}}
        snap = self.snapshot
        if snap is None:
            return {"folder": None, "runs": [], "selected": None, **shown}
        return {"folder": snap.folder, "selected": snap.selected, "error": snap.error, **shown,
                "stats_keys": sorted(snap.stats), "sample": snap.sample_path,
                "runs": [{"path": str(r.path), "name": r.name, "phase": r.phase, "kimg": r.kimg,
                          "total_kimg": r.total_kimg, "alive": r.alive, "images_per_sec": r.images_per_sec,
                          "eta_seconds": r.eta_seconds, "summary": self._summary(r)} for r in snap.runs]}

    def _plotted(self) -> Dict[str, dict]:
        """What the plots hold, read back from the series widgets: points and whether they show."""
        out = {}
        for key, tag in self._series.items():
            if dpg.does_item_exist(tag):
                xs = dpg.get_value(tag)[0]
                out[key] = {"points": len(xs), "markers": dpg.get_item_theme(tag) == _marker_theme()}
        return out

    def store_settings(self, s) -> None:
        s.runs_folder = dpg.get_value(RUNS_FOLDER).strip() or None
        s.panels = dict(s.panels or {}, training={tag: dpg.get_value(tag) for tag in REMEMBERED})

    def restore(self, s) -> None:
        for tag, value in ((s.panels or {}).get("training") or {}).items():
            if tag in REMEMBERED and isinstance(value, type(dpg.get_value(tag))):
                dpg.set_value(tag, value)

    def shutdown(self) -> None:
        self.poller.stop()
