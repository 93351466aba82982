"""The preview path (core/preview.py): a coloured mesh rasterised with headless OpenGL.

These tests need EGL (Mesa's libEGL with llvmpipe on CPU machines, as on CI); they do not skip."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from trigan.core.accel import FastRenderer
from trigan.core.cameras import Camera
from trigan.core.generator import Generator
from trigan.core.gl_offscreen import MeshRasterizer
from trigan.core.preview import PreviewOptions, build_preview, calibrate, preview_unavailable, world_to_clip

from analytic_fields import CAMERAS, OPTS, RadialField, inverse_softplus, psnr, sphere
from conftest import tiny_config

RES = 64


def test_headless_opengl_is_available_here():
    assert preview_unavailable() is None


@pytest.mark.parametrize("shape", [(32, 32), (24, 40)])
def test_projection_puts_each_pixel_centre_ray_on_its_pixel(shape):
    """A point anywhere on the ray through pixel (i, j) projects to the NDC of that pixel's centre."""
    h, w = shape
    cam = Camera.from_angles(0.7, 1.1, radius=1.3, fov=25.0, look_at=(0.05, -0.02, 0.03), dtype=torch.float64)
    origins, dirs = cam.rays((h, w))
    mat = torch.from_numpy(world_to_clip(cam, h, w, OPTS))
    for t in (0.7, 1.2):
        pts = (origins[0] + t * dirs[0]).double()
        clip = torch.cat([pts, torch.ones(len(pts), 1, dtype=torch.float64)], 1) @ mat.T
        ndc = clip[:, :2] / clip[:, 3:]
        rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        want_x = -1 + (2 * cols.reshape(-1) + 1) / w
        want_y = 1 - (2 * rows.reshape(-1) + 1) / h       # row 0 is the top of the image
        assert torch.allclose(ndc[:, 0], want_x.double(), atol=1e-9)
        assert torch.allclose(ndc[:, 1], want_y.double(), atol=1e-9)


def test_rasterised_triangle_covers_exactly_the_pixels_whose_centres_it_contains():
    """One big triangle in front of the camera: coverage, colour, normal and distance, pixel by pixel."""
    cam = Camera.from_angles(0.0, np.pi / 2, radius=1.0, fov=40.0)   # on +x, looking at the origin
    h = w = 16
    verts = np.array([[0.0, -0.25, -0.2], [0.0, -0.2, 0.25], [0.0, 0.3, 0.0]], np.float32)  # plane x = 0
    raster = MeshRasterizer(verts, np.array([[0, 1, 2]]), np.tile([[0.1, -0.4, 0.7]], (3, 1)),
                            np.tile([[1.0, 0.0, 0.0]], (3, 1)))
    color, geometry = raster.draw(world_to_clip(cam, h, w, OPTS), cam.origins()[0].numpy(), (0.5, 1.5), (h, w))
    raster.release()
    o, d = cam.rays((h, w))
    t = -o[0, :, 0] / d[0, :, 0]                  # where each pixel's ray meets x = 0
    hit = (o[0] + t[:, None] * d[0]).double()[:, 1:]
    a, b, c = (torch.from_numpy(v[1:]).double() for v in verts)

    def side(p, q, r):
        return (q[0] - p[0]) * (r[:, 1] - p[1]) - (q[1] - p[1]) * (r[:, 0] - p[0])
    sides = torch.stack([side(a, b, hit), side(b, c, hit), side(c, a, hit)])
    inside = (sides > 0).all(0) | (sides < 0).all(0)
    cover = torch.from_numpy(color[..., 3].reshape(-1).copy()) > 0.5
    assert inside.sum() > 30
    assert torch.equal(cover, inside)
    assert np.allclose(color[..., :3].reshape(-1, 3)[inside.numpy()], [0.1, -0.4, 0.7], atol=1e-6)
    assert np.allclose(geometry[..., :3].reshape(-1, 3)[inside.numpy()], [1, 0, 0], atol=1e-6)
    assert np.allclose(geometry[..., 3].reshape(-1)[inside.numpy()], t[inside].numpy(), atol=1e-4)


