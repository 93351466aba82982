"""What a panel may read of the viewer (`ViewerState`) and what it may ask of it (`ViewerActions`).

The app (viewer/app.py) implements both; a panel is handed them, typed as these protocols, and
never reaches past them into the app, so everything a panel depends on is listed here. Objects a
panel drives itself (the export jobs, the status bar's Timing) and the odd hook into another panel
(the Training panel opening a snapshot through the Model panel) are passed to its constructor.
tests/test_viewer_panels.py builds and drives every panel against a fake that has only these
members, and checks statically that no panel reads any other.

To add a panel: take `state` and/or `actions` (and nothing else of the app) in its constructor;
if it needs something new of the viewer, add it to the protocol here first, then to ViewerApp.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional, Protocol

from trigan.core.cameras import Pose
from trigan.viewer.orbit import OrbitController
from trigan.viewer.render_request import Frame, ViewValues
from trigan.viewer.settings import ViewerSettings

if TYPE_CHECKING:                     # the worker's types, for annotations only (they load torch)
    from trigan.viewer.render_worker import WorkerStatus
    from trigan.viewer.scene import ModelInfo


class ViewerState(Protocol):
    """Read-only: what the controls hold and what the viewer has loaded and shown."""

    @property
    def settings(self) -> ViewerSettings:
        """The settings restored at start (panels take their last choices from them)."""

    @property
    def view(self) -> ViewValues:
        """The control values in use (seed, class, psi, noise, resolution, mode, quality ...)."""

    @property
    def model_info(self) -> Optional["ModelInfo"]:
        """The open model (None before the first one loads)."""

    @property
    def pose(self) -> Optional[Pose]:
        """The camera (None until the first model's start pose is known)."""

    @property
    def pose_version(self) -> int:
        """Counts camera changes: a reader redraws only when it moved."""

    @property
    def last_frame(self) -> Optional[Frame]:
        """The newest finished frame without an error (what a screenshot saves)."""

    @property
    def device(self) -> Optional[str]:
        """The device asked for on the command line (None: auto); jobs and runs take it too."""

    @property
    def device_name(self) -> str:
        """The device the open model renders on."""

    @property
    def display(self):
        """How the view shows frames (viewer/depth_display.py DisplayValues: colormap, range ...)."""

    def worker_status(self) -> Optional["WorkerStatus"]:
        """What the render worker is doing (None: idle)."""

    def worker_busy(self) -> bool:
        """True while the render worker has a request in hand."""


CameraMove = Callable[[OrbitController], object]


class ViewerActions(Protocol):
    """What a panel may ask the viewer to do. Refused values become one red line in the View."""

    def update_view(self, **values) -> None:
        """New control values (ViewValues field names)."""

    def move_camera(self, move: CameraMove) -> None:
        """Apply `move` to the camera's OrbitController (nothing before a model is open)."""

    def draw_camera(self) -> None:
        """Move to a camera drawn from the model's camera distribution."""

    def open_model(self, source: str, latest: bool = False) -> None:
        """Load a checkpoint or a run folder (its latest snapshot with `latest`) in the worker."""

    def reload_model(self) -> None:
        """Read the open checkpoint again."""

    def show_inversion(self, model_file: str, latent_file: str, pose: Optional[Pose] = None) -> None:
        """Show an inverted latent (NAME.inversion.npz) on `model_file` (its tuned NAME.pti.ckpt, or the
        model it was inverted into) at `pose` (None: the camera stays), as `view.latent_file`;
        seed, class and psi then stop mattering until show_seeds."""

    def show_seeds(self) -> None:
        """Back from an inverted latent to seeds, on the model shown before it."""

    def set_display(self, **values) -> None:
        """New display values (DisplayValues field names): how the view shows a frame, not what it renders."""
