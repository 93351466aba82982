"""trigan's outline discriminator (not upstream): a small class-conditional D that sees nothing but
the silhouette of the whole object, and so can only judge its shape.

Why: the demo model drew its mushrooms as flat cards, full width from the front and a sliver from
the side. Its patch D, fed RGB and depth, scored those fakes the same from the front and edge-on
(assets/demo.md): it told fakes from reals by colour and texture, and nothing asked the card to
thicken. This D sees the per-pixel opacity of the main D's fakes rendered whole (same tri-planes,
same cameras; Trainer.render_fakes) against the real objects' masks (from their depth maps, whose
background is at the far bound) sampled on the same pixel grid. Both are blurred a little, so that
it judges the outline and not how pixel edges are drawn: a sliver, a fog or a missing part is all
it can see. Its loss joins G's with `training.outline.weight`; it trains beside the main D with the same
losses (non-saturating, lazy R1 on reals: losses.py).
"""

from __future__ import annotations

import torch
from torch import nn

from trigan.core.cameras import PatchParams
from trigan.core.errors import TriganError
from trigan.training.losses import blur_images
from trigan.training.patches import extract_patches

BACKGROUND_DEPTH = 65535     # real depth maps put empty pixels at the 16-bit far end (datasets.md)


def check_outline_resolution(resolution: int) -> None:
    if resolution < 8 or resolution & (resolution - 1):
        raise TriganError(f"training.outline.resolution={resolution}: expected a power of two, 8 or more")


def whole_image(batch: int) -> PatchParams:
    """The patch that is the whole image (scale 1, no offset)."""
    return PatchParams(scale=torch.ones(batch), offset=torch.zeros(batch, 2))


def real_outlines(depth_16bit: torch.Tensor, resolution: int) -> torch.Tensor:
    """Real depth maps [B, 1, H, W] on the 16-bit scale -> masks [B, 1, R, R] in [0, 1], sampled at
    the pixel centres of an R x R rendering of the whole image (where the fakes' rays go)."""
    mask = (depth_16bit < BACKGROUND_DEPTH).to(torch.float32)
    return extract_patches(mask, whole_image(mask.shape[0]), resolution)


class OutlineDiscriminator(nn.Module):
    """Masks [B, 1, R, R] in [0, 1] (+ one-hot class [B, c_dim]) -> logits [B].

    Strided 3x3 convolutions halve the resolution down to 4 x 4 (channels doubling from `channels`
    up to 4x), a fully connected layer, and a projection head: logit = w . h + <embed(c), h> / sqrt(dim),
    so that the class decides which outlines are real."""

    def __init__(self, c_dim: int, resolution: int = 16, channels: int = 32, blur_sigma: float = 0.5):
        super().__init__()
        check_outline_resolution(resolution)
        self.resolution, self.blur_sigma = resolution, blur_sigma
        layers, ch, res = [nn.Conv2d(1, channels, 3, padding=1), nn.LeakyReLU(0.2)], channels, resolution
        while res > 4:
            out = min(ch * 2, channels * 4)
            layers += [nn.Conv2d(ch, out, 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
            ch, res = out, res // 2
        self.dim = 4 * ch
        layers += [nn.Flatten(), nn.Linear(ch * 16, self.dim), nn.LeakyReLU(0.2)]
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(self.dim, 1)
        self.embed = nn.Linear(c_dim, self.dim, bias=False) if c_dim > 0 else None

    def forward(self, masks: torch.Tensor, c: torch.Tensor = None) -> torch.Tensor:
        if masks.shape[-2:] != (self.resolution, self.resolution):
            raise ValueError(f"outline D expects {self.resolution}^2 masks, got {tuple(masks.shape[-2:])}")
        x = masks * 2 - 1
        if self.blur_sigma > 0:
            x = blur_images(x, self.blur_sigma)
        h = self.body(x)
        logits = self.out(h)[:, 0]
        if self.embed is not None and c is not None and c.shape[1] > 0:
            logits = logits + (self.embed(c) * h).sum(dim=1) / self.dim ** 0.5
        return logits
