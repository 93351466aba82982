"""Volume renderer against analytic answers."""

import math

import numpy as np
import pytest
import torch

from trigan.core.cameras import Camera
from trigan.core.compositing import depth_to_far_end
from trigan.core.ray_random import hash_uniform
from trigan.core.renderer import RenderOptions, render, sample_pdf, stratified_depths


class AnalyticField:
    """A field given by a function of world points: raw density and a constant colour."""

    def __init__(self, density_fn, color=(0.2, -0.4, 0.6), batch=1, background=None):
        self.density_fn, self.color, self.batch_size, self.background = density_fn, color, batch, background
        self.calls = 0

    def __call__(self, pts):
        self.calls += 1
        sigma = self.density_fn(pts)
        rgb = torch.tensor(self.color, dtype=pts.dtype).expand(*pts.shape[:-1], 3)
        return rgb, sigma


# Raw densities go through softplus; a very negative raw value means empty space.
EMPTY = -60.0


def slab(sigma_activated, x0, x1):
    raw = math.log(math.expm1(sigma_activated))  # softplus^-1
    return lambda p: torch.where((p[..., 0] >= x0) & (p[..., 0] <= x1), torch.full_like(p[..., 0], raw),
                                 torch.full_like(p[..., 0], EMPTY))


def sphere(radius, sharpness=2000.0, center=(0.0, 0.0, 0.0)):
    """A smooth ball: raw density grows linearly inside (differentiable, for normals)."""
    c = torch.tensor(center)
    return lambda p: sharpness * (radius - (p - c.to(p)).norm(dim=-1))


def solid_ball(radius):
    """A hard ball: opaque within a hair of its surface (raw density 1e4 inside, empty outside)."""
    return lambda p: torch.where(p.norm(dim=-1) <= radius, torch.full_like(p[..., 0], 1e4),
                                 torch.full_like(p[..., 0], EMPTY))


def exact_options(**kw):
    base = dict(num_steps=4096, num_fine_steps=0, ray_start=0.5, ray_end=1.5, stratified=False)
    base.update(kw)
    return RenderOptions(**base)


def test_constant_density_slab_gives_beer_lambert_opacity():
    sigma, x0, x1 = 4.0, -0.2, 0.15
    field = AnalyticField(slab(sigma, x0, x1))
    cam = Camera.from_angles(0.0, math.pi / 2, fov=40.0)
    out = render(field, cam, 9, exact_options())
    _, dirs = cam.rays(9)
    path_length = (x1 - x0) / dirs[0, :, 0].abs()                    # the slab is perpendicular to X
    expected = 1 - torch.exp(-sigma * path_length)
    assert torch.allclose(out.opacity.reshape(-1), expected, atol=3e-3)
    # Colour is the field colour times the opacity (black background).
    assert torch.allclose(out.rgb[0, :, 4, 4], torch.tensor(field.color) * expected[40], atol=3e-3)


def test_solid_sphere_renders_a_disk_of_the_right_radius_at_the_right_depth():
    r, res, fov = 0.3, 65, 50.0
    field = AnalyticField(solid_ball(r))
    cam = Camera.from_angles(0.7, 1.2, fov=fov)
    out = render(field, cam, res, RenderOptions(num_steps=128, num_fine_steps=128, ray_start=0.5, ray_end=1.5))
    u = torch.linspace(-1, 1, res)
    uu = torch.sqrt(u[None, :] ** 2 + u[:, None] ** 2)
    tan_half = math.tan(math.radians(fov / 2))
    # A pixel at NDC distance q sees the sphere iff its ray angle atan(q tan(fov/2)) < asin(r / D).
    disk_q = math.tan(math.asin(r / 1.0)) / tan_half
    inside, outside = uu < disk_q - 0.05, uu > disk_q + 0.05
    opacity = out.opacity[0, 0]
    assert (opacity[inside] > 0.99).all() and (opacity[outside] < 0.01).all()
    # Depth along each ray: D cos(phi) - sqrt(r^2 - D^2 sin^2(phi)).
    phi = torch.atan(uu * tan_half)
    expected_depth = torch.cos(phi) - torch.sqrt((r ** 2 - torch.sin(phi) ** 2).clamp(min=0))
    err = (out.depth[0, 0] - expected_depth)[inside].abs()
    # Fine samples fill the coarse bin (midpoint to midpoint) holding the surface, so a hard surface
    # is found to within one coarse spacing at worst, and much closer on average.
    spacing = 1.0 / 127
    assert err.max() < spacing and err.median() < spacing / 4


