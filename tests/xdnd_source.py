"""Drop files on an X window the way a file manager does: the source side of the XDND protocol
(version 5), spoken through libX11 with ctypes, so a GUI test can drop real files on the viewer.

    drop_files(display=":91", window=0x400001, paths=[...], position=(x, y))

The source announces text/uri-list (XdndEnter), moves over the target (XdndPosition, the target
answers XdndStatus), drops (XdndDrop), hands the URI list over when the target converts the
XdndSelection, and waits for XdndFinished.
"""

from __future__ import annotations

import ctypes
import time
from pathlib import Path
from urllib.parse import quote

from trigan.viewer.display import load_xlib

CLIENT_MESSAGE, SELECTION_REQUEST, SELECTION_NOTIFY = 33, 30, 31
XDND_VERSION = 5
c_ulong, c_long, c_int, c_void_p = ctypes.c_ulong, ctypes.c_long, ctypes.c_int, ctypes.c_void_p


class _ClientMessage(ctypes.Structure):
    _fields_ = [("type", c_int), ("serial", c_ulong), ("send_event", c_int), ("display", c_void_p),
                ("window", c_ulong), ("message_type", c_ulong), ("format", c_int), ("l", c_long * 5)]


class _SelectionRequest(ctypes.Structure):
    _fields_ = [("type", c_int), ("serial", c_ulong), ("send_event", c_int), ("display", c_void_p),
                ("owner", c_ulong), ("requestor", c_ulong), ("selection", c_ulong), ("target", c_ulong),
                ("property", c_ulong), ("time", c_ulong)]


class _Selection(ctypes.Structure):
    _fields_ = [("type", c_int), ("serial", c_ulong), ("send_event", c_int), ("display", c_void_p),
                ("requestor", c_ulong), ("selection", c_ulong), ("target", c_ulong), ("property", c_ulong),
                ("time", c_ulong)]


class _Event(ctypes.Union):
    _fields_ = [("type", c_int), ("client", _ClientMessage), ("request", _SelectionRequest),
                ("selection", _Selection), ("pad", c_long * 24)]


def _xlib():
    x = load_xlib()
    if x is None:
        raise RuntimeError("libX11 is not installed")
    x.XOpenDisplay.restype, x.XOpenDisplay.argtypes = c_void_p, [ctypes.c_char_p]
    x.XDefaultRootWindow.restype, x.XDefaultRootWindow.argtypes = c_ulong, [c_void_p]
    x.XCreateSimpleWindow.restype = c_ulong
    x.XCreateSimpleWindow.argtypes = [c_void_p, c_ulong, c_int, c_int, ctypes.c_uint, ctypes.c_uint,
                                      ctypes.c_uint, c_ulong, c_ulong]
    x.XInternAtom.restype, x.XInternAtom.argtypes = c_ulong, [c_void_p, ctypes.c_char_p, c_int]
    x.XSetSelectionOwner.argtypes = [c_void_p, c_ulong, c_ulong, c_ulong]
    x.XSendEvent.argtypes = [c_void_p, c_ulong, c_int, c_long, ctypes.POINTER(_Event)]
    x.XPending.argtypes, x.XFlush.argtypes = [c_void_p], [c_void_p]
    x.XNextEvent.argtypes = [c_void_p, ctypes.POINTER(_Event)]
    x.XChangeProperty.argtypes = [c_void_p, c_ulong, c_ulong, c_ulong, c_int, c_int, ctypes.c_char_p, c_int]
    x.XDestroyWindow.argtypes, x.XCloseDisplay.argtypes = [c_void_p, c_ulong], [c_void_p]
    return x


def uri_list(paths) -> bytes:
    return b"".join(("file://" + quote(str(Path(p).resolve()))).encode() + b"\r\n" for p in paths)


def drop_files(display: str, window: int, paths, position=(10, 10), timeout: float = 20.0) -> bool:
    """Drop `paths` on X window `window`. True once the target said XdndFinished (False: it
    answered the drop but never finished, e.g. a window that is not listening)."""
    x = _xlib()
    dpy = x.XOpenDisplay(display.encode())
    if not dpy:
        raise RuntimeError(f"cannot open display {display}")
    atom = {name: x.XInternAtom(dpy, name.encode(), 0) for name in (
        "XdndEnter", "XdndPosition", "XdndStatus", "XdndDrop", "XdndFinished", "XdndSelection",
        "XdndActionCopy", "text/uri-list")}
    source = x.XCreateSimpleWindow(dpy, x.XDefaultRootWindow(dpy), 0, 0, 1, 1, 0, 0, 0)
    data = uri_list(paths)

    def send(kind, *longs):
        event = _Event()
        event.client.type, event.client.window, event.client.format = CLIENT_MESSAGE, window, 32
        event.client.message_type = atom[kind]
        for i, value in enumerate(longs):
            event.client.l[i] = value
        x.XSendEvent(dpy, window, 0, 0, ctypes.byref(event))
        x.XFlush(dpy)

    def wait_for(kind):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not x.XPending(dpy):
                time.sleep(0.02)
                continue
            event = _Event()
            x.XNextEvent(dpy, ctypes.byref(event))
            if event.type == SELECTION_REQUEST:          # the target asks for the dropped data
                r = event.request
                x.XChangeProperty(dpy, r.requestor, r.property, r.target, 8, 0, data, len(data))
                reply = _Event()
                s = reply.selection
                s.type, s.requestor, s.selection, s.target = SELECTION_NOTIFY, r.requestor, r.selection, r.target
                s.property, s.time = r.property, r.time
                x.XSendEvent(dpy, r.requestor, 0, 0, ctypes.byref(reply))
                x.XFlush(dpy)
            elif event.type == CLIENT_MESSAGE and event.client.message_type == atom[kind]:
                return event.client
        return None

    try:
        x.XSetSelectionOwner(dpy, atom["XdndSelection"], source, 0)
        send("XdndEnter", source, XDND_VERSION << 24, atom["text/uri-list"], 0, 0)
        send("XdndPosition", source, 0, (int(position[0]) << 16) | int(position[1]), 0, atom["XdndActionCopy"])
        status = wait_for("XdndStatus")
        if status is None or not status.l[1] & 1:
            raise RuntimeError("the window did not accept the drop (no XdndStatus accepting text/uri-list)")
        send("XdndDrop", source, 0, 0)
        return wait_for("XdndFinished") is not None
    finally:
        x.XDestroyWindow(dpy, source)
        x.XCloseDisplay(dpy)
