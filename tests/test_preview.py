"""The preview path (core/preview.py): a baked volume ray-marched from a hull mesh with headless OpenGL.

These tests need EGL (Mesa's libEGL with llvmpipe on CPU machines, as on CI); they do not skip."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from analytic_fields import CAMERAS, OPTS, RadialField, inverse_softplus, psnr, sphere
from conftest import EPIGRAF_FIXTURES, tiny_config
from trigan.core.cameras import Camera
from trigan.core.generator import Generator
from trigan.core.gl_offscreen import HullMarcher
from trigan.core.model_io import open_model
from trigan.core.preview import PreviewOptions, calibrate, coarse_levels, preview_unavailable, world_to_clip
from trigan.core.rendering import field_renderer
from trigan.core.views import options_at_distance

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


def box_hull(lo, hi):
    """A closed, outward-wound box mesh: vertices [8, 3], faces [12, 3]."""
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])], np.float32)
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    faces = np.array([tri for a, b, c, d in quads for tri in ((a, b, c), (a, c, d))])
    return corners, faces


def ray_box(o, d, lo, hi):
    """Entry and exit distances of rays o + t d [R, 3] through the box (entry > exit: missed)."""
    inv = 1.0 / d
    t1, t2 = (torch.tensor(lo) - o) * inv, (torch.tensor(hi) - o) * inv
    return torch.minimum(t1, t2).max(dim=1).values, torch.maximum(t1, t2).min(dim=1).values


def test_marched_box_covers_exactly_the_pixels_whose_rays_meet_it():
    """A box hull over a volume of one colour whose density makes the first step opaque: coverage,
    colour and depth (the first step's midpoint behind the box's face) match a ray-box test, pixel
    by pixel."""
    cam = Camera.from_angles(0.5, 1.2, radius=1.0, fov=40.0)
    h = w = 24
    lo, hi = (-0.15, -0.2, -0.1), (0.1, 0.25, 0.2)
    volume = np.zeros((5, 5, 5, 4), np.float32)
    volume[..., :3] = [0.1, -0.4, 0.7]
    volume[..., 3] = 1e5
    marcher = HullMarcher(*box_hull(lo, hi), volume, (np.full(3, -0.5), np.full(3, 0.5)))
    step = 0.01
    color, geometry = marcher.draw(world_to_clip(cam, h, w, OPTS), cam.origins()[0].numpy(), (0.5, 1.5), (h, w),
                                   step, 0.0, 8)
    marcher.release()
    o, d = cam.rays((h, w))
    enter, leave = ray_box(o[0].double(), d[0].double(), lo, hi)
    # rays that cut off a corner shorter than a step take no step: leave those out, and those that
    # pass within 1e-3 of an edge
    inside, clear = enter < leave - step, enter > leave + 1e-3
    cover = torch.from_numpy(color[..., 3].reshape(-1).copy()) > 0.5
    assert inside.sum() > 100 and clear.sum() > 100
    assert torch.equal(cover[inside | clear], inside[inside | clear])
    assert np.allclose(color[..., 3].reshape(-1)[inside.numpy()], 1.0, atol=1e-6)
    assert np.allclose(color[..., :3].reshape(-1, 3)[inside.numpy()], [0.1, -0.4, 0.7], atol=1e-6)
    assert np.allclose(geometry[..., 3].reshape(-1)[inside.numpy()], enter[inside].numpy() + step / 2, atol=1e-4)


def test_march_integrates_a_density_gradient_like_the_quadrature():
    """A slab volume whose density rises linearly along -x, seen head-on through a box hull: the
    march's opacity and depth are the volume renderer's midpoint quadrature of the trilinear texture
    (here exact: the density is linear), step by step, from `start_back` before the hull, with the
    step doubling after every `double_every` steps."""
    cam = Camera.from_angles(0.0, np.pi / 2, radius=1.0, fov=20.0)   # on +x, looking down -x
    n, h = 9, 8
    lo, hi = np.full(3, -0.4), np.full(3, 0.4)
    xs = np.linspace(lo[0], hi[0], n)
    volume = np.zeros((n, n, n, 4), np.float32)
    volume[..., 3] = np.clip(10.0 * (0.4 - xs), 0, None)[:, None, None]   # 0 at x = 0.4, 8 at x = -0.4
    volume[..., :3] = 0.5
    marcher = HullMarcher(*box_hull((-0.4, -0.3, -0.3), (0.3, 0.3, 0.3)), volume, (lo, hi))
    step, back, steps, double_every = 0.01, 0.05, 36, 16
    color, geometry = marcher.draw(world_to_clip(cam, h, h, OPTS), cam.origins()[0].numpy(), (0.5, 1.5), (h, h),
                                   step, back, steps, double_every=double_every)
    marcher.release()
    o, d = cam.rays((h, h))
    centre = (h // 2) * h + h // 2
    dist = float(-(o[0, centre, 0] - 0.3) / d[0, centre, 0])                 # to the face at x = 0.3
    # 16 steps of 0.01, 16 of 0.02, 4 of 0.04: the last midpoint 0.62 past the start, inside the hull
    dt = step * 2.0 ** (np.arange(steps) // double_every)
    t = dist - back + np.cumsum(dt) - dt / 2
    x = float(o[0, centre, 0]) + t * float(d[0, centre, 0])
    sigma = np.clip(10.0 * (0.4 - x), 0, None)
    alpha = 1 - np.exp(-sigma * dt)
    weights = alpha * np.cumprod(np.concatenate([[1.0], 1 - alpha[:-1]]))
    row, col = divmod(centre, h)
    assert abs(color[row, col, 3] - weights.sum()) < 1e-4
    assert abs(geometry[row, col, 3] - (weights * t).sum()) < 1e-4
    assert abs(color[row, col, 0] - 0.5 * weights.sum()) < 1e-4


def test_march_stops_past_the_farthest_hull_surface():
    """Dense volume everywhere, but a thin box hull: the march ends `start_back` past the hull's far
    face, so the opacity is that of the box's chord plus the margins, not of the whole ray."""
    cam = Camera.from_angles(0.0, np.pi / 2, radius=1.0, fov=10.0)   # on +x, looking down -x
    volume = np.zeros((5, 5, 5, 4), np.float32)
    volume[..., 3] = 2.0
    marcher = HullMarcher(*box_hull((-0.05, -0.3, -0.3), (0.05, 0.3, 0.3)), volume,
                          (np.full(3, -0.5), np.full(3, 0.5)))
    step, back = 0.001, 0.02
    color, _ = marcher.draw(world_to_clip(cam, 4, 4, OPTS), cam.origins()[0].numpy(), (0.5, 1.5), (4, 4),
                            step, back, 1000)
    marcher.release()
    o, d = cam.rays((4, 4))
    enter, leave = ray_box(o[0].double(), d[0].double(), (-0.05, -0.3, -0.3), (0.05, 0.3, 0.3))
    span = (leave - enter + 2 * back).numpy().reshape(4, 4)      # from back before to back past
    # the steps' midpoints cover the span to within a step
    np.testing.assert_allclose(color[..., 3], 1 - np.exp(-2.0 * span), atol=2 * 2.0 * step)


