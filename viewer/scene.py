"""The model side of the viewer: loaded models, cached fields and renderers, and `render(request)`.

Used only from the render worker's thread (it owns the device). What is cached, and by what:

* a loaded model per checkpoint file, reloaded when the file changes on disk (a training run
  replacing latest.ckpt / best.ckpt); a run directory resolves to its best (else latest) snapshot;
* per latent (`RenderRequest.latent_key`): the field (tri-planes + MLP, computed once), the
  accelerated renderer (its occupancy grid is the per-latent set-up cost), the preview renderer;
  least recently used latents are dropped beyond `max_latents`. A request with a `latent_file` (an
  inverted latent, NAME.inversion.npz) builds its field from the file's ws and noise maps
  (`inverted_field`) instead of seed, class and psi; the file is keyed by its size and time too, so
  a rewritten file is read again.

Renderers come from core.rendering by path name. Quality "exact" is the "accelerated" path with
the samples per ray scaled by the request's sample multiplier (`with_samples`: one occupancy grid
for all multipliers). Quality "preview" is the "preview" path (core.preview's baked volume,
ray-marched from a hull mesh with OpenGL), when it can run here (headless EGL); otherwise it falls
back to the accelerated path at half the resolution, upsampled, and says so in `Frame.path_used`
("preview-half-accelerated").

The camera's ray interval follows its distance from the scene centre (core.views.options_at_distance),
so zooming out never cuts the object off.

Nobody waits without a picture. `render(..., partial=callback)` hands intermediate frames
(`Frame.partial`) to the callback:

* a first look: while a latent's occupancy grid and preview are still to be built (the first frame
  of a model or a seed: seconds on a busy CPU), a plain render of FIRST_LOOK_RESOLUTION^2 with few
  samples straight from the field, upsampled;
* progressive refinement of an exact frame: its rays are marched coarse to fine
  (`refinement_order`: every 8th or 4th pixel of each row and column first, then every half as
  many, ... then the rest), and once a render has run PARTIAL_AFTER_S, each finished lattice, and
  the rows of the current one every PARTIAL_EVERY_S, is shown with the pixels not done yet filled
  from the last complete lattice. The work is the one-shot render's (every ray once, in another
  order), and so is the final frame (up to float rounding).

Every frame, partial ones too, carries the render's raw geometry (`Frame.depth`, `Frame.opacity`, at the
frame's resolution, upsampled like the image) and the ray interval in `stats["ray_interval"]`: the
view colours depth and reads the point under the cursor from them (viewer/depth_display.py).

`stage(text)` is told what the render is doing ("building the occupancy grid", ...) for the
status line.
"""

from __future__ import annotations

import math
import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from trigan.core.accel import AccelOptions
from trigan.core.cameras import Pose
from trigan.core.checkpoint_meta import resolve_model_path
from trigan.core.devices import parse_device
from trigan.core.errors import TriganError, one_line
from trigan.core.model_io import open_model
from trigan.core.renderer import RenderCancelled, RenderOutput
from trigan.core.rendering import FieldRenderer, field_renderer, path_unavailable
from trigan.core.summary import model_summary
from trigan.core.views import LatentMapper, options_at_distance, picture, seeded_noise, view_class
from trigan.training.inversion import generator_with
from trigan.training.inversion_outputs import load_inversion
from trigan.viewer.compare import GridRequest, render_grid
from trigan.viewer.interpolation import mixed_field
from trigan.viewer.render_request import BACKGROUNDS, Frame, RenderRequest, file_stamp

ShouldCancel = Optional[Callable[[], bool]]
Progress = Optional[Callable[[int, int], None]]
Partial = Optional[Callable[[Frame], None]]
Stage = Optional[Callable[[str], None]]

# Smaller chunks than the exports use: a render checks for cancellation between chunks, and a
# quarter of the default (about 5,500 rays) keeps that wait short at little cost per frame.
VIEWER_ACCEL = replace(AccelOptions(), max_points_per_chunk=1 << 16)

PATH_PREVIEW_BAKED = "preview-baked"
PATH_PREVIEW_FALLBACK = "preview-half-accelerated"
PREVIEW_FALLBACK_SAMPLES = 0.5     # sample multiplier of the half-resolution fallback preview
PATH_EXACT = "exact-accelerated"
PATH_PLAIN = "plain"
PATH_FIRST_LOOK = "first-look-plain"

