"""Is there a screen to open a window on?

DearPyGui aborts the whole process (SIGABRT, which Python cannot catch) when `show_viewport()`
finds no X server, so `trigan view` asks this module first and exits with one line instead.
The check talks to the X server through Xlib (the library DearPyGui itself links against) via
ctypes, so it costs a few milliseconds and opens no window.

`check_display()` is made once per start, by cli/view.py before DearPyGui is imported; its
answer (a `Display`: the problem, or the screen's work area the window is fitted into) is passed
on to `run_viewer` and `ViewerApp.run`, which do not look again.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from typing import NamedTuple, Optional, Tuple


def load_xlib():
    """libX11 through ctypes (the library DearPyGui links against), or None where it is missing."""
    for name in ("libX11.so.6", ctypes.util.find_library("X11")):
        if not name:
            continue
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


def x_server_problem(display: str) -> Optional[str]:
    """None when XOpenDisplay(display) succeeds (and has GLX where libGL can be found), else why not."""
    xlib = load_xlib()
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


class Display(NamedTuple):
    """What check_display() found: `problem` (one sentence) when no window can open, else None and
    the screen's `work_area` (x, y, width, height; None where it cannot be read)."""

    problem: Optional[str]
    work_area: Optional[Tuple[int, int, int, int]] = None


def check_display() -> Display:
    """The one display check of a viewer start (see the module docstring)."""
    problem = _display_problem()
    return Display(problem, None if problem else _screen_work_area())


def _display_problem() -> Optional[str]:
    """None when a window can be opened; otherwise one sentence saying why it cannot."""
    if sys.platform.startswith(("win", "darwin")):
        return None                                   # the toolkit uses the native window system there
    display = os.environ.get("DISPLAY", "")
    if not display:
        return ("no display: DISPLAY is not set (run it on a desktop, through `ssh -X`, or under "
                "Xvfb: xvfb-run -a trigan view)")
    return x_server_problem(display)


def _screen_work_area():
    """(x, y, width, height) of the screen's work area (the part not taken by panels and task bars,
    from the window manager's _NET_WORKAREA), the whole default screen without a window manager,
    or None when it cannot be read (no X11: Windows, macOS, Wayland without XWayland)."""
    if sys.platform.startswith(("win", "darwin")) or not os.environ.get("DISPLAY"):
        return None
    xlib = load_xlib()
    if xlib is None:
        return None
    c_void_p, c_ulong, c_int = ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int
    xlib.XOpenDisplay.restype, xlib.XOpenDisplay.argtypes = c_void_p, [ctypes.c_char_p]
    xlib.XCloseDisplay.argtypes = [c_void_p]
    xlib.XDefaultScreen.argtypes, xlib.XDefaultScreen.restype = [c_void_p], c_int
    xlib.XDisplayWidth.argtypes = xlib.XDisplayHeight.argtypes = [c_void_p, c_int]
    xlib.XDefaultRootWindow.argtypes, xlib.XDefaultRootWindow.restype = [c_void_p], c_ulong
    xlib.XInternAtom.argtypes, xlib.XInternAtom.restype = [c_void_p, ctypes.c_char_p, c_int], c_ulong
    xlib.XGetWindowProperty.argtypes = [c_void_p, c_ulong, c_ulong, ctypes.c_long, ctypes.c_long, c_int, c_ulong,
                                        ctypes.POINTER(c_ulong), ctypes.POINTER(c_int), ctypes.POINTER(c_ulong),
                                        ctypes.POINTER(c_ulong), ctypes.POINTER(c_void_p)]
    xlib.XFree.argtypes = [c_void_p]
    handle = xlib.XOpenDisplay(os.environ["DISPLAY"].encode())
    if not handle:
        return None
    try:
        screen = xlib.XDefaultScreen(handle)
        whole = (0, 0, int(xlib.XDisplayWidth(handle, screen)), int(xlib.XDisplayHeight(handle, screen)))
        atom = xlib.XInternAtom(handle, b"_NET_WORKAREA", 1)       # only_if_exists: no WM, no atom
        if not atom:
            return whole
        actual, fmt, count, after, data = c_ulong(), c_int(), c_ulong(), c_ulong(), c_void_p()
        xa_cardinal = 6
        status = xlib.XGetWindowProperty(handle, xlib.XDefaultRootWindow(handle), atom, 0, 4, 0, xa_cardinal,
                                         ctypes.byref(actual), ctypes.byref(fmt), ctypes.byref(count),
                                         ctypes.byref(after), ctypes.byref(data))
        if status != 0 or not data.value:
            return whole
        try:
            if fmt.value != 32 or count.value < 4:
                return whole
            # Format-32 properties come back as C longs, whatever their size on this platform.
            x, y, w, h = ctypes.cast(data, ctypes.POINTER(ctypes.c_long))[:4]
        finally:
            xlib.XFree(data)
        return (int(x), int(y), int(w), int(h)) if w > 0 and h > 0 else whole
    finally:
        xlib.XCloseDisplay(handle)
