"""Compare grids: several latents or models side by side at one camera (the Compare tab).

A `GridRequest` is an immutable, hashable value like a RenderRequest: the single view's request
(`base`) and the cells, each a RenderRequest of its own that differs from the base only in what is
compared (seed, class, psi or model) and shares its camera, resolution, mode and quality, so all
cells orbit together. It answers the attributes the app, the worker, the state file and the status
bar read of a request (quality, resolution (a cell's), pose, seed ...) from its base.

`render_grid(scene, grid, ...)` renders the cells through `scene.render(cell)` (so each cell uses
the scene's per-latent caches) and stitches them into one Frame:

* layout: rows x cols cells of resolution^2 pixels, GAP pixels of dark grey between them, read left
  to right, top to bottom; `frame.stats["cells"]` lists each cell's label and box [x, y, w, h] in
  the composite's pixels, `stats["grid"]` the rows and columns;
* progressive: an exact grid first shows a preview of every cell, then renders the cells exactly one
  by one (each refining coarse to fine as a single view does), handing `partial` a composite as
  cells arrive; the final frame has partial=False. Finished cells are cached (by request and the
  model file's stamp), so an orbit back, a grid with one more seed, or a cancelled grid asked for
  again re-renders only what changed;
* `frame.depth` / `frame.opacity` are stitched the same way when every cell has them; the gaps and
  cells still to come hold depth +inf and opacity 0 (nothing there);
* a cell that fails is drawn dark and its label is its one-line error; the others still render.
  The whole grid is an error frame only when every cell failed.

Pure helpers build grids from what a person types (`parse_seeds`, `parse_classes`, `parse_psis`,
`grid_from_values`); every refusal is one TriganError line naming the value and what was expected.
"""

from __future__ import annotations

import math
import os
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from trigan.core.checkpoint_meta import RUN_BEST, RUN_LATEST, resolve_model_path
from trigan.core.errors import TriganError, one_line
from trigan.core.limits import MAX_SEED
from trigan.core.renderer import RenderCancelled
from trigan.core.selection import parse_int_list
from trigan.viewer.render_request import Frame, RenderRequest, file_stamp

MAX_CELLS = 16                 # 4 x 4: more would make each cell too small to judge at ~600 px
GAP = 4                        # pixels between cells in the composite
GAP_GREY = 0.08                # the gaps' colour (a dark grey close to the view's background)
EMPTY_GREY = 0.16              # a cell not drawn yet
FAILED_GREY = 0.03             # a cell whose render failed (its label says why)
PSI_RANGE = (-1.0, 2.0)        # the Latent panel's psi range
PARTIAL_AFTER_S = 0.25         # a preview grid quicker than this shows no intermediate composites
CACHE_CELLS = 2 * MAX_CELLS + 4   # finished cell frames kept (LRU): two full grids and a few more

KINDS = ("seeds", "classes", "psi", "models", "snapshots")
KIND_LABELS = {"seeds": "seeds", "classes": "classes", "psi": "psi values", "models": "two models",
               "snapshots": "latest vs best snapshot"}
DEFAULT_VALUES = {"seeds": "0-3", "classes": "all", "psi": "0.5,0.7,1"}


# -- the request -----------------------------------------------------------------------------------

def grid_shape(count: int) -> Tuple[int, int]:
    """(rows, cols) of a grid of `count` cells: as square as possible, wider than tall (the view
    fits the whole composite into a square, so a square grid gives each cell the most pixels)."""
    cols = max(1, math.ceil(math.sqrt(count)))
    return max(1, math.ceil(count / cols)), cols


# What every cell shares with the base request (so the cells orbit together and match the Render panel).
SHARED = ("pose", "resolution", "mode", "quality", "sample_multiplier", "background")


