"""Model panel: open a checkpoint (trigan .ckpt or official EpiGRAF .pkl) or a run directory (best or
latest snapshot), recent files, and the model's summary.

Loading happens in the render worker (`RenderWorker.open` / `model_info`), between renders, so the
GUI never waits for a model; the panel shows "loading" until the worker's ModelInfo lands.
"""

from __future__ import annotations

from typing import List

import dearpygui.dearpygui as dpg

from trigan.core.summary import format_summary
from trigan.viewer.panels.common import BAD, MUTED, path_field

CKPT_FIELD = "model_path"
LATEST = "model_latest"
RECENT = "model_recent"
SUMMARY = "model_summary"
HEADLINE = "model_headline"
MESSAGE = "model_message"


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
    def __init__(self, app):
        self.app = app

    def build(self) -> None:
        s = self.app.settings
        path_field(CKPT_FIELD, "file", default=s.last_model or "", extensions=(".ckpt", ".pkl"),
                   on_pick=lambda p: self.open(p), hint_text="checkpoint (.ckpt, .pkl) or run folder")
        path_field("model_run", "run", default="", directory=True, on_pick=lambda p: self.open(p),
                   hint_text="training run folder")
        with dpg.group(horizontal=True):
            dpg.add_button(label="Open", tag="model_open", callback=lambda: self.open(dpg.get_value(CKPT_FIELD)))
            dpg.add_button(label="Reload", tag="model_reload", callback=self.app.reload_model)

        dpg.add_checkbox(label="latest snapshot for run folders", tag=LATEST, default_value=False)
        dpg.add_combo(items=list(s.recent_files), tag=RECENT, label="recent", width=-80,
                      callback=lambda sender, value: self.open(value))
        dpg.add_text("", tag=MESSAGE, wrap=0, color=BAD)
        dpg.add_text("no model", tag=HEADLINE, wrap=0)
        with dpg.tree_node(label="summary", tag="model_summary_node", default_open=False):
            dpg.add_text("", tag=SUMMARY, wrap=0, color=MUTED)

    def open(self, path: str) -> None:
        path = (path or "").strip()
        if not path:
            self.set_message("type a checkpoint path or pick one with ...")
            return
        dpg.set_value(CKPT_FIELD, path)
        self.app.open_model(path, latest=bool(dpg.get_value(LATEST)))

    def set_message(self, text: str) -> None:
        dpg.set_value(MESSAGE, text)

    def show_loading(self, source: str) -> None:
        self.set_message("")
        dpg.set_value(HEADLINE, f"loading {source} ... (the view keeps running)")

    def show_info(self, info, recent: List[str]) -> None:
        """info: the worker's scene.ModelInfo."""
        self.set_message("")
        dpg.set_value(CKPT_FIELD, info.path)
        source = info.path if info.path == info.file else f"{info.path} -> {info.file}"
        dpg.set_value(SUMMARY, format_summary(info.summary, f"{source} ({info.summary.get('format', 'model')})")
                      + f"\n  device       {info.device}")
        dpg.set_value(HEADLINE, headline(info.summary) + f", on {info.device}")
        dpg.configure_item(RECENT, items=list(recent))
        dpg.set_value(RECENT, "")
