"""Progress pictures of a training run: sample grids, orbit videos and the grid of dataset reals.

The training loop writes these into the run directory (the viewer's run monitor shows them):

    samples = SampleSet.create(G_ema, num=32, seed=0)          # once, at the start of the run
    save_png(samples.render_grid(G_ema), run_dir / "fakes000000.png")
    samples.render_orbit_video(G_ema, run_dir / "fakes000000.mp4")

A `SampleSet` fixes the latents, labels and cameras, and rendering uses the renderer's deterministic
options and constant synthesis noise, so two grids of the same weights are identical and grids of
successive snapshots differ only because the weights changed. For a model with a learned camera
generator (3DGP) the fixed cameras are yaw offsets from its mean posterior camera (3DGP's canonical
view, reference/3dgp.md 9), which is recomputed from the G being rendered: fov, radius, pitch and
look-at follow the camera generator as it learns.

Images arrive as the models make them (float [N, C, H, W] in [-1, 1]) and leave as uint8 [H, W, 3].
Every file is written to a temporary name beside its target and renamed into place, so a viewer
polling the run directory never reads half a file. Nothing here picks a device: work runs on G's.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Tuple, Union

import imageio_ffmpeg
import numpy as np
import torch

from trigan.core.atomic import atomic_path
from trigan.core.cameras import Camera
from trigan.core.generator import one_hot
from trigan.core.images import grid_shape, image_grid, save_png, tile
from trigan.core.rendering import field_renderer

PathLike = Union[str, os.PathLike]

# Camera yaw spread across the columns of a sample grid (radians either side of the mean pose).
GRID_YAW_RANGE = math.pi / 4


class SamplingStopped(Exception):
    """A grid or video given up because `stop()` said so (the run is stopping): nothing was written."""


def _check_stop(stop: Optional[Callable[[], bool]]) -> None:
    if stop is not None and stop():
        raise SamplingStopped


# --------------------------------------------------------------------------------------------------
# Dataset reals

def save_reals_grid(images_uint8: torch.Tensor, path: PathLike, rows: int, cols: int) -> Path:
    """The dataset's images (uint8 [N, 3, H, W], or [N, 1, H, W]) as one PNG grid (reals.png)."""
    images = torch.as_tensor(images_uint8)
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected uint8 images [N, 1 or 3, H, W], got {images.dtype} {tuple(images.shape)}")
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    nhwc = images.detach().cpu().permute(0, 2, 3, 1).contiguous().numpy()
    return save_png(tile(nhwc, rows, cols), path)


# --------------------------------------------------------------------------------------------------
# Fixed samples

