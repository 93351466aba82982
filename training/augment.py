"""Augmentation of the discriminator's inputs: x-flip, rotation, integer shift and brightness.

StyleGAN2-ADA's idea, as EpiGRAF uses it (`epigraf.md` 5.4; 3DGP trains with `noaug`, so all of it
is off by default): D only ever sees augmented images, real and fake alike, so it cannot memorise a
small dataset, and G is pushed toward the un-augmented distribution as long as every operation is
applied with a probability below 1 (an always-applied operation "leaks" into G's outputs).

What "the same for real and fake" means here, as in ADA: both go through the same pipeline with the
same probabilities and ranges, but every sample draws its own parameters, and reals and fakes draw
from different streams. (Giving a fake the draws of "its" real would add nothing: the two are
unrelated images.) The operations run on D's inputs after the blur, in ADA's order: flip, shift,
rotation, brightness. Geometric operations move every channel, the depth channel of a depth-aware
D included; brightness changes only the colour channels. The patch parameters and camera given to D
stay as they are (ADA also leaves D's conditioning alone).

Randomness: a sample's draws come from a CPU generator seeded by (run seed, step, phase, role,
global sample index), so a run split over processes or resumed mid-way draws exactly the same
augmentations (see randomness.py). Every sample always draws the same 8 numbers whatever is
enabled, so switching one operation on does not change the draws of the others.

    draws = draw_augment(cfg, batch=B, size=(H, W), generator=gen)          # or sample_seeds=[...]
    out = apply_augment(images, draws, color_channels=3)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from trigan.core.errors import ConfigError
from trigan.training.config import AugmentConfig
from trigan.training.randomness import mix_seed

# Which side of D a batch is, so that reals and fakes of one phase draw from different streams.
ROLE_FAKE, ROLE_REAL = 0, 1
_STREAM = 0x417567          # "Aug": keeps these seeds apart from other users of mix_seed
_NUM_UNIFORM = 7            # per sample: 4 gates, angle, shift x, shift y (then one normal)


def check_augment_config(cfg: AugmentConfig, where: str = "training.augment") -> None:
    """A one-line ConfigError for a probability outside [0, 1] or a negative / too large range."""
    for name in ("flip_p", "rotate_p", "shift_p", "brightness_p"):
        value = getattr(cfg, name)
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"{where}.{name}={value}: expected a probability in [0, 1]")
    if not 0.0 <= cfg.rotate_max <= 180.0:
        raise ConfigError(f"{where}.rotate_max={cfg.rotate_max}: expected degrees in [0, 180]")
    if not 0.0 <= cfg.shift_max < 1.0:
        raise ConfigError(f"{where}.shift_max={cfg.shift_max}: expected a fraction of the image size in [0, 1)")
    if not cfg.brightness_std >= 0.0:
        raise ConfigError(f"{where}.brightness_std={cfg.brightness_std}: expected a standard deviation >= 0")


def augment_enabled(cfg: AugmentConfig) -> bool:
    return any(getattr(cfg, name) > 0 for name in ("flip_p", "rotate_p", "shift_p", "brightness_p"))


# ---------------------------------------------------------------------------------------------------
# The operations: pure functions of [B, C, H, W] and per-sample parameters, differentiable in images

def flip_x(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mirror left-right the samples where `mask` [B] (bool) is set."""
    mask = mask.to(images.device).view(-1, 1, 1, 1)
    return torch.where(mask, images.flip(-1), images)


def _symmetric_index(index: torch.Tensor, size: int) -> torch.Tensor:
    """Indices outside [0, size) mirrored about the image edge (... 1 0 | 0 1 2 ... n-1 | n-1 n-2 ...),
    the same reflection grid_sample's 'reflection' padding uses, so shifts and rotations agree."""
    m = torch.remainder(index, 2 * size)
    return torch.where(m >= size, 2 * size - 1 - m, m)


