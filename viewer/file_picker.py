"""The viewer's own file and folder picker: a modal window behind every path field's "..." button.

DearPyGui's built-in file dialog (ImGuiFileDialog) does not fit: its first filter hides `.pkl`
snapshots, its size column speaks French units ("5.50 Mo"), and a path typed into its path box is
appended to the current one. This picker has a path box you can type into (Enter goes to a folder
or opens a file), Up, a filter (the field's file types and folders, or all files), a table of
entries (folders first, then files; name, size, modified), click to select, double-click or Open to
open, Cancel. In folder mode (run, export and runs folders) it lists folders only and Choose takes
the selected folder, or the folder shown when none is selected.

The listing logic (what is shown, in which order, how sizes read, which folders cannot be read) is
in the pure functions at the top, unit-tested without a display (tests/test_viewer_file_picker.py).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable, Iterable, List, Optional, Sequence

import dearpygui.dearpygui as dpg

from trigan.viewer.ui_style import colour, current_theme, recolour_texts, tip

ALL_FILES = "all files"
# What a field's file types are called in the filter combo (a type not listed: "files").
KIND_OF_EXTENSION = {".ckpt": "checkpoints", ".pkl": "checkpoints", ".zip": "datasets", ".npz": "inversions",
                     **{e: "images" for e in (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")}}
WINDOW = "file_picker"
PATH_BOX, UP, FILTER, TABLE = "file_picker_path", "file_picker_up", "file_picker_filter", "file_picker_table"
MESSAGE, SELECTED = "file_picker_message", "file_picker_selected"
OPEN, CANCEL = "file_picker_open", "file_picker_cancel"
ROW_HANDLERS = "file_picker_row_handlers"
MUTED, BAD = (150, 150, 150), (255, 110, 100)

SIZE_UNITS = ("KB", "MB", "GB", "TB")


class PickerError(Exception):
    """A one-line reason the picker cannot show or take a path."""


@dataclass(frozen=True)
class Entry:
    name: str
    path: str
    is_dir: bool
    size: Optional[int]            # bytes; None for folders and entries whose stat failed
    modified: Optional[float]      # seconds since the epoch


# -- pure logic ------------------------------------------------------------------------------------

def format_size(size: Optional[int]) -> str:
    """Bytes in English binary units: "512 B", "703.4 KB", "5.50 MB", "1.25 GB"."""
    if size is None:
        return ""
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in SIZE_UNITS:
        value /= 1024.0
        if value < 1024 or unit == SIZE_UNITS[-1]:
            return f"{value:.1f} {unit}" if unit == "KB" else f"{value:.2f} {unit}"
    raise AssertionError("unreachable")


def format_modified(timestamp: Optional[float]) -> str:
    """Local date and time to the minute ("2026-12-07 04:55"), "" when unknown."""
    return "" if timestamp is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp))


def filter_label(extensions: Sequence[str]) -> str:
    """The default filter's name: "checkpoints (.ckpt, .pkl) and folders"."""
    kinds = {KIND_OF_EXTENSION.get(e.lower(), "files") for e in extensions}
    kind = kinds.pop() if len(kinds) == 1 else "files"
    return f"{kind} ({', '.join(extensions)}) and folders"


def filter_choices(extensions: Sequence[str]) -> List[str]:
    """The filter combo's items, the field's own types first (a field without types: all files)."""
    return [filter_label(extensions), ALL_FILES] if extensions else [ALL_FILES]


def extensions_of_filter(choice: str, extensions: Sequence[str]) -> Optional[Sequence[str]]:
    """The extensions a filter choice shows; None: every file."""
    return None if choice == ALL_FILES or not extensions else extensions


def list_folder(folder: str, extensions: Optional[Iterable[str]] = None, *, folders_only: bool = False,
                show_hidden: bool = False) -> List[Entry]:
    """The entries of `folder` the picker shows: folders first, then files, each by name ignoring
    case. extensions (e.g. (".ckpt", ".pkl"), case-insensitive) keeps only those files; None keeps
    every file. Names starting with "." only with show_hidden. Raises PickerError (one line) when
    the folder cannot be read."""
    wanted = None if extensions is None else tuple(e.lower() for e in extensions)
    try:
        with os.scandir(folder) as it:
            raw = list(it)
    except FileNotFoundError:
        raise PickerError(f"{folder}: no such folder") from None
    except NotADirectoryError:
        raise PickerError(f"{folder}: not a folder") from None
    except PermissionError:
        raise PickerError(f"{folder}: cannot read this folder (permission denied)") from None
    except OSError as exc:
        raise PickerError(f"{folder}: cannot read this folder ({exc.strerror or exc})") from None
    folders, files = [], []
    for item in raw:
        if item.name.startswith(".") and not show_hidden:
            continue
        try:
            is_dir = item.is_dir()              # follows links: a link to a folder is a folder
        except OSError:
            is_dir = False
        if is_dir:
            folders.append(Entry(item.name, item.path, True, None, _mtime(item)))
        elif not folders_only and (wanted is None or item.name.lower().endswith(wanted)):
            files.append(Entry(item.name, item.path, False, _size(item), _mtime(item)))
    return sorted(folders, key=_by_name) + sorted(files, key=_by_name)


