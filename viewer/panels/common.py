"""Small widgets several panels share: a path field with a file picker, and the list of background
jobs with progress bars and cancel buttons."""

from __future__ import annotations

from typing import Callable, Dict, Iterable, List, NamedTuple, Optional, Tuple

import dearpygui.dearpygui as dpg

from trigan.viewer.file_picker import open_file_picker

MUTED = (150, 150, 150)
GOOD = (120, 210, 120)
BAD = (255, 110, 100)
CANCELLED = (235, 160, 60)          # orange: stopped on request, neither done (green) nor failed (red)
# The progress bar's fill per finished state; a running bar keeps the theme's colour.
BAR_FILL = {"done": (70, 150, 70), "failed": (170, 60, 55), "cancelled": (110, 100, 90)}


def hint(text: str) -> None:
    dpg.add_text(text, color=MUTED, wrap=0)


def path_field(tag: str, label: str, default: str = "", *, directory: bool = False,
               extensions: Iterable[str] = (), width: Optional[int] = None, on_pick: Optional[Callable[[str], None]] = None,
               hint_text: str = "") -> None:
    """An input_text named `tag` with a "..." button that opens the viewer's file (or folder) picker
    (viewer/file_picker.py) into it. Enter in the field, like a pick, calls on_pick with the typed
    path; the field's tooltip shows its whole value (a long path is cut in the field)."""
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
        _value_tooltip(tag)
        dpg.add_button(label="...", tag=f"{tag}_browse", callback=browse)
        dpg.add_text(label)


def _value_tooltip(tag: str) -> None:
    """A tooltip with the whole value of the input `tag`. Its text shares the input's value
    (source), so it is never out of date; hovering hides it while the field is empty."""
    tip = f"{tag}_tip"
    with dpg.tooltip(tag, tag=tip, show=bool(dpg.get_value(tag))):
        dpg.add_text(tag=f"{tag}_tooltip", source=tag, wrap=600)
    with dpg.item_handler_registry() as handlers:
        dpg.add_item_hover_handler(callback=lambda: dpg.configure_item(tip, show=bool(dpg.get_value(tag))))
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
        return JobLook(1.0, "done", f"saved {output_path}" if output_path else (message or "done"), GOOD)
    if state == "failed":
        return JobLook(progress, f"failed at {percent}", message or "failed", BAD)
    if state == "cancelled":
        return JobLook(progress, f"cancelled at {percent}", message or "cancelled", CANCELLED)
    return JobLook(progress, f"{state} {percent}", message or "", MUTED)


_BAR_THEMES: Dict[str, int] = {}


def _bar_theme(state: str) -> int:
    """A progress bar theme with the fill colour of a finished state (made once)."""
    theme = _BAR_THEMES.get(state)
    if theme is None or not dpg.does_item_exist(theme):
        with dpg.theme() as theme:
            with dpg.theme_component(dpg.mvProgressBar):
                dpg.add_theme_color(dpg.mvThemeCol_PlotHistogram, BAR_FILL[state])
        _BAR_THEMES[state] = theme
    return theme


class JobList:
    """One row per background job: label, progress bar, Cancel while running, then the result
    (output path or error). Rows are rebuilt only when jobs are added; values refresh each frame.
    Done, failed and cancelled rows each have their own words and colours (job_look)."""

    def __init__(self, tag: str, jobs_of: Callable[[], List]):
        self.tag = tag
        self.jobs_of = jobs_of
        self._shown: List = []
        self._states: List[str] = []

    def build(self) -> None:
        dpg.add_group(tag=self.tag)

    def tick(self) -> None:
        jobs = list(self.jobs_of())
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

    def _rebuild(self, jobs) -> None:
        dpg.delete_item(self.tag, children_only=True)
        for i, job in enumerate(jobs):
            row = f"{self.tag}_{i}"
            with dpg.group(parent=self.tag):
                dpg.add_text(job.label)
                with dpg.group(horizontal=True):
                    dpg.add_progress_bar(tag=f"{row}_bar", width=-70, default_value=0.0)
                    dpg.add_button(label="Cancel", tag=f"{row}_cancel", callback=lambda s, a, u: u.cancel(),
                                   user_data=job)
                dpg.add_text("", tag=f"{row}_msg", wrap=0, color=MUTED)
        self._shown = jobs
        self._states = [""] * len(jobs)        # "": not drawn yet, so the first tick styles every row


_BUTTON_THEMES: dict = {}


def greyed_when_disabled() -> int:
    """A button theme that greys a disabled button out (Dear ImGui draws it like an enabled one), so
    that a button that can do nothing now looks it (the Training and Invert panels' buttons)."""
    if "disabled" not in _BUTTON_THEMES or not dpg.does_item_exist(_BUTTON_THEMES["disabled"]):
        with dpg.theme() as theme:
            with dpg.theme_component(dpg.mvButton, enabled_state=False):
                dpg.add_theme_color(dpg.mvThemeCol_Text, (110, 110, 110))
                for col in (dpg.mvThemeCol_Button, dpg.mvThemeCol_ButtonHovered, dpg.mvThemeCol_ButtonActive):
                    dpg.add_theme_color(col, (45, 45, 48))
        _BUTTON_THEMES["disabled"] = theme
    return _BUTTON_THEMES["disabled"]