@dataclass(frozen=True)
class GridRequest:
    """Cells rendered side by side at one camera (see the module docstring). Invalid grids raise
    TriganError (one line) when made."""

    base: RenderRequest
    cells: Tuple[RenderRequest, ...]
    labels: Tuple[str, ...]
    rows: int
    cols: int

    def __post_init__(self):
        object.__setattr__(self, "cells", tuple(self.cells))
        object.__setattr__(self, "labels", tuple(str(label) for label in self.labels))
        n = len(self.cells)
        if not 1 <= n <= MAX_CELLS:
            raise TriganError(f"compare grid of {n} cells: expected 1..{MAX_CELLS}")
        if len(self.labels) != n:
            raise TriganError(f"compare grid: {len(self.labels)} labels for {n} cells")
        if self.rows < 1 or self.cols < 1 or self.rows * self.cols < n:
            raise TriganError(f"compare grid {self.rows}x{self.cols}: too small for {n} cells")
        for cell in self.cells:
            if not isinstance(cell, RenderRequest):
                raise TriganError(f"compare grid: a cell must be a RenderRequest, got {type(cell).__name__}")
            for name in SHARED:
                if getattr(cell, name) != getattr(self.base, name):
                    raise TriganError(f"compare grid: every cell shares the base request's {name}")

    def with_values(self, **values) -> "GridRequest":
        """The grid with new request values applied to the base and every cell (e.g. quality)."""
        return replace(self, base=self.base.with_values(**values),
                       cells=tuple(cell.with_values(**values) for cell in self.cells))

    @property
    def cell_count(self) -> int:
        return len(self.cells)

    # What readers of a request take from it: the base's values (a cell's resolution, the shared camera).
    quality = property(lambda self: self.base.quality)
    resolution = property(lambda self: self.base.resolution)
    mode = property(lambda self: self.base.mode)
    pose = property(lambda self: self.base.pose)
    sample_multiplier = property(lambda self: self.base.sample_multiplier)
    background = property(lambda self: self.base.background)
    seed = property(lambda self: self.base.seed)
    class_index = property(lambda self: self.base.class_index)
    psi = property(lambda self: self.base.psi)
    noise_mode = property(lambda self: self.base.noise_mode)
    latent_file = property(lambda self: self.base.latent_file)
    mix = property(lambda self: self.base.mix)
    model_path = property(lambda self: self.base.model_path)


def make_grid(base: RenderRequest, cells: Sequence[RenderRequest], labels: Sequence[str]) -> GridRequest:
    rows, cols = grid_shape(len(cells))
    return GridRequest(base, tuple(cells), tuple(labels), rows, cols)