@pytest.mark.parametrize("rise", [45.0, 220.0])
@pytest.mark.parametrize("view", sorted(CAMERAS))
def test_solid_sphere_preview_matches_the_exact_path(view, rise):
    """A solid object with a soft or a sharp edge, seen from outside, from inside the scene box and
    from far away (most rays miss). At 64^2 the rim is a large share of the pixels: 27 dB here is
    28-33 dB at the resolutions the viewer uses (benchmarks/render.py measures those)."""
    field = RadialField(sphere(rise=rise))
    cam, opts = CAMERAS[view]
    exact = FastRenderer(None, field, replace(opts, normals=True)).render(cam, RES)
    preview = build_preview(None, field, options=opts)
    out = preview.render(cam, RES, normals=True)
    assert psnr(out.rgb, exact.rgb) >= 27
    assert (out.opacity - exact.opacity).abs().mean() < 0.02
    hit = (out.depth < opts.ray_end - 0.05) & (exact.depth < opts.ray_end - 0.05)
    assert hit.float().mean() > 0.02
    # depth where both are opaque: the median within two grid spacings (0.8 / 96 each); near the rim
    # the renderer's weights spread along long grazing paths, which one surface cannot follow
    solid = hit & (exact.opacity > 0.99) & (out.opacity > 0.99)
    assert float((out.depth - exact.depth)[solid].abs().median()) < 2 * 0.8 / 96
    cos = (out.normals * exact.normals).sum(1, keepdim=True)[hit]
    assert float(cos.mean()) > 0.98
    if view == "far":
        assert (exact.depth > opts.ray_end - 0.05).float().mean() > 0.5


class TintedGlass(RadialField):
    """A uniform ball of constant activated density and one colour: its volume render is analytic."""

    def __init__(self, density: float, color, radius: float):
        # an edge about one grid cell wide keeps the marching-cubes normals radial; the optical depth
        # along a line is still density x chord of the radius (the sigmoid is symmetric about it)
        super().__init__(lambda r: inverse_softplus(1e-9 + density * torch.sigmoid((radius - r) / 0.008)))
        self.color = torch.tensor(color)

    def __call__(self, pts):
        _, sigma = super().__call__(pts)
        return self.color.to(pts).expand(*pts.shape[:-1], 3), sigma


def test_semi_transparent_ball_shows_its_colour_mixed_with_the_background():
    """A dark ball that lets a quarter of the light through its centre, on a white background: the
    renderer shows colour * (1 - e^(-s L)) + white * e^(-s L) for a chord of length L. The preview's
    vertex colour and alpha come from the same quadrature along the inward normal, so the frontal
    part of the ball matches that formula (one point's colour, the old way, was off by 0.4 there)."""
    radius, color = 0.2, [-0.6, -0.2, 0.4]
    density = float(np.log(4.0)) / (2 * radius)          # centre chord 0.4: opacity 3/4
    field = TintedGlass(density, color, radius)
    cam, opts = CAMERAS["front"]
    opts = replace(opts, opaque_far_end=False, white_background=True)
    out = build_preview(None, field, options=opts).render(cam, RES)
    origins, dirs = cam.rays((RES, RES))
    o, d = origins[0], dirs[0] / dirs[0].norm(dim=-1, keepdim=True)
    b = (o * d).sum(-1)
    chord = 2 * (b * b - ((o * o).sum(-1) - radius ** 2)).clamp(min=0).sqrt()
    opacity = 1 - torch.exp(-density * chord)
    expected = torch.tensor(color)[None] * opacity[:, None] + (1 - opacity)[:, None]
    central = chord > 0.97 * 2 * radius                   # rays whose chord is close to the normal's
    assert int(central.sum()) > 20
    got = out.rgb[0].permute(1, 2, 0).reshape(-1, 3)
    assert float((got[central] - expected[central]).abs().max()) < 0.04
    assert float((out.opacity[0, 0].reshape(-1)[central] - opacity[central]).abs().max()) < 0.025
    # far from the ball only the white background
    outside = chord == 0
    assert torch.allclose(got[outside & (out.opacity[0, 0].reshape(-1) < 1e-3)], torch.ones(3), atol=1e-3)


