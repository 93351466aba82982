"""Model panel: open a checkpoint (trigan .ckpt or official EpiGRAF .pkl) or a run directory (best or
latest snapshot), recent files, and the model's summary.

Loading happens in the render worker (`RenderWorker.open` / `model_info`), between renders, so the
GUI never waits for a model; the panel shows "loading" until the worker's ModelInfo lands, and if
the file cannot be opened, goes back to the model still in use with the reason in red.

Enter in the path fields opens what was typed; a file dropped on the window opens too (open_dropped).
"""

from __future__ import annotations

import os
import re
from typing import List, Optional, Sequence, Tuple

import dearpygui.dearpygui as dpg

from trigan.core.summary import summary_rows
from trigan.viewer.panels.common import BAD, MUTED, colour, path_field, tip
from trigan.viewer.panels.interface import ViewerActions, ViewerState

CKPT_FIELD = "model_path"
LATEST = "model_latest"
RECENT = "model_recent"
SUMMARY = "model_summary"
HEADLINE = "model_headline"
MESSAGE = "model_message"
SUMMARY_TABLE = "model_summary_table"
MODEL_EXTENSIONS = (".ckpt", ".pkl")
NBSP = "\u00a0"          # ImGui wraps text at spaces only: a no-break space keeps a label with its number
# a space between a word and a number ("step 5,110") or between a number and its unit ("30 deg")
_NUMBER_SPACE = re.compile(r"(?<=\S) (?=[-+]?\.?\d)|(?<=\d) (?=(?:deg|rad|kimg|classes|channels|samples|x)\b)")


def keep_numbers_with_labels(text: str) -> str:
    """Non-breaking spaces where wrapping would tear a label from its value ("fov 30 deg")."""
    return _NUMBER_SPACE.sub(NBSP, text)


def choose_dropped(paths: Sequence[str]) -> Tuple[Optional[str], str]:
    """Of files dropped on the window, the first that is a model (a .ckpt or .pkl file, or a folder:
    a training run) and "", or None and a one-line message naming what was dropped."""
    paths = [str(p) for p in paths if str(p).strip()]
    for path in paths:
        if os.path.isdir(path) or (os.path.isfile(path) and path.lower().endswith(MODEL_EXTENSIONS)):
            return path, ""
    if not paths:
        return None, "nothing was dropped"
    first = os.path.basename(os.path.normpath(paths[0])) or paths[0]
    more = f" (and {len(paths) - 1} more)" if len(paths) > 1 else ""
    what = "a missing file" if not os.path.exists(paths[0]) else "not a model"
    return None, f"dropped {first}{more}: {what}; expected a checkpoint (.ckpt, .pkl) or a run folder"


def headline(summary: dict) -> str:
    """One line: name, image size, classes, parameters, training progress."""
    classes = summary["classes"]
    text = (f"{summary['name']} ({summary['family']}), {summary['image_resolution']}^2, "
            + (f"{classes} classes" if classes else "unconditional")
            + f", {summary['parameters']['total'] / 1e6:.2f}M parameters")
    kimg = (summary.get("progress") or {}).get("kimg")
    if isinstance(kimg, (int, float)):
        text += f", {kimg:g} kimg"
    return text