@dataclass
class SampleSet:
    """Fixed latents, labels and cameras for progress snapshots, so successive grids are comparable.

    All tensors live on the CPU and move to G's device when rendered. Sample k sits in row
    k // cols, column k % cols of the grid; cells past `num` are left black.
    """

    z: torch.Tensor              # [num, z_dim]
    labels: torch.Tensor         # [num, c_dim] one-hot ([num, 0] for an unconditional model)
    camera_angles: torch.Tensor  # [num, 3] yaw, pitch, roll (trigan's convention); offsets if from_mean_camera
    radius: float
    fov: float
    rows: int
    cols: int
    # 3DGP: camera_angles are added to G's mean posterior camera, whose radius, fov and look-at are
    # used instead of `radius` and `fov` (taken from the G being rendered, not fixed at creation).
    from_mean_camera: bool = False

    @property
    def num(self) -> int:
        return self.z.shape[0]

    @classmethod
    def create(cls, G, num: int, seed: int = 0, camera_angles: Optional[torch.Tensor] = None,
               labels: Optional[torch.Tensor] = None, rows: Optional[int] = None,
               cols: Optional[int] = None) -> "SampleSet":
        """Draw `num` samples for G.

        z comes from a torch.Generator seeded with `seed`. `labels` (one-hot [num, c_dim]) default, for
        a conditional model, to one class per grid row (row r shows class r % c_dim). `camera_angles`
        ([num, 3], e.g. poses drawn from the dataset; absolute, with the configured radius and fov)
        default to the model's mean pose with yaw spread across the columns over [-pi/4, pi/4] around
        it, or around the full circle when the model's camera prior is spherical_uniform; for a model
        with a camera generator the same spread is around its mean posterior camera at render time.
        The layout is grid_shape(num, resolution) unless `rows` / `cols` are given.
        """
        cfg = G.cfg
        if num < 1:
            raise ValueError(f"a sample set needs at least one sample, got {num}")
        if cols is None and rows is None:
            rows, cols = grid_shape(num, cfg.img_resolution)
        elif cols is None:
            cols = math.ceil(num / rows)
        elif rows is None:
            rows = math.ceil(num / cols)
        if rows * cols < num:
            raise ValueError(f"a {rows}x{cols} grid cannot hold {num} samples")

        gen = torch.Generator(device="cpu").manual_seed(int(seed))
        z = torch.randn(num, G.z_dim, generator=gen)
        grid_rows = torch.arange(num) // cols
        grid_cols = torch.arange(num) % cols

        if labels is not None:
            labels = torch.as_tensor(labels, dtype=torch.float32).detach().cpu()
            if labels.shape != (num, G.c_dim):
                raise ValueError(f"labels must be [{num}, {G.c_dim}], got {tuple(labels.shape)}")
        elif G.c_dim > 0:
            labels = one_hot((grid_rows % G.c_dim).tolist(), G.c_dim)
        else:
            labels = torch.zeros(num, 0)

        from_mean_camera = False
        if camera_angles is not None:
            camera_angles = torch.as_tensor(camera_angles, dtype=torch.float32).detach().cpu()
            if camera_angles.shape != (num, 3):
                raise ValueError(f"camera_angles must be [{num}, 3], got {tuple(camera_angles.shape)}")
        else:
            from_mean_camera = getattr(G, "camera_generator", None) is not None
            # 3DGP: offsets only; the mean posterior camera is added when rendering.
            mean = (torch.zeros(3) if from_mean_camera
                    else torch.tensor(list(cfg.camera.mean_pose), dtype=torch.float32))
            if cfg.camera.dist == "spherical_uniform":
                offsets = 2 * math.pi * torch.arange(cols, dtype=torch.float32) / cols
            elif cols > 1:
                offsets = torch.linspace(-GRID_YAW_RANGE, GRID_YAW_RANGE, cols)
            else:
                offsets = torch.zeros(1)
            camera_angles = mean.expand(num, 3).clone()
            camera_angles[:, 0] += offsets[grid_cols]
        return cls(z, labels, camera_angles, float(cfg.camera.radius), float(cfg.camera.fov), rows, cols,
                   from_mean_camera)

    # ---------------------------------------------------------------------------------------------
    def views(self, G) -> "SampleViews":
        """The absolute cameras of the samples for G as it is now (for 3DGP: around its mean posterior)."""
        if not self.from_mean_camera:
            return SampleViews(self.camera_angles, self.radius, self.fov)
        mean = G.mean_camera()
        angles = self.camera_angles + mean.angles.detach().cpu()
        return SampleViews(angles, float(mean.radius[0]), float(mean.fov[0]), tuple(mean.look_at[0].tolist()))

    def _fields(self, G, views: "SampleViews", indices: List[int], batch: int,
                psi: float) -> Iterator[Tuple[torch.Tensor, object]]:
        """(sample indices, field) per batch: the mapping and the synthesis run once per latent."""
        dev = G.device
        for start in range(0, len(indices), batch):
            idx = torch.tensor(indices[start:start + batch])
            angles = views.angles[idx].to(dev)
            # A pose-conditioned mapping (GPC) sees the sample's own camera, as in training.
            ws = G.map_latents(self.z[idx].to(dev), self.labels[idx].to(dev), psi=psi,
                               camera_angles=angles if G.cfg.mapping.camera_cond else None)
            yield idx, G.field_from_ws(ws, noise_mode="const")

    @staticmethod
    def _render(G, field, camera: Camera, resolution) -> torch.Tensor:
        opts = G.render_options(deterministic=True, density_noise_std=0.0)
        out = field_renderer("plain", field, opts).render(camera, resolution or G.cfg.img_resolution)
        return out.rgb.float().cpu()

    def _with_blanks(self, rgb: torch.Tensor, total: int) -> torch.Tensor:
        if rgb.shape[0] == total:
            return rgb
        blank = torch.full((total - rgb.shape[0],) + tuple(rgb.shape[1:]), -1.0)
        return torch.cat([rgb, blank])

    def render_grid(self, G, resolution: Optional[int] = None, batch: int = 8, psi: float = 1.0,
                    stop: Optional[Callable[[], bool]] = None) -> np.ndarray:
        """Every sample rendered by G at its own camera, as a uint8 grid [rows*res, cols*res, 3].
        `stop`, asked between batches: True gives up with SamplingStopped (a run that is stopping)."""
        resolution = G.cfg.img_resolution if resolution is None else int(resolution)
        images = []
        with _eval_mode(G), torch.no_grad():
            views = self.views(G)
            for idx, field in self._fields(G, views, list(range(self.num)), batch, psi):
                _check_stop(stop)
                images.append(self._render(G, field, views.cameras(views.angles[idx], G.device), resolution))
        rgb = self._with_blanks(torch.cat(images), self.rows * self.cols)
        return image_grid(rgb, self.rows, self.cols)

    def render_orbit_video(self, G, path: PathLike, frames: int = 32, fps: int = 16,
                           resolution: Optional[int] = None, batch: int = 8, max_samples: int = 8,
                           psi: float = 1.0, stop: Optional[Callable[[], bool]] = None) -> Path:
        """An mp4 of the first `max_samples` samples in a grid, each camera circling 360 degrees in yaw.

        Pitch, radius, fov and look-at stay the sample's; frame t adds 2*pi*t/frames to its yaw, so the
        clip loops without a repeated frame. Each latent's field is computed once and re-rendered per
        frame. H.264 in yuv420p needs even sizes: the grid is padded with black to even width and
        height. Written atomically (temporary file, then rename). `stop`, asked between frames:
        True gives up with SamplingStopped and leaves no file.
        """

        if frames < 1:
            raise ValueError(f"a video needs at least one frame, got {frames}")
        resolution = G.cfg.img_resolution if resolution is None else int(resolution)
        n = max(1, min(int(max_samples), self.num))
        rows, cols = grid_shape(n, resolution)
        height, width = rows * resolution, cols * resolution
        pad_h, pad_w = height % 2, width % 2
        path = Path(path)
        # keep_suffix: ffmpeg picks the container from the file name
        with _eval_mode(G), torch.no_grad(), atomic_path(path, keep_suffix=True) as tmp:
            views = self.views(G)
            fields = list(self._fields(G, views, list(range(n)), batch, psi))
            writer = imageio_ffmpeg.write_frames(
                str(tmp), (width + pad_w, height + pad_h), pix_fmt_in="rgb24", pix_fmt_out="yuv420p",
                fps=fps, codec="libx264", quality=7, macro_block_size=2, ffmpeg_log_level="error",
                output_params=["-movflags", "+faststart"])
            try:
                writer.send(None)  # starts the generator; ffmpeg is already running
                for t in range(frames):
                    _check_stop(stop)
                    images = []
                    for idx, field in fields:
                        angles = views.angles[idx].clone()
                        angles[:, 0] += 2 * math.pi * t / frames
                        images.append(self._render(G, field, views.cameras(angles, G.device), resolution))
                    grid = image_grid(self._with_blanks(torch.cat(images), rows * cols), rows, cols)
                    if pad_h or pad_w:
                        grid = np.pad(grid, ((0, pad_h), (0, pad_w), (0, 0)))
                    writer.send(np.ascontiguousarray(grid))
                writer.close()  # waits for ffmpeg to finish the file
                if tmp.stat().st_size == 0:
                    raise RuntimeError(f"ffmpeg wrote no video to {tmp}")
            finally:
                writer.close()  # no-op after a normal close; stops ffmpeg after an error
        return path


@dataclass
class SampleViews:
    """The cameras a SampleSet is rendered from: absolute angles [num, 3] (CPU) and the shared radius,
    fov and look-at point."""

    angles: torch.Tensor
    radius: float
    fov: float
    look_at: Tuple[float, float, float] = (0.0, 0.0, 0.0)

    def cameras(self, angles: torch.Tensor, device) -> Camera:
        return Camera.from_angles(angles[:, 0], angles[:, 1], radius=self.radius, fov=self.fov,
                                  look_at=self.look_at, roll=angles[:, 2], batch=angles.shape[0], device=device)


class _eval_mode:
    """G.eval() for the block, then G's previous mode (the loop may pass the training G)."""

    def __init__(self, module: torch.nn.Module):
        self.module = module

    def __enter__(self):
        self.was_training = self.module.training
        self.module.eval()

    def __exit__(self, *exc):
        self.module.train(self.was_training)
