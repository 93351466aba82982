"""Analytic fields with the tri-plane field's interface, and cameras that test renderers hard."""

from __future__ import annotations

import math
from dataclasses import replace

import torch

from trigan.core.cameras import Camera
from trigan.core.renderer import RenderOptions, render

RES = 32


def psnr(a: torch.Tensor, b: torch.Tensor, peak: float = 2.0) -> float:
    mse = float(((a - b) ** 2).mean())
    return 99.0 if mse == 0 else 10 * math.log10(peak * peak / mse)


class RadialField:
    """An analytic field with the tri-plane field's interface: raw density a function of |p - centre|.

    profile(r) -> raw density; colour varies smoothly with position. Counts the points it is asked for.
    """

    def __init__(self, profile, cube_scale: float = 0.4, centre=(0.0, 0.0, 0.0)):
        self.profile, self.cube_scale = profile, cube_scale
        self.centre = torch.tensor(centre)
        self.background = None
        self.calls = 0
        self.points = 0

    batch_size = 1

    @property
    def bounds(self):
        s = self.cube_scale
        return (-s, -s, -s), (s, s, s)

    def __call__(self, pts):
        self.calls += 1
        self.points += pts.shape[0] * pts.shape[1]
        r = (pts - self.centre.to(pts)).norm(dim=-1)
        rgb = torch.stack([torch.sin(7 * pts[..., 0]), torch.cos(5 * pts[..., 1]), pts[..., 2] * 2], dim=-1)
        return rgb, self.profile(r)


def sphere(radius=0.22, edge=0.004, rise=45.0):
    """Raw density -20 outside, -20 + rise inside, with a sigmoid edge `edge` wide."""
    return lambda r: -20 + rise * torch.sigmoid((radius - r) / edge)


def inverse_softplus(y: torch.Tensor) -> torch.Tensor:
    """The raw density whose softplus is y > 0, without overflow (y + log(1 - e^-y))."""
    return y + torch.log(-torch.expm1(-y))


def hazy_sphere(radius=0.2, edge=0.002, rise=300.0, haze=0.6):
    """A sharp-edged dense ball in a thin haze that fills the whole box (activated density `haze`
    outside): every grid cell is occupied, as in a GAN early in training."""
    return lambda r: inverse_softplus(haze + rise * torch.sigmoid((radius - r) / edge))


def shell(radius=0.25, width=0.0015, peak=500.0):
    # activated density ~ peak * exp(-((r - radius) / width)^2): a shell much thinner than a grid cell
    return lambda r: inverse_softplus(peak * torch.exp(-((r - radius) / width) ** 2) + 1e-9)


OPTS = RenderOptions(num_steps=48, ray_start=0.6, ray_end=1.4, white_background=True)


def reference(field, cam, opts, res=RES):
    return render(field, cam, res, replace(opts, num_steps=512, num_fine_steps=0))


CAMERAS = {
    "front": (Camera.from_angles(0.3, 1.2, radius=1.0, fov=30.0), OPTS),
    # inside the scene box (outside the object), wide angle, rays starting at the camera
    "inside": (Camera.from_angles(2.0, 1.6, radius=0.36, fov=90.0), replace(OPTS, ray_start=0.01, ray_end=0.8)),
    # far away: the object covers a small part of the image, most rays miss it
    "far": (Camera.from_angles(-1.0, 0.9, radius=3.0, fov=15.0), replace(OPTS, ray_start=2.4, ray_end=3.6)),
}
