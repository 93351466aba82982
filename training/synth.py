"""The procedural synthetic dataset: simple objects of a few classes, one random view each.

Every sample is one object instance (random proportions and part colours) seen from one camera:
yaw uniform over the full circle, pitch uniform in a band around the horizon, on the orbit camera
of `core.cameras` (radius 1, fov 30 degrees by default). Images are rendered by analytic
ray-primitive intersection in numpy, many images at once:

* primitives are convex solids: spheres (optionally cut by a horizontal plane, for domes),
  axis-aligned boxes and capped cone frustums (cylinders and cones) along a world axis; the
  nearest hit over all primitives wins;
* shading is Lambertian from one fixed world-space light plus ambient, so colour does not depend
  on the view (like EpiGRAF's colour head); the background is white;
* 2x2 supersampling: each pixel averages the colours of 2x2 sub-rays, and its depth is the
  distance of the *nearest* sub-ray hit (background only when every sub-ray misses), so a pixel
  is pure white exactly where its depth is background;
* depth is the distance along the ray to the first hit, in world units, stored as a 16-bit PNG
  linear over [near, far] -> 0..65535; background (and anything beyond far) is 65535.

Objects are built in local coordinates standing on y = 0, then moved so that their bounding box is
centred on the origin and scaled so that the whole bounding box fits in a ball of radius
0.19..0.24: inside the demo model's scene box [-0.4, 0.4]^3, at ray distances 0.76..1.24 from a
camera at radius 1, and fully in frame for every yaw and pitch at fov 30.

Rays come from `Camera.rays` (with a patch that places the sub-rays), so the pixel grid and the
angle conventions are exactly the renderer's.
"""

from __future__ import annotations

import io
import json
import math
import sys
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from trigan.core.cameras import Camera, PatchParams
from trigan.core.limits import SYNTH_MAX_IMAGES, SYNTH_MAX_RESOLUTION, SYNTH_MAX_SEED
from trigan.training.dataset import DatasetError
from trigan.training.dataset_tools import OutputWriter

OBJECT_RADIUS_MAX = 0.24           # every object lies inside this ball around the origin
OBJECT_RADIUS_MIN = 0.19           # objects are scaled to a random bounding radius in [min, max]
LIGHT = np.array([0.45, 1.0, 0.3], dtype=np.float32) / np.linalg.norm([0.45, 1.0, 0.3])
AMBIENT = 0.42
MAX_COLOUR = 0.94                  # shaded colours stay below white, so white means background
DEFAULT_PITCH_RANGE = (math.pi / 2 - 0.5, math.pi / 2 + 0.15)
_EPS = 1e-6
# Bounds on the settings, checked before anything is planned or allocated (core/limits.py says why).
MAX_IMAGES = SYNTH_MAX_IMAGES
MAX_RESOLUTION = SYNTH_MAX_RESOLUTION
MAX_SUPERSAMPLE = 4
MAX_SEED = SYNTH_MAX_SEED


# ----------------------------------------------------------------------------------------------
# Primitives. Every field has a leading batch dimension B (one object instance per row).

