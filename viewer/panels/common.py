"""Small widgets several panels share: tooltips (and the check that finds controls without one), a
path field with a file picker, the list of background jobs with progress bars, Cancel and Clear
finished, and the colours of the dark and light themes."""

from __future__ import annotations

from typing import Callable, Dict, Iterable, List, NamedTuple, Optional, Tuple

import dearpygui.dearpygui as dpg

from trigan.viewer.file_picker import open_file_picker
from trigan.viewer.ui_style import (  # noqa: F401 - the panels' shared names, re-exported here
    BAD,
    BAR_FILL,
    CANCELLED,
    CONTROL_TYPES,
    GOOD,
    MUTED,
    PALETTES,
    TIP_DELAY_S,
    TIP_WRAP,
    colour,
    controls_without_tooltip,
    current_theme,
    px,
    recolour_texts,
    set_ui,
    themed,
    tip,
)


def hint(text: str) -> None:
    dpg.add_text(text, color=colour("MUTED"), wrap=0)


def path_field(tag: str, label: str, default: str = "", *, directory: bool = False,
               extensions: Iterable[str] = (), width: Optional[int] = None, on_pick: Optional[Callable[[str], None]] = None,
               hint_text: str = "", description: str = "") -> None:
    """An input_text named `tag` with a "..." button that opens the viewer's file (or folder) picker
    (viewer/file_picker.py) into it. Enter in the field, like a pick, calls on_pick with the typed
    path; the field's tooltip says what it is for (`description`, else `hint_text`) and shows its
    whole value (a long path is cut in the field)."""
    if width is None:
        # Room right of the field for the "..." button and the label, in the built-in font's 7-pixel
        # characters (a fixed -80 cut a six-letter label at the edge of a 440-pixel panel).
        width = -(53 + 7 * len(label))
    extensions = tuple(extensions)

    def picked(path: str) -> None:
        dpg.set_value(tag, path)
        if on_pick is not None:
            on_pick(path)

    def browse() -> None:
        open_file_picker(dpg.get_value(tag) or default, directory=directory, extensions=extensions,
                         on_chosen=picked)

    def entered(sender, value) -> None:
        if on_pick is not None:
            on_pick(value)

    with dpg.group(horizontal=True):
        dpg.add_input_text(tag=tag, default_value=default, width=width, hint=hint_text, on_enter=True,
                           callback=entered)
        _value_tooltip(tag, description or hint_text)
        dpg.add_button(label="...", tag=f"{tag}_browse", callback=browse)
        kinds = ", ".join(extensions)
        tip(f"{tag}_browse", "Choose a folder with the viewer's picker." if directory else
            f"Choose a file with the viewer's picker{f' ({kinds})' if kinds else ''}.")
        dpg.add_text(label)


def _value_tooltip(tag: str, description: str = "") -> None:
    """A tooltip with what the field `tag` is for and its whole value. The value's text shares the
    input's value (source), so it is never out of date; it hides while the field is empty (and so
    does the whole tooltip of a field without a description): no empty line."""
    tip_tag, value_tag = f"{tag}_tip", f"{tag}_tooltip"

    def hovered() -> None:
        has_value = bool(dpg.get_value(tag))
        dpg.configure_item(value_tag, show=has_value)
        dpg.configure_item(tip_tag, show=bool(description) or has_value)
    has_value = bool(dpg.get_value(tag))
    with dpg.tooltip(tag, tag=tip_tag, show=bool(description) or has_value, delay=TIP_DELAY_S):
        if description:
            dpg.add_text(description, wrap=TIP_WRAP)
        dpg.add_text(tag=value_tag, source=tag, wrap=600, show=has_value,
                     **({"color": colour("MUTED")} if description else {}))
    with dpg.item_handler_registry() as handlers:
        dpg.add_item_hover_handler(callback=hovered)
    dpg.bind_item_handler_registry(tag, handlers)


class JobLook(NamedTuple):
    bar: float                      # the progress bar's value, 0..1
    overlay: str                    # the text on the bar
    text: str                       # the line under it
    colour: Tuple[int, int, int]


def job_look(state: str, progress: Optional[float], message: str = "", output_path=None) -> JobLook:
    """How a job's row reads in each state. A cancelled or failed job keeps the bar where it
    stopped and says so on it ("cancelled at 40%"): only a done job shows a full bar and "done"."""
    progress = min(1.0, max(0.0, float(progress or 0.0)))
    percent = f"{100 * progress:.0f}%"
    if state == "done":
        return JobLook(1.0, "done", f"saved {output_path}" if output_path else (message or "done"), colour("GOOD"))
    if state == "failed":
        return JobLook(progress, f"failed at {percent}", message or "failed", colour("BAD"))
    if state == "cancelled":
        return JobLook(progress, f"cancelled at {percent}", message or "cancelled", colour("CANCELLED"))
    return JobLook(progress, f"{state} {percent}", message or "", colour("MUTED"))


_BAR_THEMES: Dict[str, int] = {}


