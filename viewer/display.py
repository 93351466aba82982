"""Is there a screen to open a window on?

DearPyGui aborts the whole process (SIGABRT, which Python cannot catch) when `show_viewport()`
finds no X server, so `trigan view` asks this module first and exits with one line instead.
The check talks to the X server through Xlib (the library DearPyGui itself links against) via
ctypes, so it costs a few milliseconds and opens no window.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from typing import Optional


def _load_xlib():
    for name in ("libX11.so.6", ctypes.util.find_library("X11")):
        if not name:
            continue
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


def _x_server_answers(display: str) -> Optional[str]:
    """None when XOpenDisplay(display) succeeds (and has GLX where libGL can be found), else why not."""
    xlib = _load_xlib()
    if xlib is None:
        return "libX11 is not installed (the viewer needs an X11 desktop or Xvfb)"
    xlib.XOpenDisplay.restype = ctypes.c_void_p
    xlib.XOpenDisplay.argtypes = [ctypes.c_char_p]
    xlib.XCloseDisplay.argtypes = [ctypes.c_void_p]
    handle = xlib.XOpenDisplay(display.encode())
    if not handle:
        return f"cannot connect to the X server at DISPLAY={display}"
    try:
        # DearPyGui draws with OpenGL through GLX; an X server without the extension (e.g. some VNC
        # servers) would make window creation fail inside the toolkit, so look for it too.
        gl_name = ctypes.util.find_library("GL")
        if gl_name:
            try:
                libgl = ctypes.CDLL(gl_name)
            except OSError:
                libgl = None
            if libgl is not None and hasattr(libgl, "glXQueryExtension"):
                libgl.glXQueryExtension.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int),
                                                    ctypes.POINTER(ctypes.c_int)]
                err, event = ctypes.c_int(), ctypes.c_int()
                if not libgl.glXQueryExtension(handle, ctypes.byref(err), ctypes.byref(event)):
                    return f"the X server at DISPLAY={display} has no OpenGL (GLX) support"
    finally:
        xlib.XCloseDisplay(handle)
    return None


def display_problem() -> Optional[str]:
    """None when a window can be opened; otherwise one sentence saying why it cannot."""
    if sys.platform.startswith(("win", "darwin")):
        return None                                   # the toolkit uses the native window system there
    display = os.environ.get("DISPLAY", "")
    if not display:
        return ("no display: DISPLAY is not set (run it on a desktop, through `ssh -X`, or under "
                "Xvfb: xvfb-run -a trigan view)")
    return _x_server_answers(display)