FIRST_LOOK_RESOLUTION = 64          # the first look: a plain render this large (about 0.05 s on 2 CPU cores)
FIRST_LOOK_STEPS = 16               # ... with this many coarse and fine samples per ray
REFINE_FIRST_SIDE = 64              # the first lattice of a refinement has at least this many pixels a side
REFINE_MAX_STRIDE = 8               # ... and takes at least every 8th pixel
PARTIAL_AFTER_S = 0.25              # a quicker exact render shows no intermediate steps (they would flicker)
PARTIAL_EVERY_S = 0.5               # within a lattice, its finished rows show at most this often


def refinement_strides(resolution: int) -> List[int]:
    """The lattice strides of a progressive exact render, coarse to fine, ending at 1 (every pixel):
    the first lattice is as coarse as REFINE_MAX_STRIDE allows while keeping REFINE_FIRST_SIDE
    pixels a side (256^2: 4, 2, 1; 512^2 and more: 8, 4, 2, 1; 64^2: just 1)."""
    stride = 1
    while stride < REFINE_MAX_STRIDE and resolution // (2 * stride) >= REFINE_FIRST_SIDE:
        stride *= 2
    strides = [stride]
    while strides[-1] > 1:
        strides.append(strides[-1] // 2)
    return strides


def refinement_order(resolution: int, strides: Sequence[int]) -> Tuple[torch.Tensor, List[int]]:
    """The row-major pixel indices in coarse-to-fine order, every pixel once: the pixels on the
    lattice of strides[0] (row and column multiples of it), then those of strides[1] not on it, ...
    Also returns how many pixels are done when each lattice is complete."""
    rows, cols = np.divmod(np.arange(resolution * resolution), resolution)
    level = np.full(rows.shape, len(strides) - 1)
    for i in reversed(range(len(strides))):          # the coarsest lattice a pixel is on wins
        level[(rows % strides[i] == 0) & (cols % strides[i] == 0)] = i
    order = np.argsort(level, kind="stable")
    ends = np.cumsum(np.bincount(level, minlength=len(strides))).tolist()
    return torch.from_numpy(order), ends


def compose_partial(buffers: Dict[str, torch.Tensor], resolution: int, done_mask: torch.Tensor,
                    stride: int) -> RenderOutput:
    """A RenderOutput of a refinement in progress: the pixels done (done_mask, flat) as rendered, the
    others from the complete lattice of `stride` (each lattice pixel covers a stride^2 block)."""
    images = {}
    for key, buffer in buffers.items():
        image = buffer.reshape(resolution, resolution, -1)
        coarse = image[::stride, ::stride].repeat_interleave(stride, 0).repeat_interleave(stride, 1)
        image = torch.where(done_mask.reshape(resolution, resolution, 1), image, coarse[:resolution, :resolution])
        images[key] = image.permute(2, 0, 1)[None]
    return RenderOutput(rgb=images["rgb"], depth=images["depth"], opacity=images["opacity"],
                        normals=images.get("normals"))


@dataclass
class ModelInfo:
    """What the GUI needs to know about a model (filled in the worker thread)."""

    path: str                      # the request's model path as given
    file: str                      # the checkpoint file it resolved to
    summary: dict                  # core.summary.model_summary
    start_pose: Pose               # the model's start pose (3DGP: the mean posterior camera)
    c_dim: int
    class_names: Tuple[str, ...]
    img_resolution: int
    backgrounds: Tuple[str, ...]   # the RenderRequest.background values this model supports
    device: str


def inverted_latent(G, latent_file: str):
    """(a copy of G with the file's noise maps, ws [1, num_ws, w_dim] on G's device) of an inverted
    latent (NAME.inversion.npz, training.inversion_outputs). G itself is left as it is: its own noise
    maps still serve the seeds. Raises a one-line InversionError when the file is unreadable or was
    fitted on a model of another shape."""
    record = load_inversion(latent_file, G)
    return generator_with(G, record, tuned=False), record.ws.to(G.device, torch.float32)


def inverted_field(G, latent_file: str):
    """The field of an inverted latent on model G (see inverted_latent)."""
    synthesis_model, ws = inverted_latent(G, latent_file)
    with torch.no_grad():      # no_grad, not inference_mode: the normals are gradients of the density
        return synthesis_model.field_from_ws(ws, noise_mode="const")


@dataclass
class _Latent:
    field: object
    fast: Dict[float, FieldRenderer] = field(default_factory=dict)   # sample multiplier -> accelerated renderer
    preview: Optional[FieldRenderer] = None
    preview_problem: Optional[str] = None
    setup_ms: float = 0.0


def preview_availability():
    """("preview", None) when the preview path can run here (headless OpenGL), else (None, reason)."""
    try:
        reason = path_unavailable("preview")
    except Exception as exc:  # noqa: BLE001 - a broken GL stack must not take the viewer down
        reason = one_line(exc)
    return (None, reason) if reason else ("preview", None)


class Scene:
    def __init__(self, device=None, max_latents: int = 8, use_preview_module: bool = True):
        self.device = parse_device("auto" if device is None else str(device))
        self.max_latents = int(max_latents)
        self._models: "OrderedDict[str, Tuple[tuple, object]]" = OrderedDict()   # path -> (file stamp, LoadedModel)
        self._latents: "OrderedDict[tuple, _Latent]" = OrderedDict()
        self._preview_path: Optional[str] = None     # "preview" once it can run here
        self._preview_problem = "the preview module is switched off" if not use_preview_module else None
        self._preview_checked = not use_preview_module
        self.partial_after_s, self.partial_every_s = PARTIAL_AFTER_S, PARTIAL_EVERY_S
        self._stage_callback: Stage = None

    def _stage(self, text: str) -> None:
        if self._stage_callback is not None:
            self._stage_callback(text)

    # -- models --------------------------------------------------------------------------------------
    def model(self, model_path: str):
        """The LoadedModel of a path (cached; reloaded when the checkpoint file changed)."""
        resolved = resolve_model_path(model_path)
        try:
            st = os.stat(resolved)
            stamp = (str(resolved), st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = (str(resolved), None, None)      # open_model raises the one-line error
        cached = self._models.get(model_path)
        if cached is not None and cached[0] == stamp:
            self._models.move_to_end(model_path)
            return cached[1]
        model = open_model(model_path, device=self.device)
        model.G.eval().requires_grad_(False)
        self._models[model_path] = (stamp, model)
        self._models.move_to_end(model_path)
        # a changed checkpoint invalidates its fields; keep at most two models in memory
        self._latents = OrderedDict((k, v) for k, v in self._latents.items()
                                    if not (k[0] == model_path and k[1] != stamp))
        while len(self._models) > 2:
            old, _ = self._models.popitem(last=False)
            self._latents = OrderedDict((k, v) for k, v in self._latents.items() if k[0] != old)
        return model

    def backgrounds(self, G) -> Tuple[str, ...]:
        """A model with a background network paints its own background: only "model" applies."""
        return ("model",) if G.synthesis.bg_model is not None else BACKGROUNDS

    def model_info(self, model_path: str, class_index: Optional[int] = None) -> ModelInfo:
        m = self.model(model_path)
        G = m.G
        summary = model_summary(m.config, G, m.progress, m.metrics, m.extra_keys)
        summary["format"] = m.format
        cls = self._class(G, class_index)
        return ModelInfo(path=str(model_path), file=m.path, summary=summary,
                         start_pose=Pose.for_generator(G, cls), c_dim=G.c_dim,
                         class_names=tuple(G.cfg.class_names), img_resolution=G.cfg.img_resolution,
                         backgrounds=self.backgrounds(G), device=str(self.device))

    def draw_camera(self, model_path: str, seed: int, class_index: Optional[int], draw: int) -> Pose:
        """Camera number `draw` from the model's camera distribution, for the latent of `seed` and
        the class: a prior camera (drawn from a generator seeded by `draw`) through the learned
        camera generator (3DGP), or the prior camera itself for a model without one."""
        G = self.model(model_path).G
        if G.camera_generator is None and G.cfg.camera.dist == "custom":
            raise TriganError("this model takes its cameras from its dataset's poses: there is no camera "
                              "distribution to draw from")
        cls = self._class(G, class_index)
        with torch.no_grad():
            z = G.latents([int(seed)])
            c = G.labels([cls], 1) if cls is not None else None
            camera = G.posterior_camera(z, c, prior_seeds=[int(draw)])
        return Pose.from_camera(camera.to("cpu"))

    def summary(self, model_path: str) -> dict:
        """core.summary's description of the model (the model panel)."""
        return self.model_info(model_path).summary

    @staticmethod
    def _class(G, class_index: Optional[int]) -> Optional[int]:
        """A conditional model without a chosen class renders class 0; an unconditional one ignores it."""
        if G.c_dim == 0:
            return None
        return 0 if class_index is None else int(class_index)

    # -- latents -------------------------------------------------------------------------------------
    def _latent(self, request: RenderRequest, should_cancel: ShouldCancel) -> _Latent:
        stamp = self._models[request.model_path][0]
        key = (request.model_path, stamp, request.latent_key, file_stamp(request.latent_file),
               file_stamp(None if request.mix is None else request.mix.latent_file))
        entry = self._latents.get(key)
        if entry is not None:
            self._latents.move_to_end(key)
            return entry
        self._stage("building the field")
        start = time.perf_counter()
        G = self._models[request.model_path][1].G
        if request.mix is not None:
            fld = mixed_field(G, request)          # an interpolation in w (viewer/interpolation.py)
        elif request.latent_file is not None:
            fld = inverted_field(G, request.latent_file)
        else:
            fld = self._seed_field(G, request)
        entry = _Latent(field=fld, setup_ms=(time.perf_counter() - start) * 1000)
        self._latents[key] = entry
        while len(self._latents) > self.max_latents:
            self._latents.popitem(last=False)
        return entry

    def _seed_field(self, G, request: RenderRequest):
        """The field of the request's seed, class and psi (and noise mode)."""
        cls = view_class(G, request.class_index)
        noise = seeded_noise(request.seed) if request.noise_mode == "random" else request.noise_mode
        # no_grad, not inference_mode: the normals are gradients of the field's density.
        with torch.no_grad():
            ws = LatentMapper(G, request.psi).ws([(cls, request.seed)])
            return G.field_from_ws(ws, noise_mode=noise)

    def _fast(self, G, entry: _Latent, multiplier: float):
        """The accelerated renderer for this many samples; all multipliers share one occupancy grid."""
        fast = entry.fast.get(multiplier)
        if fast is not None:
            return fast
        if not entry.fast:
            self._stage("building the occupancy grid")
            start = time.perf_counter()
            with torch.no_grad():
                base = field_renderer("accelerated", entry.field,
                                      G.render_options(deterministic=True, density_noise_std=0.0), accel=VIEWER_ACCEL)
            entry.setup_ms += (time.perf_counter() - start) * 1000
            entry.fast[1.0] = base
            if multiplier == 1.0:
                return base
        fast = entry.fast[1.0].with_samples(multiplier)     # same field and grid, other sample counts
        entry.fast[multiplier] = fast
        return fast

    def _preview_renderer(self, G, entry: _Latent):
        if not self._preview_checked:
            self._preview_path, self._preview_problem = preview_availability()
            self._preview_checked = True
        if self._preview_path is None:
            return None
        if entry.preview is None and entry.preview_problem is None:
            fast = self._fast(G, entry, 1.0)       # its occupancy grid probes the volume the preview bakes
            self._stage("building the preview")
            start = time.perf_counter()
            try:
                with torch.no_grad():
                    entry.preview = field_renderer(self._preview_path, entry.field, fast.options, grid=fast.grid)
            except Exception as exc:  # noqa: BLE001 - no preview for this latent; the exact path still works
                entry.preview_problem = one_line(exc)
            entry.setup_ms += (time.perf_counter() - start) * 1000
        return entry.preview

    # -- rendering -----------------------------------------------------------------------------------
    def render(self, request: RenderRequest, should_cancel: ShouldCancel = None, progress: Progress = None,
               partial: Partial = None, stage: Stage = None) -> Frame:
        """The frame of a request. Errors become a Frame with `error` set; RenderCancelled (from
        should_cancel) propagates so the worker can drop the request. `partial` receives the
        intermediate frames, `stage` what is being built (see the module's docstring)."""
        if isinstance(request, GridRequest):       # a compare grid: its cells, each as a request of its own
            return render_grid(self, request, should_cancel=should_cancel, progress=progress, partial=partial,
                               stage=stage)
        start = time.perf_counter()
        self._stage_callback = stage
        try:
            return self._render(request, should_cancel, progress, partial, start)
        except RenderCancelled:
            raise
        except Exception as exc:  # noqa: BLE001 - a failed render is an error frame with its reason, never a dead worker
            return Frame.failed(request, one_line(exc), (time.perf_counter() - start) * 1000)
        finally:
            self._stage_callback = None

    def _render(self, request: RenderRequest, should_cancel: ShouldCancel, progress: Progress, partial: Partial,
                start: float) -> Frame:
        model = self.model(request.model_path)
        G = model.G
        if request.background not in self.backgrounds(G):
            raise TriganError(f"background {request.background!r}: this model paints its own background with "
                              "a background network (only 'model' applies)")
        entry = self._latent(request, should_cancel)
        if should_cancel is not None and should_cancel():
            raise RenderCancelled()
        cam_cfg = G.cfg.camera
        distance = math.sqrt(sum(v * v for v in request.pose.origin()))   # to the scene centre
        background = {"model": None, "white": 1.0, "black": -1.0}[request.background]
        overrides = dict(deterministic=True, density_noise_std=0.0, normals=request.mode == "normals")
        if background is not None:
            overrides["white_background"] = False      # composited below, over the chosen colour
        opts = options_at_distance(G.render_options(**overrides), distance, cam_cfg.radius)
        camera = request.pose.to_camera(device=G.device)
        res = request.resolution
        if partial is not None and not entry.fast:
            # the occupancy grid (and the preview baked from it) is still to be built: seconds on a
            # busy CPU, so show a cheap plain render of the field first
            self._first_look(entry, camera, opts, background, request, partial, should_cancel, start)
        stats = {}
        render_start = time.perf_counter()
        setup_before = entry.setup_ms
        out, path, render_res = None, PATH_EXACT, res
        if request.quality == "preview":
            previewer = self._preview_renderer(G, entry)
            if previewer is not None:
                self._stage("rendering")
                out = self._render_preview(previewer, camera, res, opts, request)
                path = PATH_PREVIEW_BAKED
            else:
                stats["preview_problem"] = entry.preview_problem or self._preview_problem
                render_res = max(16, res // 2)
                path = PATH_PREVIEW_FALLBACK
        if out is None:
            # a preview here is the fallback: it halves the samples too, to keep up while the camera moves
            multiplier = PREVIEW_FALLBACK_SAMPLES if request.quality == "preview" else request.sample_multiplier
            fast = self._fast(G, entry, multiplier)
            self._stage("rendering")
            refine = None
            if request.quality == "exact" and partial is not None:
                refine = _Refinement(self, request, opts, background, partial)
            out = fast.render(camera, render_res, options=opts, should_cancel=should_cancel, progress=progress,
                              pixel_order=None if refine is None else refine.order,
                              on_chunk=None if refine is None else refine.on_chunk)
            if fast.last_stats.get("fallback"):
                path = PATH_PLAIN
                stats["plain_reason"] = fast.last_stats["fallback"]
            stats["field_evaluations"] = fast.last_stats.get("evaluated")
            if refine is not None:
                stats["partial_frames"] = refine.published
        now = time.perf_counter()
        setup_ms = entry.setup_ms - setup_before
        stats.update(render_ms=(now - render_start) * 1000 - setup_ms, setup_ms=setup_ms,
                     rendered_resolution=render_res)
        return _frame(request, out, opts, background, (now - start) * 1000, path, stats)

    def _first_look(self, entry: _Latent, camera, opts, background, request: RenderRequest, partial,
                    should_cancel: ShouldCancel, start: float) -> None:
        """Hand `partial` a plain render of FIRST_LOOK_RESOLUTION^2 with few samples (a failure here
        only means no first look: the real frame follows and reports its own errors)."""
        res = min(FIRST_LOOK_RESOLUTION, request.resolution)
        cheap = replace(opts, num_steps=FIRST_LOOK_STEPS, num_fine_steps=FIRST_LOOK_STEPS)
        try:
            with torch.no_grad():
                out = field_renderer("plain", entry.field, cheap).render(camera, res, should_cancel=should_cancel)
            frame = _frame(request, out, cheap, background, (time.perf_counter() - start) * 1000, PATH_FIRST_LOOK,
                           {"rendered_resolution": res}, partial=True)
        except RenderCancelled:
            raise
        except Exception:  # noqa: BLE001 - a first look is a courtesy; the frame that follows says what failed
            return
        partial(frame)

    @staticmethod
    def _render_preview(previewer: FieldRenderer, camera, res: int, opts, request: RenderRequest):
        """The preview path's render of this view (its ray interval follows the camera's distance)."""
        return previewer.render(camera, res, options=opts, normals=request.mode == "normals")

    def clear(self) -> None:
        self._models.clear()
        self._latents.clear()


def frame_geometry(out: RenderOutput, res: int) -> Tuple[np.ndarray, np.ndarray]:
    """(depth, opacity), each [res, res] float32, of a render: its raw sum w t and sum w (Frame.depth,
    Frame.opacity), upsampled like the image when it was rendered smaller (both bilinear, so their
    ratio, the surface distance, stays a weighted mean of the rendered pixels')."""
    maps = torch.cat([out.depth[:1].float(), out.opacity[:1].float()], dim=1)
    if maps.shape[-1] != res or maps.shape[-2] != res:
        maps = F.interpolate(maps, size=(res, res), mode="bilinear", align_corners=False)
    maps = maps[0].cpu().numpy().astype(np.float32)
    return np.ascontiguousarray(maps[0]), np.ascontiguousarray(maps[1])


def _frame(request: RenderRequest, out: RenderOutput, opts, background, ms: float, path: str, stats: dict,
           partial: bool = False) -> Frame:
    """A Frame of a render: the mode's picture and the raw geometry, at the request's resolution; the
    stats say the ray interval the depth picture spans (stats["ray_interval"], world units)."""
    res = request.resolution
    depth, opacity = frame_geometry(out, res)
    stats = dict(stats, ray_interval=[float(opts.ray_start), float(opts.ray_end)])
    return Frame(request, _rgba(out, request.mode, opts, background, res), ms, path, None, stats, partial=partial,
                 depth=depth, opacity=opacity)


def _rgba(out: RenderOutput, mode: str, opts, background, res: int) -> np.ndarray:
    """[res, res, 4] float32 RGBA in [0, 1] of a render (upsampled when it was rendered smaller)."""
    image = picture(out, mode, opts, background)
    if image.shape[-1] != res or image.shape[-2] != res:
        image = F.interpolate(image.float(), size=(res, res), mode="bilinear", align_corners=False)
    rgb01 = ((image[0].float().clamp(-1, 1) + 1) * 0.5).permute(1, 2, 0).cpu().numpy()
    rgba = np.ones((res, res, 4), dtype=np.float32)
    rgba[..., :3] = rgb01
    return rgba


class _Refinement:
    """The coarse-to-fine order of an exact render's rays and the partial frames shown on the way."""

    def __init__(self, scene: Scene, request: RenderRequest, opts, background, partial):
        self.request, self.opts, self.background, self.partial = request, opts, background, partial
        self.after_s, self.every_s = scene.partial_after_s, scene.partial_every_s
        self.res = request.resolution
        self.strides = refinement_strides(self.res)
        self.order, self.ends = refinement_order(self.res, self.strides)
        self.start = time.perf_counter()
        self.last_shown, self.last_done, self.published = 0.0, 0, 0

    def on_chunk(self, b: int, done: int, buffers: Dict[str, torch.Tensor]) -> None:
        now = time.perf_counter()
        finished_lattice = any(self.last_done < end <= done for end in self.ends)
        self.last_done = done
        if done >= self.res * self.res or done < self.ends[0] or now - self.start < self.after_s:
            return
        if not finished_lattice and now - self.last_shown < self.every_s:
            return
        complete = max(i for i, end in enumerate(self.ends) if end <= done)
        mask = torch.zeros(self.res * self.res, dtype=torch.bool)
        mask[self.order[:done]] = True
        out = compose_partial({k: v.cpu() for k, v in buffers.items()}, self.res, mask, self.strides[complete])
        self.partial(_frame(self.request, out, self.opts, self.background, (now - self.start) * 1000, PATH_EXACT,
                            {"refined": done / (self.res * self.res), "stride": self.strides[complete]},
                            partial=True))
        self.last_shown = time.perf_counter()
        self.published += 1
