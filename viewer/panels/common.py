"""Small widgets several panels share: a path field with a file dialog, and the list of background
jobs with progress bars and cancel buttons."""

from __future__ import annotations

import os
from typing import Callable, Iterable, List, Optional

import dearpygui.dearpygui as dpg

MUTED = (150, 150, 150)
GOOD = (120, 210, 120)
BAD = (255, 110, 100)


def hint(text: str) -> None:
    dpg.add_text(text, color=MUTED, wrap=0)


def path_field(tag: str, label: str, default: str = "", *, directory: bool = False,
               extensions: Iterable[str] = (), width: int = -80, on_pick: Optional[Callable[[str], None]] = None,
               hint_text: str = "") -> None:
    """An input_text named `tag` with a "..." button that opens a file (or folder) dialog into it."""
    dialog = f"{tag}_dialog"

    def picked(sender, app_data):
        path = app_data.get("file_path_name") or ""
        if directory:
            path = app_data.get("current_path") or path
        if not path:
            return
        dpg.set_value(tag, path)
        if on_pick is not None:
            on_pick(path)

    start = os.path.dirname(default) if default and not directory else (default or os.getcwd())
    with dpg.file_dialog(tag=dialog, directory_selector=directory, show=False, modal=True, callback=picked,
                         width=640, height=420, default_path=start if os.path.isdir(start) else os.getcwd()):
        if not directory:
            for ext in extensions:
                dpg.add_file_extension(ext)
            dpg.add_file_extension(".*")
    with dpg.group(horizontal=True):
        dpg.add_input_text(tag=tag, default_value=default, width=width, hint=hint_text)
        dpg.add_button(label="...", tag=f"{tag}_browse", callback=lambda: dpg.show_item(dialog))
        dpg.add_text(label)


class JobList:
    """One row per background job: label, progress bar, Cancel while running, then the result
    (output path or error). Rows are rebuilt only when jobs are added; values refresh each frame."""

    def __init__(self, tag: str, jobs_of: Callable[[], List]):
        self.tag = tag
        self.jobs_of = jobs_of
        self._shown: List = []

    def build(self) -> None:
        dpg.add_group(tag=self.tag)

    def tick(self) -> None:
        jobs = list(self.jobs_of())
        if [id(j) for j in jobs] != [id(j) for j in self._shown]:
            self._rebuild(jobs)
        for i, job in enumerate(jobs):
            row = f"{self.tag}_{i}"
            state = job.state
            progress = float(job.progress or 0.0)
            dpg.set_value(f"{row}_bar", progress)
            dpg.configure_item(f"{row}_bar", overlay=f"{state} {100 * progress:.0f}%")
            dpg.configure_item(f"{row}_cancel", show=state == "running")
            text, colour = job.message or "", MUTED
            if state == "done":
                text, colour = (f"saved {job.output_path}" if job.output_path else (job.message or "done")), GOOD
            elif state == "failed":
                colour = BAD
            dpg.set_value(f"{row}_msg", text)
            dpg.configure_item(f"{row}_msg", color=colour)

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
                dpg.add_text("", tag=f"{row}_msg", wrap=0)
        self._shown = jobs