def test_empty_field_gives_only_the_backdrop_like_the_exact_path():
    field = RadialField(lambda r: torch.full_like(r, -20.0))
    cam, opts = CAMERAS["front"]
    preview = build_preview(None, field, options=opts)
    assert preview.stats["faces"] == 0
    exact = FastRenderer(None, field, opts).render(cam, RES)
    out = preview.render(cam, RES)
    assert psnr(out.rgb, exact.rgb) >= 35          # the tail colour, upsampled from 32^2 rays
    assert torch.allclose(out.opacity, exact.opacity, atol=1e-4)
    # with the far end open nothing is hit: the white background, as in the exact path
    open_end = replace(opts, opaque_far_end=False, white_background=True)
    out = build_preview(None, field, options=open_end).render(cam, RES)
    exact = FastRenderer(None, field, open_end).render(cam, RES)
    assert torch.allclose(out.rgb, torch.ones_like(out.rgb), atol=1e-4)
    assert torch.allclose(exact.rgb, torch.ones_like(exact.rgb), atol=1e-4)
    assert out.opacity.max() < 1e-4


def test_generator_preview_serves_every_mode_and_batches_cameras():
    G = Generator(tiny_config().model).eval()
    with torch.inference_mode():
        field = G.field_from_ws(G.map_latents(G.latents([3]), G.labels([1], 1)))
    fast = FastRenderer(G, field)
    preview = build_preview(G, field, fast.grid, preview=PreviewOptions(level=0.5))
    cams = G.default_camera(yaw=[0.0, 1.0, 2.0])
    out = preview.render(cams, (20, 28), normals=True)
    assert out.rgb.shape == (3, 3, 20, 28) and out.depth.shape == (3, 1, 20, 28)
    assert out.opacity.shape == (3, 1, 20, 28) and out.normals.shape == (3, 3, 20, 28)
    assert torch.isfinite(out.rgb).all() and torch.isfinite(out.depth).all()
    assert torch.allclose(out.normals.norm(dim=1), torch.ones(3, 20, 28), atol=1e-4)
    single = preview.render(cams[1], (20, 28))
    assert torch.equal(single.rgb[0], out.rgb[1])   # a frame is a pure function of its camera


def test_batch_of_latents_is_refused_with_a_clear_error():
    G = Generator(tiny_config().model).eval()
    with torch.inference_mode():
        field = G.field_from_ws(G.map_latents(G.latents([0, 1]), G.labels([0, 1], 2)))
    with pytest.raises(ValueError, match="one latent"):
        build_preview(G, field)


def test_calibration_of_a_uniform_ball():
    """A ball of constant density s0 with a sharp edge: any level in (0, s0) meets the silhouette, all
    rays agree, and the renderer's weights lie 1/s0 behind the surface on average (continuous
    limit; the quadrature at this spacing gives it within 10%)."""
    n, spacing, s0 = 61, 0.01, 50.0
    ax = (torch.arange(n, dtype=torch.float64) - (n - 1) / 2) * spacing
    x, y, z = torch.meshgrid(ax, ax, ax, indexing="ij")
    density = torch.where(x * x + y * y + z * z < 0.2 ** 2, s0, 0.0).float()
    level, inset, agreement = calibrate(density, spacing)
    assert 0 < level < s0
    assert agreement > 0.98          # a few rays graze one voxel: hit, but less than half opaque
    assert abs(inset - 1 / s0) < 0.1 / s0



@pytest.mark.parametrize("radius", [2.0, 3.0])
def test_zoomed_out_view_with_its_own_ray_interval(radius):
    """Zooming moves the ray interval with the camera (core.views.options_at_distance); the preview
    built at the model's radius renders such a view like the exact path does."""
    from trigan.core.views import options_at_distance
    field = RadialField(sphere(rise=220.0))
    preview = build_preview(None, field, options=OPTS)
    cam = Camera.from_angles(0.3, 1.2, radius=radius, fov=30.0)
    opts = options_at_distance(OPTS, radius, 1.0)
    exact = FastRenderer(None, field, opts).render(cam, RES)
    assert psnr(preview.render(cam, RES, options=opts).rgb, exact.rgb) >= 30
