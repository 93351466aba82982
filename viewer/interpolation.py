"""Interpolation in w between two latents: the Interpolate tab's field and its video export.

A request with `mix` (render_request.LatentMix) shows the latent (1 - t) w0 + t w1 where

* w0 is the request's own latent: its seed with its class and psi through the model's mapping
  network (core.views.LatentMapper, as Scene's seed fields), or its `latent_file` (an inverted
  NAME.inversion.npz: its ws as they are);
* w1 is the mix's far end: `mix.seed` with the request's class, psi and noise mode, or
  `mix.latent_file`.

W and W+: a seed's ws are one w repeated over the synthesis layers (the mapping network broadcasts
it), an inverted latent may hold one w per layer (W+); both are [1, num_ws, w_dim], and the lerp is
taken layer by layer, so a seed mixes with a W+ latent without a special case.

Noise maps: an inverted latent brings the noise maps its fit found (the layers it left alone keep
the model's own). So that t = 0 and t = 1 are exactly the two ends, the noise is interpolated too,
map by map: noise(t) = (1 - t) n0 + t n1, where a seed's maps are those of the request's noise mode
("const": the model's stored maps, "random": the maps drawn from that seed, "none": zeros). Noise
enters each layer linearly (added to its activations), so this is the straight line between the
two ends' synthesis inputs. When both ends are seeds with noise mode "const" or "none", the noise
is the same at both ends and passes to the synthesis network unchanged.

torch.lerp is exact at the ends (t = 0 gives a, t = 1 gives b, bit for bit), so the field at t = 0
is the request's own latent's field and at t = 1 the far end's (tests/test_viewer_interpolation.py
checks both against Scene's fields).

`export_interpolation` renders t = 0 .. 1 at one camera into a video with core.exports'
ViewRenderer and core.video's VideoWriter (what `trigan render --vis interp_video` uses), one latent
at a time, on its own copy of the model: a background job of the viewer (viewer.jobs.JobRunner.start).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy as np
import torch

from trigan.core.cameras import Pose
from trigan.core.devices import parse_device
from trigan.core.errors import TriganError
from trigan.core.exports import ViewRenderer
from trigan.core.limits import MAX_FRAMES
from trigan.core.model_io import open_model
from trigan.core.trajectories import Trajectory
from trigan.core.video import FORMATS as VIDEO_FORMATS
from trigan.core.video import VideoWriter, output_path
from trigan.core.views import LatentMapper, seeded_noise, view_class
from trigan.training.inversion_outputs import load_inversion

NoiseMaps = List[torch.Tensor]          # one [R, R] map per noise layer, in the order the layers run
VIDEO_OUTPUTS = ("rgb", "depth", "normals")
MIN_VIDEO_RESOLUTION, MAX_VIDEO_RESOLUTION = 16, 2048


@dataclass
class LatentEnd:
    """One end of an interpolation: ws [1, num_ws, w_dim] on the model's device, and its noise maps
    (None: the shared noise mode of two seed ends, see latent_ends)."""

    ws: torch.Tensor
    noise: Optional[NoiseMaps] = None


# --------------------------------------------------------------------------------------------------
# Noise layers

def noise_layers(G) -> list:
    """(state-dict name of its noise map, layer) of every synthesis layer with noise, in the order
    the synthesis network calls them: modules are listed in the order they were made, which is the
    order the tri-plane decoder runs them (block by block, conv0 before conv1);
    `mixed_noise` checks each layer's resolution as it is called."""
    return [(f"{name}.noise_const", module) for name, module in G.named_modules()
            if getattr(module, "use_noise", False) and isinstance(getattr(module, "noise_const", None), torch.Tensor)]


def const_noise(G, replaced: Optional[dict] = None) -> NoiseMaps:
    """The stored noise maps of G, the ones named in `replaced` (an inversion's) swapped in."""
    replaced = replaced or {}
    return [replaced.get(name, layer.noise_const).to(G.device, torch.float32) for name, layer in noise_layers(G)]


