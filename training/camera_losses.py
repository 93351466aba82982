"""Regularisers of 3DGP's learned camera generator, added to G's loss (3dgp.md 3.4).

* Distribution matching: for every adapted camera parameter separately, the squared 1-D
  Wasserstein-2 distance between the posterior and the prior samples it came from. Between two
  empirical distributions of equal size with uniform weights, the optimal transport plan in 1-D
  pairs the k-th smallest of one with the k-th smallest of the other, so sorting gives the exact
  value (what upstream gets from an exact OT solver on the squared-distance cost matrix), and its
  gradient flows through the sort. Ramped from 0 to full weight over `emd_anneal_kimg`.
* Force-mean: the L2 distance between the posterior's mean (yaw, pitch) and the prior's, so the
  generator cannot turn the whole distribution away from the front.
* Jacobian ("Lipschitz"): the diagonal entries g = d posterior_i / d prior_i, penalised by
  |g| + 1/(|g| + eps), which is smallest at |g| = 1 - eps: the mapping neither collapses the prior
  onto one camera nor stretches it. Shifted so that its minimum is 0. Off by default (as upstream).

All three are computed on one fresh batch of prior cameras, latents and uniformly random classes,
drawn from the phase's own generator (randomness.py), and on the whole batch in every process, so
averaging gradients over processes gives the single-process result.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

import torch

from trigan.core.camera_generator import FOV, LOOK_AT, ORIGIN, PARAM_NAMES, camera_to_params, prior_mean_angles
from trigan.core.cameras import sample_camera_prior
from trigan.core.generator import Generator, one_hot
from trigan.training.config import CameraRegularizerConfig

JACOBIAN_EPS = 1e-4


def wasserstein_1d_squared(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared W2 distance between the empirical distributions of a [N, ...] and b [N, ...] (uniform
    weights), for every trailing column separately: mean over k of (a_(k) - b_(k))^2."""
    if a.shape != b.shape:
        raise ValueError(f"equal-size samples needed, got {tuple(a.shape)} and {tuple(b.shape)}")
    return (a.sort(dim=0).values - b.sort(dim=0).values).square().mean(dim=0)