@dataclass
class Sphere:
    """A ball, optionally keeping only the part with y >= ymin (a dome with a flat bottom)."""

    center: np.ndarray  # [B, 3]
    radius: np.ndarray  # [B]
    color: np.ndarray   # [B, 3] albedo in [0, 1]
    ymin: Optional[np.ndarray] = None  # [B] cut plane; None = the whole ball

    def bounds(self) -> Tuple[np.ndarray, np.ndarray]:
        r = self.radius[:, None]
        lo, hi = self.center - r, self.center + r
        if self.ymin is not None:
            lo[:, 1] = np.maximum(lo[:, 1], self.ymin)
        return lo, hi

    def moved(self, shift: np.ndarray, scale: np.ndarray) -> "Sphere":
        ymin = None if self.ymin is None else (self.ymin + shift[:, 1]) * scale
        return Sphere((self.center + shift) * scale[:, None], self.radius * scale, self.color, ymin)

    def intersect(self, o: np.ndarray, d: np.ndarray, rows: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        c, r = self.center[rows], self.radius[rows]
        oc = o - c
        b = np.einsum("mk,mk->m", d, oc)
        disc = b * b - (np.einsum("mk,mk->m", oc, oc) - r * r)
        t = -b - np.sqrt(np.maximum(disc, 0))
        p = o + t[:, None] * d
        ok = (disc > 0) & (t > _EPS)
        normal = (p - c) / np.maximum(r, _EPS)[:, None]
        if self.ymin is not None:
            ymin = self.ymin[rows]
            ok &= p[:, 1] >= ymin
            # the flat bottom: the disc where the plane y = ymin cuts the ball
            with np.errstate(divide="ignore", invalid="ignore"):
                td = (ymin - o[:, 1]) / d[:, 1]
            pd = o + td[:, None] * d
            rim2 = r * r - (ymin - c[:, 1]) ** 2
            okd = (td > _EPS) & ((pd[:, 0] - c[:, 0]) ** 2 + (pd[:, 2] - c[:, 2]) ** 2 <= rim2)
            t = np.where(ok, t, np.inf)
            use_disc = okd & (td < t)
            t = np.where(use_disc, td, t)
            normal[use_disc] = (0.0, -1.0, 0.0)
            ok = ok | use_disc
        return np.where(ok, t, np.inf), normal


@dataclass
class Box:
    """An axis-aligned box [lo, hi]."""

    lo: np.ndarray     # [B, 3]
    hi: np.ndarray     # [B, 3]
    color: np.ndarray  # [B, 3]

    def bounds(self) -> Tuple[np.ndarray, np.ndarray]:
        return self.lo.copy(), self.hi.copy()

    def moved(self, shift: np.ndarray, scale: np.ndarray) -> "Box":
        return Box((self.lo + shift) * scale[:, None], (self.hi + shift) * scale[:, None], self.color)

    def intersect(self, o: np.ndarray, d: np.ndarray, rows: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = 1.0 / d
            t0 = (self.lo[rows] - o) * inv
            t1 = (self.hi[rows] - o) * inv
        tmin = np.nan_to_num(np.minimum(t0, t1), nan=-np.inf)
        tmax = np.nan_to_num(np.maximum(t0, t1), nan=np.inf)
        axis = np.argmax(tmin, axis=1)
        t_in = np.take_along_axis(tmin, axis[:, None], axis=1)[:, 0]
        t_out = tmax.min(axis=1)
        ok = (t_in <= t_out) & (t_in > _EPS)
        normal = np.zeros_like(o)
        m = np.arange(len(o))
        normal[m, axis] = -np.sign(d[m, axis])
        return np.where(ok, t_in, np.inf), normal


@dataclass
class Frustum:
    """A capped cone frustum along world axis `axis` (0 x, 1 y, 2 z): from `base` up the axis by
    `height`, radius r0 at the base and r1 at the top (r0 == r1: a cylinder; r1 == 0: a cone)."""

    axis: int
    base: np.ndarray    # [B, 3]
    height: np.ndarray  # [B]
    r0: np.ndarray      # [B]
    r1: np.ndarray      # [B]
    color: np.ndarray   # [B, 3]

    def bounds(self) -> Tuple[np.ndarray, np.ndarray]:
        r = np.maximum(self.r0, self.r1)[:, None]
        top = self.base.copy()
        top[:, self.axis] += self.height
        lo, hi = np.minimum(self.base, top) - r, np.maximum(self.base, top) + r
        lo[:, self.axis], hi[:, self.axis] = np.minimum(self.base, top)[:, self.axis], np.maximum(self.base, top)[:, self.axis]
        return lo, hi

    def moved(self, shift: np.ndarray, scale: np.ndarray) -> "Frustum":
        return Frustum(self.axis, (self.base + shift) * scale[:, None], self.height * scale, self.r0 * scale,
                       self.r1 * scale, self.color)

    def intersect(self, o: np.ndarray, d: np.ndarray, rows: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        k = self.axis
        perp = [a for a in range(3) if a != k]
        q = o - self.base[rows]
        h, r0, r1 = self.height[rows], self.r0[rows], self.r1[rows]
        slope = (r1 - r0) / np.maximum(h, _EPS)
        qs, ds = q[:, k], d[:, k]
        qp, dp = q[:, perp], d[:, perp]
        # lateral surface: |q_perp + t d_perp|^2 = (r0 + slope * (q_s + t d_s))^2
        rad_o = r0 + slope * qs
        a = np.einsum("mk,mk->m", dp, dp) - slope * slope * ds * ds
        b = 2 * (np.einsum("mk,mk->m", qp, dp) - slope * ds * rad_o)
        c = np.einsum("mk,mk->m", qp, qp) - rad_o * rad_o
        disc = b * b - 4 * a * c
        sq = np.sqrt(np.maximum(disc, 0))
        good_a = np.abs(a) > 1e-9
        safe_a = np.where(good_a, a, 1.0)
        t_best = np.full(len(o), np.inf, dtype=o.dtype)
        normal = np.zeros_like(o)
        for sign in (-1.0, 1.0):
            t = (-b + sign * sq) / (2 * safe_a)
            s = qs + t * ds
            ok = good_a & (disc >= 0) & (t > _EPS) & (s >= 0) & (s <= h) & (r0 + slope * s >= 0) & (t < t_best)
            if ok.any():
                pp = qp[ok] + t[ok, None] * dp[ok]
                n = np.zeros((int(ok.sum()), 3), dtype=o.dtype)
                n[:, perp] = pp
                n[:, k] = -slope[ok] * (r0[ok] + slope[ok] * s[ok])
                normal[ok] = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), _EPS)
                t_best = np.where(ok, t, t_best)
        # the two caps
        with np.errstate(divide="ignore", invalid="ignore"):
            for level, rad, sgn in ((np.zeros_like(h), r0, -1.0), (h, r1, 1.0)):
                t = (level - qs) / ds
                pp = qp + t[:, None] * dp
                ok = (t > _EPS) & (np.einsum("mk,mk->m", pp, pp) <= rad * rad) & (rad > 0) & (t < t_best)
                t_best = np.where(ok, t, t_best)
                normal[ok] = 0.0
                normal[ok, k] = sgn
        return t_best, normal


Primitive = object  # Sphere | Box | Frustum


def take(prims: Sequence[Primitive], rows: np.ndarray) -> List[Primitive]:
    """The same parts for a subset of the instances."""
    out = []
    for p in prims:
        if isinstance(p, Sphere):
            out.append(Sphere(p.center[rows], p.radius[rows], p.color[rows], None if p.ymin is None else p.ymin[rows]))
        elif isinstance(p, Box):
            out.append(Box(p.lo[rows], p.hi[rows], p.color[rows]))
        else:
            out.append(Frustum(p.axis, p.base[rows], p.height[rows], p.r0[rows], p.r1[rows], p.color[rows]))
    return out


def scene_bounds(prims: Sequence[Primitive]) -> Tuple[np.ndarray, np.ndarray]:
    """Per-instance axis-aligned bounding box of all parts, each [B, 3]."""
    boxes = [p.bounds() for p in prims]
    return np.min([b[0] for b in boxes], axis=0), np.max([b[1] for b in boxes], axis=0)


def _bounding_ball(p: Primitive) -> Tuple[np.ndarray, np.ndarray]:
    lo, hi = p.bounds()
    return (lo + hi) / 2, np.linalg.norm(hi - lo, axis=1) / 2


# ----------------------------------------------------------------------------------------------
# Rendering

def _patch(n: int, resolution: int, supersample: int) -> PatchParams:
    """The patch that squeezes the s*R ray grid onto s x s sub-rays around each of R x R pixels."""
    step = 2.0 / (resolution - 1)                            # NDC distance between pixel centres
    spread = (supersample - 1) * step / (2 * supersample)   # a pixel's ray to its outermost sub-ray
    return PatchParams(torch.full((n,), 1.0 + spread), torch.full((n, 2), -spread / 2))


@lru_cache(maxsize=8)
def _camera_frame_dirs(resolution: int, supersample: int, fov: float) -> np.ndarray:
    """Sub-ray directions [P, 3] in the camera frame, from `Camera.rays` of one camera."""
    camera = Camera.from_angles(0.0, math.pi / 2, 1.0, fov)
    _, dirs = camera.rays(supersample * resolution, patch=_patch(1, resolution, supersample))
    rot = camera.cam2world()[0, :3, :3]
    return (dirs[0].double() @ rot.double()).float().numpy()


def subpixel_rays(camera: Camera, resolution: int, supersample: int = 2) -> Tuple[np.ndarray, np.ndarray]:
    """Origins [B, 3] and unit directions [B, (s*R)^2, 3] of s x s sub-rays per pixel.

    The s*R grid of `Camera.rays` is squeezed by a patch so that pixel (i, j) of the R x R image
    gets the s x s sub-rays evenly spread around its own ray (which it contains when s is odd).
    With one field of view the camera-frame directions are computed once and turned by each
    camera's rotation, which is what `Camera.rays` does, in a fraction of the time.
    """
    origins = camera.origins().numpy().astype(np.float32)
    if not bool((camera.fov == camera.fov[0]).all()):
        _, dirs = camera.rays(supersample * resolution, patch=_patch(len(camera), resolution, supersample))
        return origins, dirs.numpy().astype(np.float32)
    local = _camera_frame_dirs(resolution, supersample, float(camera.fov[0]))
    rot = camera.cam2world()[:, :3, :3].numpy().astype(np.float32)   # [B, 3, 3], columns right, up, back
    dirs = (local[None, :, 0, None] * rot[:, None, :, 0] + local[None, :, 1, None] * rot[:, None, :, 1]
            + local[None, :, 2, None] * rot[:, None, :, 2])
    return origins, dirs


def trace(prims: Sequence[Primitive], origins: np.ndarray, dirs: np.ndarray,
          light: np.ndarray = LIGHT, ambient: float = AMBIENT) -> Tuple[np.ndarray, np.ndarray]:
    """Shaded colour [B, P, 3] (white background) and hit distance [B, P] (inf: no hit)."""
    nb, npix = dirs.shape[:2]
    flat_d = dirs.reshape(-1, 3)
    dist = np.full(nb * npix, np.inf, dtype=np.float32)
    rgb = np.ones((nb * npix, 3), dtype=np.float32)
    for p in prims:
        center, radius = _bounding_ball(p)
        idx = _ball_hits(origins, dirs, center, radius, dist)
        if len(idx) == 0:
            continue
        rows = idx // npix
        t, normal = p.intersect(origins[rows], flat_d[idx], rows)
        better = t < dist[idx]
        idx, rows, t, normal = idx[better], rows[better], t[better], normal[better]
        dist[idx] = t
        shade = ambient + (1 - ambient) * np.clip(normal @ light, 0, None)
        rgb[idx] = np.minimum(p.color[rows] * shade[:, None], MAX_COLOUR)
    return rgb.reshape(nb, npix, 3), dist.reshape(nb, npix)


def _ball_hits(origins, dirs, center, radius, dist) -> np.ndarray:
    """Flat indices of the rays that enter each image's ball (center, radius) before `dist`."""
    oc = (origins - center).astype(np.float32)              # [B, 3]: one origin per image
    b = np.einsum("bpk,bk->bp", dirs, oc)
    disc = b * b - (np.einsum("bk,bk->b", oc, oc) - radius * radius)[:, None].astype(np.float32)
    np.maximum(disc, 0, out=disc)
    hit = disc > 0
    hit &= (-b - np.sqrt(disc)) < dist.reshape(b.shape)
    return np.flatnonzero(hit)


def render(prims: Sequence[Primitive], camera: Camera, resolution: int, supersample: int = 2,
           light: np.ndarray = LIGHT, ambient: float = AMBIENT) -> Tuple[np.ndarray, np.ndarray]:
    """Render instance b of `prims` from camera b: uint8 images [B, R, R, 3] and depth [B, R, R]
    (distance of the nearest sub-ray hit in world units; inf where every sub-ray misses)."""
    s = supersample
    origins, dirs = subpixel_rays(camera, resolution, s)
    rgb, dist = trace(prims, origins, dirs, light, ambient)
    nb = len(camera)
    rgb = rgb.reshape(nb, resolution, s, resolution, s, 3).mean(axis=(2, 4))
    dist = dist.reshape(nb, resolution, s, resolution, s).min(axis=(2, 4))
    return np.round(rgb * 255).astype(np.uint8), dist


def encode_depth(dist: np.ndarray, near: float, far: float) -> np.ndarray:
    """Distances -> uint16, linear over [near, far] -> [0, 65535]; inf and beyond far -> 65535."""
    v = (np.asarray(dist, dtype=np.float64) - near) / (far - near) * 65535
    return np.round(np.clip(np.nan_to_num(v, posinf=65535), 0, 65535)).astype(np.uint16)


def decode_depth(value: np.ndarray, near: float, far: float) -> np.ndarray:
    """Inverse of `encode_depth` (65535 reads back as far)."""
    return near + np.asarray(value, dtype=np.float64) / 65535 * (far - near)


# ----------------------------------------------------------------------------------------------
# Object classes. Each builder takes (rng, n) and returns n instances of its parts in local
# coordinates, standing on y = 0; proportions and part colours are random per instance.

def _hsv(h, s, v) -> np.ndarray:
    """HSV in [0, 1] (arrays [n]) -> RGB [n, 3]."""
    h = np.mod(h, 1.0) * 6
    i = np.floor(h).astype(int) % 6
    f = h - np.floor(h)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    table = np.stack([np.stack(c, axis=1) for c in
                      ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))], axis=0)
    return table[i, np.arange(len(h))].astype(np.float32)


