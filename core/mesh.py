"""Meshes from a field: a density grid over the scene box, marching cubes, colours, clean-up, export.

The field of one latent is computed once (`G.field_from_ws`) and then queried here in chunks of a
bounded number of points; the synthesis network never runs again per chunk (EG3D rebuilds its
tri-planes for every chunk, see benchmarks/export.py).

Units and axes (docs/meshes.md):
* The grid spans the field's `bounds`, the scene box [-cube_scale, cube_scale]^3 in world units,
  with `resolution` samples per axis including both faces: index i on an axis sits at
  lo + i * (hi - lo) / (resolution - 1).
* Volumes are indexed [x, y, z] (x slowest, as in EpiGRAF's extract_geometry); PyMCubes returns
  vertex coordinates in the same axis order, so vertex column k is world axis k after scaling.
* Densities are *activated*: act(sigma + density_shift) with the renderer's own activation
  (`compositing.activate_density`), in 1 / world units: a segment of length d at density D is
  1 - exp(-D d) opaque. Thresholds are levels of that quantity.
* Colours are the field's rgb at each vertex. The renderer composites it straight into the model's
  [-1, 1] image space (rgb = sum w c, no further activation), so a vertex colour is that value
  mapped to uint8 the way images are written (x * 127.5 + 128, clamped).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional, Tuple, Union

import numpy as np
import torch

from trigan.core.atomic import atomic_path
from trigan.core.chunking import best_chunk, candidate_chunks
from trigan.core.compositing import activate_density
from trigan.core.errors import TriganError
from trigan.core.field import query_lattice
from trigan.core.renderer import RenderOptions

MESH_FORMATS = ("ply", "obj", "glb")
VOLUME_FORMATS = ("npy",)
FORMATS = MESH_FORMATS + VOLUME_FORMATS

Bounds = Tuple[Tuple[float, float, float], Tuple[float, float, float]]
Progress = Optional[Callable[[int, int], None]]


class NoSurfaceError(TriganError):
    """The requested level lies outside the densities of the volume: marching cubes finds nothing."""


@dataclass(frozen=True)
class DensityActivation:
    """How raw sigma becomes density: the renderer's activation and shift, from a model or options."""

    shift: float = 0.0
    activation: str = "softplus"

    @classmethod
    def from_options(cls, opts: RenderOptions) -> "DensityActivation":
        return cls(opts.density_shift, opts.density_activation)

    def __call__(self, sigma: torch.Tensor) -> torch.Tensor:
        return activate_density(sigma, RenderOptions(density_shift=self.shift, density_activation=self.activation))


@dataclass
class DensityVolume:
    """Activated densities [N, N, N] indexed [x, y, z], sampled at both faces of the box `bounds`."""

    density: np.ndarray
    bounds: Bounds

    @property
    def resolution(self) -> int:
        return self.density.shape[0]

    @property
    def spacing(self) -> np.ndarray:
        lo, hi = np.asarray(self.bounds[0], dtype=np.float64), np.asarray(self.bounds[1], dtype=np.float64)
        return (hi - lo) / (self.resolution - 1)

    def index_to_world(self, index: np.ndarray) -> np.ndarray:
        """Grid index coordinates [..., 3] (fractional allowed) to world coordinates."""
        return np.asarray(self.bounds[0], dtype=np.float64) + np.asarray(index, dtype=np.float64) * self.spacing


@dataclass
class MeshResult:
    vertices: np.ndarray                  # [V, 3] float32, world units
    faces: np.ndarray                     # [F, 3] int64, counter-clockwise seen from outside
    level: float                          # the density level the surface was extracted at
    colors: Optional[np.ndarray] = None   # [V, 3] uint8
    info: dict = field(default_factory=dict)

    def to_trimesh(self):
        import trimesh  # noqa: PLC0415 (about 1 s to import: only when a mesh is cleaned or written)
        colors = None
        if self.colors is not None:
            colors = np.concatenate([self.colors, np.full((len(self.colors), 1), 255, np.uint8)], axis=1)
        return trimesh.Trimesh(self.vertices, self.faces, vertex_colors=colors, process=False)


# --------------------------------------------------------------------------------------------------
# The grid

def _check_bounds(bounds: Bounds) -> Bounds:
    lo, hi = tuple(float(v) for v in bounds[0]), tuple(float(v) for v in bounds[1])
    if len(lo) != 3 or len(hi) != 3 or any(h <= l for l, h in zip(lo, hi, strict=True)):
        raise ValueError(f"bad scene box {bounds}")
    return lo, hi


