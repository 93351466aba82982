"""The rendering contract: a field, cameras and options in, a `RenderOutput` out, whatever the path.

Every render path is a `FieldRenderer`: bound to one field (one latent batch) and its default
`RenderOptions`, holding whatever per-field set-up the path needs (an occupancy grid, a baked
volume), with one `render(cameras, resolution, options=None, *, patch, should_cancel, progress,
**option_overrides)`. Callers pick a path by name:

    renderer = field_renderer("accelerated", field, G.render_options(deterministic=True))
    out = renderer.render(camera, 256, normals=True)   # RenderOutput: rgb, depth, opacity (+ normals)

The paths (`RENDER_PATHS`), all composited by core.compositing's rules:

* "plain" (`PlainRenderer`, core.renderer.render): stratified + importance samples, the reference
  (training renders through it, with gradients);
* "accelerated" (core.accel.FastRenderer; knobs `accel=AccelOptions`, `grid=OccupancyGrid`): the
  same image from far fewer field queries, after a per-field occupancy grid;
* "preview" (core.preview.BakedPreview; knobs `grid`, `preview=PreviewOptions`): a baked volume
  ray-marched with OpenGL in milliseconds, approximate; needs headless GL (`path_unavailable`).

To add a path: a class with the `FieldRenderer` attributes and `render`, and an entry in `_BUILDERS`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Optional, Protocol, Tuple, Union, runtime_checkable

from trigan.core.accel import FastRenderer
from trigan.core.cameras import Camera, PatchParams
from trigan.core.preview import build_preview, preview_unavailable
from trigan.core.renderer import RenderOptions, RenderOutput, render

Resolution = Union[int, Tuple[int, int]]


@runtime_checkable
class FieldRenderer(Protocol):
    """A render path bound to one field. `render` returns images [B, C, H, W] of the B cameras (B =
    the field's batch, or any number for the preview's one latent), with `options` (default: the
    renderer's own) and `option_overrides` (RenderOptions fields) applied; `options.normals` asks
    for normals, `options.white_background` for the white backdrop. `should_cancel` is polled
    between chunks (raises core.renderer.RenderCancelled), `progress(done, total)` told after each.
    `last_stats`: what the last render measured (path-specific; e.g. field evaluations)."""

    path: str
    field: object
    options: RenderOptions
    last_stats: dict

    def render(self, cameras: Camera, resolution: Resolution, options: Optional[RenderOptions] = None, *,
               patch: Optional[PatchParams] = None, should_cancel: Optional[Callable[[], bool]] = None,
               progress: Optional[Callable[[int, int], None]] = None, **option_overrides) -> RenderOutput:
        ...


class PlainRenderer:
    """The plain path (core.renderer.render) as a FieldRenderer: no set-up, differentiable."""

    path = "plain"

    def __init__(self, field, options: RenderOptions):
        self.field, self.options = field, options
        self.last_stats: dict = {}

    def render(self, cameras: Camera, resolution: Resolution, options: Optional[RenderOptions] = None, *,
               patch: Optional[PatchParams] = None, should_cancel: Optional[Callable[[], bool]] = None,
               progress: Optional[Callable[[int, int], None]] = None, **option_overrides) -> RenderOutput:
        opts = options if options is not None else self.options
        if option_overrides:
            opts = replace(opts, **option_overrides)
        device = getattr(self.field, "device", None)
        if device is not None:
            cameras = cameras.to(device)
        return render(self.field, cameras, resolution, opts, patch, should_cancel, progress)


# name -> builder(field, options, **path_knobs)
_BUILDERS = {"plain": PlainRenderer, "accelerated": FastRenderer, "preview": build_preview}
RENDER_PATHS = tuple(_BUILDERS)


def _check_path(path: str) -> None:
    if path not in _BUILDERS:
        raise ValueError(f"unknown render path {path!r} (expected one of: {', '.join(RENDER_PATHS)})")


def path_unavailable(path: str) -> Optional[str]:
    """None when the path can run here, else the reason (the preview needs headless OpenGL)."""
    _check_path(path)
    return preview_unavailable() if path == "preview" else None


def field_renderer(path: str, field, options: RenderOptions, **path_knobs) -> FieldRenderer:
    """The renderer of `path` (one of RENDER_PATHS) for `field`, with `options` as its defaults;
    `path_knobs` go to the path (see the module docstring). Builds the path's per-field set-up."""
    _check_path(path)
    return _BUILDERS[path](field, options, **path_knobs)