def _by_name(entry: Entry):
    return entry.name.lower(), entry.name


def _size(item: os.DirEntry) -> Optional[int]:
    try:
        return item.stat().st_size
    except OSError:                          # a dangling link
        return None


def _mtime(item: os.DirEntry) -> Optional[float]:
    try:
        return item.stat().st_mtime
    except OSError:
        return None


def resolve_typed(text: str, folder: str) -> str:
    """A path typed into the path box, as an absolute path: "~" expanded, a relative one taken from
    the folder shown. The typed text replaces the shown path; it is never appended to it."""
    text = os.path.expanduser(text.strip())
    if not text:
        return folder
    return os.path.normpath(text if os.path.isabs(text) else os.path.join(folder, text))


def start_folder(value: str, fallback: Optional[str] = None) -> str:
    """Where the picker opens for a field's value: the folder it names, the folder of the file it
    names (or would name), else `fallback` (the working directory)."""
    path = os.path.abspath(os.path.expanduser(value.strip())) if value and value.strip() else ""
    for candidate in (path, os.path.dirname(path)) if path else ():
        if os.path.isdir(candidate):
            return candidate
    return fallback or os.getcwd()


def parent_folder(folder: str) -> str:
    return os.path.dirname(os.path.normpath(folder)) or folder


# -- the window ------------------------------------------------------------------------------------