class _Builder:
    def __init__(self, rng: np.random.Generator, n: int):
        self.rng, self.n = rng, n

    def u(self, lo, hi) -> np.ndarray:
        return self.rng.uniform(lo, hi, self.n)

    def colour(self, hue=(0.0, 1.0), sat=(0.45, 0.85), val=(0.55, 0.9)) -> np.ndarray:
        return _hsv(self.u(*hue), self.u(*sat), self.u(*val))

    def vec(self, x, y, z) -> np.ndarray:
        return np.stack(np.broadcast_arrays(x, y, z, np.zeros(self.n))[:3], axis=1).astype(np.float64)

    def zeros(self) -> np.ndarray:
        return np.zeros(self.n)


def _mushroom(rng, n) -> List[Primitive]:
    g = _Builder(rng, n)
    stem_h, stem_r = g.u(0.45, 0.9), g.u(0.09, 0.16)
    cap_r = g.u(0.32, 0.55)
    sink = g.u(0.0, 0.6)                     # the cap ball's centre sits this many radii below the cut
    cut = stem_h - 0.03
    cap_c = g.vec(0, cut - sink * cap_r, 0)
    cap = g.colour(sat=(0.55, 0.9), val=(0.45, 0.85))
    parts = [Frustum(1, g.vec(0, 0, 0), stem_h, stem_r, stem_r * g.u(0.6, 1.0), g.colour((0.08, 0.14), (0.1, 0.3), (0.75, 0.9))),
             Sphere(cap_c, cap_r, cap, cut)]
    spot = g.colour((0, 1), (0.0, 0.1), (0.85, 0.9))
    spot_r = cap_r * g.u(0.1, 0.16) * (g.u(0, 1) < 0.6)   # 40% of the mushrooms have no spots
    edge = np.arccos(sink)                    # polar angle of the cap's rim, seen from the ball's centre
    for _ in range(3):
        polar = (edge - 0.2) * g.u(0.1, 0.9)
        az = g.u(0, 2 * math.pi)
        direction = g.vec(np.sin(polar) * np.cos(az), np.cos(polar), np.sin(polar) * np.sin(az))
        parts.append(Sphere(cap_c + direction * cap_r[:, None], spot_r, spot))
    return parts