def test_sphere_normals_point_outward_from_the_centre():
    r = 0.3
    field = AnalyticField(sphere(r, sharpness=200.0))
    cam = Camera.from_angles(0.0, math.pi / 2, fov=50.0)
    out = render(field, cam, 33, RenderOptions(num_steps=96, num_fine_steps=96, ray_start=0.5, ray_end=1.5,
                                              normals=True))
    origins, dirs = cam.rays(33)
    hit = origins[0] + dirs[0] * (out.depth[0, 0].reshape(-1, 1) / out.opacity[0, 0].reshape(-1, 1).clamp(min=1e-6))
    expected = torch.nn.functional.normalize(hit, dim=-1)
    normals = out.normals[0].permute(1, 2, 0).reshape(-1, 3)
    mask = out.opacity[0, 0].reshape(-1) > 0.999
    assert mask.sum() > 100
    cos = (normals[mask] * expected[mask]).sum(-1)
    assert cos.min() > 0.99


@pytest.mark.parametrize("white", [True, False])
def test_empty_field_shows_the_background_colour(white):
    field = AnalyticField(lambda p: torch.full_like(p[..., 0], EMPTY))
    cam = Camera.from_angles(0.3, 1.4, fov=30.0)
    out = render(field, cam, 8, RenderOptions(white_background=white))
    assert torch.allclose(out.rgb, torch.full_like(out.rgb, 1.0 if white else 0.0), atol=1e-6)
    assert out.opacity.max() < 1e-6


def test_white_background_blends_with_partial_opacity():
    sigma, x0, x1 = 2.0, -0.1, 0.1
    field = AnalyticField(slab(sigma, x0, x1), color=(-1.0, -1.0, -1.0))
    out = render(field, Camera.from_angles(0.0, math.pi / 2, fov=1.0), 1, exact_options(white_background=True))
    a = 1 - math.exp(-sigma * 0.2)
    assert math.isclose(out.rgb[0, 0, 0, 0].item(), -a + (1 - a), abs_tol=3e-3)


def test_an_open_far_end_lets_the_white_background_through_a_faint_haze():
    # A uniform haze of density s over the ray [n, f] and colour black. EpiGRAF's opaque far end makes
    # its last sample the backdrop: opacity 1 and the haze's colour everywhere. With the far end open
    # the opacity is Beer-Lambert's 1 - exp(-s (f - n)) and white shows through the rest; the depth
    # with the misses counted at f is n + (1 - exp(-s (f - n))) / s.
    s, n, f = 0.3, 0.5, 1.5
    field = AnalyticField(lambda p: torch.full_like(p[..., 0], math.log(math.expm1(s))), color=(-1.0, -1.0, -1.0))
    cam = Camera.from_angles(0.0, math.pi / 2, fov=1.0)
    opaque = render(field, cam, 1, exact_options(white_background=True))
    assert opaque.opacity.item() > 0.999 and math.isclose(opaque.rgb[0, 0, 0, 0].item(), -1.0, abs_tol=1e-3)
    out = render(field, cam, 1, exact_options(white_background=True, opaque_far_end=False))
    a = 1 - math.exp(-s * (f - n))
    assert math.isclose(out.opacity.item(), a, abs_tol=1e-3)
    assert math.isclose(out.rgb[0, 0, 0, 0].item(), -a + (1 - a), abs_tol=2e-3)
    depth = depth_to_far_end(out.depth, out.opacity, f).item()
    assert math.isclose(depth, n + a / s, abs_tol=2e-3)
    # empty space: nothing is hit, every ray ends at the far bound
    empty = render(AnalyticField(lambda p: torch.full_like(p[..., 0], EMPTY)), cam, 4,
                   exact_options(white_background=True, opaque_far_end=False))
    assert torch.allclose(depth_to_far_end(empty.depth, empty.opacity, f), torch.full_like(empty.depth, f))


def test_sample_pdf_is_the_exact_inverse_cdf():
    bins = torch.tensor([[0.0, 1.0, 2.0, 4.0, 5.0]])
    weights = torch.tensor([[1.0, 3.0, 0.0, 4.0]])
    u = torch.linspace(0, 0.999, 101)[None]
    samples = sample_pdf(bins, weights, u, eps=0.0)
    cdf = np.concatenate([[0], np.cumsum(weights[0].numpy()) / weights.sum().item()])
    expected = np.interp(u[0].numpy(), cdf, bins[0].numpy())
    assert np.allclose(samples[0].numpy(), expected, atol=1e-5)


