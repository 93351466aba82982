"""The work behind `trigan render` (views along trajectories, videos, grids) and `trigan mesh`
(a seed's mesh or density volume), shared with the viewer's export jobs so that an export from
the window is the same file the command line writes.

Long loops take `should_cancel` (checked between chunks; raises core.renderer.RenderCancelled,
or InterruptedError from the mesh grid) and report progress; outputs are written atomically by
core.video / core.mesh / core.images, so a cancelled export leaves nothing behind.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from trigan.core import mesh as M
from trigan.core.images import tile_partial, to_uint8
from trigan.core.output_paths import refuse_existing
from trigan.core.renderer import RenderCancelled
from trigan.core.rendering import field_renderer
from trigan.core.views import LatentMapper, options_at_distance, picture

ShouldCancel = Optional[Callable[[], bool]]


class ViewRenderer:
    """A model plus everything fixed for one export: resolution, render options, truncation, the
    output kind (rgb, depth, normals). `render` turns (field, latent indices, views) into uint8 images.

    `path` names the render path (core.rendering.RENDER_PATHS). The default, "accelerated" (the
    same integral as the plain path with far fewer field queries, one occupancy grid per latent),
    renders one view at a time with a renderer per latent, so a pixel does not depend on which other
    views shared its batch; so does "preview". "plain", which an explicit `num_steps` implies, renders
    `batch` views at a time. The ray interval follows each view's radius
    (core.views.options_at_distance), so a batch holds one radius. `on_views(n)` is called after every
    batch with the number of views it held."""

    def __init__(self, G, resolution: Optional[int] = None, output: str = "rgb", psi: float = 0.7,
                 class_truncation: bool = True, batch: int = 8, num_steps: Optional[int] = None,
                 noise_mode="const", on_views: Optional[Callable[[int], None]] = None,
                 should_cancel: ShouldCancel = None, path: str = "accelerated"):
        self.G, self.output = G, output
        self.path = "plain" if num_steps is not None else path
        self._latents_field = None     # the field whose per-latent renderers _latent_renderers holds
        self._latent_renderers: dict = {}   # latent index -> FieldRenderer of _latents_field
        self.resolution = int(resolution or G.cfg.img_resolution)
        overrides = dict(deterministic=True, density_noise_std=0.0, normals=output == "normals")
        if num_steps is not None:
            overrides.update(num_steps=num_steps, num_fine_steps=num_steps)
        self.opts = G.render_options(**overrides)
        self.batch = int(batch)
        self.psi = float(psi)
        self.mapper = LatentMapper(G, self.psi, class_truncation)
        self.noise_mode = noise_mode
        self.on_views = on_views
        self.should_cancel = should_cancel

    def ws(self, pairs: Sequence[Tuple[Optional[int], int]]) -> torch.Tensor:
        """ws [N, num_ws, w_dim] of (class, seed) pairs (see core.views.LatentMapper)."""
        return self.mapper.ws(pairs)

    def field(self, ws: torch.Tensor):
        """The field of all ws (synthesis in batches, run once per latent)."""
        G = self.G
        planes = []
        for i in range(0, ws.shape[0], self.batch):
            if self.should_cancel is not None and self.should_cancel():
                raise RenderCancelled()
            planes.append(G.synthesis(ws[i:i + self.batch], noise_mode=self.noise_mode))
        return G.field(torch.cat(planes), ws)

    def render(self, field, latent_idx: Sequence[int], traj, frame_idx: Sequence[int]) -> Iterator[np.ndarray]:
        """uint8 [H, W, 3] images of item k = (latent latent_idx[k], view frame_idx[k] of traj), in order."""
        latent_idx, frame_idx = np.asarray(latent_idx), np.asarray(frame_idx)
        base_radius = float(self.G.cfg.camera.radius)
        n, i = len(latent_idx), 0
        while i < n:
            j, r = i + 1, traj.radius[frame_idx[i]]
            while j < n and j - i < self.batch and traj.radius[frame_idx[j]] == r:
                j += 1
            opts = options_at_distance(self.opts, float(r), base_radius)
            cams = traj.cameras(frame_idx[i:j], device=self.G.device)
            if self.path != "plain":
                for k in range(i, j):
                    out = self._latent_renderer(field, int(latent_idx[k])).render(
                        cams[k - i], self.resolution, options=opts, should_cancel=self.should_cancel)
                    yield from to_uint8(picture(out, self.output, opts))
            else:
                sub = field.select(torch.as_tensor(latent_idx[i:j], device=field.device))
                out = field_renderer("plain", sub, opts).render(cams, self.resolution,
                                                                should_cancel=self.should_cancel)
                yield from to_uint8(picture(out, self.output, opts))
            if self.on_views is not None:
                self.on_views(j - i)
            i = j

    def _latent_renderer(self, field, latent: int):
        """The renderer (of self.path) of one latent of `field`, kept while the same field is rendered.
        The field itself is held (not its id(), which a new field may reuse once the old one is freed)."""
        if self._latents_field is not field:
            # a new field: the old latents' set-ups (occupancy grids) are not needed again
            self._latents_field, self._latent_renderers = field, {}
        if latent not in self._latent_renderers:
            self._latent_renderers[latent] = field_renderer(self.path, field.select(latent), self.opts)
        return self._latent_renderers[latent]


def video_frames(renderer: ViewRenderer, field, traj, latent: int = 0) -> Iterator[np.ndarray]:
    """The frames of one latent of `field` along a trajectory."""
    return renderer.render(field, [latent] * len(traj), traj, range(len(traj)))


def grid_video_frames(renderer: ViewRenderer, field, rows: int, cols: int, traj) -> Iterator[np.ndarray]:
    """Frames of all latents of `field` tiled rows x cols (row-major, empty cells black), frame by
    frame: every latent of frame 0 is rendered before frame 1."""
    n = field.batch_size
    latent_idx = np.tile(np.arange(n), len(traj))
    frame_idx = np.repeat(np.arange(len(traj)), n)
    cells = []
    for image in renderer.render(field, latent_idx, traj, frame_idx):
        cells.append(image)
        if len(cells) == n:
            yield tile_partial(np.stack(cells), rows, cols)
            cells = []


# --------------------------------------------------------------------------------------------------
# Meshes

@dataclass
class MeshExport:
    path: Path
    volume: object                 # core.mesh.DensityVolume
    mesh: Optional[object]         # core.mesh.MeshResult; None for an npy volume
    seconds: float


def seed_mesh(G, seed: int, class_index: Optional[int], path, fmt: str, psi: float = 1.0,
              class_truncation: bool = False, resolution: int = 256, level: Union[str, float] = "auto",
              color: bool = True, keep_largest: bool = False, keep_cavities: bool = False,
              chunk: Optional[int] = None, noise_mode="const",
              progress: Optional[Callable[[int, int], None]] = None, should_cancel: ShouldCancel = None,
              overwrite: bool = False) -> MeshExport:
    """The mesh (ply/obj/glb) or density volume (npy) of one seed (`latent_mesh` of its ws)."""
    refuse_existing([path], overwrite, hint="pass overwrite=True (--force) to replace it")
    with torch.no_grad():
        z = G.latents([seed])
        c = G.labels(None if class_index is None else [class_index], 1)
        ws = G.map_latents(z, c, psi, class_truncation=class_truncation)
    return latent_mesh(G, ws, path, fmt, resolution=resolution, level=level, color=color, keep_largest=keep_largest,
                       keep_cavities=keep_cavities, chunk=chunk, noise_mode=noise_mode, progress=progress,
                       should_cancel=should_cancel, overwrite=overwrite)


def latent_mesh(G, ws: torch.Tensor, path, fmt: str, resolution: int = 256, level: Union[str, float] = "auto",
                color: bool = True, keep_largest: bool = False, keep_cavities: bool = False,
                chunk: Optional[int] = None, noise_mode="const",
                progress: Optional[Callable[[int, int], None]] = None, should_cancel: ShouldCancel = None,
                overwrite: bool = False) -> MeshExport:
    """The mesh (ply/obj/glb) or density volume (npy) of one latent ws [1, num_ws, w_dim] (a seed's,
    or one `trigan invert` found, on a G holding its noise maps), written atomically to `path`; an
    existing `path` is refused before any work unless `overwrite` (core.output_paths.refuse_existing).

    The field is computed once; the density grid is evaluated in chunks of `chunk` points (None:
    the size this device measured fastest, core.chunking) with `progress(done, total)` in grid
    points and `should_cancel` between chunks. Raises core.mesh.NoSurfaceError when the level
    finds no surface."""
    refuse_existing([path], overwrite, hint="pass overwrite=True (--force) to replace it")
    start = time.perf_counter()
    with torch.no_grad():
        field = G.field_from_ws(ws.to(G.device), noise_mode=noise_mode)   # once; every chunk below reuses it
    activation = M.DensityActivation(G.cfg.render.density_shift, G.cfg.render.density_activation)
    volume = M.density_grid(field, resolution, activation, chunk, progress=progress, should_cancel=should_cancel)
    path = Path(path)
    if fmt == "npy":
        M.save_volume(volume, path)
        return MeshExport(path, volume, None, time.perf_counter() - start)
    result = M.extract_mesh(field, volume, level, color=color, keep_largest=keep_largest, chunk_points=chunk,
                            keep_cavities=keep_cavities)
    if should_cancel is not None and should_cancel():
        raise InterruptedError("cancelled")
    M.save_mesh(result, path, fmt)
    return MeshExport(path, volume, result, time.perf_counter() - start)
