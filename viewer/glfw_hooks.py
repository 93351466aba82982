"""What DearPyGui does not expose but its window library (GLFW) does: waiting for input instead of
redrawing, and files dropped on the window.

DearPyGui links GLFW into its own extension module and exports its symbols, so ctypes can call
them on the window DearPyGui created (the GLFW context current in the GUI thread):

* `wait(seconds)`: block in glfwWaitEventsTimeout until the X server has an event for the window
  (mouse, keys, expose, resize) or the time is up. An idle viewer then costs next to nothing
  instead of redrawing 15 times a second; the events it collects are dispatched to the same
  callbacks DearPyGui installed, so the next frame sees them. `wake()` (glfwPostEmptyEvent, safe
  from any thread) ends a wait early, e.g. when a scripted command arrives.
* `on_drop(callback)`: glfwSetDropCallback; the callback gets the dropped paths as strings.

Where the symbols are missing (DearPyGui's Windows build draws with DirectX, not GLFW) `available`
is False and the app paces its loop with sleeps instead.
"""

from __future__ import annotations

import ctypes
import os
from typing import Callable, List

DropCallback = Callable[[List[str]], None]
_DROP_FUNCTYPE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_char_p))


def _dearpygui_library():
    try:
        from dearpygui import _dearpygui  # noqa: PLC0415 (the extension module is what holds GLFW)
        return ctypes.CDLL(_dearpygui.__file__)
    except (ImportError, OSError, AttributeError):
        return None


class GlfwHooks:
    def __init__(self):
        self._lib = _dearpygui_library()
        self._window = None
        self._drop_ref = None             # ctypes keeps no reference to a callback it hands to C
        names = ("glfwGetCurrentContext", "glfwWaitEventsTimeout", "glfwPostEmptyEvent", "glfwSetDropCallback")
        if self._lib is not None and all(hasattr(self._lib, n) for n in names):
            self._lib.glfwGetCurrentContext.restype = ctypes.c_void_p
            self._lib.glfwWaitEventsTimeout.argtypes = [ctypes.c_double]
            self._lib.glfwSetDropCallback.argtypes = [ctypes.c_void_p, _DROP_FUNCTYPE]
            self._lib.glfwSetDropCallback.restype = ctypes.c_void_p
        else:
            self._lib = None

    def attach(self) -> bool:
        """Find DearPyGui's window (call in the GUI thread after show_viewport). True when hooked."""
        if self._lib is None or os.environ.get("TRIGAN_VIEW_NO_GLFW_HOOKS"):
            return False
        self._window = self._lib.glfwGetCurrentContext() or None
        return self._window is not None

    def detach(self) -> None:
        """Forget the window before DearPyGui destroys it (wake() then does nothing; GLFW itself
        answers calls after its shutdown with an error code, not a crash)."""
        self._window = None

    @property
    def available(self) -> bool:
        return self._window is not None

    def wait(self, seconds: float) -> None:
        """Sleep until input arrives for the window, wake() is called, or `seconds` pass."""
        if self._window is None:
            return
        self._lib.glfwWaitEventsTimeout(max(0.0, float(seconds)))

    def wake(self) -> None:
        """End a wait() in the GUI thread early (thread-safe)."""
        if self._window is not None:
            self._lib.glfwPostEmptyEvent()

    def on_drop(self, callback: DropCallback) -> None:
        """Call `callback(paths)` in the GUI thread when files are dropped on the window."""
        if self._window is None:
            return

        def dropped(_window, count, paths):
            names = [os.fsdecode(paths[i]) for i in range(count) if paths[i]]
            try:
                callback(names)
            except Exception as exc:  # noqa: BLE001 - an exception must not cross back into C
                print(f"trigan view: dropping {names}: {type(exc).__name__}: {exc}")

        self._drop_ref = _DROP_FUNCTYPE(dropped)
        self._lib.glfwSetDropCallback(self._window, self._drop_ref)


__all__ = ["GlfwHooks"]
