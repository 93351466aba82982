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
* an exception in a render becomes a Frame with `error` set and the worker carries on;
* a compare grid (viewer/compare.py `GridRequest`) is served like any request: its cells render one
  after another inside it (partial frames are its composites), and its time estimate counts them all.

Model information (`open` / `model_info`) and cameras drawn from a model's camera distribution
(`draw_camera` / `drawn_camera`) are served between renders, in this thread too, so the GUI thread
never runs the model.

What the worker is doing is readable at any time (`status()`: loading a model, building a latent's
caches, or rendering, with the fraction done and an estimate of the seconds left from the exact
frames this worker has measured, `Throughput`). Intermediate frames (`Frame.partial`: a first look
while caches build, the steps of a progressive exact render, see viewer/scene.py) become `latest()`
as they come; they are never taken for the finished frame of their request.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

from trigan.core.errors import one_line
from trigan.core.renderer import RenderCancelled
from trigan.viewer.render_request import Frame, RenderRequest
from trigan.viewer.scene import PATH_EXACT, ModelInfo, Scene


class InfoError:
    """model_info()'s answer when the model could not be opened: `error` is one line."""

    def __init__(self, path: str, error: str):
        self.path, self.error = path, error

    def __repr__(self) -> str:
        return f"InfoError({self.path!r}, {self.error!r})"


SLOW_EXACT_S = 10.0          # an exact frame estimated to take longer is called slow (the GUI warns)
MIN_MEASURED_S = 0.5         # a render in flight estimates from its own pace after this long ...
MIN_MEASURED_FRACTION = 0.02  # ... or this share done; before that, from the earlier exact frames


class Throughput:
    """How fast this worker's exact renders go, in pixels x sample multiplier per second (the cost
    of an exact frame grows with both): an exponential average over the frames measured."""

    def __init__(self, weight: float = 0.5):
        self.rate: Optional[float] = None
        self.weight = float(weight)

    def measured(self, pixels: int, multiplier: float, seconds: float) -> None:
        if pixels <= 0 or seconds <= 0:
            return
        rate = pixels * multiplier / seconds
        self.rate = rate if self.rate is None else (1 - self.weight) * self.rate + self.weight * rate

    def seconds_for(self, pixels: int, multiplier: float) -> Optional[float]:
        """The expected time of a whole exact frame, or None before the first measurement."""
        return None if self.rate is None else pixels * multiplier / self.rate


def seconds_left(done: int, total: int, elapsed: float, expected_total: Optional[float]) -> Optional[float]:
    """The time an exact render still needs: from its own pace once it has run a while
    (MIN_MEASURED_S or MIN_MEASURED_FRACTION done; its pace is this view's and this load's), else
    the expected time of the whole frame less the time spent, else None (nothing to go on)."""
    if total <= 0:
        return None
    if done > 0 and elapsed > 0 and (elapsed >= MIN_MEASURED_S or done >= MIN_MEASURED_FRACTION * total):
        return (total - done) * elapsed / done
    if expected_total is not None:
        return max(0.0, expected_total - elapsed)
    return None


