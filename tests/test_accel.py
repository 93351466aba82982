"""The accelerated exact path (core/accel.py) against the plain path and a many-sample reference."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from analytic_fields import CAMERAS, OPTS, RES, RadialField, hazy_sphere, psnr, reference, shell, sphere
from conftest import tiny_config
from trigan.core import accel as accel_mod
from trigan.core.accel import AccelOptions, OccupancyGrid
from trigan.core.cameras import Camera
from trigan.core.compositing import activate_density
from trigan.core.generator import Generator
from trigan.core.renderer import render
from trigan.core.rendering import field_renderer


@pytest.mark.parametrize("view", sorted(CAMERAS))
def test_sphere_matches_reference_and_plain(view):
    field = RadialField(sphere())
    cam, opts = CAMERAS[view]
    opts = replace(opts, normals=True)
    ref = reference(field, cam, opts)
    plain = render(field, cam, RES, opts)
    fast = field_renderer("accelerated", field, opts).render(cam, RES)
    assert psnr(fast.rgb, ref.rgb) >= 40
    assert psnr(fast.rgb, plain.rgb) >= 35  # the plain path has its own sampling error
    assert (fast.opacity - ref.opacity).abs().max() < 1e-3
    length = opts.ray_end - opts.ray_start
    assert psnr(fast.depth, ref.depth, peak=length) >= 40
    hit = (ref.depth < opts.ray_end - 0.05).expand_as(ref.normals)
    if hit.any():
        assert (fast.normals - ref.normals)[hit].abs().mean() < 0.03
    if view == "far":
        assert (ref.depth > opts.ray_end - 0.05).float().mean() > 0.5  # most rays miss


def test_thin_shell_is_never_dropped():
    field = RadialField(shell())
    accel = AccelOptions()
    grid = OccupancyGrid(field, OPTS, accel)
    cell = float(grid.cell.max())
    assert 0.0015 * 4 < cell  # the shell is much thinner than a cell
    # every point where the density is above the threshold lies in an occupied cell
    dirs = torch.nn.functional.normalize(torch.randn(20000, 3), dim=-1)
    offsets = (torch.rand(20000, 1) - 0.5) * 0.006
    pts = dirs * (0.25 + offsets)
    dense = activate_density(field(pts[None])[1][0], OPTS) > accel.threshold
    assert dense.sum() > 1000
    assert grid.lookup(0, pts)[dense].all()
    # and a render with fine steps in occupied space sees it as the reference does
    cam, opts = CAMERAS["front"]
    fine = AccelOptions(max_samples=96, min_step=0.0005)
    out = field_renderer("accelerated", field, opts, accel=fine).render(cam, RES)
    ref = render(field, cam, RES, replace(opts, num_steps=2048, num_fine_steps=0))
    assert psnr(out.rgb, ref.rgb) >= 40
    assert (out.opacity - ref.opacity).abs().max() < 1e-3


@pytest.mark.parametrize("view", sorted(CAMERAS))
def test_sharp_surface_in_haze_gets_its_samples(view):
    # Haze everywhere leaves no empty space to skip: the samples must go where the cached densities
    # put the weight, or a sharp surface falls between them (samples spread evenly miss it).
    field = RadialField(hazy_sphere())
    cam, opts = CAMERAS[view]
    ref = render(field, cam, RES, replace(opts, num_steps=2048, num_fine_steps=0))
    fast = field_renderer("accelerated", field, opts)
    assert fast.grid.occupied_fraction == 1.0
    out = fast.render(cam, RES)
    assert psnr(out.rgb, ref.rgb) >= 40
    assert psnr(out.depth, ref.depth, peak=opts.ray_end - opts.ray_start) >= 40
    assert fast.last_stats["evaluated"] <= (AccelOptions().max_samples + 1) * RES * RES
    even = field_renderer("accelerated", field, opts, accel=AccelOptions(importance=0.0)).render(cam, RES)
    assert psnr(even.rgb, ref.rgb) < psnr(out.rgb, ref.rgb) - 6


@pytest.mark.parametrize("view", sorted(CAMERAS))
def test_open_far_end_matches_reference(view):
    # With the far end open, rays that miss keep their transmittance for the white background.
    field = RadialField(hazy_sphere())
    cam, opts = CAMERAS[view]
    opts = replace(opts, opaque_far_end=False, white_background=True)
    ref = render(field, cam, RES, replace(opts, num_steps=2048, num_fine_steps=0))
    assert ref.opacity.min() < 0.9                   # some rays do let the background through
    out = field_renderer("accelerated", field, opts).render(cam, RES)
    assert psnr(out.rgb, ref.rgb) >= 40
    assert psnr(out.opacity, ref.opacity, peak=1.0) >= 40


@pytest.fixture(scope="module", params=[True, False], ids=["opaque-far-end", "open-far-end"])
def sparse_model(request):
    torch.manual_seed(0)
    cfg = tiny_config(**{"model.render.density_shift": -4.7, "model.render.opaque_far_end": request.param})
    G = Generator(cfg.model).eval().requires_grad_(False)
    with torch.no_grad():
        field = G.field_from_ws(G.map_latents(G.latents([3]), G.labels([0], 1)))
    return G, field


def test_random_model_with_empty_space(sparse_model):
    G, field = sparse_model
    fast = field_renderer("accelerated", field, G.render_options())
    assert 0.02 < fast.grid.occupied_fraction < 0.5  # empty space to skip
    for yaw, pitch in ((0.0, 1.4), (2.5, 0.6)):
        cam = G.default_camera(yaw=yaw, pitch=pitch)
        opts = G.render_options(num_steps=48, num_fine_steps=48, normals=True)
        with torch.no_grad():
            ref = render(field, cam, RES, replace(opts, num_steps=256, num_fine_steps=256))
        out = fast.render(cam, RES, options=opts)
        assert psnr(out.rgb, ref.rgb) >= 40
        assert psnr(out.depth, ref.depth, peak=opts.ray_end - opts.ray_start) >= 40
        # Skipped cells hold densities below the threshold: at most threshold * ray length of opacity
        # (an opaque far end takes up whatever they let through).
        bound = 1e-3 if opts.opaque_far_end else AccelOptions().threshold * (opts.ray_end - opts.ray_start)
        assert (out.opacity - ref.opacity).abs().max() < bound
        assert out.normals.shape == ref.normals.shape


def test_fog_model_matches_too():
    torch.manual_seed(1)
    G = Generator(tiny_config().model).eval().requires_grad_(False)
    with torch.no_grad():
        field = G.field_from_ws(G.map_latents(G.latents([0]), G.labels([1], 1)))
        cam = G.default_camera(yaw=0.7, pitch=1.2)
        ref = render(field, cam, RES, G.render_options(num_steps=512, num_fine_steps=0))
    out = field_renderer("accelerated", field, G.render_options()).render(cam, RES)
    assert psnr(out.rgb, ref.rgb) >= 40


def test_grid_built_once_and_chunking_invariant(monkeypatch):
    builds = []
    original = OccupancyGrid.__init__

    def counting(self, *args, **kwargs):
        builds.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(accel_mod.OccupancyGrid, "__init__", counting)
    field = RadialField(sphere())
    fast = field_renderer("accelerated", field, OPTS)
    probe_points = field.points
    cam = CAMERAS["front"][0]
    a = fast.render(cam, RES)
    b = fast.render(Camera.from_angles(1.0, 1.0, fov=30.0), RES)
    assert len(builds) == 1
    assert field.points - probe_points == fast.last_stats["evaluated"] + _evaluated(fast, cam)
    # far fewer points than the plain path's 96 per ray
    assert fast.last_stats["evaluated"] < 0.3 * 96 * RES * RES
    small = field_renderer("accelerated", field, OPTS, accel=AccelOptions(max_points_per_chunk=1000)).render(cam, RES)
    assert torch.allclose(small.rgb, a.rgb, atol=1e-6) and torch.allclose(small.depth, a.depth, atol=1e-6)
    assert not torch.allclose(a.rgb, b.rgb)


def _evaluated(fast, cam):
    twin = fast.with_accel(fast.accel)     # same grid; fast.last_stats stays that of its own last render
    twin.render(cam, RES)
    evaluated = twin.last_stats["evaluated"]
    fast.field.points -= evaluated  # this check's own points do not count
    return evaluated


def test_falls_back_to_plain_path_with_density_noise():
    field = RadialField(sphere())
    cam = CAMERAS["front"][0]
    opts = replace(OPTS, density_noise_std=1.0)
    fast = field_renderer("accelerated", field, OPTS, grid=OccupancyGrid(field, OPTS))
    out = fast.render(cam, RES, options=opts)
    assert fast.last_stats["fallback"]
    assert torch.equal(out.rgb, render(field, cam, RES, opts).rgb)


def test_background_network_model():
    torch.manual_seed(2)
    G = Generator(tiny_config(**{"model.background.type": "sphere"}).model).eval().requires_grad_(False)
    with torch.no_grad():
        field = G.field_from_ws(G.map_latents(G.latents([0]), G.labels([0], 1)))
        cam = G.default_camera(yaw=0.2, pitch=1.3)
        ref = render(field, cam, RES, G.render_options(num_steps=512, num_fine_steps=0))
    out = field_renderer("accelerated", field, G.render_options()).render(cam, RES)
    assert psnr(out.rgb, ref.rgb) >= 40


def _occupancy_from_point_queries(field, opts):
    """The occupancy grid as it was built before lattice queries: every probe a point query, the
    same max-pooling and dilation (docs/rendering_speed.md, 'What it does')."""
    import torch.nn.functional as F  # noqa: PLC0415

    accel = AccelOptions()
    grid = OccupancyGrid(field, opts, accel)   # for its box only
    g, sub = accel.grid_resolution, accel.probes_per_cell
    n = g * sub + 1
    axes = [torch.linspace(float(grid.lo[i]), float(grid.hi[i]), n) for i in range(3)]
    probes = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)
    with torch.inference_mode():
        dens = torch.cat([activate_density(field(p[None])[1][0], opts) for p in probes.split(1 << 16)])
    dens = dens.reshape(1, 1, n, n, n)
    cells = F.max_pool3d(dens, kernel_size=sub + 1, stride=sub)
    k = 2 * accel.dilation + 1
    occupied = F.max_pool3d(cells, kernel_size=k, stride=1, padding=accel.dilation)[0, 0] > accel.threshold
    return grid, dens[0, 0], occupied


@pytest.mark.parametrize("path", ["assets/demo.ckpt", "tests/fixtures/epigraf/cond_white.pkl",
                                  "tests/fixtures/epigraf/uncond_gpc.pkl"])
def test_grid_from_lattice_queries_equals_point_queries(path):
    """The grid probes its lattice through core.field.query_lattice; the occupied cells must be those
    of probing every point (the densities agree to float rounding, 1e-5 relative; a cell could only
    flip if a probe sat within that of the threshold, and none does on these models)."""
    from conftest import REPO  # noqa: PLC0415
    from trigan.core.model_io import open_model  # noqa: PLC0415

    G = open_model(REPO / path).G.requires_grad_(False)
    with torch.inference_mode():
        field = G.field_from_ws(G.map_latents(G.latents([0]), G.labels([0] if G.c_dim else None, 1)))
    opts = G.render_options()
    grid, dens, occupied = _occupancy_from_point_queries(field, opts)
    assert torch.allclose(grid.density[0], dens, rtol=1e-5, atol=1e-5 * float(dens.max().clamp(min=1)))
    assert torch.equal(grid.occupied[0], occupied)


def test_grid_of_an_analytic_field_equals_point_queries():
    field = RadialField(sphere())
    grid, dens, occupied = _occupancy_from_point_queries(field, OPTS)
    assert torch.allclose(grid.density[0], dens, rtol=1e-6, atol=1e-6)
    assert torch.equal(grid.occupied[0], occupied) and 0 < grid.occupied_fraction < 1