def _table(rng, n) -> List[Primitive]:
    g = _Builder(rng, n)
    w = g.u(0.8, 1.2)
    d = w * g.u(0.55, 1.0)
    top_t, leg_h, leg_t, inset = g.u(0.05, 0.1), g.u(0.45, 0.85), g.u(0.05, 0.1), g.u(0.0, 0.08)
    top, legs = g.colour((0.04, 0.13), (0.35, 0.75), (0.45, 0.85)), g.colour(val=(0.3, 0.8))
    parts = [Box(g.vec(-w / 2, leg_h, -d / 2), g.vec(w / 2, leg_h + top_t, d / 2), top)]
    for sx in (-1, 1):
        for sz in (-1, 1):
            cx, cz = sx * (w / 2 - inset - leg_t / 2), sz * (d / 2 - inset - leg_t / 2)
            parts.append(Box(g.vec(cx - leg_t / 2, 0, cz - leg_t / 2), g.vec(cx + leg_t / 2, leg_h, cz + leg_t / 2), legs))
    return parts


def _snowman(rng, n) -> List[Primitive]:
    g = _Builder(rng, n)
    r1 = g.u(0.3, 0.36)
    r2 = r1 * g.u(0.62, 0.78)
    r3 = r2 * g.u(0.62, 0.8)
    y1 = r1
    y2 = y1 + (r1 + r2) * g.u(0.72, 0.82)
    y3 = y2 + (r2 + r3) * g.u(0.72, 0.82)
    snow = g.colour(sat=(0.0, 0.12), val=(0.82, 0.9))
    dark = g.colour(sat=(0.2, 0.6), val=(0.08, 0.25))
    parts = [Sphere(g.vec(0, y, 0), r, snow) for y, r in ((y1, r1), (y2, r2), (y3, r3))]
    # the face looks toward +X: a carrot nose and two eyes
    parts.append(Frustum(0, g.vec(r3 * 0.85, y3, 0), r3 * g.u(0.5, 1.0), r3 * g.u(0.14, 0.22), g.zeros(),
                         g.colour((0.04, 0.1), (0.75, 0.95), (0.8, 0.9))))
    for side in (-1, 1):
        e, a = 0.3, 0.38
        parts.append(Sphere(g.vec(0.93 * r3 * math.cos(e) * math.cos(a), y3 + 0.93 * r3 * math.sin(e),
                                  side * 0.93 * r3 * math.cos(e) * math.sin(a)), r3 * 0.12, dark))
    for k in range(2):                      # buttons
        e = 0.25 - 0.45 * k
        parts.append(Sphere(g.vec(0.97 * r2 * math.cos(e), y2 + 0.97 * r2 * math.sin(e), 0), r2 * 0.09, dark))
    hat = g.colour(sat=(0.3, 0.8), val=(0.15, 0.45))
    brim_y = y3 + r3 * 0.72
    brim_t, crown_h = r3 * g.u(0.06, 0.1), r3 * g.u(0.5, 0.9)
    brim_r = r3 * g.u(0.85, 1.05)
    parts.append(Frustum(1, g.vec(0, brim_y, 0), brim_t, brim_r, brim_r, hat))
    crown_r = r3 * g.u(0.5, 0.66)
    parts.append(Frustum(1, g.vec(0, brim_y, 0), brim_t + crown_h, crown_r, crown_r * g.u(0.85, 1.1), hat))
    return parts


