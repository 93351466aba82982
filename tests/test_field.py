"""The tri-plane field on a lattice (core.field.query_lattice) equals the field queried point by point.

On a lattice a tri-plane field reads plane 0 at the lattice's (x, y) projection, plane 1 at (x, z)
and plane 2 at (y, z), and pushes each plane's lookups through the decoder's (linear) first layer
before summing them per point: the same arithmetic as `field(points)` in another order. Float32
rounding of sums in another order is relative to the size of the terms summed, so the tolerance is
relative to the largest output of the lattice: 1e-5 of it (float32's epsilon is 1.2e-7; a hidden
layer of 32-64 terms and a second layer of as many add up to a few hundred ulps at worst).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from analytic_fields import RadialField, sphere
from conftest import EPIGRAF_FIXTURES, REPO, THREEDGP_FIXTURES, tiny_config
from trigan.core.field import EMPTY_SIGMA, lattice_blocks, lattice_points, query_lattice
from trigan.core.generator import Generator
from trigan.core.model_io import open_model

RTOL = 1e-5   # of the lattice's largest |output|, see the module's docstring

MODELS = [REPO / "assets" / "demo.ckpt", EPIGRAF_FIXTURES / "cond_white.pkl",
          EPIGRAF_FIXTURES / "uncond_gpc.pkl", THREEDGP_FIXTURES / "3dgp_cond.pkl"]


def field_of(G, seed=0):
    with torch.inference_mode():
        return G.field_from_ws(G.map_latents(G.latents([seed]), G.labels([0] if G.c_dim else None, 1)))


def lattice(field, counts=(13, 11, 17)):
    """A lattice that is not a cube, reaches past the box by 10% (zero-padded lookups) and whose
    axes differ, so a swapped plane or axis shows."""
    s = 1.1 * float(field.bounds[1][0])
    return [torch.linspace(-s, s * (0.7 + 0.1 * k), n) for k, n in enumerate(counts)]


def gathered(field, axes, chunk):
    rgb, sigma, covered = [], [], 0
    for start, stop, c, s in query_lattice(field, *axes, chunk_points=chunk):
        assert start == covered and stop - start == len(s)   # contiguous blocks in flat order
        covered = stop
        rgb.append(c)
        sigma.append(s)
    return torch.cat(rgb), torch.cat(sigma)


def point_queries(field, axes):
    points = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)   # x slowest
    rgb, sigma = field(points[None])
    return rgb[0], sigma[0]


def assert_close(a, b):
    scale = float(b.abs().max().clamp(min=1.0))
    assert torch.allclose(a, b, rtol=0, atol=RTOL * scale), float((a - b).abs().max())


@pytest.mark.parametrize("path", MODELS, ids=lambda p: Path(p).stem)
def test_lattice_equals_point_queries_on_real_models(path):
    G = open_model(path).G.requires_grad_(False)
    field = field_of(G)
    axes = lattice(field)
    with torch.inference_mode():
        rgb, sigma = gathered(field, axes, 200)
        rgb_ref, sigma_ref = point_queries(field, axes)
    inside = sigma_ref != EMPTY_SIGMA   # beyond support_radius both give exactly EMPTY_SIGMA
    assert torch.equal(sigma[~inside], sigma_ref[~inside])
    assert_close(sigma[inside], sigma_ref[inside])
    assert_close(rgb, rgb_ref)


def test_support_radius_and_sigmoid_colours_on_a_lattice():
    """The support radius cuts the density on the lattice as __call__ does; sigmoid colours too."""
    G = Generator(tiny_config(**{"model.camera.support_radius": 0.25,
                                 "model.triplane.color_activation": "sigmoid"}).model).eval()
    field = field_of(G, seed=4)
    axes = lattice(field, (9, 10, 12))
    with torch.inference_mode():
        rgb, sigma = gathered(field, axes, 50)
        rgb_ref, sigma_ref = point_queries(field, axes)
    cut = sigma_ref == EMPTY_SIGMA
    assert cut.any() and (~cut).any()
    assert torch.equal(sigma == EMPTY_SIGMA, cut)
    assert_close(sigma, sigma_ref)
    assert_close(rgb, rgb_ref)


def test_lattice_does_not_depend_on_the_chunk():
    field = field_of(Generator(tiny_config().model).eval(), seed=2)
    axes = lattice(field)
    with torch.inference_mode():
        results = [gathered(field, axes, chunk) for chunk in (1, 17, 11 * 17 + 5, 3 * 11 * 17, 10 ** 6, None)]
    for rgb, sigma in results[1:]:
        assert_close(rgb, results[0][0])
        assert_close(sigma, results[0][1])


def test_fields_without_planes_are_queried_point_by_point():
    field = RadialField(sphere())
    axes = lattice(field, (6, 7, 8))
    rgb, sigma = gathered(field, axes, 20)
    rgb_ref, sigma_ref = point_queries(field, axes)
    # the same function at the same points, in other batches: equal up to vectorised rounding
    assert torch.allclose(rgb, rgb_ref, atol=1e-6) and torch.allclose(sigma, sigma_ref, atol=1e-5)


@pytest.mark.parametrize("counts,chunk", [((4, 5, 6), 1), ((4, 5, 6), 13), ((4, 5, 6), 30), ((4, 5, 6), 64),
                                          ((3, 2, 7), 1000)])
def test_lattice_blocks_cover_the_lattice_in_flat_order(counts, chunk):
    nx, ny, nz = counts
    axes = [torch.arange(n, dtype=torch.float32) + 10 * k for k, n in enumerate(counts)]
    points = [lattice_points(*axes, block) for block in lattice_blocks(nx, ny, nz, chunk)]
    assert all(len(p) <= max(chunk, nz) for p in points)
    expected = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)
    assert torch.equal(torch.cat(points), expected)