def seed_noise(G, seed: int, noise_mode: str) -> NoiseMaps:
    """The maps a seed's synthesis sees under a noise mode (core.views.seeded_noise for "random":
    drawn in the layers' order, one latent at a time, as Scene draws them)."""
    layers = noise_layers(G)
    if noise_mode == "const":
        return const_noise(G)
    if noise_mode == "none":
        return [torch.zeros_like(layer.noise_const, dtype=torch.float32, device=G.device) for _, layer in layers]
    draw = seeded_noise(seed)
    return [draw(1, layer.resolution, G.device, torch.float32)[0, 0] for _, layer in layers]


def mixed_noise(G, n0: NoiseMaps, n1: NoiseMaps, t: float):
    """A synthesis noise_mode callable handing each noise layer, in turn, lerp(n0, n1, t)."""
    maps = [torch.lerp(a, b, float(t)) for a, b in zip(n0, n1, strict=True)]
    calls = iter(range(len(maps)))

    def draw(batch: int, resolution: int, device, dtype) -> torch.Tensor:
        i = next(calls, None)
        if i is None or maps[i].shape[-1] != resolution:
            raise TriganError("interpolation: the model's noise layers ran in an unexpected order")
        return maps[i].to(device=device, dtype=dtype).expand(batch, 1, resolution, resolution)
    return draw


# --------------------------------------------------------------------------------------------------
# The two ends

def seed_ws(G, seed: int, class_index: Optional[int], psi: float) -> torch.Tensor:
    with torch.no_grad():
        return LatentMapper(G, psi).ws([(view_class(G, class_index), int(seed))])


def file_end(G, latent_file: str) -> LatentEnd:
    """An inverted latent (NAME.inversion.npz, read and checked against G): its ws and noise maps."""
    record = load_inversion(latent_file, G)
    return LatentEnd(record.ws.to(G.device, torch.float32), const_noise(G, record.noise))


def latent_ends(G, request) -> tuple:
    """(start, end, noise_mode) of a request with `mix`: noise_mode is the synthesis noise mode both
    ends share ("const" / "none") when both are seeds, else None (each end carries its maps)."""
    mix = request.mix
    if mix is None:
        raise TriganError("interpolation: the request has no far end (mix)")
    seeds_only = request.latent_file is None and mix.latent_file is None
    shared = request.noise_mode if seeds_only and request.noise_mode in ("const", "none") else None

    def seed_end(seed: int) -> LatentEnd:
        ws = seed_ws(G, seed, request.class_index, request.psi)
        return LatentEnd(ws, None if shared else seed_noise(G, seed, request.noise_mode))

    start = file_end(G, request.latent_file) if request.latent_file is not None else seed_end(request.seed)
    end = file_end(G, mix.latent_file) if mix.latent_file is not None else seed_end(mix.seed)
    if start.ws.shape != end.ws.shape:
        raise TriganError(f"interpolation: the ends' latents have shapes {tuple(start.ws.shape)} and "
                          f"{tuple(end.ws.shape)}")
    return start, end, shared


def mixed_ws(start: LatentEnd, end: LatentEnd, t: float) -> torch.Tensor:
    """(1 - t) w0 + t w1, layer by layer (exact at t = 0 and 1)."""
    return torch.lerp(start.ws, end.ws, float(t))


def field_at(G, start: LatentEnd, end: LatentEnd, noise_mode: Optional[str], t: float):
    """The field of the latent at t between the ends (no_grad, not inference_mode: the normals are
    gradients of the field's density)."""
    noise = noise_mode if noise_mode is not None else mixed_noise(G, start.noise, end.noise, t)
    ws = mixed_ws(start, end, t)
    with torch.no_grad():
        return G.field(G.synthesis(ws, noise_mode=noise), ws)


def mixed_field(G, request):
    """The field of (1 - t) w0 + t w1 for request.mix (see render_request.LatentMix and the module's
    docstring)."""
    start, end, noise_mode = latent_ends(G, request)
    return field_at(G, start, end, noise_mode, request.mix.t)


# --------------------------------------------------------------------------------------------------
# The video

def interpolation_times(frames: int) -> np.ndarray:
    """t of each frame: 0 .. 1 evenly, both ends included (one frame: t = 0)."""
    return np.linspace(0.0, 1.0, int(frames)) if frames > 1 else np.zeros(1)


