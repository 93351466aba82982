"""Resuming an RGB run with depth as D's 4th channel (training/warm_start.py): the widened D computes
what it computed before, its Adam state follows, and a whole run goes on with depth and the opacity
regulariser."""

from __future__ import annotations

import json

import pytest
import torch

from train_helpers import fitted_tiny_config, tiny_session
from trigan.core.cameras import PatchParams
from trigan.core.checkpoint import load_checkpoint
from trigan.training.config import DiscriminatorConfig
from trigan.training.discriminator import Discriminator
from trigan.training.loop import LATEST
from trigan.training.synth import SynthSettings, write_synth_dataset
from trigan.training.warm_start import widen_image_inputs


def _d(channels: int, seed: int = 0) -> Discriminator:
    torch.manual_seed(seed)
    cfg = DiscriminatorConfig(patch_resolution=16, num_additional_start_blocks=1, channel_base=256,
                              channel_max=16, img_channels=channels, hyper_mod=True, patch_cond=True)
    return Discriminator(cfg, c_dim=3)


def _trained_rgb_d():
    """A 3-channel D after two Adam steps, so that its weights and moments are not at their init."""
    D = _d(3)
    opt = torch.optim.Adam(D.parameters(), lr=0.01, betas=(0.0, 0.99))
    gen = torch.Generator().manual_seed(1)
    for _ in range(2):
        img = torch.randn(4, 3, 16, 16, generator=gen)
        c = torch.eye(3)[torch.tensor([0, 1, 2, 0])]
        D(img, c, None).square().mean().backward()
        opt.step()
        opt.zero_grad()
    return D, opt


def test_a_widened_discriminator_ignores_depth_and_gives_the_rgb_logits():
    rgb_d, opt = _trained_rgb_d()
    state, opt_state = rgb_d.state_dict(), opt.state_dict()
    wide = _d(4, seed=5)
    assert widen_image_inputs(wide, state, opt_state) == (3, 4)
    wide.load_state_dict(state)
    gen = torch.Generator().manual_seed(2)
    img = torch.randn(8, 4, 16, 16, generator=gen)
    c = torch.eye(3)[torch.tensor([0, 1, 2, 2, 1, 0, 0, 1])]
    patch = PatchParams(scale=torch.full((8,), 0.7), offset=torch.rand(8, 2, generator=gen) * 0.3)
    with torch.no_grad():
        want = rgb_d(img[:, :3], c, patch)
        assert torch.allclose(wide(img, c, patch), want, rtol=1e-5, atol=1e-5)
        other = img.clone()
        other[:, 3] = torch.randn(8, 16, 16, generator=gen) * 3
        assert torch.allclose(wide(other, c, patch), want, rtol=1e-5, atol=1e-5)   # depth ignored so far


def test_adam_moments_are_rescaled_with_the_weights_and_the_optimiser_loads_them():
    rgb_d, opt = _trained_rgb_d()
    names = [n for n, _ in rgb_d.named_parameters()]
    state, opt_state = rgb_d.state_dict(), opt.state_dict()
    first = next(i for i, n in enumerate(names) if n.endswith("fromrgb.weight"))
    old_w = state[names[first]].clone()
    old_m = opt_state["state"][first]["exp_avg"].clone()
    old_v = opt_state["state"][first]["exp_avg_sq"].clone()
    wide = _d(4)
    widen_image_inputs(wide, state, opt_state)
    scale = (4 / 3) ** 0.5
    new_w, moments = state[names[first]], opt_state["state"][first]
    assert new_w.shape[1] == 4 and torch.allclose(new_w[:, :3], old_w * scale) and not new_w[:, 3].any()
    assert torch.allclose(moments["exp_avg"][:, :3], old_m / scale) and not moments["exp_avg"][:, 3].any()
    assert torch.allclose(moments["exp_avg_sq"][:, :3], old_v * 3 / 4) and not moments["exp_avg_sq"][:, 3].any()
    wide.load_state_dict(state)
    wide_opt = torch.optim.Adam(wide.parameters(), lr=0.01, betas=(0.0, 0.99))
    wide_opt.load_state_dict(opt_state)
    D_in = torch.randn(2, 4, 16, 16)
    wide(D_in, torch.eye(3)[:2], None).sum().backward()
    wide_opt.step()                                      # moments and parameters have matching shapes
    assert wide_opt.state_dict()["state"][first]["exp_avg"].shape[1] == 4


def test_a_checkpoint_that_fits_or_differs_otherwise_is_left_alone():
    rgb_d, opt = _trained_rgb_d()
    state = rgb_d.state_dict()
    same = {k: v.clone() for k, v in state.items()}
    assert widen_image_inputs(_d(3), same, None) is None
    assert all(torch.equal(same[k], state[k]) for k in state)
    # Fewer channels than the checkpoint, or another width: load_state_dict reports the mismatch.
    assert widen_image_inputs(_d(3), _d(4).state_dict(), None) is None
    narrow = DiscriminatorConfig(patch_resolution=16, num_additional_start_blocks=1, channel_base=128,
                                 channel_max=8, img_channels=4, hyper_mod=True, patch_cond=True)
    assert widen_image_inputs(Discriminator(narrow, c_dim=3), {k: v.clone() for k, v in state.items()}, None) is None


@pytest.fixture(scope="module")
def synth_zip(tmp_path_factory):
    path = tmp_path_factory.mktemp("synth") / "shapes.zip"
    write_synth_dataset(path, SynthSettings(num=8, resolution=16, classes=2, seed=3), progress=False)
    return path


def _run(run, data, resume, *overrides):
    cfg, ds = fitted_tiny_config(data, *overrides)
    tiny_session(run, cfg, resume=resume).run(ds)


def test_an_rgb_run_resumes_with_depth_and_the_opacity_regulariser(tmp_path, synth_zip):
    run = tmp_path / "run"
    _run(run, synth_zip, False, "training.kimg=0.024")
    before = load_checkpoint(run / LATEST).extra["D"]
    first = next(k for k in before if k.endswith("fromrgb.weight"))
    assert before[first].shape[1] == 3
    _run(run, synth_zip, True, "training.kimg=0.048", "discriminator.img_channels=4",
         "training.depth.adaptor=false", "training.opacity_reg=1.0", "training.opacity_reg_start_kimg=0")
    after = load_checkpoint(run / LATEST)
    assert after.progress["step"] == 6
    weight = after.extra["D"][first]
    assert weight.shape[1] == 4 and weight[:, 3].abs().sum() > 0      # D has started to read depth
    assert "widened from 3 to 4 channels" in (run / "log.txt").read_text()
    stats = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    binarity = [s["opacity_binarity"] for s in stats if "opacity_binarity" in s]
    assert binarity and all(0 <= b <= 0.25 for b in binarity)