def distribution_matching_loss(posterior: torch.Tensor, prior: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Sum over parameters of weight * W2^2(posterior column, prior column); [N, P] inputs, [P] weights.
    Columns with weight 0 cost nothing (and get no gradient)."""
    used = weights != 0
    if not bool(used.any()):
        return posterior.sum() * 0
    return (wasserstein_1d_squared(posterior[:, used], prior[:, used]) * weights[used]).sum()


def force_mean_loss(angles: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L2 distance between the batch mean of angles [N, 2] and target [2] (sqrt kept finite at 0)."""
    return ((angles.mean(dim=0) - target).square().sum() + 1e-8).sqrt()


def jacobian_diagonal(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, columns) -> torch.Tensor:
    """d fn(x)[n, i] / d x[n, i] for the listed columns i, [N, len(columns)], keeping the graph so
    that a loss on it can be differentiated again. Valid when row n of the output depends on row n
    of the input only (true of the camera generator: no batch statistics), which turns the sum over
    rows into a per-row derivative."""
    x = x.detach().requires_grad_(True)
    y = fn(x)
    entries = []
    for i in columns:
        (grad,) = torch.autograd.grad(y[:, i].sum(), x, create_graph=True)
        entries.append(grad[:, i])
    return torch.stack(entries, dim=1)


def jacobian_penalty(diag: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Sum over columns of weight * mean over rows of (|g| + 1/(|g| + eps) - (2 - eps)); 0 at |g| = 1 - eps."""
    g = diag.abs()
    per_column = (g + 1 / (g + JACOBIAN_EPS) - (2 - JACOBIAN_EPS)).mean(dim=0)
    return (per_column * weights).sum()


def emd_multiplier(cfg: CameraRegularizerConfig, kimg: float) -> float:
    """The distribution-matching weight's ramp: 0 at the start, 1 after emd_anneal_kimg."""
    if cfg.emd_anneal_kimg <= 0:
        return 1.0
    return min(max(kimg / cfg.emd_anneal_kimg, 0.0), 1.0)


def _group_weights(origin: float, fov: float, look_at: float) -> torch.Tensor:
    w = torch.zeros(len(PARAM_NAMES))
    w[list(ORIGIN)], w[FOV], w[list(LOOK_AT)] = origin, fov, look_at
    return w


def camera_regularizers(G: Generator, cfg: CameraRegularizerConfig, kimg: float, gen: torch.Generator,
                        use_labels: bool = True) -> Tuple[torch.Tensor, Dict[str, float]]:
    """(weighted sum of the enabled terms, stats to log) for G's camera generator at `kimg`.

    Stats: each enabled term as added to the loss (camera_emd, camera_force_mean, camera_jacobian)
    and the posterior's mean and spread of yaw, pitch and fov and its mean look-at radius on this batch."""
    cam_gen = G.camera_generator
    if cam_gen is None:
        raise ValueError("camera regularisers need a generator with a camera generator")
    adapted = cam_gen.adapted.cpu()
    emd_w = _group_weights(cfg.emd_origin, cfg.emd_fov, cfg.emd_look_at) * emd_multiplier(cfg, kimg) * adapted
    jac_w = _group_weights(cfg.jacobian_origin, cfg.jacobian_fov, cfg.jacobian_look_at) * adapted
    use_force_mean = cfg.force_mean_weight > 0 and bool(adapted[list(ORIGIN)].any())
    sizes = [cfg.emd_num_samples if bool((emd_w != 0).any()) else 0,
             cfg.force_mean_num_samples if use_force_mean else 0,
             cfg.jacobian_num_samples if bool((jac_w != 0).any()) else 0]
    n = max(max(sizes), 2)   # at least a couple of cameras for the logged statistics

    device = G.device
    prior = camera_to_params(sample_camera_prior(G.cfg.camera, n, generator=gen)).to(device)
    z = torch.randn(n, G.z_dim, generator=gen).to(device)
    c: Optional[torch.Tensor] = None
    if G.c_dim > 0 and use_labels:
        c = one_hot(torch.randint(G.c_dim, (n,), generator=gen).tolist(), G.c_dim, device)

    terms: Dict[str, torch.Tensor] = {}
    if sizes[2]:
        m = sizes[2]
        cols = [i for i in range(len(PARAM_NAMES)) if jac_w[i] != 0]
        diag = jacobian_diagonal(lambda p: cam_gen(p, z[:m], None if c is None else c[:m]), prior[:m], cols)
        terms["camera_jacobian"] = jacobian_penalty(diag, jac_w[cols].to(device))
    posterior = cam_gen(prior, z, c)
    if sizes[0]:
        m = sizes[0]
        terms["camera_emd"] = distribution_matching_loss(posterior[:m], prior[:m], emd_w.to(device))
    if sizes[1]:
        m = sizes[1]
        target = prior_mean_angles(G.cfg.camera).to(device)
        terms["camera_force_mean"] = force_mean_loss(posterior[:m, list(ORIGIN)], target) * cfg.force_mean_weight

    total = posterior.sum() * 0   # keeps the graph (and a tensor) when every term is off
    stats: Dict[str, float] = {}
    for name, value in terms.items():
        total = total + value
        stats[name] = float(value.detach())
    with torch.no_grad():
        for i, short in ((ORIGIN[0], "yaw"), (ORIGIN[1], "pitch"), (FOV, "fov")):
            stats[f"camera_{short}_mean"] = float(posterior[:, i].mean())
            stats[f"camera_{short}_std"] = float(posterior[:, i].std())
        stats["camera_look_at_radius_mean"] = float(posterior[:, LOOK_AT[2]].mean())
    return total, stats