@dataclass(frozen=True)
class WorkerStatus:
    """What the worker is doing now (status()). activity: "loading demo.ckpt", "building the
    preview", "rendering", ...; request: the render in flight (None while loading a model);
    fraction: 0..1 of the rays done; seconds_left: the estimate (None: nothing to go on yet);
    expected_s: the estimated time of the whole exact frame."""

    activity: str
    request: Optional[RenderRequest] = None
    fraction: float = 0.0
    seconds_left: Optional[float] = None
    expected_s: Optional[float] = None
    elapsed_s: float = 0.0

    @property
    def slow(self) -> bool:
        return self.expected_s is not None and self.expected_s > SLOW_EXACT_S


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
        self._activity: Optional[str] = None
        self._render_start = 0.0
        self._march_start: Optional[float] = None     # when the rays began (after the caches)
        self._stage_changed: Optional[float] = None
        self._done_total = (0, 0)
        self.throughput = Throughput()
        self._stopping = False
        self.partial_frames = 0
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
                                            and self._latest.request == request and self._latest_fresh
                                            and not self._latest.partial):
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
        """The newest frame (an error frame or a partial one included), or None before the first."""
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

    def status(self) -> Optional[WorkerStatus]:
        """What the worker is doing (None when idle); see WorkerStatus."""
        with self._cond:
            activity, request = self._activity, self._current
            start, march_start, (done, total) = self._render_start, self._march_start, self._done_total
        if activity is None:
            return None
        now = time.perf_counter()
        if request is None or request.quality != "exact":
            return WorkerStatus(activity, request, self._progress, None, None, now - start)
        # a compare grid (viewer/compare.py) renders its cells one after another: each is resolution^2
        pixels = request.resolution ** 2 * getattr(request, "cell_count", 1)
        expected = self.throughput.seconds_for(pixels, request.sample_multiplier)
        marched = 0.0 if march_start is None else now - march_start
        left = seconds_left(done, total, marched, expected) if activity == "rendering" else expected
        if march_start is not None and done > 0 and left is not None:
            expected = marched + left        # this render's own pace is the better guess
        return WorkerStatus(activity, request, self._progress, left, expected, now - start)

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
        """The Pose drawn for `key`, an InfoError if it failed, else None (not served yet)."""
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
        if self._march_start is None:
            # the first chunk is done: the march began about one chunk's time ago, after the caches
            self._march_start = self._render_start if self._stage_changed is None else self._stage_changed
        self._done_total = (done, total)
        self._progress = done / total if total else 0.0

    def _set_stage(self, text: str) -> None:
        with self._cond:
            self._activity = text
            self._stage_changed = time.perf_counter()

    def _publish_partial(self, frame: Frame) -> None:
        """An intermediate frame of the render in flight becomes the latest (see Frame.partial)."""
        with self._cond:
            if self._current is not None and frame.request == self._current and not self._stopping:
                self._latest = frame
                self._latest_fresh = True
                self.partial_frames += 1
                self._cond.notify_all()

    def _start_activity(self, text: str) -> None:
        with self._cond:
            self._activity = text
            self._render_start = time.perf_counter()
            self._stage_changed = None
            self._march_start = None
            self._done_total = (0, 0)
            self._progress = 0.0

    def _end_activity(self) -> None:
        with self._cond:
            self._activity = None

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
            self._start_activity("rendering")
            try:
                if scene is None:
                    frame = Frame.failed(request, scene_error or "the render worker has no scene")
                else:
                    frame = scene.render(request, should_cancel=self._should_cancel, progress=self._set_progress,
                                         partial=self._publish_partial, stage=self._set_stage)
            except RenderCancelled:
                self.renders_cancelled += 1
            except Exception as exc:  # noqa: BLE001 - a Scene is expected to return error frames; belt and braces
                frame = Frame.failed(request, one_line(exc))
            self._measure(frame)
            with self._cond:
                if frame is not None:
                    self._latest = frame
                    self._latest_fresh = True
                    self.frames_rendered += 1
                self._current = None
                self._activity = None
                self._progress = 0.0
                self._cond.notify_all()

    def _measure(self, frame: Optional[Frame]) -> None:
        """Exact frames teach the throughput estimate (their march only: not the per-latent caches)."""
        if frame is None or not frame.ok or frame.request.quality != "exact" or frame.path_used != PATH_EXACT:
            return
        render_ms = frame.stats.get("render_ms")
        if render_ms and render_ms > 0:
            r = frame.request
            self.throughput.measured(r.resolution ** 2, r.sample_multiplier, render_ms / 1000.0)

    def _serve_info(self, scene, scene_error, key) -> None:
        path, cls = key
        self._start_activity(f"loading {os.path.basename(str(path).rstrip('/')) or path}")
        try:
            if scene is None:
                raise RuntimeError(scene_error or "the render worker has no scene")
            info = scene.model_info(path, cls)
        except Exception as exc:  # noqa: BLE001 - any failure to open the model becomes the line the Model panel shows
            info = InfoError(path, one_line(exc))
        with self._cond:
            self._info[key] = info
            self._activity = None
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


__all__ = ["RenderWorker", "ModelInfo", "InfoError", "WorkerStatus", "Throughput", "seconds_left"]
