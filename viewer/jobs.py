"""Background jobs: screenshot, video and mesh exports, a synthetic dataset and the inversion of
photos into the model, each on its own thread with progress and cancel.

    runner = JobRunner()
    job = runner.start_video(model_path, seeds=[0, 1, 2, 3], ..., path="out/orbit.mp4")
    job.progress, job.state, job.message      # polled by the GUI every frame
    job.cancel()                              # stops between chunks; nothing is left on disk

The job functions (`export_screenshot`, `export_video`, `export_mesh`) run the same code as
`trigan render` and `trigan mesh` (core.exports) and can also be called directly, synchronously.
They open their own copy of the model, so an export never waits for, or blocks, the render worker.
Every output appears atomically (written beside the target, renamed at the end): a cancelled or
failed job leaves no partial file and never damages an older file of the same name.

An inversion job (`invert_images`, `JobRunner.start_inversion`) runs training.inversion.invert on
its own copy of the model, image after image; `Job.detail` says which stage and step it is at and
the fit's PSNR, `Job.preview` holds the newest reconstruction (uint8 [H, W, 3], counted by
`Job.preview_count`) and `Job.target` the image as the model sees it (cropped, resized). When done,
`Job.result` is an `InversionOutcome`: the files written (training.inversion_outputs.save_inversion),
the tuned checkpoint and the latent file the view shows, the found camera and class.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

import torch

from trigan.core.cameras import Pose
from trigan.core.checkpoint_meta import resolve_model_path
from trigan.core.devices import parse_device
from trigan.core.errors import TriganError, one_line
from trigan.core.exports import ViewRenderer, grid_video_frames, latent_mesh, seed_mesh, video_frames
from trigan.core.images import grid_shape, save_png, to_uint8
from trigan.core.limits import MAX_SEED
from trigan.core.mesh import FORMATS as MESH_FORMATS
from trigan.core.mesh import parse_level
from trigan.core.model_io import open_model
from trigan.core.renderer import RenderCancelled
from trigan.core.selection import parse_int_list
from trigan.core.trajectories import make_trajectory
from trigan.core.video import FORMATS as VIDEO_FORMATS
from trigan.core.video import VideoWriter, output_path
from trigan.core.views import view_class
from trigan.training.inversion import InversionSettings, invert, tuning_note
from trigan.training.inversion_inputs import load_target, model_backdrop, parse_camera_spec
from trigan.training.inversion_outputs import planned_outputs, save_inversion
from trigan.training.perceptual import make_image_loss
from trigan.viewer.scene import inverted_latent

JOB_STATES = ("running", "done", "failed", "cancelled")


class JobCancelled(Exception):
    """Raised inside a job function when its job was cancelled."""


@dataclass
class Job:
    kind: str                                  # "screenshot" | "video" | "mesh"
    label: str
    progress: float = 0.0                      # 0..1
    state: str = "running"
    message: str = ""                          # what it is doing, or the one-line error
    output_path: Optional[Path] = None         # set when done
    started_at: float = field(default_factory=time.time)
    detail: Dict[str, Any] = field(default_factory=dict)   # a job's own progress values (inversion: stage, step ...)
    preview: Optional[Any] = None              # uint8 [H, W, 3]: the newest picture of the work (inversion)
    preview_count: int = 0                     # how many previews have come (a reader redraws on a change)
    target: Optional[Any] = None               # uint8 [H, W, 3]: what the work aims at (inversion: the input)
    result: Optional[Any] = None               # what a job leaves besides its file (inversion: InversionOutcome)
    finished_at: Optional[float] = None
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: Optional[threading.Thread] = field(default=None, repr=False)

    def cancel(self) -> None:
        """Ask the job to stop at its next chunk (a no-op once it has finished)."""
        self._cancel.set()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    @property
    def finished(self) -> bool:
        return self.state != "running"

    @property
    def seconds(self) -> float:
        return (self.finished_at or time.time()) - self.started_at

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until the job has finished (tests, scripts; never the GUI thread)."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.finished

    # -- used by job functions ---------------------------------------------------------------------
    def should_cancel(self) -> bool:
        return self._cancel.is_set()

    def check(self) -> None:
        if self._cancel.is_set():
            raise JobCancelled()

    def report(self, fraction: float, message: Optional[str] = None) -> None:
        self.progress = min(1.0, max(0.0, float(fraction)))
        if message is not None:
            self.message = message


def _progress_span(job: Optional[Job], lo: float, hi: float, message: Optional[str] = None):
    """A progress(done, total) callback mapping onto [lo, hi] of the job's bar."""
    def update(done: int, total: int) -> None:
        if job is not None:
            job.report(lo + (hi - lo) * (done / total if total else 1.0), message)
    return update