def cell_boxes(grid: GridRequest) -> List[List[int]]:
    """[x, y, w, h] of each cell in the composite (left to right, top to bottom)."""
    res = grid.resolution
    return [[(i % grid.cols) * (res + GAP), (i // grid.cols) * (res + GAP), res, res] for i in range(len(grid.cells))]


def composite_size(grid: GridRequest) -> Tuple[int, int]:
    """(height, width) of the composite image."""
    res = grid.resolution
    return grid.rows * res + (grid.rows - 1) * GAP, grid.cols * res + (grid.cols - 1) * GAP


# -- what a person types -----------------------------------------------------------------------------

def _bounded(count: int, what: str, text: str) -> None:
    if count > MAX_CELLS:
        raise TriganError(f"{what} {text!r}: {count} cells, at most {MAX_CELLS}")
    if count < 1:
        raise TriganError(f"{what} {text!r}: expected at least one value")


def parse_seeds(text: str) -> List[int]:
    """'0-3' or '1,5,9' -> seeds (0..MAX_SEED, at most MAX_CELLS)."""
    raw = str(text).strip()
    if not raw:
        raise TriganError("seeds '': expected seeds like 0-3 or 1,5,9")
    _guard_ranges(raw, "seeds")
    try:
        seeds = parse_int_list(raw, "seeds", 0, MAX_SEED)
    except TriganError as exc:
        raise TriganError(str(exc).lstrip("-")) from None     # its messages name the CLI's --seeds
    _bounded(len(seeds), "seeds", raw)
    return seeds


def _guard_ranges(raw: str, what: str) -> None:
    """Refuse a range longer than a grid holds before it is expanded (0-999999 would be a million)."""
    for item in raw.split(","):
        lo, sep, hi = item.strip().partition("-")
        if sep and lo.strip().isdigit() and hi.strip().isdigit() and int(hi) - int(lo) + 1 > MAX_CELLS:
            raise TriganError(f"{what} {raw!r}: {int(hi) - int(lo) + 1} cells, at most {MAX_CELLS}")


def parse_classes(text: str, c_dim: int) -> List[int]:
    """'all' or '0-3' / '1,5' -> class indices of a model with c_dim classes (at most MAX_CELLS)."""
    raw = str(text).strip()
    if c_dim <= 0:
        raise TriganError("classes: this model is unconditional (it has no classes to compare)")
    if raw.lower() == "all":
        _bounded(c_dim, "classes", raw)
        return list(range(c_dim))
    if not raw:
        raise TriganError(f"classes '': expected 'all' or classes like 0-3 (this model has 0..{c_dim - 1})")
    _guard_ranges(raw, "classes")
    try:
        classes = parse_int_list(raw, "classes", 0, c_dim - 1)
    except TriganError as exc:
        raise TriganError(str(exc).lstrip("-")) from None
    _bounded(len(classes), "classes", raw)
    return classes


def parse_psis(text: str) -> List[float]:
    """'0.5,0.7,1' -> psi values (finite, within the Latent panel's range, at most MAX_CELLS)."""
    raw = str(text).strip()
    items = [item.strip() for item in raw.split(",")] if raw else []
    _bounded(len(items), "psi", raw)
    out: List[float] = []
    for item in items:
        try:
            value = float(item)
        except ValueError:
            value = float("nan")
        if not math.isfinite(value) or not PSI_RANGE[0] <= value <= PSI_RANGE[1]:
            raise TriganError(f"psi {item!r} in {raw!r}: expected numbers {PSI_RANGE[0]:g}..{PSI_RANGE[1]:g} "
                              "separated by commas, like 0.5,0.7,1")
        if value not in out:
            out.append(value)
    return out


def class_name_label(index: int, class_names: Sequence[str]) -> str:
    """ "class 2 (chair)" where the model names its classes, else "class 2"."""
    name = class_names[index] if 0 <= index < len(class_names) else ""
    return f"class {index} ({name})" if str(name).strip() else f"class {index}"


def run_snapshots(model_file: str) -> Tuple[str, str]:
    """(latest, best) checkpoint files of the training run the open model belongs to (its folder's
    latest.ckpt and best.ckpt); one line of error when the run lacks one."""
    path = Path(model_file)
    folder = path if path.is_dir() else path.parent
    latest, best = folder / RUN_LATEST, folder / RUN_BEST
    missing = [p.name for p in (latest, best) if not p.is_file()]
    if missing:
        raise TriganError(f"latest vs best: {folder} has no {' or '.join(missing)} (expected the open model "
                          "to be a snapshot of a training run with both)")
    return str(latest), str(best)


def model_labels(paths: Sequence[str]) -> List[str]:
    """Each model's file name; with the folder in front where two file names are the same."""
    names = [Path(p).name for p in paths]
    if len(set(names)) == len(names):
        return names
    return [f"{Path(p).parent.name}/{Path(p).name}" for p in paths]


def grid_from_values(base: RenderRequest, kind: str, text: str, *, c_dim: int = 0,
                     class_names: Sequence[str] = (), model_file: str = "", other_model: str = "") -> GridRequest:
    """The grid a Compare tab's values make around the single view's request `base`.

    kind "seeds" / "classes" / "psi": `text` lists the values (the cells show seeds, not an inverted
    latent or an interpolation the view may show); "models": the open model (`base.model_path`, shown
    as `model_file`) beside `other_model` (a checkpoint or a run folder); "snapshots": latest.ckpt
    beside best.ckpt of the run `model_file` belongs to. Raises TriganError (one line)."""
    seeds_only = dict(latent_file=None, mix=None)
    if kind == "seeds":
        values = parse_seeds(text)
        return make_grid(base, [base.with_values(seed=s, **seeds_only) for s in values],
                         [f"seed {s}" for s in values])
    if kind == "classes":
        values = parse_classes(text, c_dim)
        return make_grid(base, [base.with_values(class_index=c, **seeds_only) for c in values],
                         [class_name_label(c, class_names) for c in values])
    if kind == "psi":
        values = parse_psis(text)
        return make_grid(base, [base.with_values(psi=p, **seeds_only) for p in values],
                         [f"psi {p:g}" for p in values])
    if kind == "models":
        other = str(other_model or "").strip()
        if not other:
            raise TriganError("two models: the other model's path is empty (expected a checkpoint or a run folder)")
        other = os.path.expanduser(other)
        if not os.path.exists(other):
            raise TriganError(f"two models: {other} does not exist (expected a checkpoint or a run folder)")
        try:
            other_file = str(resolve_model_path(other))
        except Exception as exc:  # noqa: BLE001 - a folder without snapshots: its one line
            raise TriganError(one_line(exc)) from None
        paths = [model_file or base.model_path, other_file]
        return make_grid(base, [base, base.with_values(model_path=other)], model_labels(paths))
    if kind == "snapshots":
        latest, best = run_snapshots(model_file or base.model_path)
        return make_grid(base, [base.with_values(model_path=latest), base.with_values(model_path=best)],
                         [RUN_LATEST, RUN_BEST])
    raise TriganError(f"compare {kind!r}: expected one of {', '.join(KINDS)}")


# -- rendering -------------------------------------------------------------------------------------------

def _cell_key(cell: RenderRequest):
    """A cached cell frame is good while its request and the files it was rendered from are unchanged
    (a training run rewrites latest.ckpt; an inversion rewrites its latent file)."""
    try:
        model_file = str(resolve_model_path(cell.model_path))
    except Exception:  # noqa: BLE001 - the render says what is wrong; no stamp means no reuse
        return None
    mix_file = None if cell.mix is None else cell.mix.latent_file
    return (cell, file_stamp(model_file), file_stamp(cell.latent_file), file_stamp(mix_file))


class _GridMemory:
    """What a scene keeps between grids: finished cell frames (LRU), and the cells last drawn (a new
    grid of the same layout starts from them rather than from empty cells)."""

    def __init__(self):
        self.cells: "OrderedDict[tuple, Frame]" = OrderedDict()
        self.last_layout = None
        self.last_images: List[Optional[Frame]] = []
        self.default_max_latents: Optional[int] = None

    def get(self, key) -> Optional[Frame]:
        frame = None if key is None else self.cells.get(key)
        if frame is not None:
            self.cells.move_to_end(key)
        return frame

    def put(self, key, frame: Frame) -> None:
        if key is None or not frame.ok or frame.partial:
            return
        self.cells[key] = frame
        self.cells.move_to_end(key)
        while len(self.cells) > CACHE_CELLS:
            self.cells.popitem(last=False)


_MEMORY: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _memory(scene) -> _GridMemory:
    memory = _MEMORY.get(scene)
    if memory is None:
        memory = _MEMORY[scene] = _GridMemory()
    return memory


def clear_cache(scene) -> None:
    """Forget the scene's cached cell frames (tests; a reload)."""
    _MEMORY.pop(scene, None)


class _Composite:
    """The grid's picture being assembled: one slot per cell (a Frame or None) and its label."""

    def __init__(self, grid: GridRequest, start: float, slots: List[Optional[Frame]]):
        self.grid, self.start = grid, start
        self.slots = slots
        self.errors: List[Optional[str]] = [None] * len(grid.cells)
        self.boxes = cell_boxes(grid)
        self.paths: List[str] = [""] * len(grid.cells)
        self.cell_ms: List[Optional[float]] = [None] * len(grid.cells)
        self.cached = 0

    def set(self, i: int, frame: Frame) -> None:
        if frame.ok:
            self.slots[i], self.errors[i] = frame, None
        else:
            self.slots[i], self.errors[i] = None, frame.error
        if not frame.partial:
            self.paths[i], self.cell_ms[i] = frame.path_used, frame.ms

    def labels(self) -> List[str]:
        return [label if err is None else f"{label}: {err}" for label, err in zip(self.grid.labels, self.errors, strict=True)]

    def frame(self, partial: bool) -> Frame:
        grid, res = self.grid, self.grid.resolution
        h, w = composite_size(grid)
        image = np.empty((h, w, 4), dtype=np.float32)
        image[..., :3], image[..., 3] = GAP_GREY, 1.0
        with_geometry = all(f is not None and f.depth is not None and f.opacity is not None
                            and f.depth.shape == (res, res) for f in self.slots)
        depth = np.full((h, w), np.inf, dtype=np.float32) if with_geometry else None
        opacity = np.zeros((h, w), dtype=np.float32) if with_geometry else None
        for (x, y, _, _), slot, err in zip(self.boxes, self.slots, self.errors, strict=True):
            cell = image[y:y + res, x:x + res]
            if slot is None or slot.image.shape[:2] != (res, res):
                cell[..., :3] = EMPTY_GREY if err is None else FAILED_GREY
                continue
            cell[...] = slot.image
            if with_geometry:
                depth[y:y + res, x:x + res] = slot.depth
                opacity[y:y + res, x:x + res] = slot.opacity
        paths = sorted({p for p in self.paths if p})
        error = None
        if not partial and all(e is not None for e in self.errors):
            error = f"every cell failed: {self.errors[0]}"
        # each cell's own ray interval: the view tells a cell's background (the interval's far end) by it
        intervals = [slot.stats.get("ray_interval") if slot is not None else None for slot in self.slots]
        stats = {"cells": [{"label": label, "box": list(box), "ray_interval": interval}
                           for label, box, interval in zip(self.labels(), self.boxes, intervals, strict=True)],
                 "grid": {"rows": grid.rows, "cols": grid.cols},
                 "cell_ms": list(self.cell_ms), "cells_cached": self.cached,
                 "cells_done": sum(1 for f in self.slots if f is not None and not f.partial
                                   and f.request.quality == grid.quality)}
        ms = (time.perf_counter() - self.start) * 1000
        return Frame(grid, image, ms, f"grid of {len(grid.cells)}, {'/'.join(paths) or 'nothing rendered'}", error, stats,
                     partial=partial, depth=depth, opacity=opacity)


def render_grid(scene, grid: GridRequest, should_cancel: Optional[Callable[[], bool]] = None,
                progress: Optional[Callable[[int, int], None]] = None, partial: Optional[Callable[[Frame], None]] = None,
                stage: Optional[Callable[[str], None]] = None) -> Frame:
    """The composite Frame of a grid (see the module docstring). RenderCancelled (from
    should_cancel, checked between cells and inside each cell's render) propagates."""
    start = time.perf_counter()
    memory = _memory(scene)
    if memory.default_max_latents is None:
        memory.default_max_latents = scene.max_latents
    # every cell's field and renderers stay cached while the grid is shown (and a few more latents)
    scene.max_latents = max(memory.default_max_latents, len(grid.cells) + 4)
    layout = (len(grid.cells), grid.rows, grid.cols, grid.resolution, grid.mode)
    slots = list(memory.last_images) if memory.last_layout == layout else [None] * len(grid.cells)
    comp = _Composite(grid, start, slots)
    keys = [_cell_key(cell) for cell in grid.cells]

    def publish(force: bool = False) -> None:
        # a quick grid (previews while the camera moves) shows no intermediate composites: they
        # would mix cells of the old and the new camera for a few milliseconds
        if partial is not None and (force or time.perf_counter() - start >= PARTIAL_AFTER_S):
            partial(comp.frame(partial=True))

    def cancel_check() -> None:
        if should_cancel is not None and should_cancel():
            raise RenderCancelled()

    def cell_stage(i: int):
        if stage is None:
            return None
        # "rendering" stays the plain word: the status line shows an exact render's progress under it
        return lambda text: stage(text if text == "rendering" else f"{grid.labels[i]}: {text}")

    def cell_partial(i: int):
        def take(frame: Frame) -> None:
            comp.set(i, frame)
            publish(force=True)
        return take

    done = [False] * len(grid.cells)
    for i, key in enumerate(keys):                  # cells already rendered (an orbit back, a grown grid)
        hit = memory.get(key)
        if hit is not None:
            comp.set(i, hit)
            comp.cached += 1
            done[i] = True
    todo = [i for i in range(len(grid.cells)) if not done[i]]
    if grid.quality == "exact":
        # a preview of every cell first, so the whole grid is on screen while the exact cells come
        for i in todo:
            cancel_check()
            preview = grid.cells[i].with_values(quality="preview")
            frame = memory.get(_cell_key(preview))
            if frame is None:
                frame = scene.render(preview, should_cancel=should_cancel, partial=cell_partial(i), stage=cell_stage(i))
                memory.put(_cell_key(preview), frame)
                comp.set(i, frame)
                publish()                          # a slow start (cold caches) shows each cell as it comes
            comp.set(i, frame)
        if todo:
            publish(force=True)
    total = len(todo) * grid.resolution ** 2

    for n, i in enumerate(todo):
        cancel_check()

        def cell_progress(done_px: int, total_px: int, n=n) -> None:
            if progress is not None and total_px:
                progress(n * grid.resolution ** 2 + int(done_px * grid.resolution ** 2 / total_px), total)
        frame = scene.render(grid.cells[i], should_cancel=should_cancel, progress=cell_progress,
                             partial=cell_partial(i), stage=cell_stage(i))
        memory.put(keys[i], frame)
        comp.set(i, frame)
        if n < len(todo) - 1:
            publish(force=grid.quality == "exact")
    memory.last_layout, memory.last_images = layout, list(comp.slots)
    return comp.frame(partial=False)


__all__ = ["GridRequest", "render_grid", "grid_from_values", "make_grid", "grid_shape", "cell_boxes",
           "composite_size", "parse_seeds", "parse_classes", "parse_psis", "run_snapshots", "MAX_CELLS", "GAP",
           "KINDS", "KIND_LABELS", "DEFAULT_VALUES", "clear_cache"]
