"""Camera regularisers of 3DGP: the sorted 1-D Wasserstein distance against brute-force optimal
assignments, force-mean and Jacobian terms at and away from their minima, the Jacobian diagonal
against analytic derivatives and torch's full Jacobian, and the regularisers pulling a camera
generator's posterior onto the prior."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from scipy.optimize import linear_sum_assignment

from conftest import tiny_config
from trigan.core.camera_generator import FOV, LOOK_AT, PITCH, YAW, CameraGenerator, camera_to_params
from trigan.core.cameras import sample_camera_prior
from trigan.core.config import CameraGeneratorConfig
from trigan.core.generator import Generator
from trigan.training.camera_losses import (
    JACOBIAN_EPS,
    camera_regularizers,
    distribution_matching_loss,
    emd_multiplier,
    force_mean_loss,
    jacobian_diagonal,
    jacobian_penalty,
    wasserstein_1d_squared,
)
from trigan.training.config import CameraRegularizerConfig, load_config

THREE_DGP = {"model.family": "3dgp", "model.camera_generator.enabled": "true",
             "model.camera_generator.hidden_dim": 32, "model.camera.dist": "uniform",
             "model.camera.yaw_std": 1.57, "model.camera.pitch_std": 0.785, "model.camera.fov_min": 10.0,
             "model.camera.fov_max": 45.0, "model.camera.look_at_radius_max": 0.2}


def _brute_force_w2(a, b):
    """min over one-to-one pairings of the mean squared difference (every permutation)."""
    return min(sum((x - b[j]) ** 2 for x, j in zip(a, perm, strict=True)) / len(a) for perm in itertools.permutations(range(len(b))))


def test_sorted_wasserstein_equals_the_best_of_all_pairings():
    gen = torch.Generator().manual_seed(0)
    for trial in range(20):
        n = 2 + trial % 6
        a, b = torch.randn(n, generator=gen, dtype=torch.float64), torch.randn(n, generator=gen, dtype=torch.float64) * 3
        if trial % 4 == 0:
            a[: n // 2] = a[0]   # ties
        assert float(wasserstein_1d_squared(a, b)) == pytest.approx(_brute_force_w2(a.tolist(), b.tolist()), rel=1e-12)


def test_sorted_wasserstein_equals_an_optimal_assignment_per_column():
    gen = torch.Generator().manual_seed(1)
    a = torch.rand(64, 3, generator=gen, dtype=torch.float64) * torch.tensor([3.0, 30.0, 0.2], dtype=torch.float64)
    b = torch.randn(64, 3, generator=gen, dtype=torch.float64)
    got = wasserstein_1d_squared(a, b)
    for col in range(3):
        cost = (a[:, col, None] - b[None, :, col]).square().numpy()
        rows, cols = linear_sum_assignment(cost)
        assert float(got[col]) == pytest.approx(cost[rows, cols].mean(), rel=1e-10)
    with pytest.raises(ValueError, match="equal-size"):
        wasserstein_1d_squared(a, b[:10])


def test_wasserstein_gradient_moves_each_sample_toward_its_sorted_partner():
    a = torch.tensor([0.3, -1.0, 2.0], requires_grad=True)
    b = torch.tensor([5.0, 0.0, 1.0])
    wasserstein_1d_squared(a, b).backward()
    # sorted pairs: -1.0 <-> 0.0, 0.3 <-> 1.0, 2.0 <-> 5.0; d/da_k = 2 (a_k - partner) / n
    assert a.grad.tolist() == pytest.approx([2 * (0.3 - 1.0) / 3, 2 * (-1.0 - 0.0) / 3, 2 * (2.0 - 5.0) / 3])


def test_distribution_matching_is_zero_for_the_same_samples_and_weights_each_parameter():
    gen = torch.Generator().manual_seed(2)
    prior = torch.rand(50, 7, generator=gen)
    shuffled = prior[torch.randperm(50, generator=gen)]
    weights = torch.tensor([2.0, 2.0, 1e-4, 0.0, 1e-4, 1e-4, 1e-4])
    assert float(distribution_matching_loss(shuffled, prior, weights)) == 0.0   # same distribution
    shifted = shuffled.clone()
    shifted[:, FOV] += 3.0
    shifted[:, YAW] -= 0.5
    shifted[:, 3] += 100.0     # weight 0: free
    expected = 1e-4 * 3.0 ** 2 + 2.0 * 0.5 ** 2   # a shift by d costs d^2 in W2^2
    assert float(distribution_matching_loss(shifted, prior, weights)) == pytest.approx(expected, rel=1e-5)
    assert float(distribution_matching_loss(shifted, prior, torch.zeros(7))) == 0.0


def test_force_mean_is_minimal_at_the_prior_mean_and_grows_with_the_offset():
    gen = torch.Generator().manual_seed(3)
    target = torch.tensor([0.0, math.pi / 2], dtype=torch.float64)
    angles = torch.rand(256, 2, generator=gen, dtype=torch.float64)
    centred = angles - angles.mean(dim=0) + target
    assert float(force_mean_loss(centred, target)) == pytest.approx(1e-4)   # sqrt of the 1e-8 guard
    moved = centred + torch.tensor([0.3, -0.4], dtype=torch.float64)
    assert float(force_mean_loss(moved, target)) == pytest.approx(math.sqrt(0.25 + 1e-8))


def test_jacobian_diagonal_matches_analytic_derivatives():
    x = torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.25, -0.5]], dtype=torch.float64)

    def fn(p):   # y_i depends on other columns too; the diagonal only keeps d y_i / d x_i
        return torch.stack([3 * p[:, 0] + p[:, 1] ** 2, p[:, 1] ** 3 * p[:, 2], torch.sin(p[:, 2]) + p[:, 0]], dim=1)

    diag = jacobian_diagonal(fn, x, [0, 1, 2])
    expected = torch.stack([torch.full((2,), 3.0, dtype=torch.float64), 3 * x[:, 1] ** 2 * x[:, 2], torch.cos(x[:, 2])], 1)
    assert torch.allclose(diag, expected)
    assert diag.requires_grad   # the graph is kept, so the penalty trains the network


def test_jacobian_diagonal_of_the_camera_generator_matches_torch_full_jacobian():
    cfg = load_config("3dgp_imagenet256").model.camera
    cg = CameraGenerator(CameraGeneratorConfig(enabled=True, hidden_dim=16), cfg, z_dim=8, c_dim=3).double()
    gen = torch.Generator().manual_seed(4)
    prior = camera_to_params(sample_camera_prior(cfg, 5, generator=gen)).double()
    z = torch.randn(5, 8, generator=gen, dtype=torch.float64)
    c = torch.eye(3, dtype=torch.float64)[[0, 1, 2, 0, 1]]
    fn = lambda p: cg(p, z, c)
    cols = [YAW, PITCH, FOV, *LOOK_AT]
    diag = jacobian_diagonal(fn, prior, cols)
    full = torch.autograd.functional.jacobian(fn, prior)   # [5, 7, 5, 7]
    for n in range(5):
        for k, i in enumerate(cols):
            assert float(diag[n, k].detach()) == pytest.approx(float(full[n, i, n, i]), rel=1e-9, abs=1e-12)
        # no sample depends on another one (what makes the summed-gradient trick exact)
        others = [m for m in range(5) if m != n]
        assert float(full[n, :, others, :].abs().max()) == 0.0


def test_jacobian_penalty_is_zero_at_unit_slope_and_positive_elsewhere():
    w = torch.tensor([0.5, 0.05])
    at_min = torch.full((10, 2), 1 - JACOBIAN_EPS, dtype=torch.float64)
    assert float(jacobian_penalty(at_min, w)) == pytest.approx(0.0, abs=1e-12)
    assert float(jacobian_penalty(-at_min, w)) == pytest.approx(0.0, abs=1e-12)   # the sign is free
    assert float(jacobian_penalty(torch.ones(10, 2), w)) < 1e-7
    for g in (0.01, 0.5, 2.0, 10.0):
        expected = 0.55 * (g + 1 / (g + JACOBIAN_EPS) - (2 - JACOBIAN_EPS))
        assert float(jacobian_penalty(torch.full((4, 2), g), w)) == pytest.approx(expected, rel=1e-5)
        assert expected > 0


def test_emd_ramp():
    cfg = CameraRegularizerConfig(emd_anneal_kimg=100)
    assert [emd_multiplier(cfg, k) for k in (0, 25, 100, 1000)] == [0.0, 0.25, 1.0, 1.0]
    assert emd_multiplier(CameraRegularizerConfig(emd_anneal_kimg=0), 0) == 1.0


def test_regularisers_of_an_unadapted_generator_are_at_their_minima():
    """A camera generator that adapts nothing gives posterior = prior: distribution matching 0,
    force-mean at its floor up to the sampling noise of the mean, and no Jacobian columns to penalise."""
    G = Generator(tiny_config(**THREE_DGP, **{"model.camera_generator.adjust_angles": "false",
                                              "model.camera_generator.adjust_fov": "false",
                                              "model.camera_generator.adjust_look_at": "false"}).model)
    cfg = CameraRegularizerConfig(emd_anneal_kimg=0, jacobian_origin=0.5, jacobian_fov=0.05, jacobian_look_at=0.005)
    total, stats = camera_regularizers(G, cfg, 10.0, torch.Generator().manual_seed(0))
    assert float(total.detach()) == 0.0 and "camera_emd" not in stats and "camera_jacobian" not in stats
    assert "camera_force_mean" not in stats   # the angles are not adapted: nothing to force


def test_regularisers_are_finite_log_their_terms_and_train_only_the_camera_generator():
    G = Generator(tiny_config(**THREE_DGP).model)
    cfg = CameraRegularizerConfig(emd_anneal_kimg=0, jacobian_origin=0.5, jacobian_fov=0.05, jacobian_look_at=0.005,
                                  force_mean_num_samples=64, jacobian_num_samples=32)
    total, stats = camera_regularizers(G, cfg, 0.0, torch.Generator().manual_seed(0))
    assert torch.isfinite(total) and float(total.detach()) > 0
    parts = stats["camera_emd"] + stats["camera_force_mean"] + stats["camera_jacobian"]
    assert float(total.detach()) == pytest.approx(parts, rel=1e-5)
    assert 10.0 <= stats["camera_fov_mean"] <= 45.0 and stats["camera_yaw_std"] >= 0
    total.backward()
    for name, p in G.named_parameters():
        assert (p.grad is not None) == name.startswith("camera_generator."), name
    # the same generator state gives the same draws (a function of the seed only)
    again, _ = camera_regularizers(G, cfg, 0.0, torch.Generator().manual_seed(0))
    assert float(again.detach()) == float(total.detach())
    # before the ramp has begun there is no distribution matching term
    _, early = camera_regularizers(G, CameraRegularizerConfig(), 0.0, torch.Generator().manual_seed(0))
    assert "camera_emd" not in early and "camera_force_mean" in early


def test_descending_the_regularisers_moves_a_collapsed_posterior_toward_the_prior():
    """A freshly initialised camera generator maps the whole prior to a narrow band of cameras off the
    prior's centre; a few optimiser steps on the regularisers alone (no adversarial loss) lower them,
    spread the posterior out and move its mean toward the prior's. (Full convergence takes thousands
    of steps; this checks the direction on the same evaluation batch before and after.)"""
    torch.manual_seed(0)
    G = Generator(tiny_config(**THREE_DGP, **{"model.camera_generator.lr_multiplier": 1.0}).model)
    cfg = CameraRegularizerConfig(emd_anneal_kimg=0, emd_fov=1e-3, emd_look_at=1e-1, emd_num_samples=64,
                                  force_mean_num_samples=64)
    opt = torch.optim.Adam(G.camera_generator.parameters(), lr=0.01, betas=(0.0, 0.99))
    before, first = camera_regularizers(G, cfg, 0.0, torch.Generator().manual_seed(10_000))
    for step in range(30):
        loss, _ = camera_regularizers(G, cfg, 0.0, torch.Generator().manual_seed(step))
        opt.zero_grad()
        loss.backward()
        opt.step()
    after, last = camera_regularizers(G, cfg, 0.0, torch.Generator().manual_seed(10_000))
    assert float(after.detach()) < 0.5 * float(before.detach())
    assert last["camera_emd"] < first["camera_emd"]
    assert last["camera_yaw_std"] > 1.5 * first["camera_yaw_std"]
    assert last["camera_fov_std"] > 1.5 * first["camera_fov_std"]
    assert abs(last["camera_yaw_mean"]) < abs(first["camera_yaw_mean"])
    assert abs(last["camera_pitch_mean"] - math.pi / 2) < abs(first["camera_pitch_mean"] - math.pi / 2)
