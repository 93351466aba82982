"""The render worker: one daemon thread that owns the Scene (model, device, caches) and always
serves the newest request.

    worker = RenderWorker()
    worker.submit(request)          # from the GUI thread, as often as it likes; never blocks
    frame = worker.latest()         # the newest finished Frame, or None

Scheduling:
* one pending slot: a submitted request replaces any older pending one (stale requests are dropped);
  submitting the request that is already in flight, or whose frame is already the latest, is a no-op,
  so the GUI may push its current request every frame;
* an in-flight render is cancelled between chunks (core.renderer.RenderCancelled) when a different
  request arrives, except that an in-flight preview is allowed to finish when the newcomer is a
  preview too: during a continuous drag every new mouse position would otherwise cancel the last
  and no frame would ever appear. A cancelled render produces no frame;
* an exception in a render becomes a Frame with `error` set and the worker carries on.

Model information (`open` / `model_info`) and cameras drawn from a model's camera distribution
(`draw_camera` / `drawn_camera`) are served between renders, in this thread too, so the GUI thread
never runs the model.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Dict, Optional, Tuple

from trigan.core.errors import one_line
from trigan.core.renderer import RenderCancelled
from trigan.viewer.render_request import Frame, RenderRequest
from trigan.viewer.scene import ModelInfo, Scene


class InfoError:
    """model_info()'s answer when the model could not be opened: `error` is one line."""

    def __init__(self, path: str, error: str):
        self.path, self.error = path, error

    def __repr__(self) -> str:
        return f"InfoError({self.path!r}, {self.error!r})"