def test_hull_reaching_past_the_ray_interval_still_lets_the_march_run_to_its_end():
    """A thick box hull whose far face lies beyond ray_end (and near face before ray_start): the
    march runs over the whole interval [ray_start, ray_end], as the volume renderer does. (The far
    face must bound the march even where it is out of the interval; dropping it left such rays
    with no march at all.)"""
    cam = Camera.from_angles(0.0, np.pi / 2, radius=1.0, fov=10.0)
    volume = np.zeros((5, 5, 5, 4), np.float32)
    volume[..., 3] = 2.0
    marcher = HullMarcher(*box_hull((-0.3, -0.3, -0.3), (0.3, 0.3, 0.3)), volume, (np.full(3, -0.5), np.full(3, 0.5)))
    near, far, step = 0.8, 1.1, 0.001
    color, geometry = marcher.draw(world_to_clip(cam, 4, 4, OPTS), cam.origins()[0].numpy(), (near, far), (4, 4),
                                   step, 0.0, 1000)
    marcher.release()
    # the box spans distances 0.7..1.3 along these rays: the whole interval is inside it
    np.testing.assert_allclose(color[..., 3], 1 - np.exp(-2.0 * (far - near)), atol=4 * 2.0 * step)


@pytest.mark.parametrize("rise", [45.0, 220.0])
@pytest.mark.parametrize("view", sorted(CAMERAS))
def test_solid_sphere_preview_matches_the_exact_path(view, rise):
    """A solid object with a soft or a sharp edge, seen from outside, from inside the scene box and
    from far away (most rays miss). At 64^2 the rim is a large share of the pixels: 27 dB here is
    28-33 dB at the resolutions the viewer uses (benchmarks/render.py measures those)."""
    field = RadialField(sphere(rise=rise))
    cam, opts = CAMERAS[view]
    exact = field_renderer("accelerated", field, replace(opts, normals=True)).render(cam, RES)
    preview = field_renderer("preview", field, opts)
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
    renderer shows colour * (1 - e^(-s L)) + white * e^(-s L) for a chord of length L. The preview
    marches the baked volume along each ray, so every ray through the ball matches that formula, not
    only the frontal ones (one surface colour per point, an earlier preview, was off by 0.4)."""
    radius, color = 0.2, [-0.6, -0.2, 0.4]
    density = float(np.log(4.0)) / (2 * radius)          # centre chord 0.4: opacity 3/4
    field = TintedGlass(density, color, radius)
    cam, opts = CAMERAS["front"]
    opts = replace(opts, opaque_far_end=False, white_background=True)
    out = field_renderer("preview", field, opts).render(cam, RES)
    origins, dirs = cam.rays((RES, RES))
    o, d = origins[0], dirs[0] / dirs[0].norm(dim=-1, keepdim=True)
    b = (o * d).sum(-1)
    chord = 2 * (b * b - ((o * o).sum(-1) - radius ** 2)).clamp(min=0).sqrt()
    opacity = 1 - torch.exp(-density * chord)
    expected = torch.tensor(color)[None] * opacity[:, None] + (1 - opacity)[:, None]
    got = out.rgb[0].permute(1, 2, 0).reshape(-1, 3)
    got_opacity = out.opacity[0, 0].reshape(-1)
    # rays through the body of the ball (chord over 3/4 of the diameter): the formula, closely
    body = chord > 0.75 * 2 * radius
    assert int(body.sum()) > 200
    assert float((got[body] - expected[body]).abs().max()) < 0.01
    assert float((got_opacity[body] - opacity[body]).abs().max()) < 0.01
    # every ray through it, the grazing ones too (where the sigmoid edge, a cell wide, makes the
    # formula's sharp chord inexact): the exact path's image of the same field
    exact = field_renderer("accelerated", field, opts).render(cam, RES)
    through = chord > 2 * 0.8 / 96
    want = exact.rgb[0].permute(1, 2, 0).reshape(-1, 3)
    assert float((got[through] - want[through]).abs().max()) < 0.02
    assert float((got_opacity[through] - exact.opacity[0, 0].reshape(-1)[through]).abs().max()) < 0.02
    # far from the ball only the white background
    outside = chord == 0
    assert torch.allclose(got[outside & (out.opacity[0, 0].reshape(-1) < 1e-3)], torch.ones(3), atol=1e-3)


def test_empty_field_gives_only_the_backdrop_like_the_exact_path():
    field = RadialField(lambda r: torch.full_like(r, -20.0))
    cam, opts = CAMERAS["front"]
    preview = field_renderer("preview", field, opts)
    assert preview.stats["faces"] == 0
    exact = field_renderer("accelerated", field, opts).render(cam, RES)
    out = preview.render(cam, RES)
    assert psnr(out.rgb, exact.rgb) >= 35          # the tail colour, upsampled from 32^2 rays
    assert torch.allclose(out.opacity, exact.opacity, atol=1e-4)
    # with the far end open nothing is hit: the white background, as in the exact path
    open_end = replace(opts, opaque_far_end=False, white_background=True)
    out = field_renderer("preview", field, open_end).render(cam, RES)
    exact = field_renderer("accelerated", field, open_end).render(cam, RES)
    assert torch.allclose(out.rgb, torch.ones_like(out.rgb), atol=1e-4)
    assert torch.allclose(exact.rgb, torch.ones_like(exact.rgb), atol=1e-4)
    assert out.opacity.max() < 1e-4


def test_generator_preview_serves_every_mode_and_batches_cameras():
    G = Generator(tiny_config().model).eval()
    with torch.inference_mode():
        field = G.field_from_ws(G.map_latents(G.latents([3]), G.labels([1], 1)))
    fast = field_renderer("accelerated", field, G.render_options())
    preview = field_renderer("preview", field, G.render_options(), grid=fast.grid, preview=PreviewOptions(level=0.5))
    cams = G.default_camera(yaw=[0.0, 1.0, 2.0])
    out = preview.render(cams, (20, 28), normals=True)
    assert out.rgb.shape == (3, 3, 20, 28) and out.depth.shape == (3, 1, 20, 28)
    assert out.opacity.shape == (3, 1, 20, 28) and out.normals.shape == (3, 3, 20, 28)
    assert torch.isfinite(out.rgb).all() and torch.isfinite(out.depth).all()
    assert torch.allclose(out.normals.norm(dim=1), torch.ones(3, 20, 28), atol=1e-4)
    single = preview.render(cams[1], (20, 28), normals=True)
    assert torch.equal(single.rgb[0], out.rgb[1])   # a frame is a pure function of its camera
    assert torch.equal(single.normals[0], out.normals[1])
    # asking for normals does not change the other outputs (the shader compiles the two cases apart:
    # equal up to rounding)
    plain = preview.render(cams[1], (20, 28))
    assert torch.allclose(plain.rgb[0], out.rgb[1], atol=1e-5)
    assert torch.allclose(plain.depth[0], out.depth[1], atol=1e-5)


def test_batch_of_latents_is_refused_with_a_clear_error():
    G = Generator(tiny_config().model).eval()
    with torch.inference_mode():
        field = G.field_from_ws(G.map_latents(G.latents([0, 1]), G.labels([0, 1], 2)))
    with pytest.raises(ValueError, match="one latent"):
        field_renderer("preview", field, G.render_options())


def test_calibration_of_a_uniform_ball():
    """A ball of constant density s0 with a sharp edge: any level in (0, s0) meets the silhouette and
    all rays agree."""
    n, spacing, s0 = 61, 0.01, 50.0
    ax = (torch.arange(n, dtype=torch.float64) - (n - 1) / 2) * spacing
    x, y, z = torch.meshgrid(ax, ax, ax, indexing="ij")
    density = torch.where(x * x + y * y + z * z < 0.2 ** 2, s0, 0.0).float()
    level, agreement = calibrate(density, spacing)
    assert 0 < level < s0
    assert agreement > 0.98          # a few rays graze one voxel: hit, but less than half opaque


@pytest.mark.parametrize("radius", [2.0, 3.0])
def test_zoomed_out_view_with_its_own_ray_interval(radius):
    """Zooming moves the ray interval with the camera (core.views.options_at_distance); the preview
    built at the model's radius renders such a view like the exact path does."""
    field = RadialField(sphere(rise=220.0))
    preview = field_renderer("preview", field, OPTS)
    cam = Camera.from_angles(0.3, 1.2, radius=radius, fov=30.0)
    opts = options_at_distance(OPTS, radius, 1.0)
    exact = field_renderer("accelerated", field, opts).render(cam, RES)
    assert psnr(preview.render(cam, RES, options=opts).rgb, exact.rgb) >= 30