class ModelPanel:
    def __init__(self, state: ViewerState, actions: ViewerActions):
        self.state, self.actions = state, actions

    def build(self) -> None:
        s = self.state.settings
        path_field(CKPT_FIELD, "file", default=s.last_model or "", extensions=MODEL_EXTENSIONS,
                   on_pick=lambda p: self.open(p), hint_text="checkpoint (.ckpt, .pkl) or run folder",
                   description="The model to show: a trigan checkpoint (.ckpt), an official EpiGRAF or 3DGP "
                               "snapshot (.pkl) or a training run folder. Type it and press Enter, or pick it with ...")
        path_field("model_run", "run", default="", directory=True, on_pick=lambda p: self.open(p),
                   hint_text="training run folder",
                   description="A training run folder: opens its best snapshot (its newest with 'latest "
                               "snapshot for run folders'). Enter or a pick opens it.")
        with dpg.group(horizontal=True):
            dpg.add_button(label="Open", tag="model_open", callback=lambda: self.open(dpg.get_value(CKPT_FIELD)))
            dpg.add_button(label="Reload", tag="model_reload", callback=lambda: self.actions.reload_model())

        dpg.add_checkbox(label="latest snapshot for run folders", tag=LATEST, default_value=False)
        dpg.add_combo(items=list(s.recent_files), tag=RECENT, label="recent", width=-80,
                      callback=lambda sender, value: self.open(value))
        tip("model_open", "Open the checkpoint or run folder typed in the file field.")
        tip("model_reload", "Read the open checkpoint again (after a training run replaced it); the camera stays.")
        tip(LATEST, "For a run folder: open its newest snapshot (latest.ckpt) instead of its best one.")
        tip(RECENT, "The models opened last, newest first: choose one to open it again.")
        dpg.add_text("", tag=MESSAGE, wrap=0, color=BAD)
        dpg.add_text("no model", tag=HEADLINE, wrap=0)
        with dpg.tree_node(label="summary", tag="model_summary_node", default_open=False):
            dpg.add_text("", tag=SUMMARY, wrap=0, color=MUTED)       # where the model came from
            # label | value rows: a value wraps inside its own column, under itself
            with dpg.table(tag=SUMMARY_TABLE, header_row=False, policy=dpg.mvTable_SizingFixedFit):
                dpg.add_table_column(width_fixed=True)
                dpg.add_table_column(width_stretch=True)

    def open(self, path: str) -> None:
        path = (path or "").strip()
        if not path:
            self.set_message("type a checkpoint path or pick one with ...")
            return
        dpg.set_value(CKPT_FIELD, path)
        self.actions.open_model(path, latest=bool(dpg.get_value(LATEST)))

    def open_dropped(self, paths: List[str]) -> None:
        """Files dropped on the window: the first model among them opens, as if typed."""
        path, problem = choose_dropped(paths)
        if path is None:
            self.set_message(problem)
        else:
            self.open(path)

    def set_message(self, text: str) -> None:
        dpg.set_value(MESSAGE, (text or "").strip().splitlines()[0] if (text or "").strip() else "")

    def show_loading(self, source: str) -> None:
        self.set_message("")
        dpg.set_value(HEADLINE, f"loading {source} ... (the view keeps running)")

    def show_failed(self, error: str, current=None) -> None:
        """A model could not be opened: the headline goes back to the model still in use (current:
        its scene.ModelInfo, None when there is none) and the reason stays in red until the next open."""
        dpg.set_value(HEADLINE, self._headline_of(current) if current is not None else "no model")
        self.set_message(error)          # the field keeps what was typed, to correct it

    @staticmethod
    def _headline_of(info) -> str:
        return headline(info.summary) + f", on {info.device}"

    def show_info(self, info, recent: List[str]) -> None:
        """info: the worker's scene.ModelInfo."""
        self.set_message("")
        dpg.set_value(CKPT_FIELD, info.path)
        source = info.path if info.path == info.file else f"{info.path} -> {info.file}"
        dpg.set_value(SUMMARY, f"{source} ({info.summary.get('format', 'model')})")
        self._fill_summary(summary_rows(info.summary) + [("device", [str(info.device)])])
        dpg.set_value(HEADLINE, self._headline_of(info))
        dpg.configure_item(RECENT, items=list(recent))
        dpg.set_value(RECENT, "")

    def _fill_summary(self, rows) -> None:
        dpg.delete_item(SUMMARY_TABLE, children_only=True, slot=1)
        for i, (label, parts) in enumerate(rows):
            with dpg.table_row(parent=SUMMARY_TABLE):
                dpg.add_text(label, color=colour("MUTED"))
                dpg.add_text(", ".join(keep_numbers_with_labels(p) for p in parts), tag=f"{SUMMARY}_{i}", wrap=0)