def grid_points(bounds: Bounds, resolution: int, start: int, stop: int, device=None,
                dtype=torch.float32) -> torch.Tensor:
    """World coordinates [stop - start, 3] of the grid samples with flat indices start..stop-1
    (flat index = (ix * N + iy) * N + iz, i.e. x slowest)."""
    lo, hi = _check_bounds(bounds)
    n = int(resolution)
    idx = torch.arange(start, stop, device=device, dtype=torch.int64)
    ijk = torch.stack([idx // (n * n), (idx // n) % n, idx % n], dim=1).to(torch.float64)
    lo_t = torch.tensor(lo, dtype=torch.float64, device=device)
    step = (torch.tensor(hi, dtype=torch.float64, device=device) - lo_t) / (n - 1)
    return (lo_t + ijk * step).to(dtype)


def _single(field) -> None:
    batch = getattr(field, "batch_size", 1)
    if batch != 1:
        raise ValueError(f"meshes are made one latent at a time; select one of the field's {batch} (field.select(i))")


def grid_axes(bounds: Bounds, resolution: int, device=None, dtype=torch.float32
              ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The grid's coordinates along x, y and z ([resolution] each): the same values as grid_points."""
    lo, hi = _check_bounds(bounds)
    n = int(resolution)
    index = torch.arange(n, device=device, dtype=torch.float64)
    return tuple((lo[k] + index * ((hi[k] - lo[k]) / (n - 1))).to(dtype) for k in range(3))


@torch.no_grad()
def density_grid(field, resolution: int = 256, activation: DensityActivation = DensityActivation(),
                 chunk_points: Optional[int] = None, progress: Progress = None,
                 should_cancel: Optional[Callable[[], bool]] = None) -> DensityVolume:
    """Activated density on a resolution^3 grid over `field.bounds`, evaluated in chunks of at most
    `chunk_points` points (None: the size this device measured fastest, core.chunking; memory is
    bounded by the chunk, plus the float32 volume itself). The grid is a lattice, so a tri-plane
    field reads its planes only on the grid's three 2-D projections (core.field.query_lattice)."""
    _single(field)
    n = int(resolution)
    if n < 2:
        raise ValueError("a density grid needs at least 2 samples per axis")
    bounds = _check_bounds(field.bounds)
    device = getattr(field, "device", None)
    total = n ** 3
    out = np.empty(total, dtype=np.float32)
    xs, ys, zs = grid_axes(bounds, n, device)
    if should_cancel is not None and should_cancel():
        raise InterruptedError("cancelled")
    for start, stop, _, sigma in query_lattice(field, xs, ys, zs, chunk_points):
        out[start:stop] = activation(sigma.reshape(-1).float()).cpu().numpy()
        if progress is not None:
            progress(stop, total)
        if should_cancel is not None and should_cancel():
            raise InterruptedError("cancelled")
    return DensityVolume(out.reshape(n, n, n), bounds)


# --------------------------------------------------------------------------------------------------
# Levels

def auto_level(density: np.ndarray, bins: int = 1024, clip_quantile: float = 0.999,
               sample: int = 1 << 22) -> float:
    """A level that splits the voxels into 'empty' and 'occupied': Otsu's threshold (the cut of the
    histogram that maximises the between-class variance) of the densities, clipped at their
    `clip_quantile` so a few very dense voxels do not stretch the histogram. Always strictly inside
    (min, max) of the volume when it is not constant. Densities in 1 / world units."""
    values = np.asarray(density, dtype=np.float64).ravel()
    if values.size > sample:   # a regular subsample: the histogram's shape, at a fraction of the cost
        values = values[:: int(math.ceil(values.size / sample))]
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise NoSurfaceError("the density volume holds no finite values")
    lo, top = float(values.min()), float(values.max())
    if not top > lo:
        raise NoSurfaceError(f"the density is constant ({lo:.4g} per world unit) in the whole box: no surface")
    hi = float(np.quantile(values, clip_quantile))
    if not hi > lo:
        hi = top
    hist, edges = np.histogram(np.clip(values, lo, hi), bins=bins, range=(lo, hi))
    centers = 0.5 * (edges[1:] + edges[:-1])
    w0 = np.cumsum(hist)[:-1].astype(np.float64)          # voxels at or below each cut
    w1 = values.size - w0
    s0 = np.cumsum(hist * centers)[:-1]
    m0 = s0 / np.maximum(w0, 1)
    m1 = (np.sum(hist * centers) - s0) / np.maximum(w1, 1)
    between = w0 * w1 * (m0 - m1) ** 2
    level = float(edges[1:-1][int(np.argmax(between))])
    return min(max(level, np.nextafter(lo, np.inf)), np.nextafter(top, -np.inf))


def parse_level(text: Union[str, float, None]) -> Union[str, float]:
    """'auto' or a positive number (a density in 1 / world units)."""
    if text is None or (isinstance(text, str) and text.strip().lower() == "auto"):
        return "auto"
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise TriganError(f"--threshold {text}: expected 'auto' or a density in 1/world-units such as 25") from None
    if not math.isfinite(value) or value <= 0:
        raise TriganError(f"--threshold {text}: a density level must be a positive number (densities are >= 0)")
    return value


def resolve_level(volume: DensityVolume, level: Union[str, float]) -> float:
    """The numeric level; raises NoSurfaceError (naming the density range) when none would be found."""
    d = volume.density
    lo, hi = float(np.nanmin(d)), float(np.nanmax(d))
    if level == "auto":
        return auto_level(d)
    level = float(level)
    if not lo < level < hi:
        raise NoSurfaceError(f"no surface at density {level:g}: the densities in the box range from "
                             f"{lo:.4g} to {hi:.4g} per world unit; pass a --threshold inside that range")
    return level


# --------------------------------------------------------------------------------------------------
# Marching cubes, colours, components

def signed_volume_terms(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """[F] a . (b x c) per triangle (float64): summed over a closed surface, 6x the volume it
    encloses, positive when its faces are wound outward."""
    a, b, c = (vertices[faces[:, k]].astype(np.float64) for k in range(3))
    return np.einsum("ij,ij->i", a, np.cross(b, c))


def marching_cubes(volume: DensityVolume, level: float, close: bool = True) -> Tuple[np.ndarray, np.ndarray]:
    """Vertices [V, 3] (world units, float32) and faces [F, 3] of the level set density == level,
    oriented outward (from dense to empty).

    close: pad the volume with one layer of zero density, so a surface cut by the box is capped on
    the box's faces (the mesh stays watertight); the cap vertices are clamped onto the faces.
    """
    import mcubes  # noqa: PLC0415 (0.5 s to import: only when a mesh is made)

    d = volume.density
    if close:
        d = np.pad(d, 1, mode="constant", constant_values=min(0.0, float(level) - 1.0))
    verts, faces = mcubes.marching_cubes(np.ascontiguousarray(d, dtype=np.float64), float(level))
    if len(faces) == 0:
        raise NoSurfaceError(f"no surface at density {level:g} (densities {float(d.min()):.4g}.."
                             f"{float(d.max()):.4g} per world unit)")
    if close:
        verts = np.clip(verts - 1.0, 0.0, volume.resolution - 1.0)
    world = volume.index_to_world(verts).astype(np.float32)
    # With the dense side inside, PyMCubes' winding gives outward normals; the signed volume
    # (positive for an outward-wound closed surface) guards against that ever changing.
    faces = faces.astype(np.int64)
    if signed_volume_terms(world, faces).sum() < 0:
        faces = faces[:, ::-1].copy()
    return world, faces


def rgb_to_uint8(rgb: torch.Tensor) -> torch.Tensor:
    """The model's [-1, 1] colour to uint8 as images are written (x * 127.5 + 128, clamped)."""
    return (rgb * 127.5 + 128).clamp(0, 255).to(torch.uint8)


def point_chunk(field) -> int:
    """Points per field query for scattered points (vertex colours) on the field's device: the
    fastest of core.chunking's candidates, measured once per process and device on random points
    of the field's box (seeded, so the trial does not disturb the global random state)."""
    device = torch.device(getattr(field, "device", None) or "cpu")
    lo, hi = (torch.tensor(v, dtype=torch.float32) for v in _check_bounds(field.bounds))
    generator = torch.Generator().manual_seed(0)

    def trial(chunk: int):
        pts = lo + (hi - lo) * torch.rand(chunk, 3, generator=generator)
        return field(pts.to(device)[None])

    return best_chunk("points", device, candidate_chunks(device), trial)


@torch.no_grad()
def vertex_colors(field, vertices: np.ndarray, chunk_points: Optional[int] = None) -> np.ndarray:
    """uint8 [V, 3]: the field's colour at each vertex (its rgb is [-1, 1] image colour), queried in
    chunks of `chunk_points` (None: point_chunk, measured)."""
    _single(field)
    device = getattr(field, "device", None)
    out = np.empty((len(vertices), 3), dtype=np.uint8)
    chunk = max(1, int(chunk_points if chunk_points is not None else point_chunk(field)))
    for start in range(0, len(vertices), chunk):
        stop = min(start + chunk, len(vertices))
        pts = torch.as_tensor(vertices[start:stop], dtype=torch.float32, device=device)
        rgb, _ = field(pts[None])
        out[start:stop] = rgb_to_uint8(rgb.reshape(-1, 3).float()).cpu().numpy()
    return out


def face_components(mesh: MeshResult) -> np.ndarray:
    """[F] label of the connected piece each face belongs to (pieces joined through shared vertices)."""
    import trimesh  # noqa: PLC0415 (about 1 s to import: only when a mesh is cleaned or written)
    tm = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    tm.merge_vertices()   # marching cubes shares vertices already; this also joins exact duplicates
    # Merging renumbers vertices but keeps the faces and their order: labels index mesh.faces.
    return trimesh.graph.connected_component_labels(tm.face_adjacency, node_count=len(tm.faces))


def component_face_counts(mesh: MeshResult) -> np.ndarray:
    """Faces per connected piece, largest first (empty for an empty mesh)."""
    if len(mesh.faces) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.bincount(face_components(mesh)))[::-1]


def _keep_faces(mesh: MeshResult, keep: np.ndarray, **info) -> MeshResult:
    """The faces where `keep` is true, with only the vertices they use (renumbered); info added."""
    faces = mesh.faces[keep]
    used = np.unique(faces)
    remap = np.full(len(mesh.vertices), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    return MeshResult(mesh.vertices[used], remap[faces], mesh.level,
                      None if mesh.colors is None else mesh.colors[used], dict(mesh.info, **info))


def largest_component(mesh: MeshResult) -> MeshResult:
    """Keep only the connected piece with the most faces."""
    if len(mesh.faces) == 0:
        return mesh
    labels = face_components(mesh)
    keep_faces = labels == np.bincount(labels).argmax()
    return _keep_faces(mesh, keep_faces, components=int(labels.max()) + 1, kept_faces=int(keep_faces.sum()))


def drop_cavity_walls(mesh: MeshResult) -> MeshResult:
    """Remove the walls of hollows sealed inside the object; info["cavities"] counts them.

    Why: a radiance field is trained only through what the cameras see; behind an opaque surface
    the transmittance is ~0, so the density inside an object is unconstrained and generators often
    leave it hollow. Marching cubes then returns the outer shell plus the wall of each hollow, a
    closed piece inside the object that no camera can see. Faces are wound from dense to empty
    (`marching_cubes`), so such a wall faces inward and encloses a negative signed volume, while
    every solid piece encloses a positive one. Pockets open to the outside (a cup, the hole of a
    ring) are part of the outer surface and stay.
    """
    if len(mesh.faces) == 0:
        return mesh
    labels = face_components(mesh)
    walls = np.bincount(labels, weights=signed_volume_terms(mesh.vertices, mesh.faces)) < 0   # per piece
    if not walls.any():
        return replace(mesh, info=dict(mesh.info, cavities=0))
    return _keep_faces(mesh, ~walls[labels], cavities=int(walls.sum()))


def extract_mesh(field, volume: DensityVolume, level: Union[str, float] = "auto", color: bool = True,
                 keep_largest: bool = False, chunk_points: Optional[int] = None,
                 keep_cavities: bool = False) -> MeshResult:
    """The whole pipeline after the grid: level, marching cubes, clean-up (the walls of sealed
    hollows dropped unless keep_cavities; optionally only the largest piece), colours."""
    value = resolve_level(volume, level)
    verts, faces = marching_cubes(volume, value)
    mesh = MeshResult(verts, faces, value, info={"auto": level == "auto"})
    if not keep_cavities:
        mesh = drop_cavity_walls(mesh)
    if keep_largest:
        mesh = largest_component(mesh)
    if color:
        mesh.colors = vertex_colors(field, mesh.vertices, chunk_points)
    return mesh


# --------------------------------------------------------------------------------------------------
# Files

def save_mesh(mesh: MeshResult, path, fmt: Optional[str] = None) -> Path:
    """Write ply (binary), obj (vertex colours on the v lines) or glb (COLOR_0), atomically."""
    path = Path(path)
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    if fmt not in MESH_FORMATS:
        raise TriganError(f"{path}: unknown mesh format {fmt!r} (expected {', '.join(MESH_FORMATS)})")
    data = mesh.to_trimesh().export(file_type=fmt)
    if isinstance(data, str):
        data = data.encode()
    with atomic_path(path, keep_suffix=True) as tmp:
        tmp.write_bytes(data)
    return path


def save_volume(volume: DensityVolume, path) -> Path:
    """float32 .npy [N, N, N] indexed [x, y, z], activated density in 1 / world units."""
    path = Path(path)
    with atomic_path(path, keep_suffix=True) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, volume.density.astype(np.float32, copy=False))
    return path


def mesh_file_name(seed: int, cls: Optional[int], fmt: str) -> str:
    """seed0007.ply, or class002_seed0007.ply for a class-conditional model."""
    stem = f"seed{int(seed):04d}" if cls is None else f"class{int(cls):03d}_seed{int(seed):04d}"
    return f"{stem}.{fmt}"


def chunk_count(resolution: int, chunk_points: int) -> int:
    """Chunks of at most chunk_points points a resolution^3 grid takes (whole z-rows each, as
    core.field.lattice_blocks cuts it)."""
    n = int(resolution)
    rows = max(1, int(chunk_points) // n)
    if rows >= n:
        return -(-n // (rows // n))
    return n * -(-n // rows)