def _rocket(rng, n) -> List[Primitive]:
    g = _Builder(rng, n)
    rad, body_h, nose_h = g.u(0.1, 0.16), g.u(0.55, 0.85), g.u(0.2, 0.4)
    fin_l, fin_h, fin_t = g.u(0.08, 0.16), g.u(0.15, 0.3), g.u(0.025, 0.04)
    lift = fin_h * g.u(0.0, 0.3)           # the body starts a little above the fins' feet
    body, accent = g.colour(sat=(0.0, 0.35), val=(0.7, 0.9)), g.colour(sat=(0.6, 0.95), val=(0.55, 0.9))
    parts = [Frustum(1, g.vec(0, lift, 0), body_h, rad, rad, body),
             Frustum(1, g.vec(0, lift + body_h, 0), nose_h, rad, g.zeros(), accent)]
    for ax in (0, 2):
        for sgn in (-1, 1):
            lo, hi = [None] * 3, [None] * 3
            other = 2 - ax
            lo[ax], hi[ax] = (rad * 0.5, rad + fin_l) if sgn > 0 else (-rad - fin_l, -rad * 0.5)
            lo[1], hi[1] = g.zeros(), fin_h + lift
            lo[other], hi[other] = -fin_t / 2, fin_t / 2
            parts.append(Box(g.vec(*lo), g.vec(*hi), accent))
    # a round window on the +X side
    parts.append(Sphere(g.vec(rad * 0.8, lift + body_h * g.u(0.55, 0.75), 0), rad * g.u(0.3, 0.4),
                        g.colour((0.5, 0.62), (0.4, 0.8), (0.6, 0.9))))
    return parts