@pytest.mark.parametrize("name", ["cond_white.pkl", "uncond_gpc.pkl"])
def test_official_models_preview_like_their_exact_render(name):
    """Converted EpiGRAF fixtures (fogs that fill the scene box, one with raw colours, one with an
    FFHQ ray interval shorter than the box): the march through the baked field matches the exact path
    of the same view. Their far end is opened here: with EpiGRAF's opaque one, near-zero densities at
    ray_end flip the last sample from clear to opaque within a pixel or two, a contour that the
    backdrop's 32^2 rays blur (cond_white at yaw 0.3: 27 dB, all of it on that contour)."""
    G = open_model(EPIGRAF_FIXTURES / name, device="cpu").G.eval()
    with torch.inference_mode():
        field = G.field_from_ws(G.map_latents(G.latents([0]), G.labels([1] if G.c_dim else None, 1)))
    opts = replace(G.render_options(deterministic=True, density_noise_std=0.0), opaque_far_end=False)
    fast = field_renderer("accelerated", field, opts)
    preview = field_renderer("preview", field, opts, grid=fast.grid)
    for yaw in (0.3, 2.0):
        cam = G.default_camera(yaw=yaw)
        with torch.inference_mode():
            exact = fast.render(cam, 48)
        out = preview.render(cam, 48)
        assert float(exact.opacity.mean()) > 0.3          # the fog is there to be matched
        assert psnr(out.rgb, exact.rgb) >= 40, (name, yaw)
        assert (out.opacity - exact.opacity).abs().mean() < 0.01
        assert (out.depth - exact.depth).abs().mean() < 0.01


