"""The rendering contract (core/rendering.py) and the compositing every path shares (core/compositing.py)."""

from __future__ import annotations

from dataclasses import fields as dataclass_fields
from dataclasses import replace

import pytest
import torch

from analytic_fields import CAMERAS, OPTS, RES, RadialField, psnr, sphere
from trigan.core import accel as accel_mod
from trigan.core.accel import AccelOptions
from trigan.core.compositing import add_backdrop
from trigan.core.renderer import RenderOutput, render
from trigan.core.rendering import RENDER_PATHS, FieldRenderer, field_renderer, path_unavailable


def test_the_paths_are_named_and_an_unknown_name_is_one_line():
    assert RENDER_PATHS == ("plain", "accelerated", "preview")
    with pytest.raises(ValueError) as err:
        field_renderer("fast", RadialField(sphere()), OPTS)
    message = str(err.value)
    assert "\n" not in message and "'fast'" in message
    assert all(name in message for name in RENDER_PATHS)
    with pytest.raises(ValueError, match="plain, accelerated, preview"):
        path_unavailable("gl")
    assert path_unavailable("plain") is None and path_unavailable("accelerated") is None


@pytest.mark.parametrize("path", RENDER_PATHS)
def test_every_path_gives_a_render_output_of_the_same_shapes(path):
    """Same call, same RenderOutput: rgb [B, 3, H, W], depth and opacity [B, 1, H, W], normals when
    the options ask for them (preview: headless GL, which tests/test_preview.py requires too)."""
    field = RadialField(sphere())
    cam, opts = CAMERAS["front"]
    renderer = field_renderer(path, field, opts)
    assert isinstance(renderer, FieldRenderer)
    assert renderer.path == path and renderer.field is field and renderer.options == opts
    out = renderer.render(cam, (20, 28))
    assert isinstance(out, RenderOutput) and out.normals is None
    assert out.rgb.shape == (1, 3, 20, 28)
    assert out.depth.shape == out.opacity.shape == (1, 1, 20, 28)
    with_normals = renderer.render(cam, 24, normals=True)            # an option override
    assert with_normals.rgb.shape == (1, 3, 24, 24) and with_normals.normals.shape == (1, 3, 24, 24)
    assert isinstance(renderer.last_stats, dict)


def test_plain_and_accelerated_paths_agree_on_an_analytic_sphere():
    """The accelerated path computes the plain path's integral (tests/test_accel.py: >= 35 dB against
    the plain path, which has its own sampling error, on this field and these cameras)."""
    field = RadialField(sphere())
    for view in sorted(CAMERAS):
        cam, opts = CAMERAS[view]
        plain = field_renderer("plain", field, opts).render(cam, RES)
        fast = field_renderer("accelerated", field, opts).render(cam, RES)
        assert psnr(fast.rgb, plain.rgb) >= 35, view
        assert (fast.opacity - plain.opacity).abs().max() < 0.02, view


def test_the_plain_path_is_core_renderer_render():
    field = RadialField(sphere())
    cam, opts = CAMERAS["front"]
    out = field_renderer("plain", field, opts).render(cam, RES, white_background=False)
    want = render(field, cam, RES, replace(opts, white_background=False))
    assert torch.equal(out.rgb, want.rgb) and torch.equal(out.depth, want.depth)


def test_with_samples_shares_the_grid_and_changes_only_the_sample_counts(monkeypatch):
    builds = []
    original = accel_mod.OccupancyGrid.__init__

    def counting(self, *args, **kwargs):
        builds.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(accel_mod.OccupancyGrid, "__init__", counting)
    field = RadialField(sphere())
    cam, opts = CAMERAS["front"]
    base = field_renderer("accelerated", field, opts, accel=AccelOptions(max_samples=16))
    probes = field.points
    more = base.with_samples(2.0)
    assert len(builds) == 1 and field.points == probes              # no second probe of the field
    assert more.grid is base.grid and more.field is base.field and more.options is base.options
    changed = {f.name for f in dataclass_fields(AccelOptions)
               if getattr(more.accel, f.name) != getattr(base.accel, f.name)}
    assert changed == {"max_samples", "min_step"}
    assert more.accel.max_samples == 32
    assert more.accel.min_step == pytest.approx((opts.ray_end - opts.ray_start) / 256 / 2)
    assert base.accel.max_samples == 16                             # the original is untouched
    base.render(cam, RES)
    more.render(cam, RES)
    assert len(builds) == 1
    assert base.last_stats["evaluated"] < more.last_stats["evaluated"]


def test_add_backdrop_by_hand():
    rgb = torch.tensor([[0.2, -0.4, 0.6], [0.0, 0.0, 0.0]])
    transmittance = torch.tensor([[0.25], [1.0]])
    opacity = torch.tensor([[0.7], [0.0]])
    # neither: the foreground alone
    assert torch.equal(add_backdrop(rgb, transmittance, opacity), rgb)
    # white background, no background network: + (1 - opacity)
    white = add_backdrop(rgb, transmittance, opacity, white_background=True)
    assert torch.allclose(white, torch.tensor([[0.5, -0.1, 0.9], [1.0, 1.0, 1.0]]))
    # a background network: + T bg_rgb
    bg = (torch.tensor([[0.4, 0.8, -0.8], [-1.0, 0.5, 0.0]]), torch.tensor([[0.6], [0.2]]))
    net = add_backdrop(rgb, transmittance, opacity, bg)
    assert torch.allclose(net, torch.tensor([[0.3, -0.2, 0.4], [-1.0, 0.5, 0.0]]))
    # both: + T bg_rgb + T (1 - bg_opacity)
    both = add_backdrop(rgb, transmittance, opacity, bg, white_background=True)
    assert torch.allclose(both, torch.tensor([[0.4, -0.1, 0.5], [-0.2, 1.3, 0.8]]))