def test_importance_samples_concentrate_where_the_coarse_weights_are():
    bins = torch.linspace(0, 1, 33).expand(2000, 33)
    weights = torch.full((2000, 32), 0.01)
    weights[:, 20] = 10.0
    samples = sample_pdf(bins, weights, torch.rand(2000, 16))
    in_peak = ((samples >= bins[0, 20]) & (samples < bins[0, 21])).float().mean().item()
    expected = (10.0 + 1e-5) / (10.0 + 31 * 0.01 + 32 * 1e-5)
    assert abs(in_peak - expected) < 0.01


def test_fine_samples_sharpen_a_thin_surface():
    """With few coarse samples, importance sampling finds the surface depth far better."""
    field = AnalyticField(solid_ball(0.3))
    cam = Camera.from_angles(0.0, math.pi / 2, fov=1.0)
    coarse = render(field, cam, 1, RenderOptions(num_steps=16, num_fine_steps=0, ray_start=0.5, ray_end=1.5))
    fine = render(field, cam, 1, RenderOptions(num_steps=16, num_fine_steps=64, ray_start=0.5, ray_end=1.5))
    assert abs(fine.depth.item() - 0.7) < 0.25 * abs(coarse.depth.item() - 0.7) + 1e-3


def test_stratified_depths_stay_in_their_own_interval():
    u = torch.rand(50, 10)
    z = stratified_depths(50, 10, 1.0, 2.0, u)
    step = 1.0 / 9
    centres = torch.linspace(1.0, 2.0, 10)
    assert ((z - centres).abs() <= step / 2 + 1e-6).all()
    assert (z[:, 1:] >= z[:, :-1]).all() and z.min() >= 1.0 and z.max() <= 2.0
    # u = 0 and u = 1 reach the interval ends: the midpoints to the neighbours, clipped to the bounds.
    lo, hi = stratified_depths(1, 10, 1.0, 2.0, torch.zeros(1, 10)), stratified_depths(1, 10, 1.0, 2.0, torch.ones(1, 10))
    assert torch.allclose(lo[0, 1:], centres[1:] - step / 2) and lo[0, 0] == 1.0
    assert torch.allclose(hi[0, :-1], centres[:-1] + step / 2) and hi[0, -1] == 2.0


def test_deterministic_mode_same_image_regardless_of_chunking():
    field = AnalyticField(sphere(0.25, sharpness=100.0))
    cam = Camera.from_angles(0.2, 1.3, fov=40.0)
    a = render(field, cam, 24, RenderOptions(ray_start=0.5, ray_end=1.5, num_steps=16))
    b = render(field, cam, 24, RenderOptions(ray_start=0.5, ray_end=1.5, num_steps=16, max_points_per_chunk=700))
    c = render(field, cam, 24, RenderOptions(ray_start=0.5, ray_end=1.5, num_steps=16, seed=5))
    again = render(field, cam, 24, RenderOptions(ray_start=0.5, ray_end=1.5, num_steps=16))
    assert torch.equal(a.rgb, again.rgb) and torch.equal(a.depth, again.depth)
    # Another chunking draws the same jitter; only float summation order may differ.
    assert torch.allclose(a.rgb, b.rgb, atol=1e-6) and torch.allclose(a.depth, b.depth, atol=1e-6)
    assert (a.depth - c.depth).abs().max() > 1e-3   # another seed is another jitter pattern


def test_stochastic_mode_follows_the_torch_generator():
    field = AnalyticField(sphere(0.25, sharpness=100.0))
    cam = Camera.from_angles(0.2, 1.3, fov=40.0)
    opts = lambda s: RenderOptions(ray_start=0.5, ray_end=1.5, num_steps=16, deterministic=False,
                                   generator=torch.Generator().manual_seed(s))
    assert torch.equal(render(field, cam, 8, opts(1)).depth, render(field, cam, 8, opts(1)).depth)
    assert not torch.equal(render(field, cam, 8, opts(1)).depth, render(field, cam, 8, opts(2)).depth)


def test_chunking_bounds_the_points_per_field_call():
    seen = []
    inner = sphere(0.3)
    field = AnalyticField(lambda p: (seen.append(p.shape[1]), inner(p))[1])
    render(field, Camera.from_angles(0.0, 1.5), 32, RenderOptions(num_steps=8, max_points_per_chunk=1024))
    assert max(seen) <= 1024 and sum(seen) == 32 * 32 * 16