def _chair(rng, n) -> List[Primitive]:
    g = _Builder(rng, n)
    w = g.u(0.45, 0.6)
    d = w * g.u(0.9, 1.1)
    seat_t, seat_h, leg_t = g.u(0.05, 0.08), g.u(0.4, 0.55), g.u(0.04, 0.07)
    back_t, back_h = g.u(0.04, 0.07), g.u(0.4, 0.6)
    wood, legs = g.colour(sat=(0.35, 0.85), val=(0.45, 0.9)), g.colour(sat=(0.1, 0.6), val=(0.25, 0.7))
    parts = [Box(g.vec(-w / 2, seat_h, -d / 2), g.vec(w / 2, seat_h + seat_t, d / 2), wood),
             # the back rest stands on the -X edge, so the chair faces +X
             Box(g.vec(-w / 2, seat_h + seat_t, -d / 2), g.vec(-w / 2 + back_t, seat_h + seat_t + back_h, d / 2), wood)]
    for sx in (-1, 1):
        for sz in (-1, 1):
            cx, cz = sx * (w / 2 - leg_t / 2), sz * (d / 2 - leg_t / 2)
            parts.append(Box(g.vec(cx - leg_t / 2, 0, cz - leg_t / 2), g.vec(cx + leg_t / 2, seat_h, cz + leg_t / 2), legs))
    return parts


def _lamp(rng, n) -> List[Primitive]:
    g = _Builder(rng, n)
    base_h, base_r = g.u(0.03, 0.06), g.u(0.18, 0.26)
    pole_r, pole_h = g.u(0.02, 0.035), g.u(0.45, 0.7)
    shade_h, shade_r = g.u(0.2, 0.32), g.u(0.18, 0.28)
    metal, shade = g.colour(sat=(0.0, 0.3), val=(0.3, 0.75)), g.colour(sat=(0.3, 0.85), val=(0.6, 0.9))
    shade_y = base_h + pole_h - shade_h * g.u(0.5, 0.8)
    return [Frustum(1, g.vec(0, 0, 0), base_h, base_r, base_r * g.u(0.75, 1.0), metal),
            Frustum(1, g.vec(0, base_h, 0), pole_h, pole_r, pole_r, metal),
            Frustum(1, g.vec(0, shade_y, 0), shade_h, shade_r, shade_r * g.u(0.4, 0.75), shade)]