def still_trajectory(pose: Pose, frames: int) -> Trajectory:
    """`frames` views all from `pose` (the camera stands still while the latent moves)."""
    def full(value: float) -> np.ndarray:
        return np.full(int(frames), float(value))
    return Trajectory("interpolation", full(pose.yaw), full(pose.pitch), full(pose.fov), full(pose.radius),
                      look_at=pose.look_at, pivot=pose.pivot)


def check_video_values(frames: int, fps: float, resolution: int, output: str) -> None:
    """One-line TriganErrors for values no interpolation video takes."""
    if not 2 <= int(frames) <= MAX_FRAMES:
        raise TriganError(f"interpolation video frames {frames}: expected 2..{MAX_FRAMES}")
    if not (math.isfinite(float(fps)) and float(fps) > 0):
        raise TriganError(f"interpolation video fps {fps}: expected a positive number")
    if not MIN_VIDEO_RESOLUTION <= int(resolution) <= MAX_VIDEO_RESOLUTION:
        raise TriganError(f"interpolation video resolution {resolution}: expected "
                          f"{MIN_VIDEO_RESOLUTION}..{MAX_VIDEO_RESOLUTION} pixels")
    if output not in VIDEO_OUTPUTS:
        raise TriganError(f"interpolation video output {output!r}: expected one of {', '.join(VIDEO_OUTPUTS)}")


def video_target(path: Union[str, Path], fmt: Optional[str]) -> tuple:
    """(format, the file or frame folder written) of a video path (format by default from its suffix)."""
    path = Path(path)
    fmt = (fmt or (path.suffix[1:].lower() if path.suffix else "mp4")).lower()
    if fmt not in VIDEO_FORMATS:
        raise TriganError(f"{path}: unknown video format {fmt!r} (expected {', '.join(VIDEO_FORMATS)})")
    if path.suffix.lower() == f".{fmt}":
        path = path.with_suffix("")
    return fmt, output_path(path, fmt)


def interpolation_frames(G, request, times: Sequence[float], resolution: int, output: str = "rgb",
                         on_views=None, should_cancel=None):
    """uint8 [H, W, 3] frames of the interpolation at request.pose, one per t: each latent's field
    rendered alone (core.exports.ViewRenderer, the accelerated path), so a frame is the same whatever
    the other frames are."""
    start, end, noise_mode = latent_ends(G, request)
    traj = still_trajectory(request.pose, len(times))
    renderer = ViewRenderer(G, resolution=resolution, output=output, psi=request.psi, batch=1,
                            on_views=on_views, should_cancel=should_cancel)
    for k, t in enumerate(times):
        field = field_at(G, start, end, noise_mode, float(t))
        yield from renderer.render(field, [0], traj, [k])


def export_interpolation(model_path, request, frames: int, fps: float, resolution: int, path, *,
                         fmt: Optional[str] = None, quality: float = 8.0, output: str = "rgb", device=None,
                         job=None) -> Path:
    """A video of the interpolation of `request` (a RenderRequest with `mix`: its latent, the far
    end, and the camera `request.pose`) from t = 0 to 1 in `frames` frames, on `model_path` loaded
    afresh (never the render worker's model). fmt: mp4, gif or png (a folder of frames). Replaces an
    existing file of that name (the viewer picks fresh names). Cancel (job.cancel()) stops between
    frames and leaves nothing on disk."""
    check_video_values(frames, fps, resolution, output)
    fmt, target = video_target(path, fmt)
    if request.mix is None:
        raise TriganError("interpolation video: choose the far end (a seed or an inverted latent) first")
    if job is not None:
        job.report(0.0, "loading the model")
    G = open_model(model_path, device=parse_device("auto" if device is None else str(device))).G.eval()
    times = interpolation_times(frames)
    done = [0]

    def on_views(n: int) -> None:
        done[0] += n
        if job is not None:
            job.report(done[0] / len(times), f"rendering {done[0]}/{len(times)} frames")
            job.check()

    should_cancel = job.should_cancel if job is not None else None
    grad = torch.no_grad() if output == "normals" else torch.inference_mode()   # normals need autograd
    with grad, VideoWriter(target, fps, fmt, quality, overwrite=True) as video:
        for image in interpolation_frames(G, request, times, resolution, output, on_views, should_cancel):
            video.append(image)
    if job is not None:
        job.report(1.0, f"{video.count} frames")
    return target