def is_theme(item) -> bool:
    """A theme made earlier is still there (a new DearPyGui context, in tests, hands its id to
    another item)."""
    return item is not None and dpg.does_item_exist(item) and dpg.get_item_type(item) == "mvAppItemType::mvTheme"


def _bar_theme(state: str) -> int:
    """A progress bar theme with the fill colour of a finished state (made once)."""
    theme = _BAR_THEMES.get(state)
    if not is_theme(theme):
        with dpg.theme() as theme:
            with dpg.theme_component(dpg.mvProgressBar):
                dpg.add_theme_color(dpg.mvThemeCol_PlotHistogram, BAR_FILL[state])
        _BAR_THEMES[state] = theme
    return theme


class JobList:
    """One row per background job: label, progress bar, Cancel while running, then the result
    (output path or error). Rows are rebuilt only when the jobs shown change; values refresh each
    frame. Done, failed and cancelled rows each have their own words and colours (job_look).
    "Clear finished" hides the done, failed and cancelled rows (running ones stay); the owner's
    list of jobs is left as it is, so a panel's state still reports every job."""

    def __init__(self, tag: str, jobs_of: Callable[[], List]):
        self.tag = tag
        self.jobs_of = jobs_of
        self._shown: List = []
        self._states: List[str] = []
        # id -> job of the rows cleared away; holding the job keeps its id from being reused
        self._cleared: Dict[int, object] = {}

    def build(self) -> None:
        dpg.add_button(label="Clear finished", tag=f"{self.tag}_clear", callback=self.clear_finished, show=False)
        tip(f"{self.tag}_clear", "Remove the done, failed and cancelled jobs from this list (their files stay; "
                                 "running jobs stay in the list).")
        dpg.add_group(tag=self.tag)

    def shown(self) -> List:
        """The jobs with a row in the list (the owner's jobs less the cleared ones)."""
        jobs = list(self.jobs_of())
        present = {id(j) for j in jobs}
        for key in [k for k in self._cleared if k not in present]:     # the owner dropped it: forget it
            del self._cleared[key]
        return [j for j in jobs if id(j) not in self._cleared]

    def clear_finished(self) -> None:
        for job in self.shown():
            if job.finished:
                self._cleared[id(job)] = job

    def tick(self) -> None:
        jobs = self.shown()
        if [id(j) for j in jobs] != [id(j) for j in self._shown]:
            self._rebuild(jobs)
        for i, job in enumerate(jobs):
            row = f"{self.tag}_{i}"
            state = job.state
            look = job_look(state, job.progress, job.message or "", job.output_path)
            dpg.set_value(f"{row}_bar", look.bar)
            dpg.configure_item(f"{row}_bar", overlay=look.overlay)
            dpg.set_value(f"{row}_msg", look.text)
            if state != self._states[i]:        # colours and buttons change only with the state
                self._states[i] = state
                dpg.configure_item(f"{row}_cancel", show=state == "running")
                dpg.configure_item(f"{row}_msg", color=look.colour)
                dpg.bind_item_theme(f"{row}_bar", _bar_theme(state) if state in BAR_FILL else 0)
                dpg.configure_item(f"{self.tag}_clear", show=any(j.finished for j in jobs))

    def _rebuild(self, jobs) -> None:
        dpg.delete_item(self.tag, children_only=True)
        for i, job in enumerate(jobs):
            row = f"{self.tag}_{i}"
            with dpg.group(parent=self.tag):
                dpg.add_text(job.label)
                with dpg.group(horizontal=True):
                    dpg.add_progress_bar(tag=f"{row}_bar", width=-px(70), default_value=0.0)
                    dpg.add_button(label="Cancel", tag=f"{row}_cancel", callback=lambda s, a, u: u.cancel(),
                                   user_data=job)
                    tip(f"{row}_cancel", "Stop this job at its next step; nothing is written for it.")
                dpg.add_text("", tag=f"{row}_msg", wrap=0, color=colour("MUTED"))
        self._shown = jobs
        self._states = [""] * len(jobs)        # "": not drawn yet, so the first tick styles every row
        dpg.configure_item(f"{self.tag}_clear", show=any(j.finished for j in jobs))


_BUTTON_THEMES: dict = {}


def greyed_when_disabled() -> int:
    """A button theme that greys a disabled button out (Dear ImGui draws it like an enabled one), so
    that a button that can do nothing now looks it (the Training and Invert panels' buttons)."""
    if not is_theme(_BUTTON_THEMES.get("disabled")):
        with dpg.theme() as theme:
            with dpg.theme_component(dpg.mvButton, enabled_state=False):
                dpg.add_theme_color(dpg.mvThemeCol_Text, (110, 110, 110))
                for col in (dpg.mvThemeCol_Button, dpg.mvThemeCol_ButtonHovered, dpg.mvThemeCol_ButtonActive):
                    dpg.add_theme_color(col, (45, 45, 48))
        _BUTTON_THEMES["disabled"] = theme
    return _BUTTON_THEMES["disabled"]