def test_hash_uniform_is_uniform_and_independent_of_layout():
    ids = torch.arange(20000)
    u = hash_uniform(ids, 8, stream=0, seed=3)
    assert u.min() >= 0 and u.max() < 1
    assert abs(u.mean().item() - 0.5) < 0.01 and abs(u.var().item() - 1 / 12) < 0.002
    assert torch.equal(hash_uniform(ids[100:200], 8, 0, 3), u[100:200])
    assert not torch.equal(hash_uniform(ids[:100], 8, 1, 3), u[:100])


def test_batched_fields_render_each_latent_with_its_camera():
    fields = AnalyticField(lambda p: torch.stack([solid_ball(0.2)(p[0]), solid_ball(0.35)(p[1])]), batch=2)
    cams = Camera.from_angles([0.0, 1.0], [1.5, 1.2], fov=30.0)
    out = render(fields, cams, 17, RenderOptions(num_steps=64, ray_start=0.5, ray_end=1.5))
    centre = out.depth[:, 0, 8, 8]
    assert torch.allclose(centre, torch.tensor([0.8, 0.65]), atol=1.0 / 63)   # one coarse spacing
    assert centre[0] > centre[1] + 0.1


# ---------------------------------------------------------------------------------------------------
# 3DGP's marcher settings

class _ColourByDepthField(AnalyticField):
    """A slab whose colour is the point's x (so where the last sample lies shows in the colour)."""

    def __call__(self, pts):
        self.calls += 1
        return pts[..., :1].expand(*pts.shape[:-1], 3).clone(), self.density_fn(pts)


def test_last_back_gives_what_a_ray_has_left_to_its_last_sample():
    """With last_back every ray is opaque; what passes the slab lands on the last sample, whose colour
    (its x, the ray running along -x) and depth (its distance) make up the rest."""
    sigma, x0, x1 = 2.0, -0.1, 0.1
    cam = Camera.from_angles(0.0, math.pi / 2, fov=1.0)      # at x = 1, looking down -x
    plain = render(_ColourByDepthField(slab(sigma, x0, x1)), cam, 1, exact_options(opaque_far_end=False))
    back = render(_ColourByDepthField(slab(sigma, x0, x1)), cam, 1,
                  exact_options(opaque_far_end=False, last_back=True))
    left = 1 - float(plain.opacity)
    assert 0.3 < left < 0.8                                   # the slab lets part of the ray through
    assert float(back.opacity) == pytest.approx(1.0, abs=1e-6)
    last_t = 1.5                                              # ray_end: the last of 4096 unjittered samples
    assert float(back.depth) == pytest.approx(float(plain.depth) + left * last_t, abs=1e-4)
    assert float(back.rgb[0, 0]) == pytest.approx(float(plain.rgb[0, 0]) + left * (1 - last_t), abs=1e-4)


def test_unit_importance_spacing_places_fine_samples_as_if_the_ray_were_one_long():
    """EG3D/3DGP weigh coarse samples with spacing on [0, 1]: a step ds there is L ds along a ray of
    length L, so density s guides the fine samples as density s / L does with world spacing. Two
    slabs show it: the front one hides the back one less, so fewer fine samples go to the front."""
    start, end = 0.5, 2.5                                      # L = 2
    cam = Camera.from_angles(0.0, math.pi / 2, fov=1.0)        # at x = 1, looking down -x

    def two_slabs(sigma):
        raw = math.log(math.expm1(sigma))
        inside = lambda x: ((x >= 0.2) & (x <= 0.45)) | ((x >= -0.6) & (x <= -0.35))
        return lambda p: torch.where(inside(p[..., 0]), torch.full_like(p[..., 0], raw),
                                     torch.full_like(p[..., 0], EMPTY))

    def fine_samples(sigma, spacing):
        queried = []

        class Spy(AnalyticField):
            def __call__(self, pts):
                queried.append(pts[0, :, 0].clone())
                return super().__call__(pts)
        opts = RenderOptions(num_steps=16, num_fine_steps=64, ray_start=start, ray_end=end, stratified=False,
                             opaque_far_end=False, importance_spacing=spacing)
        render(Spy(two_slabs(sigma)), cam, 1, opts)
        return queried[1]                                      # the fine pass's x values

    unit = fine_samples(4.0, "unit")
    assert torch.allclose(unit, fine_samples(4.0 / (end - start), "world"), atol=1e-5)
    front_share = lambda x: float((x > 0).float().mean())
    assert front_share(fine_samples(4.0, "world")) > front_share(unit) + 0.1