def _device(device):
    return parse_device("auto" if device is None else str(device))


def _seeds(seeds) -> List[int]:
    if isinstance(seeds, str):
        return parse_int_list(seeds, "seeds", 0, MAX_SEED)
    out = [int(s) for s in ([seeds] if isinstance(seeds, int) else seeds)]
    if not out:
        raise TriganError("video: give at least one seed")
    if any(not 0 <= s <= MAX_SEED for s in out):
        raise TriganError(f"seeds {out}: expected 0..{MAX_SEED}")
    return out


def _load_generator(model_path, class_index: Optional[int], device, job: Optional[Job]):
    """An export's own copy of the model (never the render worker's), in eval mode, and its class."""
    if job is not None:
        job.report(0.0, "loading the model")
    model = open_model(model_path, device=_device(device))
    if job is not None:
        job.check()
    G = model.G.eval()
    return G, view_class(G, class_index)


# --------------------------------------------------------------------------------------------------
# Job functions

def export_screenshot(frame, path, job: Optional[Job] = None) -> Path:
    """The frame's picture as a PNG (what the window shows, at the rendered resolution)."""
    if frame is None:
        raise TriganError("screenshot: nothing has been rendered yet")
    if getattr(frame, "error", None):
        raise TriganError(f"screenshot: the current frame is an error ({frame.error})")
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise TriganError(f"{path}: screenshots are PNG files (name it .png)")
    if job is not None:
        job.check()
    save_png(frame.rgb_uint8(), path)
    if job is not None:
        job.report(1.0)
    return path


def export_video(model_path, seeds, class_index: Optional[int], psi: float, trajectory: str,
                 frames: Optional[int], fps: float, resolution: int, path, *, fmt: Optional[str] = None,
                 quality: float = 8.0, output: str = "rgb", noise_mode: str = "const",
                 base_pose: Optional[Pose] = None, batch: int = 8, latent_file=None, device=None,
                 job: Optional[Job] = None) -> Path:
    """A video of one seed, or of several seeds tiled in a grid, along a trajectory; or, with
    `latent_file` (NAME.inversion.npz), of that inverted latent with its noise maps (seeds, class and
    psi are then unused), as `trigan render --latent` renders it.

    trajectory: a core.trajectories name (front_circle, points, wiggle, line, orbit, zoom) or a
    keyframe FILE.json, built around `base_pose` (a core.cameras.Pose, e.g. the viewer's current
    camera, its look-at point and panned pivot included; default: the model's start view,
    Pose.for_generator, as `trigan render` uses). fmt: mp4, gif or png (a folder of frames); by
    default from the path's suffix (mp4 without one). Renders like
    `trigan render --vis video[_grid]`; with the same `batch` (that command's --batch, default 8) the
    frames are identical, since the hashed sample jitter of a view depends on its place in its batch."""
    seeds = [0] if latent_file is not None else _seeds(seeds)
    path = Path(path)
    fmt = (fmt or (path.suffix[1:].lower() if path.suffix else "mp4")).lower()
    if fmt not in VIDEO_FORMATS:
        raise TriganError(f"{path}: unknown video format {fmt!r} (expected {', '.join(VIDEO_FORMATS)})")
    if path.suffix.lower() == f".{fmt}":
        path = path.with_suffix("")
    target = output_path(path, fmt)
    if not 16 <= int(resolution) <= 2048:
        raise TriganError(f"video resolution {resolution}: expected 16..2048 pixels")
    if not (math.isfinite(fps) and fps > 0):
        raise TriganError(f"video fps {fps}: expected a positive number")
    if frames is not None and int(frames) < 1:
        raise TriganError(f"video frames {frames}: expected at least 1")
    G, cls = _load_generator(model_path, None if latent_file is not None else class_index, device, job)
    ws = None
    if latent_file is not None:
        G, ws = inverted_latent(G, str(latent_file))      # a copy with the latent's noise maps
    base = Pose.for_generator(G) if base_pose is None else base_pose
    traj = make_trajectory(trajectory, base, frames, fps)
    total = len(traj) * len(seeds)
    done = [0]

    def on_views(n: int) -> None:
        done[0] += n
        if job is not None:
            job.report(done[0] / total, f"rendering {done[0]}/{total} views")

    should_cancel = job.should_cancel if job is not None else None
    renderer = ViewRenderer(G, resolution=resolution, output=output, psi=psi, batch=batch, noise_mode=noise_mode,
                            on_views=on_views, should_cancel=should_cancel)
    grad = torch.no_grad() if output == "normals" else torch.inference_mode()   # normals need autograd
    # The viewer picks fresh numbered names itself, and a job given an explicit path replaces it on purpose.
    with grad, VideoWriter(target, fps, fmt, quality, overwrite=True) as video:
        field = renderer.field(renderer.ws([(cls, s) for s in seeds]) if ws is None else ws)
        if len(seeds) == 1:
            frames_iter = video_frames(renderer, field, traj)
        else:
            rows, cols = grid_shape(len(seeds), renderer.resolution)
            frames_iter = grid_video_frames(renderer, field, rows, cols, traj)
        for frame in frames_iter:
            video.append(frame)
    if job is not None:
        job.report(1.0, f"{video.count} frames")
    return target