class RenderWorker:
    def __init__(self, scene_factory: Callable[[], Scene] = Scene, name: str = "trigan-render"):
        self._scene_factory = scene_factory
        self._cond = threading.Condition()
        self._pending: Optional[RenderRequest] = None
        self._current: Optional[RenderRequest] = None
        self._latest: Optional[Frame] = None
        self._info_wanted: Dict[Tuple[str, Optional[int]], None] = {}
        self._info: Dict[Tuple[str, Optional[int]], object] = {}
        self._draws_wanted: Dict[tuple, None] = {}
        self._draws: Dict[tuple, object] = {}
        self._latest_fresh = True       # False after refresh(): the same request renders again
        self._progress = 0.0
        self._stopping = False
        self.frames_rendered = 0
        self.renders_cancelled = 0
        self.requests_dropped = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # -- GUI side ------------------------------------------------------------------------------------
    def submit(self, request: RenderRequest) -> None:
        """Ask for a frame; replaces any request still waiting. Never blocks on a render."""
        with self._cond:
            if self._stopping:
                return
            if request == self._current or (self._current is None and self._latest is not None
                                            and self._latest.request == request and self._latest_fresh):
                if self._pending is not None:
                    self.requests_dropped += 1
                self._pending = None       # what is in flight / shown is already the newest
                return
            if request == self._pending:
                return
            if self._pending is not None:
                self.requests_dropped += 1
            self._pending = request
            self._cond.notify_all()

    def latest(self) -> Optional[Frame]:
        """The newest finished frame (an error frame included), or None before the first."""
        with self._cond:
            return self._latest

    def refresh(self) -> None:
        """Render the next submitted request even if it equals the latest frame's (a checkpoint
        file changed on disk, or the user retries after an error)."""
        with self._cond:
            self._latest_fresh = False

    @property
    def busy(self) -> bool:
        """A render is in flight or waiting."""
        with self._cond:
            return self._current is not None or self._pending is not None

    @property
    def progress(self) -> float:
        """0..1 of the render in flight (0 when idle)."""
        return self._progress

    def open(self, model_path: str, class_index: Optional[int] = None) -> None:
        """Ask the worker to load a model and describe it (see model_info)."""
        key = (str(model_path), class_index)
        with self._cond:
            if key not in self._info:
                self._info_wanted[key] = None
                self._cond.notify_all()

    def model_info(self, model_path: str, class_index: Optional[int] = None):
        """A ModelInfo once `open` has been served, an InfoError if loading failed, else None."""
        with self._cond:
            return self._info.get((str(model_path), class_index))

    def draw_camera(self, model_path: str, seed: int, class_index: Optional[int], draw: int) -> tuple:
        """Ask for camera number `draw` from the model's camera distribution for this latent (see
        Scene.draw_camera); returns the key to pass to drawn_camera."""
        key = (str(model_path), int(seed), class_index, int(draw))
        with self._cond:
            if key not in self._draws:
                self._draws_wanted[key] = None
                self._cond.notify_all()
        return key

    def drawn_camera(self, key: tuple):
        """The OrbitState drawn for `key`, an InfoError if it failed, else None (not served yet)."""
        with self._cond:
            return self._draws.pop(key, None)

    def forget_info(self, model_path: str) -> None:
        """Drop cached ModelInfo of a path (e.g. a training run wrote a new snapshot)."""
        with self._cond:
            for key in [k for k in self._info if k[0] == str(model_path)]:
                del self._info[key]

    def wait_idle(self, timeout: Optional[float] = None) -> bool:
        """Block until nothing is in flight or pending (tests, scripts; never the GUI thread)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._current is not None or self._pending is not None or self._info_wanted or self._draws_wanted:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel what is in flight and end the thread."""
        with self._cond:
            self._stopping = True
            self._pending = None
            self._cond.notify_all()
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # -- worker side ---------------------------------------------------------------------------------
    def _should_cancel(self) -> bool:
        # Called between chunks from the worker thread; reads are of single references.
        if self._stopping:
            return True
        pending, current = self._pending, self._current
        if pending is None or current is None or pending == current:
            return False
        return not (current.quality == "preview" and pending.quality == "preview")

    def _set_progress(self, done: int, total: int) -> None:
        self._progress = done / total if total else 0.0

    def _run(self) -> None:
        scene = None
        scene_error = None
        try:
            scene = self._scene_factory()
        except Exception as exc:  # noqa: BLE001 - e.g. a bad device: every request gets this error
            scene_error = one_line(exc)
        while True:
            with self._cond:
                while not self._stopping and self._pending is None and not self._info_wanted \
                        and not self._draws_wanted:
                    self._cond.wait()
                if self._stopping:
                    self._current = None
                    self._cond.notify_all()
                    return
                info_key = next(iter(self._info_wanted), None)
                draw_key = None if info_key is not None else next(iter(self._draws_wanted), None)
                if info_key is not None:
                    del self._info_wanted[info_key]
                    request = None
                elif draw_key is not None:
                    del self._draws_wanted[draw_key]
                    request = None
                else:
                    request, self._pending = self._pending, None
                    self._current = request
            if info_key is not None:
                self._serve_info(scene, scene_error, info_key)
                continue
            if draw_key is not None:
                self._serve_draw(scene, scene_error, draw_key)
                continue
            frame = None
            self._progress = 0.0
            try:
                if scene is None:
                    frame = Frame.failed(request, scene_error or "the render worker has no scene")
                else:
                    frame = scene.render(request, should_cancel=self._should_cancel, progress=self._set_progress)
            except RenderCancelled:
                self.renders_cancelled += 1
            except Exception as exc:  # noqa: BLE001 - a Scene is expected to return error frames; belt and braces
                frame = Frame.failed(request, one_line(exc))
            with self._cond:
                if frame is not None:
                    self._latest = frame
                    self._latest_fresh = True
                    self.frames_rendered += 1
                self._current = None
                self._progress = 0.0
                self._cond.notify_all()

    def _serve_info(self, scene, scene_error, key) -> None:
        path, cls = key
        try:
            if scene is None:
                raise RuntimeError(scene_error or "the render worker has no scene")
            info = scene.model_info(path, cls)
        except Exception as exc:  # noqa: BLE001 - any failure to open the model becomes the line the Model panel shows
            info = InfoError(path, one_line(exc))
        with self._cond:
            self._info[key] = info
            self._cond.notify_all()


    def _serve_draw(self, scene, scene_error, key) -> None:
        path, seed, cls, draw = key
        try:
            if scene is None:
                raise RuntimeError(scene_error or "the render worker has no scene")
            answer = scene.draw_camera(path, seed, cls, draw)
        except Exception as exc:  # noqa: BLE001 - the failure becomes the message the view shows
            answer = InfoError(path, one_line(exc))
        with self._cond:
            self._draws[key] = answer
            self._cond.notify_all()


__all__ = ["RenderWorker", "ModelInfo", "InfoError"]