def _dumbbell(rng, n) -> List[Primitive]:
    g = _Builder(rng, n)
    length, bar_r = g.u(0.6, 0.9), g.u(0.03, 0.05)
    plate_r, plate_t = g.u(0.15, 0.25), g.u(0.06, 0.12)
    inner_r = plate_r * g.u(0.7, 0.85)
    metal, plates = g.colour(sat=(0.0, 0.15), val=(0.55, 0.8)), g.colour(sat=(0.3, 0.9), val=(0.2, 0.7))
    y = plate_r                               # lying on the ground along X
    parts = [Frustum(0, g.vec(-length / 2, y, 0), length, bar_r, bar_r, metal)]
    for sgn in (-1, 1):
        outer = sgn * (length / 2 - 0.02)
        parts.append(Frustum(0, g.vec(np.where(sgn > 0, outer - plate_t, outer), y, 0), plate_t, plate_r, plate_r, plates))
        inner = outer - sgn * plate_t
        parts.append(Frustum(0, g.vec(np.where(sgn > 0, inner - plate_t, inner), y, 0), plate_t, inner_r, inner_r, plates))
    return parts


CLASSES: Dict[str, Callable[[np.random.Generator, int], List[Primitive]]] = {
    "mushroom": _mushroom, "table": _table, "snowman": _snowman, "rocket": _rocket,
    "chair": _chair, "lamp": _lamp, "dumbbell": _dumbbell,
}
CLASS_NAMES = list(CLASSES)


def make_objects(class_id: int, n: int, rng: np.random.Generator) -> List[Primitive]:
    """n random instances of class `class_id`, centred on the origin and scaled to fit in a ball of
    radius OBJECT_RADIUS_MIN..OBJECT_RADIUS_MAX."""
    prims = CLASSES[CLASS_NAMES[class_id]](rng, n)
    target = rng.uniform(OBJECT_RADIUS_MIN, OBJECT_RADIUS_MAX, n)
    lo, hi = scene_bounds(prims)
    scale = target / (np.linalg.norm(hi - lo, axis=1) / 2)
    return [p.moved(-(lo + hi) / 2, scale) for p in prims]


# ----------------------------------------------------------------------------------------------
# The dataset

@dataclass
class SynthSettings:
    num: int
    resolution: int
    classes: int = 4
    seed: int = 0
    fov: float = 30.0
    radius: float = 1.0
    pitch_range: Tuple[float, float] = DEFAULT_PITCH_RANGE
    near: float = 0.6
    far: float = 1.4
    supersample: int = 2

    def check(self) -> None:
        """One-line DatasetError for a setting that cannot give a usable dataset."""
        for flag, value in (("--fov", self.fov), ("--radius", self.radius), ("--near", self.near),
                            ("--far", self.far), ("--pitch-range", self.pitch_range[0]),
                            ("--pitch-range", self.pitch_range[1])):
            if not (isinstance(value, (int, float)) and math.isfinite(value)):
                raise DatasetError(f"{flag} {value}: expected a finite number")
        if not 1 <= self.num <= MAX_IMAGES:
            raise DatasetError(f"--num {self.num}: expected 1 to {MAX_IMAGES} images")
        if not 8 <= self.resolution <= MAX_RESOLUTION:
            raise DatasetError(f"--resolution {self.resolution}: expected 8 to {MAX_RESOLUTION} pixels")
        if not 1 <= self.classes <= len(CLASS_NAMES):
            raise DatasetError(f"--classes {self.classes}: choose 1 to {len(CLASS_NAMES)} ({', '.join(CLASS_NAMES)})")
        if not 0 < self.fov < 180:
            raise DatasetError(f"--fov {self.fov}: expected degrees between 0 and 180")
        if self.radius <= OBJECT_RADIUS_MAX * 1.05:
            raise DatasetError(f"--radius {self.radius}: the camera must stay outside the objects (radius > {OBJECT_RADIUS_MAX * 1.05:.2f})")
        if math.degrees(math.asin(OBJECT_RADIUS_MAX / self.radius)) >= self.fov / 2:
            need = 2 * math.degrees(math.asin(OBJECT_RADIUS_MAX / self.radius))
            raise DatasetError(f"--fov {self.fov:g}: objects would not fit in view at radius {self.radius:g} "
                               f"(need more than {need:.1f} degrees)")
        lo, hi = self.pitch_range
        if not 0 <= lo <= hi <= math.pi:
            raise DatasetError(f"--pitch-range {lo:g} {hi:g}: expected 0 <= MIN <= MAX <= pi (radians from +Y)")
        if not 0 <= self.near < self.far:
            raise DatasetError(f"--near {self.near:g} --far {self.far:g}: expected 0 <= near < far")
        if self.near > self.radius - OBJECT_RADIUS_MAX or self.far < self.radius + OBJECT_RADIUS_MAX:
            raise DatasetError(f"--near {self.near:g} --far {self.far:g}: must contain the object distances "
                               f"[{self.radius - OBJECT_RADIUS_MAX:g}, {self.radius + OBJECT_RADIUS_MAX:g}]")
        if not 0 <= self.seed <= MAX_SEED:
            raise DatasetError(f"--seed {self.seed}: expected an integer from 0 to {MAX_SEED}")
        if not 1 <= self.supersample <= MAX_SUPERSAMPLE:
            raise DatasetError(f"supersample {self.supersample}: expected 1 to {MAX_SUPERSAMPLE}")