def smooth_haze(n: int = 33) -> np.ndarray:
    """[n, n, n, 4]: a haze whose density (0.5-1.5 per unit) and colour vary slowly over the box."""
    ax = np.linspace(-1.0, 1.0, n)
    x, y, z = np.meshgrid(ax, ax, ax, indexing="ij")
    volume = np.empty((n, n, n, 4), np.float32)
    volume[..., 0], volume[..., 1], volume[..., 2] = 0.5 * np.sin(1.5 * x), 0.4 * np.cos(1.2 * y), 0.3 * z
    volume[..., 3] = 1.0 + 0.5 * np.sin(1.3 * x + 0.7 * y) * np.cos(0.9 * z)
    return volume


def test_coarse_levels_hold_the_mean_density_and_the_density_weighted_colour():
    """Level k of a volume is OpenGL's texel geometry over it (adaptive pooling) of the density and of
    density x colour; the peaks' channel k - 1 is the density's spread over the level-k cells within
    three cells of each texel's own."""
    volume = np.zeros((33, 33, 33, 4), np.float32)
    volume[:16, ..., 3] = 2.0               # a dense slab at low x ...
    volume[:16, ..., 0] = 0.8               # ... in red, the rest empty and dark
    volume[16:, ..., 0] = -0.5
    levels, peaks = coarse_levels(volume, 5)
    assert [lv.shape for lv in levels] == [(16,) * 3 + (4,), (8,) * 3 + (4,), (4,) * 3 + (4,)]   # at most 3
    one = levels[0]
    # texel j of 16 covers level-0 texels floor(33 j / 16) .. ceil(33 (j + 1) / 16) - 1: texel 6 is
    # rows 12-14 (slab), texel 7 rows 14, 15 (slab) and 16 (empty), texel 8 rows 16-18
    np.testing.assert_allclose(one[6:9, 0, 0, 3], [2.0, 2.0 * 2 / 3, 0.0], atol=1e-6)
    np.testing.assert_allclose(one[6:9, 0, 0, 0], [0.8, 0.8, -0.5], atol=1e-6)   # empty: the plain mean
    assert peaks.shape == (33, 33, 33, 4)
    # level 1: texel 0's cells 0-3 are rows 0-8, all slab; texel 10's reach rows 2-16, the face;
    # texel 28's rows 20-32, all empty; level 2 (cells of ~4 rows) and 3 reach the face from 0 and 28
    assert peaks[0, 5, 5, 0] == 0.0 and peaks[10, 5, 5, 0] == 2.0 and peaks[28, 5, 5, 0] == 0.0
    assert peaks[0, 5, 5, 1] == 2.0 and peaks[28, 5, 5, 2] == 2.0
    assert np.all(peaks[..., 3] == 0.0)     # the spare channel