def shift_images(images: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """Move each sample's content by whole pixels, dx [B] to the right and dy [B] down; the border
    is filled by mirroring the image (as ADA's integer translation), so nothing turns black."""
    b, c, h, w = images.shape
    dev = images.device
    dx, dy = dx.to(dev).long().view(-1, 1), dy.to(dev).long().view(-1, 1)
    ix = _symmetric_index(torch.arange(w, device=dev).view(1, -1) - dx, w)        # [B, W]
    iy = _symmetric_index(torch.arange(h, device=dev).view(1, -1) - dy, h)        # [B, H]
    out = images.gather(3, ix.view(b, 1, 1, w).expand(b, c, h, w))
    return out.gather(2, iy.view(b, 1, h, 1).expand(b, c, h, w))


def rotate_images(images: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotate each sample about its centre by `angle` [B] radians, counter-clockwise as displayed
    (angle pi/2 is torch.rot90(images, 1, dims=(2, 3)) on a square image). Bilinear resampling with
    mirrored borders; rotation is done in pixel units, so it stays a rotation on non-square inputs."""
    b, c, h, w = images.shape
    dev, dtype = images.device, images.dtype
    calc = torch.float64 if dtype == torch.float64 else torch.float32
    angle = angle.to(device=dev, dtype=calc).view(-1, 1, 1)
    # Pixel centres relative to the image centre, x right and y down.
    xs = (torch.arange(w, device=dev, dtype=calc) + 0.5 - w / 2).view(1, 1, w)
    ys = (torch.arange(h, device=dev, dtype=calc) + 0.5 - h / 2).view(1, h, 1)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # Output pixel p shows the input at R(-angle) p; with y pointing down a counter-clockwise
    # rotation by a is (x, y) -> (x cos a + y sin a, -x sin a + y cos a), so its inverse is:
    src_x = xs * cos - ys * sin
    src_y = xs * sin + ys * cos
    grid = torch.stack([src_x / (w / 2), src_y / (h / 2)], dim=-1).to(dtype)     # [B, H, W, 2]
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def adjust_brightness(images: torch.Tensor, amount: torch.Tensor, color_channels: int = 3) -> torch.Tensor:
    """Add `amount` [B] to the first `color_channels` channels (images in [-1, 1]); the rest, such as
    a depth channel, is left alone."""
    b, c = images.shape[:2]
    k = min(int(color_channels), c)
    offset = torch.zeros(b, c, 1, 1, device=images.device, dtype=images.dtype)
    offset[:, :k] = amount.to(device=images.device, dtype=images.dtype).view(-1, 1, 1, 1)
    return images + offset


# ---------------------------------------------------------------------------------------------------
# Drawing the parameters

@dataclass(frozen=True)
class AugmentDraws:
    """Per-sample parameters of one batch ([B] each, on the CPU). An operation's value is its neutral
    one (no flip, angle 0, shift 0, brightness 0) where its mask is off."""

    flip: torch.Tensor            # bool
    rotate: torch.Tensor          # bool
    angle: torch.Tensor           # radians
    shift: torch.Tensor           # bool
    dx: torch.Tensor              # int64 pixels, right
    dy: torch.Tensor              # int64 pixels, down
    brightness_on: torch.Tensor   # bool
    brightness: torch.Tensor      # added to the colour channels

    def __len__(self) -> int:
        return int(self.flip.shape[0])


def augment_seeds(seed: int, step: int, phase: int, role: int, sample_indices: Sequence[int]) -> list:
    """One seed per sample: a function of (run seed, step, phase, real/fake role, global index)."""
    return [mix_seed(_STREAM, seed, step, phase, role, int(i)) for i in sample_indices]


def _raw_numbers(batch: int, generator: Optional[torch.Generator], sample_seeds: Optional[Sequence[int]]):
    """[B, 7] uniforms and [B] standard normals, from one generator or from one seeded per sample."""
    if sample_seeds is None:
        u = torch.rand(batch, _NUM_UNIFORM, generator=generator, dtype=torch.float64)
        n = torch.randn(batch, generator=generator, dtype=torch.float64)
        return u, n
    if len(sample_seeds) != batch:
        raise ValueError(f"{len(sample_seeds)} sample seeds for a batch of {batch}")
    us, ns = [], []
    for s in sample_seeds:
        gen = torch.Generator(device="cpu").manual_seed(int(s))
        us.append(torch.rand(_NUM_UNIFORM, generator=gen, dtype=torch.float64))
        ns.append(torch.randn(1, generator=gen, dtype=torch.float64))
    return torch.stack(us), torch.cat(ns)


def draw_augment(cfg: AugmentConfig, batch: int, size: Tuple[int, int], generator: Optional[torch.Generator] = None,
                 sample_seeds: Optional[Sequence[int]] = None) -> AugmentDraws:
    """Draw every sample's augmentation: each operation is applied independently with its
    probability; the rotation angle is uniform in +-rotate_max degrees, the shift uniform in
    +-shift_max of the image size on each axis (rounded to whole pixels), brightness N(0, std)."""
    h, w = int(size[0]), int(size[1])
    u, n = _raw_numbers(batch, generator, sample_seeds)
    flip = u[:, 0] < cfg.flip_p
    rotate = u[:, 1] < cfg.rotate_p
    shift = u[:, 2] < cfg.shift_p
    bright = u[:, 3] < cfg.brightness_p
    angle = (2 * u[:, 4] - 1) * math.radians(cfg.rotate_max)
    dx = torch.round((2 * u[:, 5] - 1) * cfg.shift_max * w).long()
    dy = torch.round((2 * u[:, 6] - 1) * cfg.shift_max * h).long()
    return AugmentDraws(flip=flip, rotate=rotate, angle=torch.where(rotate, angle, torch.zeros_like(angle)),
                        shift=shift, dx=torch.where(shift, dx, torch.zeros_like(dx)),
                        dy=torch.where(shift, dy, torch.zeros_like(dy)), brightness_on=bright,
                        brightness=torch.where(bright, n * cfg.brightness_std, torch.zeros_like(n)))


def apply_augment(images: torch.Tensor, draws: AugmentDraws, color_channels: int = 3) -> torch.Tensor:
    """Apply drawn augmentations to [B, C, H, W] (C = 3 colour channels, + 1 depth for a depth-aware
    D). Operations nobody in the batch drew are skipped, so a batch without any is returned as is."""
    if len(draws) != images.shape[0]:
        raise ValueError(f"augmentations drawn for {len(draws)} samples, the batch has {images.shape[0]}")
    out = images
    if bool(draws.flip.any()):
        out = flip_x(out, draws.flip)
    if bool(draws.shift.any()):
        out = shift_images(out, draws.dx, draws.dy)
    if bool(draws.rotate.any()):
        # Samples that do not rotate keep their pixels exactly (grid_sample at angle 0 is only
        # nearly the identity).
        mask = draws.rotate.to(out.device).view(-1, 1, 1, 1)
        out = torch.where(mask, rotate_images(out, draws.angle), out)
    if bool(draws.brightness_on.any()):
        out = adjust_brightness(out, draws.brightness, color_channels)
    return out


def augment_d_input(cfg: AugmentConfig, images: torch.Tensor, seed: int, step: int, phase: int, role: int,
                    first_index: int, color_channels: int = 3) -> torch.Tensor:
    """The training loop's hook: augment one process's share of a batch of D inputs whose first sample
    has global index `first_index`. The identity (the same tensor) when every probability is 0."""
    if not augment_enabled(cfg):
        return images
    seeds = augment_seeds(seed, step, phase, role, range(first_index, first_index + images.shape[0]))
    draws = draw_augment(cfg, images.shape[0], images.shape[-2:], sample_seeds=seeds)
    return apply_augment(images, draws, color_channels)
