"""Hand a folder to the desktop: the Export panel's "Open folder" shows the export folder in the
desktop's file manager (xdg-open on Linux and the BSDs, `open` on macOS, os.startfile on Windows).

The opener is started detached (its own session, no stdin/stdout, reaped by a daemon thread) and
never waited for in the GUI thread: a file manager that takes seconds to appear, or never exits,
does not stop a frame. Problems come back as one line for the panel, never as an exception.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from typing import List, Optional

OPENERS = {"darwin": "open"}          # any other POSIX desktop: xdg-open (freedesktop.org)
DEFAULT_OPENER = "xdg-open"


def opener_command(platform: str = sys.platform) -> Optional[List[str]]:
    """The program that shows a folder on this platform, found on PATH (None: there is none).
    Windows needs none: os.startfile does it."""
    name = OPENERS.get(platform, DEFAULT_OPENER)
    found = shutil.which(name)
    return [found] if found else None


def open_folder(folder) -> str:
    """Show `folder` in the file manager. Returns "" once the opener has started, else one line
    saying why not (a missing folder, no opener on this system, an opener that failed to start)."""
    folder = os.path.expanduser(str(folder or "").strip())
    if not folder:
        return "choose an export folder first"
    if not os.path.isdir(folder):
        what = "is a file, not a folder" if os.path.exists(folder) else "does not exist yet (nothing exported there)"
        return f"export folder {folder}: {what}"
    if sys.platform.startswith("win"):
        try:
            os.startfile(folder)
        except OSError as exc:
            return f"could not open {folder}: {exc.strerror or exc}"
        return ""
    command = opener_command()
    if command is None:
        name = OPENERS.get(sys.platform, DEFAULT_OPENER)
        return f"cannot open {folder}: no {name} on this system (install xdg-utils, or open the folder yourself)"
    try:
        proc = subprocess.Popen(command + [folder], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
    except OSError as exc:
        return f"could not start {command[0]}: {exc.strerror or exc}"
    # Reap it whenever it ends (xdg-open may stay as long as the file manager does); never joined.
    threading.Thread(target=proc.wait, name="trigan-open-folder", daemon=True).start()
    return ""


__all__ = ["open_folder", "opener_command"]
