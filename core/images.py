"""Images at the file boundary: float model images -> uint8 pixels, grids, PNG files, and the
colouring of depth and normals.

Inside models images are float [N, C, H, W] in [-1, 1]; on disk and on screen they are uint8
[H, W, 3]. The training loop (progress grids), `trigan render` and the viewer's exports all go
through these helpers, so a grid looks the same wherever it was made.

Depth and normals become ordinary [-1, 1] images here, so grids, PNGs and videos treat them like rgb:

* depth: the renderer's expected ray distance (sum of weight x distance, not divided by opacity) is
  divided by the opacity and mapped linearly over the model's ray interval, near = white, far =
  black, then multiplied by the opacity, so empty space is black too.
* normals: world-space unit normals n map to colour (n + 1) / 2 (x -> red, y -> green, z -> blue),
  composited over the model's background colour by opacity.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Tuple, Union

import numpy as np
import torch
from PIL import Image

from trigan.core.atomic import atomic_path

PathLike = Union[str, os.PathLike]

# Upstream sizes its snapshot grids to fill an 8K canvas (EpiGRAF 10.2); no grid is made wider.
MAX_GRID_WIDTH = 7680
TARGET_ASPECT = 16 / 9


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Float [N, C, H, W] in [-1, 1] (C = 1 or 3) -> uint8 [N, H, W, 3]; out-of-range values clamp."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected images [N, 1 or 3, H, W], got shape {tuple(images.shape)}")
    x = images.detach().float().cpu()
    x = ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return x.permute(0, 2, 3, 1).contiguous().numpy()


def tile(images: np.ndarray, rows: int, cols: int, pad: int = 0) -> np.ndarray:
    """uint8 [N, H, W, C] -> [rows*H + (rows-1)*pad, cols*W + (cols-1)*pad, C], row-major, black gaps."""
    n, h, w, c = images.shape
    if n != rows * cols:
        raise ValueError(f"a {rows}x{cols} grid holds {rows * cols} images, got {n}")
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    out = np.zeros((rows * h + (rows - 1) * pad, cols * w + (cols - 1) * pad, c), dtype=np.uint8)
    for k in range(n):
        r, col = divmod(k, cols)
        y, x = r * (h + pad), col * (w + pad)
        out[y:y + h, x:x + w] = images[k]
    return out


def tile_partial(images: np.ndarray, rows: int, cols: int, pad: int = 0) -> np.ndarray:
    """Like `tile`, but fewer than rows * cols images are allowed; the remaining cells stay black."""
    n = images.shape[0]
    if n > rows * cols:
        raise ValueError(f"a {rows}x{cols} grid holds {rows * cols} images, got {n}")
    if n < rows * cols:
        blank = np.zeros((rows * cols - n,) + images.shape[1:], dtype=images.dtype)
        images = np.concatenate([images, blank])
    return tile(images, rows, cols, pad)


def image_grid(images: torch.Tensor, rows: int, cols: int, pad: int = 0) -> np.ndarray:
    """Tile float images [N, C, H, W] in [-1, 1] (C = 3, or 1 for depth/gray) into one uint8 image.

    N must equal rows * cols; image k lands in row k // cols, column k % cols. -1 maps to 0 and 1 to
    255, values outside are clamped, one channel is replicated to three. `pad` black pixels separate
    neighbouring cells (none around the border), so the result is [rows*H, cols*W, 3] when pad = 0.
    """
    return tile(to_uint8(images), rows, cols, pad)


def grid_shape(num: int, img_res: int) -> Tuple[int, int]:
    """(rows, cols) for a grid of `num` images of img_res pixels: near 16:9, at most 7680 px wide.

    rows * cols >= num; cells past `num` stay empty (black). Among layouts of the permitted widths
    it picks the one closest to 16:9, counting each empty cell against it, so exact fits win when
    they are close (32 -> 4x8, 16 -> 4x4, 8 -> 2x4, 7 -> 2x4 with one empty cell).
    """
    if num < 1:
        raise ValueError(f"a grid needs at least one image, got {num}")
    max_cols = max(1, min(num, MAX_GRID_WIDTH // max(1, int(img_res))))
    best, best_score = (1, 1), float("inf")
    for cols in range(1, max_cols + 1):
        rows = math.ceil(num / cols)
        empty = rows * cols - num
        score = abs(math.log((cols / rows) / TARGET_ASPECT)) + 6.0 * empty / (rows * cols)
        if score < best_score - 1e-9:
            best, best_score = (rows, cols), score
    return best


def save_png(array: np.ndarray, path: PathLike) -> Path:
    """Write uint8 [H, W, 3] (or [H, W] gray, [H, W, 1], [H, W, 4]) as a PNG, atomically."""

    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"save_png expects uint8 pixels, got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise ValueError(f"save_png expects [H, W], [H, W, 3] or [H, W, 4], got shape {array.shape}")
    path = Path(path)
    with atomic_path(path, keep_suffix=True) as tmp:   # makes the folder, or says in one line why not
        Image.fromarray(np.ascontiguousarray(array)).save(tmp, format="PNG")
    return path


def resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """uint8 [H, W, 3] resized with Lanczos (Pillow), as upstream's front_grid thumbnails."""

    return np.asarray(Image.fromarray(image).resize((int(width), int(height)), Image.LANCZOS))


# --------------------------------------------------------------------------------------------------
# Depth and normals as pictures (returned as [-1, 1] float images, like rgb)

def depth_image(depth: torch.Tensor, opacity: torch.Tensor, near: float, far: float,
                eps: float = 1e-4) -> torch.Tensor:
    """Depth [B, 1, H, W] (sum w z) and opacity [B, 1, H, W] -> gray [B, 3, H, W] in [-1, 1].

    Near (distance `near`) is white, far (distance `far`) black, linear in between; the value is
    scaled by the opacity so empty rays are black and soft edges fade.
    """
    if far <= near:
        raise ValueError(f"depth range must have far > near, got near={near}, far={far}")
    opacity = opacity.float().clamp(0, 1)
    dist = depth.float() / opacity.clamp_min(eps)
    gray = ((far - dist) / (far - near)).clamp(0, 1) * opacity
    return (gray * 2 - 1).expand(-1, 3, -1, -1)


def normals_image(normals: torch.Tensor, opacity: torch.Tensor, white_background: bool = False) -> torch.Tensor:
    """World-space unit normals [B, 3, H, W] -> colour (n + 1) / 2, as a [-1, 1] image (which is n
    itself), composited by opacity over white or black."""
    opacity = opacity.float().clamp(0, 1)
    background = 1.0 if white_background else -1.0
    return normals.float().clamp(-1, 1) * opacity + background * (1 - opacity)
