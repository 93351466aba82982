"""Views of seeds for people: latents of (class, seed) pairs, ray intervals that follow the camera,
and render outputs turned into pictures (rgb, depth, normals, opacity).

Shared by `trigan render`, `trigan mesh`, the viewer's scene and its export jobs, so a seed looks
the same in all of them.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Dict, Optional, Sequence, Tuple

import torch

from trigan.core.errors import TriganError
from trigan.core.generator import one_hot
from trigan.core.images import depth_image, normals_image
from trigan.core.renderer import RenderOptions, RenderOutput

OUTPUTS = ("rgb", "depth", "normals", "opacity")


def options_at_distance(opts: RenderOptions, distance: float, base_radius: float) -> RenderOptions:
    """The model's ray interval [ray_start, ray_end] moved by how much farther the camera is from
    the scene's centre than the model's default radius, so zooming (or panning) keeps the object
    inside the marched segment and the samples per unit length stay those the model was trained with."""
    shift = float(distance) - float(base_radius)
    if shift == 0:
        return opts
    return replace(opts, ray_start=max(1e-3, opts.ray_start + shift), ray_end=opts.ray_end + shift)


def picture(out: RenderOutput, output: str, opts: RenderOptions, background: Optional[float] = None) -> torch.Tensor:
    """[B, 3, H, W] in [-1, 1] of a render: rgb (clamped), depth (near = white over the options' ray
    interval), normals (over the background), or opacity (white = opaque).

    background: None keeps the rgb as rendered; +1 / -1 composites the (premultiplied) colour over
    white / black using the opacity: rgb + background * (1 - opacity). The options must then have
    been rendered without white_background."""
    if output == "rgb":
        rgb = out.rgb
        if background is not None:
            rgb = rgb + float(background) * (1 - out.opacity.clamp(0, 1))
        return rgb.clamp(-1, 1)
    if output == "depth":
        return depth_image(out.depth, out.opacity, opts.ray_start, opts.ray_end)
    if output == "normals":
        if out.normals is None:
            raise ValueError("normals were not rendered (RenderOptions.normals=False)")
        white = opts.white_background if background is None else background > 0
        return normals_image(out.normals, out.opacity, white)
    if output == "opacity":
        return (out.opacity.float().clamp(0, 1) * 2 - 1).expand(-1, 3, -1, -1)
    raise ValueError(f"unknown output {output!r} (expected {', '.join(OUTPUTS)})")


def view_class(G, class_index: Optional[int]) -> Optional[int]:
    """The class a seed is shown with: none for an unconditional model (a chosen class is ignored),
    class 0 for a conditional model when none is chosen. A class the model lacks is one TriganError line."""
    if G.c_dim == 0:
        return None
    cls = 0 if class_index is None else int(class_index)
    if not 0 <= cls < G.c_dim:
        raise TriganError(f"class {cls} is out of range: this model has classes 0..{G.c_dim - 1}")
    return cls


class LatentMapper:
    """ws of (class, seed) pairs with psi truncation: toward each class's mean w for a conditional
    model (unless class_truncation=False), else toward the global mean. A pose-conditioned mapping
    sees the model's mean pose, as in upstream's inference. Class means are computed once each."""

    def __init__(self, G, psi: float = 1.0, class_truncation: bool = True):
        self.G, self.psi = G, float(psi)
        self.class_truncation = bool(class_truncation) and G.c_dim > 0 and self.psi != 1
        self._class_means: Dict[int, torch.Tensor] = {}

    @torch.no_grad()
    def ws(self, pairs: Sequence[Tuple[Optional[int], int]]) -> torch.Tensor:
        G = self.G
        z = G.latents([s for _, s in pairs])
        c = G.labels([k for k, _ in pairs], len(pairs)) if G.c_dim else torch.zeros(len(pairs), 0, device=G.device)
        angles = None
        if G.cfg.mapping.camera_cond:
            mean_pose = torch.tensor([float(v) for v in G.cfg.camera.mean_pose], device=G.device)
            angles = mean_pose.expand(len(pairs), 3)
        target = None
        if self.class_truncation:
            for k, _ in pairs:
                if k not in self._class_means:
                    self._class_means[k] = G.class_mean_w(one_hot([k], G.c_dim, G.device))[0]
            target = torch.stack([self._class_means[k] for k, _ in pairs])
        return G.mapping(z, c, psi=self.psi, camera_angles=angles, truncation_target=target)


def seeded_noise(seed: int):
    """A synthesis noise_mode callable drawing the per-layer noise maps from `seed`: "random"
    noise that is still the same every time the same seed is rendered."""
    gen = torch.Generator(device="cpu").manual_seed(int(seed))

    def draw(batch: int, resolution: int, device, dtype) -> torch.Tensor:
        return torch.randn(batch, 1, resolution, resolution, generator=gen).to(device=device, dtype=dtype)
    return draw