def export_mesh(model_path, seed: int, class_index: Optional[int], psi: float, resolution: int,
                level: Union[str, float], fmt: str, colors: bool, path, *, keep_largest: bool = False,
                class_truncation: bool = True, noise_mode: str = "const", chunk: Optional[int] = None,
                latent_file=None, device=None, job: Optional[Job] = None) -> Path:
    """A seed's surface (ply/obj/glb, vertex colours optional) or density volume (npy), as `trigan
    mesh` makes it. level: "auto" or a density in 1/world-units. The latent is truncated toward the
    class mean for conditional models (as the viewer shows it) unless class_truncation=False. With
    `latent_file` (NAME.inversion.npz): the mesh of that inverted latent (seed, class, psi unused)."""
    fmt = str(fmt).lower().lstrip(".")
    if fmt not in MESH_FORMATS:
        raise TriganError(f"mesh format {fmt!r}: expected one of {', '.join(MESH_FORMATS)}")
    if not 8 <= int(resolution) <= 1024:
        raise TriganError(f"mesh resolution {resolution}: expected 8..1024 samples per axis")
    level = parse_level(level)
    path = Path(path)
    if path.suffix.lower() != f".{fmt}":
        path = path.with_name(path.name + f".{fmt}")
    if latent_file is not None:
        return _inverted_mesh(model_path, latent_file, int(resolution), level, fmt, colors, path,
                              keep_largest=keep_largest, chunk=chunk, device=device, job=job)
    G, cls = _load_generator(model_path, class_index, device, job)
    export = seed_mesh(G, int(seed), cls, path, fmt, psi=psi, class_truncation=class_truncation,
                       resolution=int(resolution), level=level, color=colors, keep_largest=keep_largest,
                       chunk=chunk, noise_mode=noise_mode, overwrite=True,
                       progress=_progress_span(job, 0.0, 0.9, "density grid"),
                       should_cancel=job.should_cancel if job is not None else None)
    if job is not None:
        m = export.mesh
        job.report(1.0, "density volume" if m is None else
                   f"{len(m.vertices)} vertices, {len(m.faces)} faces at level {m.level:.4g}")
    return export.path


