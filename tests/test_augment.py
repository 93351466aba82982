"""Augmentation of D's inputs: each operation against an independent answer (torch.flip, numpy's
symmetric padding, torch.rot90, scipy.ndimage.rotate), the probabilities, the hashed randomness
(split batches and resumes draw the same), gradients into the fakes, and the training hook."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from train_helpers import tiny_train_config, write_tiny_dataset
from trigan.core.errors import ConfigError
from trigan.training import distributed as ddp
from trigan.training.augment import (
    ROLE_FAKE,
    ROLE_REAL,
    AugmentDraws,
    adjust_brightness,
    apply_augment,
    augment_d_input,
    augment_enabled,
    augment_seeds,
    check_augment_config,
    draw_augment,
    flip_x,
    rotate_images,
    shift_images,
)
from trigan.training.config import AugmentConfig, load_config
from trigan.training.dataset import open_dataset
from trigan.training.loop import Trainer
from trigan.training.randomness import PHASE_D, PHASE_G
from trigan.training.session import fit_config_to_dataset


def _images(b=3, c=4, h=8, w=8, seed=0, dtype=torch.float64):
    return torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=dtype) * 2 - 1


def _draws(b, **values):
    """AugmentDraws with everything off except `values`."""
    base = dict(flip=torch.zeros(b, dtype=torch.bool), rotate=torch.zeros(b, dtype=torch.bool),
                angle=torch.zeros(b, dtype=torch.float64), shift=torch.zeros(b, dtype=torch.bool),
                dx=torch.zeros(b, dtype=torch.long), dy=torch.zeros(b, dtype=torch.long),
                brightness_on=torch.zeros(b, dtype=torch.bool), brightness=torch.zeros(b, dtype=torch.float64))
    base.update(values)
    return AugmentDraws(**base)


# ---------------------------------------------------------------------------------------------------
# The operations

def test_flip_mirrors_only_the_masked_samples_and_twice_is_the_identity():
    x = _images()
    mask = torch.tensor([True, False, True])
    once = flip_x(x, mask)
    assert torch.equal(once[0], torch.flip(x[0], dims=[-1])) and torch.equal(once[2], torch.flip(x[2], dims=[-1]))
    assert torch.equal(once[1], x[1])
    assert torch.equal(flip_x(once, mask), x)


@pytest.mark.parametrize("dx,dy", [(2, 0), (0, -3), (1, 2), (-2, -1)])
def test_shift_moves_a_marked_pixel_by_the_shift(dx, dy):
    x = torch.zeros(1, 1, 9, 11)
    x[0, 0, 4, 5] = 1.0                               # row 4, column 5
    out = shift_images(x, torch.tensor([dx]), torch.tensor([dy]))
    assert out.sum() == 1.0 and out[0, 0, 4 + dy, 5 + dx] == 1.0


def test_shift_fills_the_border_by_mirroring_like_numpy_symmetric_padding():
    x = _images(b=2, c=3, h=7, w=10)
    shifts = [(3, -2), (-9, 6)]                       # the second reaches almost across the image
    out = shift_images(x, torch.tensor([s[0] for s in shifts]), torch.tensor([s[1] for s in shifts]))
    for i, (dx, dy) in enumerate(shifts):
        pad = 12
        padded = np.pad(x[i].numpy(), ((0, 0), (pad, pad), (pad, pad)), mode="symmetric")
        expected = padded[:, pad - dy: pad - dy + 7, pad - dx: pad - dx + 10]
        np.testing.assert_array_equal(out[i].numpy(), expected)


@pytest.mark.parametrize("size", [8, 7])
def test_rotation_by_quarter_turns_equals_rot90(size):
    x = _images(h=size, w=size)
    for k in (1, 2, -1):
        out = rotate_images(x, torch.full((3,), k * math.pi / 2, dtype=torch.float64))
        assert torch.allclose(out, torch.rot90(x, k, dims=(2, 3)), atol=1e-12)
    assert torch.allclose(rotate_images(x, torch.zeros(3)), x, atol=1e-12)


@pytest.mark.parametrize("h,w,degrees", [(9, 9, 30.0), (8, 8, -50.0), (6, 10, 17.0)])
def test_rotation_by_any_angle_matches_scipy(h, w, degrees):
    x = _images(b=1, c=2, h=h, w=w)
    out = rotate_images(x, torch.tensor([math.radians(degrees)], dtype=torch.float64))
    for ch in range(2):
        expected = ndimage.rotate(x[0, ch].numpy(), degrees, reshape=False, order=1, mode="reflect")
        np.testing.assert_allclose(out[0, ch].numpy(), expected, atol=1e-12)


def test_brightness_shifts_the_colour_mean_by_the_amount_and_leaves_depth_alone():
    x = _images(c=4)
    amount = torch.tensor([0.3, -0.15, 0.0], dtype=torch.float64)
    out = adjust_brightness(x, amount, color_channels=3)
    shift = (out[:, :3] - x[:, :3]).mean(dim=(1, 2, 3))
    assert torch.allclose(shift, amount, atol=1e-12)
    assert torch.equal(out[:, 3], x[:, 3])


def test_the_pipeline_moves_depth_with_the_colours_but_only_brightens_the_colours():
    x = _images(b=2, c=4)
    draws = _draws(2, flip=torch.tensor([True, False]), shift=torch.tensor([True, True]),
                   dx=torch.tensor([1, -2]), dy=torch.tensor([0, 3]), brightness_on=torch.tensor([True, True]),
                   brightness=torch.tensor([0.25, -0.5], dtype=torch.float64))
    out = apply_augment(x, draws, color_channels=3)
    moved = shift_images(flip_x(x, draws.flip), draws.dx, draws.dy)
    assert torch.equal(out[:, 3], moved[:, 3])                             # depth: moved, same values
    assert torch.allclose(out[:, :3], moved[:, :3] + draws.brightness.view(-1, 1, 1, 1), atol=1e-12)


# ---------------------------------------------------------------------------------------------------
# Probabilities

def test_probability_zero_is_the_identity():
    cfg = AugmentConfig()
    assert not augment_enabled(cfg)
    x = _images()
    draws = draw_augment(cfg, 3, (8, 8), generator=torch.Generator().manual_seed(0))
    assert not (draws.flip.any() or draws.rotate.any() or draws.shift.any() or draws.brightness_on.any())
    assert torch.equal(apply_augment(x, draws), x)
    assert augment_d_input(cfg, x, 0, 5, PHASE_D, ROLE_REAL, 0) is x


def test_probability_one_always_applies():
    cfg = AugmentConfig(flip_p=1.0, rotate_p=1.0, shift_p=1.0, brightness_p=1.0)
    draws = draw_augment(cfg, 2000, (16, 16), generator=torch.Generator().manual_seed(1))
    assert draws.flip.all() and draws.rotate.all() and draws.shift.all() and draws.brightness_on.all()
    # ... and the applied values spread over their ranges.
    assert draws.angle.abs().max() <= math.pi and draws.angle.min() < -3.0 and draws.angle.max() > 3.0
    assert draws.dx.abs().max() == 2 and draws.dy.abs().max() == 2           # round(0.125 * 16)
    assert draws.brightness.std().item() == pytest.approx(0.2, rel=0.1)
    x = _images(b=1, c=3, h=16, w=16)
    out = apply_augment(x, _draws(1, flip=torch.tensor([True])))
    assert not torch.equal(out, x)


def test_observed_frequencies_are_near_the_probabilities():
    cfg = AugmentConfig(flip_p=0.3, rotate_p=0.5, shift_p=0.1, brightness_p=0.8)
    n = 20000
    draws = draw_augment(cfg, n, (32, 32), generator=torch.Generator().manual_seed(2))
    for mask, p in ((draws.flip, 0.3), (draws.rotate, 0.5), (draws.shift, 0.1), (draws.brightness_on, 0.8)):
        tol = 5 * math.sqrt(p * (1 - p) / n)                    # five binomial standard deviations
        assert abs(mask.double().mean().item() - p) < tol
    # Independent operations: the joint frequency is the product.
    both = (draws.flip & draws.brightness_on).double().mean().item()
    assert abs(both - 0.24) < 5 * math.sqrt(0.24 * 0.76 / n)
    # Off samples carry the neutral values.
    assert (draws.angle[~draws.rotate] == 0).all() and (draws.dx[~draws.shift] == 0).all()
    assert (draws.brightness[~draws.brightness_on] == 0).all()


def test_enabling_one_operation_does_not_change_the_draws_of_another():
    seeds = augment_seeds(0, 3, PHASE_D, ROLE_FAKE, range(64))
    a = draw_augment(AugmentConfig(flip_p=0.4), 64, (8, 8), sample_seeds=seeds)
    b = draw_augment(AugmentConfig(flip_p=0.4, rotate_p=0.7, brightness_p=0.2), 64, (8, 8), sample_seeds=seeds)
    assert torch.equal(a.flip, b.flip) and b.rotate.any() and not a.rotate.any()


# ---------------------------------------------------------------------------------------------------
# Hashed randomness (resume and multi-process exactness)

def test_draws_depend_only_on_seed_step_phase_role_and_global_index():
    cfg = AugmentConfig(flip_p=0.5, rotate_p=0.5, shift_p=0.5, brightness_p=0.5)
    x = _images(b=8, c=4)
    whole = augment_d_input(cfg, x, 7, 11, PHASE_D, ROLE_FAKE, first_index=0)
    halves = torch.cat([augment_d_input(cfg, x[:4], 7, 11, PHASE_D, ROLE_FAKE, first_index=0),
                        augment_d_input(cfg, x[4:], 7, 11, PHASE_D, ROLE_FAKE, first_index=4)])
    assert torch.equal(whole, halves)
    assert torch.equal(whole, augment_d_input(cfg, x, 7, 11, PHASE_D, ROLE_FAKE, first_index=0))
    for other in ((8, 11, PHASE_D, ROLE_FAKE), (7, 12, PHASE_D, ROLE_FAKE), (7, 11, PHASE_G, ROLE_FAKE),
                  (7, 11, PHASE_D, ROLE_REAL)):
        assert not torch.equal(whole, augment_d_input(cfg, x, *other, first_index=0))


# ---------------------------------------------------------------------------------------------------
# Gradients

def test_gradients_flow_through_every_operation_to_the_fakes():
    cfg = AugmentConfig(flip_p=0.5, rotate_p=0.5, rotate_max=40.0, shift_p=0.5, brightness_p=0.5)
    draws = draw_augment(cfg, 4, (6, 6), generator=torch.Generator().manual_seed(4))
    assert draws.flip.any() and draws.rotate.any() and draws.shift.any()
    fake = _images(b=4, c=4, h=6, w=6).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: apply_augment(t, draws), (fake,))
    # A flip is a permutation: the gradient of <out, w> is w flipped back.
    w = torch.rand(4, 4, 6, 6, dtype=torch.float64)
    only_flip = _draws(4, flip=torch.tensor([True, False, True, False]))
    grad, = torch.autograd.grad((apply_augment(fake, only_flip) * w).sum(), fake)
    assert torch.equal(grad, flip_x(w, only_flip.flip))


def test_r1_through_augmentation_has_a_second_derivative():
    """Lazy R1 differentiates |dD/dx|^2 through the augmented input: double backward must work."""
    cfg = AugmentConfig(rotate_p=1.0, shift_p=1.0, flip_p=1.0)
    real = _images(b=2, c=3, h=8, w=8, dtype=torch.float32).requires_grad_(True)
    weight = torch.rand(3, 8, 8, requires_grad=True)
    logits = (augment_d_input(cfg, real, 0, 0, PHASE_D, ROLE_REAL, 0) * weight).sum(dim=(1, 2, 3)).tanh()
    grad, = torch.autograd.grad(logits.sum(), real, create_graph=True)
    grad.square().sum().backward()
    assert weight.grad is not None and weight.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------------------
# Config and the training hook

def test_config_keys_and_one_line_errors():
    cfg = load_config("demo", ["training.augment.flip_p=0.3", "training.augment.rotate_max=30"])
    assert cfg.training.augment.flip_p == 0.3 and cfg.training.augment.rotate_max == 30.0
    assert not augment_enabled(load_config("demo").training.augment)           # off by default
    check_augment_config(cfg.training.augment)
    for bad, match in ((AugmentConfig(flip_p=1.5), "flip_p=1.5"), (AugmentConfig(brightness_p=-0.1), "brightness_p"),
                       (AugmentConfig(rotate_max=270), "rotate_max"), (AugmentConfig(shift_max=1.0), "shift_max"),
                       (AugmentConfig(brightness_std=-1), "brightness_std")):
        with pytest.raises(ConfigError, match=match) as err:
            check_augment_config(bad)
        assert "\n" not in str(err.value)


def test_training_with_augmentation_is_deterministic_and_differs_from_without(tmp_path):
    data = write_tiny_dataset(tmp_path / "squares", num=8)
    ds = open_dataset(data, mirror=False)

    def two_steps(*overrides):
        cfg = tiny_train_config("training.mirror=false", "training.blur_init_sigma=0", *overrides)
        fit_config_to_dataset(cfg, ds, lambda *_: None)
        trainer = Trainer(cfg, tmp_path / "run", ds, ddp.DistInfo())
        losses = [trainer.train_step() for _ in range(2)]
        return losses, trainer.D.state_dict()

    on = ["training.augment.flip_p=0.5", "training.augment.rotate_p=0.5", "training.augment.shift_p=0.5",
          "training.augment.brightness_p=0.5"]
    a_losses, a_D = two_steps(*on)
    b_losses, b_D = two_steps(*on)
    c_losses, _ = two_steps()
    assert a_losses == b_losses and all(torch.equal(a_D[k], b_D[k]) for k in a_D)
    assert a_losses[0]["D_real"] != c_losses[0]["D_real"]
    with pytest.raises(ConfigError, match="shift_p"):
        two_steps("training.augment.shift_p=2")