def haze_march(volume, normals=False, coarse=3, tamper=None):
    """The march of `volume` through a box hull around the whole box, with `coarse` levels (their
    colours replaced by `tamper` when given, to see where they are read)."""
    cam = Camera.from_angles(0.4, 1.2, radius=2.0, fov=40.0)
    n, h = volume.shape[0], 24
    levels, peaks = coarse_levels(volume, coarse)
    if tamper is not None:
        levels = [np.concatenate([np.broadcast_to(np.float32(tamper), lv.shape[:3] + (3,)), lv[..., 3:]], -1)
                  for lv in levels]
    lo, hi = np.full(3, -0.5), np.full(3, 0.5)
    marcher = HullMarcher(*box_hull(lo, hi), volume, (lo, hi), coarse=levels, peaks=peaks, coarse_tolerance=0.05)
    step = 1.0 / (n - 1)
    out = marcher.draw(world_to_clip(cam, h, h, OPTS), cam.origins()[0].numpy(), (1.0, 3.0), (h, h),
                       step, 2 * step, 512, normals=normals)
    marcher.release()
    return out


def test_smooth_haze_crossed_on_coarse_levels_matches_the_full_resolution_march():
    """A smooth haze, marched with and without the coarse levels: the same image (opacity to 0.01,
    colour to 0.02, the semi-transparent ball's bound: the levels' blur moves at most
    `coarse_tolerance` of optical depth per step, only where the density's spread allows it,
    and a smooth haze's errors largely cancel along the ray; a level's colour is a mean over 2^k
    texels), and the coarse levels are really read (tampering with their colour changes the image)."""
    volume = smooth_haze()
    fine, fine_geo = haze_march(volume, coarse=0)
    coarse, coarse_geo = haze_march(volume)
    hit = fine[..., 3] > 0.1
    assert hit.mean() > 0.3
    np.testing.assert_allclose(coarse[..., 3], fine[..., 3], atol=0.01)
    np.testing.assert_allclose(coarse[..., :3], fine[..., :3], atol=0.02)
    np.testing.assert_allclose(coarse_geo[..., 3][hit] / coarse[..., 3][hit], fine_geo[..., 3][hit] / fine[..., 3][hit],
                               rtol=0.01)                                  # mean depth
    tampered, _ = haze_march(volume, tamper=[1.0, 1.0, 1.0])
    assert np.abs(tampered[..., :3] - coarse[..., :3]).max() > 0.05


def test_sharp_edges_keep_the_full_resolution():
    """A sharp-edged slab (density 0 or 40): the spread around its faces keeps every step near them on
    level 0, and the empty space (spread 0) is crossed on the coarse levels without changing anything:
    tampering with the coarse levels' colour changes nothing."""
    volume = np.zeros((33, 33, 33, 4), np.float32)
    volume[12:20, ..., 3] = 40.0
    volume[..., :3] = [0.2, -0.3, 0.6]
    plain, _ = haze_march(volume, coarse=0)
    tampered, _ = haze_march(volume, tamper=[1.0, 1.0, 1.0])
    assert (plain[..., 3] > 0.99).mean() > 0.2
    np.testing.assert_allclose(tampered, plain, atol=1e-5)