class FilePicker:
    """One modal window, reused by every path field (only one can be open at a time)."""

    def __init__(self):
        self.folder = os.getcwd()
        self.directory = False
        self.extensions: Sequence[str] = ()
        self.on_chosen: Optional[Callable[[str], None]] = None
        self.entries: List[Entry] = []
        self.selected: Optional[Entry] = None
        self._built = False

    # -- opening and closing ------------------------------------------------------------------------
    def open(self, start: str, *, directory: bool, extensions: Sequence[str],
             on_chosen: Callable[[str], None]) -> None:
        self._build()
        self.directory, self.extensions, self.on_chosen = directory, tuple(extensions), on_chosen
        choices = filter_choices(self.extensions)
        dpg.configure_item(FILTER, items=choices, show=not directory)
        dpg.set_value(FILTER, choices[0])
        dpg.configure_item(WINDOW, label="Choose a folder" if directory else "Open a file")
        dpg.configure_item(OPEN, label="Choose" if directory else "Open")
        self._message("")
        if not self.go_to(start_folder(start)):
            self.go_to(os.getcwd())
        self._place()
        dpg.configure_item(WINDOW, show=True)

    def close(self) -> None:
        if self._built and dpg.does_item_exist(WINDOW):
            dpg.configure_item(WINDOW, show=False)

    @property
    def shown(self) -> bool:
        return self._built and dpg.does_item_exist(WINDOW) and bool(dpg.is_item_shown(WINDOW))

    def _choose(self, path: str) -> None:
        callback = self.on_chosen
        self.close()
        if callback is not None:
            callback(path)

    # -- navigation ---------------------------------------------------------------------------------
    def go_to(self, folder: str) -> bool:
        """List `folder`; if it cannot be read, keep the listing shown and say why."""
        try:
            entries = list_folder(folder, self._shown_extensions(), folders_only=self.directory,
                                  show_hidden=self._shows_all())
        except PickerError as exc:
            self._message(str(exc))
            return False
        self.folder, self.entries, self.selected = folder, entries, None
        dpg.set_value(PATH_BOX, folder)
        self._fill_table()
        self._message("" if entries else "nothing here to pick" + ("" if self.directory else
                                                                    f" ({dpg.get_value(FILTER)})"))
        self._show_selected()
        return True

    def _shows_all(self) -> bool:
        return not self.directory and dpg.get_value(FILTER) == ALL_FILES

    def _shown_extensions(self) -> Optional[Sequence[str]]:
        return None if self.directory else extensions_of_filter(dpg.get_value(FILTER), self.extensions)

    def _typed(self, sender=None, text=None) -> None:
        """Enter in the path box: a folder is listed, a file is opened (files mode)."""
        path = resolve_typed(dpg.get_value(PATH_BOX) if text is None else text, self.folder)
        if os.path.isdir(path):
            self.go_to(path)
        elif os.path.isfile(path):
            if self.directory:
                self._message(f"{path}: a file; choose a folder")
            else:
                self._choose(path)
        else:
            self._message(f"{path}: no such file or folder")

    def _up(self) -> None:
        self.go_to(parent_folder(self.folder))

    def _filter_changed(self) -> None:
        self.go_to(self.folder)

    # -- rows ---------------------------------------------------------------------------------------
    def _fill_table(self) -> None:
        dpg.delete_item(TABLE, children_only=True, slot=1)        # slot 1: the rows (0: the columns)
        for i, entry in enumerate(self.entries):
            with dpg.table_row(parent=TABLE):
                dpg.add_selectable(label=entry.name + ("/" if entry.is_dir else ""), tag=f"file_picker_row_{i}",
                                   span_columns=True, user_data=entry, callback=self._row_clicked)
                dpg.bind_item_handler_registry(f"file_picker_row_{i}", ROW_HANDLERS)
                dpg.add_text(format_size(entry.size), tag=f"file_picker_size_{i}")
                dpg.add_text(format_modified(entry.modified), tag=f"file_picker_modified_{i}", color=colour("MUTED"))

    def _row_clicked(self, sender, app_data, entry: Entry) -> None:
        self.selected = entry
        for i in range(len(self.entries)):
            dpg.set_value(f"file_picker_row_{i}", self.entries[i] is entry)
        self._message("")
        self._show_selected()

    def _row_double_clicked(self, sender, app_data) -> None:
        item = app_data[1] if isinstance(app_data, (list, tuple)) and len(app_data) > 1 else None
        entry = dpg.get_item_user_data(item) if item is not None and dpg.does_item_exist(item) else None
        if isinstance(entry, Entry):
            self._open_entry(entry)

    def _open_entry(self, entry: Entry) -> None:
        """Double-click: into a folder, or open a file."""
        if entry.is_dir:
            self.go_to(entry.path)
        else:
            self._choose(entry.path)

    def _open_pressed(self) -> None:
        entry = self.selected
        if self.directory:
            self._choose(entry.path if entry is not None else self.folder)
        elif entry is None:
            self._message("select a file, or type its path above and press Enter")
        else:
            self._open_entry(entry)

    def _show_selected(self) -> None:
        if self.selected is not None:
            text = f"selected: {self.selected.name}"
        else:
            text = "no folder selected: Choose takes the folder shown" if self.directory else ""
        dpg.set_value(SELECTED, text)

    def _message(self, text: str) -> None:
        dpg.set_value(MESSAGE, text)

    # -- building -----------------------------------------------------------------------------------
    def _place(self) -> None:
        vw, vh = dpg.get_viewport_client_width(), dpg.get_viewport_client_height()
        w, h = min(720, max(360, vw - 40)), min(480, max(260, vh - 40))
        dpg.configure_item(WINDOW, width=w, height=h, pos=(max(0, (vw - w) // 2), max(0, (vh - h) // 2)))

    def _build(self) -> None:
        if self._built and dpg.does_item_exist(WINDOW):
            return
        with dpg.item_handler_registry(tag=ROW_HANDLERS):
            dpg.add_item_double_clicked_handler(button=dpg.mvMouseButton_Left, callback=self._row_double_clicked)
        with dpg.window(tag=WINDOW, label="Open a file", modal=True, show=False, no_saved_settings=True,
                        no_collapse=True, width=720, height=480, on_close=self.close):
            with dpg.group(horizontal=True):
                dpg.add_button(label="Up", tag=UP, callback=self._up)
                dpg.add_input_text(tag=PATH_BOX, width=-1, on_enter=True, callback=self._typed,
                                   hint="type a folder or file and press Enter")
            dpg.add_combo(tag=FILTER, items=[ALL_FILES], default_value=ALL_FILES, label="show", width=-60,
                          callback=self._filter_changed)
            with dpg.table(tag=TABLE, header_row=True, scrollY=True, height=-58, row_background=True,
                           borders_innerV=True, policy=dpg.mvTable_SizingStretchProp):
                dpg.add_table_column(label="name", width_stretch=True, init_width_or_weight=3.0)
                dpg.add_table_column(label="size", width_stretch=True, init_width_or_weight=1.0)
                dpg.add_table_column(label="modified", width_stretch=True, init_width_or_weight=1.5)
            dpg.add_text("", tag=MESSAGE, color=BAD)
            with dpg.group(horizontal=True):
                dpg.add_button(label="Open", tag=OPEN, width=80, callback=self._open_pressed)
                dpg.add_button(label="Cancel", tag=CANCEL, width=80, callback=self.close)
                dpg.add_text("", tag=SELECTED, color=colour("MUTED"))
        tip(UP, "Go to the folder above.")
        tip(PATH_BOX, "Type a folder and press Enter to go there, or a file to open it.")
        tip(FILTER, "Which files are listed: the field's file types (and folders), or all files.")
        tip(OPEN, "Open: the selected file (a folder: go into it; double-click a row does the same). "
                 "Choose (folder fields): the selected folder, or the folder shown when none is selected.")
        tip(CANCEL, "Close the picker without choosing.")
        recolour_texts(current_theme())
        self._built = True


_PICKER: Optional[FilePicker] = None


def file_picker() -> FilePicker:
    """The window's one picker (built when first opened)."""
    global _PICKER
    if _PICKER is None:
        _PICKER = FilePicker()
    return _PICKER


def open_file_picker(start: str, *, directory: bool = False, extensions: Sequence[str] = (),
                     on_chosen: Callable[[str], None]) -> None:
    file_picker().open(start, directory=directory, extensions=extensions, on_chosen=on_chosen)