def plan(settings: SynthSettings) -> Tuple[np.ndarray, np.ndarray, List[List[Primitive]], List[np.ndarray]]:
    """Labels [N], angles [N, 3], the objects of each class and, per class, each sample's row in them.

    A shuffled balanced class assignment (counts differ by at most one), yaw uniform in [-pi, pi),
    pitch uniform in the pitch range; everything from one seeded generator.
    """
    n, k = settings.num, settings.classes
    rng = np.random.default_rng(settings.seed)
    labels = rng.permutation(np.arange(n) % k)
    yaw = rng.uniform(-math.pi, math.pi, n)
    pitch = rng.uniform(*settings.pitch_range, n)
    angles = np.stack([yaw, pitch, np.zeros(n)], axis=1)
    objects, rows = [], np.zeros(n, dtype=np.int64)
    for c in range(k):
        members = np.flatnonzero(labels == c)
        objects.append(make_objects(c, len(members), np.random.default_rng([settings.seed, c])))
        rows[members] = np.arange(len(members))
    return labels, angles, objects, rows


def render_samples(settings: SynthSettings, labels, angles, objects, rows, indices: np.ndarray
                   ) -> Tuple[np.ndarray, np.ndarray]:
    """Images [n, R, R, 3] uint8 and depth [n, R, R] uint16 of the samples `indices`."""
    r = settings.resolution
    images = np.zeros((len(indices), r, r, 3), dtype=np.uint8)
    depth = np.zeros((len(indices), r, r), dtype=np.uint16)
    for c in np.unique(labels[indices]):
        pos = np.flatnonzero(labels[indices] == c)
        sel = indices[pos]
        cam = Camera.from_angles(angles[sel, 0], angles[sel, 1], settings.radius, settings.fov, batch=len(sel))
        img, dist = render(take(objects[c], rows[sel]), cam, r, settings.supersample)
        images[pos] = img
        depth[pos] = encode_depth(dist, settings.near, settings.far)
    return images, depth


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


RAYS_PER_CHUNK = 2_000_000       # sub-rays rendered at once (bounds the memory at any resolution)


def write_synth_dataset(out, settings: SynthSettings, force: bool = False, progress: bool = True) -> dict:
    """Render the dataset into the zip `out` (atomically); returns a summary dict."""
    settings.check()
    chunk = max(1, RAYS_PER_CHUNK // (settings.resolution * settings.supersample) ** 2)
    out = Path(out)
    if out.suffix.lower() != ".zip":
        raise DatasetError(f"{out}: the synthetic dataset is written as a .zip (name it OUT.zip)")
    if out.is_dir():
        raise DatasetError(f"{out}: is a folder, not a zip file")
    start = time.perf_counter()
    labels, angles, objects, rows = plan(settings)
    names = [f"img{i:06d}.png" for i in range(settings.num)]
    meta = {
        "camera_angles": {name: [float(a) for a in angles[i]] for i, name in enumerate(names)},
        "labels": [[name, int(labels[i])] for i, name in enumerate(names)],
        "class_names": CLASS_NAMES[:settings.classes],
        "camera": {"fov": settings.fov, "radius": settings.radius},
        "depth_range": [settings.near, settings.far],
        "pitch_range": [float(settings.pitch_range[0]), float(settings.pitch_range[1])],
        "generator": "trigan dataset synth",
        "seed": settings.seed,
    }
    with OutputWriter(out, force) as writer, tqdm(total=settings.num, unit="img", desc="synth", file=sys.stderr,
                                                  disable=not progress, leave=False) as bar:
        for first in range(0, settings.num, chunk):
            idx = np.arange(first, min(first + chunk, settings.num))
            images, depth = render_samples(settings, labels, angles, objects, rows, idx)
            for j, i in enumerate(idx):
                writer.write(names[i], _png(images[j]))
                writer.write(names[i][:-4] + "_depth.png", _png(depth[j]))
            bar.update(len(idx))
        writer.write("dataset.json", json.dumps(meta, indent=1).encode())
    seconds = time.perf_counter() - start
    return {"path": str(out), "images": settings.num, "resolution": settings.resolution,
            "classes": CLASS_NAMES[:settings.classes], "seconds": seconds, "bytes": out.stat().st_size}


__all__ = ["Sphere", "Box", "Frustum", "CLASS_NAMES", "make_objects", "render", "trace", "subpixel_rays",
           "encode_depth", "decode_depth", "SynthSettings", "plan", "render_samples", "write_synth_dataset"]