def _inverted_mesh(model_path, latent_file, resolution: int, level, fmt: str, colors: bool, path: Path, *,
                   keep_largest: bool, chunk: Optional[int], device, job: Optional[Job]) -> Path:
    """export_mesh of an inverted latent (core.exports.latent_mesh); cancel stops the
    density grid between chunks, before anything is written."""
    G, _ = _load_generator(model_path, None, device, job)
    G, ws = inverted_latent(G, str(latent_file))
    grid_progress = _progress_span(job, 0.0, 0.9, "density grid")

    def progress(done: int, total: int) -> None:
        if job is not None and job.should_cancel():
            raise InterruptedError("cancelled")
        grid_progress(done, total)

    export = latent_mesh(G, ws, path, fmt, resolution=resolution, level=level, color=colors,
                        keep_largest=keep_largest, chunk=chunk, progress=progress, overwrite=True)
    if job is not None:
        m = export.mesh
        job.report(1.0, "density volume" if m is None else
                   f"{len(m.vertices)} vertices, {len(m.faces)} faces at level {m.level:.4g}")
    return export.path


def synth_dataset(out_zip, num: int, resolution: int, classes: int, seed: int = 0, *,
                  job: Optional[Job] = None, poll_s: float = 0.1) -> Path:
    """`trigan dataset synth OUT --num N --resolution R --classes K --seed S` as a child process
    (the renderer is numpy-heavy: a process keeps it off the viewer's interpreter). Progress comes
    from its progress bar; cancel terminates it and removes its partial output (the zip only ever
    appears, complete, at the end)."""
    out = Path(out_zip)
    if out.suffix.lower() != ".zip":
        raise TriganError(f"{out}: the synthetic dataset is written as a .zip (name it OUT.zip)")
    if out.exists():
        raise TriganError(f"{out}: already exists (choose another name)")
    cmd = [sys.executable, "-m", "trigan.cli.main", "dataset", "synth", str(out), "--num", str(int(num)),
           "--resolution", str(int(resolution)), "--classes", str(int(classes)), "--seed", str(int(seed))]
    started = time.time()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    lines: List[str] = []
    counter = re.compile(r"(\d+)/(\d+)")

    def read() -> None:
        # tqdm redraws with carriage returns: split on both line ends
        buf = b""
        for chunk in iter(lambda: proc.stdout.read1(4096), b""):
            buf += chunk
            parts = re.split(rb"[\r\n]", buf)
            buf = parts.pop()
            for part in parts:
                text = part.decode(errors="replace").strip()
                if not text:
                    continue
                lines.append(text)
                del lines[:-50]
                m = counter.search(text)
                if m and job is not None and int(m.group(2)) > 0:
                    job.report(int(m.group(1)) / int(m.group(2)), f"{m.group(1)}/{m.group(2)} images")
        if buf.strip():
            lines.append(buf.decode(errors="replace").strip())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        while proc.poll() is None:
            if job is not None and job.should_cancel():
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                raise JobCancelled()
            time.sleep(poll_s)
    finally:
        reader.join(5)
        if proc.returncode != 0:
            # a killed writer leaves its hidden .OUT.*.partial folder: remove ours
            for partial in out.parent.glob(f".{out.name}.*.partial"):
                try:
                    if partial.stat().st_mtime >= started - 1:
                        shutil.rmtree(partial, ignore_errors=True)
                except OSError:
                    pass
    if proc.returncode != 0:
        errors = [x for x in lines if x.startswith("trigan: error:")]
        why = errors[-1][len("trigan: error:"):].strip() if errors else (lines[-1] if lines else f"exit status {proc.returncode}")
        raise TriganError(f"dataset synth: {why}")
    if job is not None:
        job.report(1.0, f"{int(num)} images")
    return out


# --------------------------------------------------------------------------------------------------
# Inversion: a photo into the model

INVERT_SHARE = 0.85        # of one image's slot of the bar: the fit; the rest is writing its outputs
MAX_IMAGES = 64            # images in one job (each takes minutes)


@dataclass
class InversionOutcome:
    """What an inversion job leaves for the viewer: the files of its last image and how to show it."""

    name: str                       # the outputs' NAME (the image's stem, -1, -2 ... when taken)
    latent_file: Path               # NAME.inversion.npz
    model_file: Path                # NAME.pti.ckpt when tuned, else the model inverted into
    pose: Pose                      # the camera found (or given)
    class_index: Optional[int]
    metrics: Dict[str, Any]
    outputs: Dict[str, Path]        # everything save_inversion wrote
    line: str                       # one line for the person: NAME: PSNR .. dB, SSIM ..


def free_output_name(folder: Path, stem: str) -> str:
    """stem, or stem-1, stem-2 ... so that none of an inversion's outputs
    (training.inversion_outputs.planned_outputs) exists in folder yet: the viewer never overwrites an
    earlier result, as its exports do not."""
    name, n = stem, 1
    while any(os.path.lexists(p) for p in planned_outputs(folder, name, tuned=True).values()):
        name, n = f"{stem}-{n}", n + 1
    return name


def inversion_settings(settings) -> InversionSettings:
    """InversionSettings from None (the defaults), an InversionSettings, or a dict of its fields
    (the Invert panel's steps, tuning steps, W+), checked (one line when out of range)."""
    if settings is None:
        settings = InversionSettings()
    elif isinstance(settings, dict):
        known = {f.name for f in fields(InversionSettings)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise TriganError(f"inversion settings: unknown {', '.join(unknown)}")
        settings = InversionSettings(**settings)
    settings.check()
    return settings


def _image_list(images) -> List[str]:
    paths = [str(images)] if isinstance(images, (str, Path)) else [str(p) for p in images]
    paths = [p.strip() for p in paths if p and p.strip()]
    if not paths:
        raise TriganError("invert: choose an image")
    if len(paths) > MAX_IMAGES:
        raise TriganError(f"invert: {len(paths)} images in one job; at most {MAX_IMAGES}")
    return paths


def _thumbnail(image) -> Any:
    """uint8 [H, W, 3] of a [3, R, R] (or [1, 3, R, R]) image in [-1, 1]."""
    x = image.detach()
    return to_uint8(x[None] if x.dim() == 3 else x[:1])[0]


def outcome_line(name: str, result) -> str:
    """`NAME: PSNR xx.x dB, SSIM 0.xxx (latent xx.x dB), class K, yaw .. pitch ..` (degrees)."""
    m = result.metrics
    parts = [f"{name}: PSNR {m.get('psnr', float('nan')):.1f} dB, SSIM {m.get('ssim', float('nan')):.3f}"]
    if "psnr_latent" in m:
        note = tuning_note(m)
        parts[0] += f" (latent {m['psnr_latent']:.1f} dB{'; ' + note if note else ''})"
    if result.class_index is not None:
        parts.append(f"class {result.class_index}")
    parts.append(f"yaw {math.degrees(result.pose.yaw):.0f} pitch {math.degrees(result.pose.pitch):.0f} deg")
    if m.get("interrupted"):
        parts.append("stopped early")
    return ", ".join(parts)


def invert_images(model_path, images, out_dir, *, settings=None, mask_path=None, camera: Optional[str] = None,
                  class_index: Optional[int] = None, vgg_path=None, crop: bool = True, key: str = "auto",
                  video: bool = True, mesh: bool = True, device=None, job: Optional[Job] = None) -> Path:
    """Invert each image into the model, as `trigan invert` does, and write its outputs to out_dir
    (training.inversion_outputs.save_inversion). Every check comes before any work: a bad image,
    mask, camera, class or VGG file is a one-line TriganError and nothing is written.

    camera: None (estimated) or trigan's "yaw=..,pitch=..[,fov=..]" (radians, core.trajectories'
    convention); class_index: None tries every class of a conditional model; settings: a
    training.inversion.InversionSettings (None: its defaults). Returns the last image's latent file;
    Job.result holds its InversionOutcome. Cancel stops the fit of the current image and writes
    nothing for it (images finished before stay)."""
    paths = _image_list(images)
    if mask_path and len(paths) > 1:
        raise TriganError(f"invert: a mask goes with one image, and {len(paths)} are chosen")
    settings = inversion_settings(settings)
    out = Path(os.path.expanduser(str(out_dir or "").strip()))
    if not str(out_dir or "").strip():
        raise TriganError("invert: choose an output folder")
    if out.exists() and not out.is_dir():
        raise TriganError(f"{out}: not a folder (choose a folder for the outputs)")
    model_file = resolve_model_path(str(model_path))
    G, _ = _load_generator(model_file, None, device, job)
    G.requires_grad_(False)
    if class_index is not None:
        view_class(G, class_index)                      # out of range: one line, before any work
    cls = None if G.c_dim == 0 else class_index
    pose = parse_camera_spec(camera, G, cls) if camera else None
    image_loss = make_image_loss(vgg_path or None, G.device)
    backdrop = model_backdrop(G)
    targets = [load_target(p, G.cfg.img_resolution, crop=crop, mask_path=mask_path or None, key=key,
                           backdrop=backdrop) for p in paths]
    out.mkdir(parents=True, exist_ok=True)
    outcome = None
    for i, target in enumerate(targets):
        if job is not None:
            job.check()
            job.target, job.preview = _thumbnail(target.image), None
        name = free_output_name(out, target.name)
        target = replace(target, name=name)
        result = invert(G, target, settings, pose=pose, class_index=cls, image_loss=image_loss,
                        progress=_inversion_progress(job, i, len(targets), name),
                        should_stop=None if job is None else job.should_cancel)
        if job is not None:
            job.check()                             # cancelled: the best so far is not written
            job.preview = _thumbnail(result.reconstruction)
            job.preview_count += 1
            job.report((i + INVERT_SHARE) / len(targets), f"{name}: writing the outputs")
        # Not cancelled from here on: the outputs are written together or the record is incomplete.
        outputs = save_inversion(result, G, out, model_path=str(model_file), video=video, mesh=mesh,
                                 target=target, progress=_saving_progress(job, i, len(targets), name))
        line = outcome_line(name, result)
        outcome = InversionOutcome(
            name=name, latent_file=Path(outputs["npz"]), model_file=Path(outputs.get("ckpt") or model_file),
            pose=result.pose,
            class_index=result.class_index, metrics=dict(result.metrics), outputs=dict(outputs), line=line)
        if job is not None:
            job.result = outcome
            job.detail = dict(job.detail, done=i + 1, images=len(targets), line=line)
            job.report((i + 1) / len(targets), line)
    return outcome.latent_file


def _saving_progress(job: Optional[Job], index: int, count: int, name: str):
    """save_inversion's progress callback (output kind, done, total): the rest of the image's slot."""
    def update(kind: str, done: int, total: int) -> None:
        if job is not None:
            part = done / total if total else 1.0
            job.report((index + INVERT_SHARE + (1 - INVERT_SHARE) * 0.99 * part) / count,
                       f"{name}: writing the {kind}")
    return update


def _inversion_progress(job: Optional[Job], index: int, count: int, name: str):
    """invert's progress callback: the job's bar, its detail (stage, step, PSNR) and its preview."""
    def update(p) -> None:
        if job is None:
            return
        job.detail = {"image": name, "index": index, "images": count, "stage": p.stage, "step": int(p.step),
                      "total": int(p.total), "loss": float(p.loss), "psnr": float(p.psnr)}
        if p.preview is not None:
            job.preview = _thumbnail(p.preview)
            job.preview_count += 1
        job.report((index + INVERT_SHARE * p.fraction) / count,
                   f"{name}: {p.stage} {p.step}/{p.total}, PSNR {p.psnr:.1f} dB")
    return update


# --------------------------------------------------------------------------------------------------
# The runner

class JobRunner:
    """Starts jobs on daemon threads and keeps them (newest last) for the GUI's job list."""

    job_class = Job

    def __init__(self, device=None, keep_finished: int = 50):
        self.device = device
        self.keep_finished = int(keep_finished)
        self._jobs: List[Job] = []
        self._lock = threading.Lock()

    def start(self, kind: str, label: str, fn: Callable[..., Path], *args, **kwargs) -> Job:
        """Run fn(*args, job=job, **kwargs) in the background; its return value is the output path."""
        job = self.job_class(kind=kind, label=label, message="starting")

        def run() -> None:
            try:
                out = fn(*args, job=job, **kwargs)
                job.output_path = Path(out) if out is not None else None
                job.state, job.progress = "done", 1.0
                job.message = f"{job.message}: {job.output_path}" if job.message else str(job.output_path)
            except BaseException as exc:  # noqa: BLE001 - a job must never take the viewer down
                if job.cancel_requested and isinstance(exc, (JobCancelled, RenderCancelled, InterruptedError)):
                    job.state, job.message = "cancelled", "cancelled (nothing written)"
                else:
                    job.state, job.message = "failed", one_line(exc)
            finally:
                job.finished_at = time.time()

        job._thread = threading.Thread(target=run, name=f"trigan-job-{kind}", daemon=True)
        with self._lock:
            self._jobs.append(job)
            finished = [j for j in self._jobs if j.finished]
            for old in finished[:max(0, len(finished) - self.keep_finished)]:
                self._jobs.remove(old)
        job._thread.start()
        return job

    def start_screenshot(self, frame, path) -> Job:
        return self.start("screenshot", f"screenshot {Path(path).name}", export_screenshot, frame, path)

    def start_video(self, model_path, seeds, class_index, psi, trajectory, frames, fps, resolution, path,
                    **kwargs) -> Job:
        kwargs.setdefault("device", self.device)
        label = f"video {trajectory} seeds {seeds if isinstance(seeds, (str, int)) else ','.join(map(str, seeds))}"
        if kwargs.get("latent_file"):
            label = f"video {trajectory} of {Path(kwargs['latent_file']).name}"
        return self.start("video", label, export_video, model_path, seeds, class_index, psi, trajectory, frames,
                          fps, resolution, path, **kwargs)

    def start_mesh(self, model_path, seed, class_index, psi, resolution, level, fmt, colors, path, **kwargs) -> Job:
        kwargs.setdefault("device", self.device)
        what = f"of {Path(kwargs['latent_file']).name}" if kwargs.get("latent_file") else f"seed {seed}"
        return self.start("mesh", f"mesh {what} {resolution}^3 {fmt}", export_mesh, model_path, seed,
                          class_index, psi, resolution, level, fmt, colors, path, **kwargs)

    def start_inversion(self, model_path, images, out_dir, **kwargs) -> Job:
        kwargs.setdefault("device", self.device)
        paths = _image_list(images)
        label = f"invert {Path(paths[0]).name}" + (f" and {len(paths) - 1} more" if len(paths) > 1 else "")
        return self.start("inversion", label, invert_images, model_path, paths, out_dir, **kwargs)

    def start_synth_dataset(self, out_zip, num, resolution, classes, seed=0) -> Job:
        return self.start("dataset", f"dataset {Path(out_zip).name} ({num} images)", synth_dataset, out_zip, num,
                          resolution, classes, seed)

    # The names the app uses (viewer_interfaces.md, "Requests from V2").
    export_screenshot = start_screenshot
    export_video = start_video
    export_mesh = start_mesh
    synth_dataset = start_synth_dataset

    @property
    def jobs(self) -> List[Job]:
        with self._lock:
            return list(self._jobs)

    @property
    def active(self) -> List[Job]:
        return [j for j in self.jobs if not j.finished]

    def clear_finished(self) -> None:
        with self._lock:
            self._jobs = [j for j in self._jobs if not j.finished]

    def cancel_all(self, wait: Optional[float] = None) -> None:
        """Cancel every running job (on closing the window); optionally wait for them to stop."""
        for job in self.active:
            job.cancel()
        if wait is not None:
            deadline = time.monotonic() + wait
            for job in self.jobs:
                job.wait(max(0.0, deadline - time.monotonic()))


__all__ = ["Job", "JobRunner", "JobCancelled", "JOB_STATES", "export_screenshot", "export_video", "export_mesh",
           "synth_dataset", "invert_images", "InversionOutcome"]
