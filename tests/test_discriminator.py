"""The EpiGRAF patch discriminator: upstream parity on the fixtures, plus properties with independent answers."""

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import EPIGRAF_FIXTURES as FIXTURES
from trigan.core.cameras import PatchParams
from trigan.core.epigraf_pickle import read_epigraf_pickle
from trigan.training.config import DiscriminatorConfig, load_config
from trigan.training.discriminator import Discriminator, minibatch_std

# The fixtures' D architectures (fixtures README 4), written out by hand; `fixture_discriminator`
# checks them against what the snapshot itself records.
FIXTURE_D = {
    "uncond_gpc": (DiscriminatorConfig(patch_resolution=16, num_additional_start_blocks=1, channel_base=128,
                                       channel_max=16, hyper_mod=True, patch_cond=True, camera_cond=True,
                                       camera_cond_raw=False, cmap_dim=16), 0),
    "cond_white": (DiscriminatorConfig(patch_resolution=16, num_additional_start_blocks=0, channel_base=64,
                                       channel_max=8, hyper_mod=False, patch_cond=False, camera_cond=False,
                                       cmap_dim=8), 4),
}


def fixture_discriminator(name):
    """Read a fixture's D: (upstream state dict, DiscriminatorConfig, c_dim), the config cross-checked
    against the settings pickled with the network."""
    snap = read_epigraf_pickle(FIXTURES / f"{name}.pkl")
    net = snap.networks["D"]
    cfg, c_dim = FIXTURE_D[name]
    d_cfg = snap.config["model"]["discriminator"]
    root = net.attributes[""]
    assert root["c_dim"] == c_dim
    assert net.attributes["b4"]["cmap_dim"] == cfg.cmap_dim
    assert d_cfg["cbase"] * d_cfg["fmaps"] == cfg.channel_base and d_cfg["cmax"] == cfg.channel_max
    assert d_cfg["num_additional_start_blocks"] == cfg.num_additional_start_blocks
    assert d_cfg["patch"]["resolution"] == cfg.patch_resolution
    assert d_cfg["mbstd_group_size"] == cfg.mbstd_group_size
    assert (d_cfg["hyper_mod"], d_cfg["patch"]["patch_params_cond"]) == (cfg.hyper_mod, cfg.patch_cond)
    assert (d_cfg["camera_cond"], d_cfg["camera_cond_raw"]) == (cfg.camera_cond, cfg.camera_cond_raw)
    return net.state_dict, cfg, c_dim


def fixture_inputs(ref):
    kwargs = {}
    if "d_patch_params" in ref:
        pp = torch.from_numpy(ref["d_patch_params"])  # scale_x, scale_y, offset_x, offset_y
        kwargs["patch"] = PatchParams(scale=pp[:, 0], offset=pp[:, 2:4])
        kwargs["camera_angles"] = torch.from_numpy(ref["d_camera_angles"])
    return torch.from_numpy(ref["d_input"]), torch.from_numpy(ref["d_c"]), kwargs


@pytest.mark.parametrize("name", list(FIXTURE_D))
def test_official_weights_load_and_reproduce_upstream_logits(name):
    state_dict, cfg, c_dim = fixture_discriminator(name)
    D = Discriminator(cfg, c_dim)
    D.load_state_dict(state_dict, strict=True)
    D.eval()
    ref = dict(np.load(FIXTURES / f"{name}_ref.npz"))
    img, c, kwargs = fixture_inputs(ref)
    with torch.no_grad():
        logits = D(img, c, **kwargs)
    assert logits.shape == (4,)
    bound = max(1e-4, 1e-5 * float(np.abs(ref["d_logits"]).max()))
    assert np.abs(logits.numpy() - ref["d_logits"]).max() <= bound


def test_construction_time_buffers_equal_the_stored_constants():
    state_dict, cfg, c_dim = fixture_discriminator("uncond_gpc")
    own = Discriminator(cfg, c_dim).state_dict()
    for key in ("scalar_enc.fourier_encoder.fourier_coefs",
                "head_mapping.camera_scalar_enc.fourier_encoder.fourier_coefs",
                "b32.resample_filter", "b16.conv1.resample_filter", "b4.conv.resample_filter"):
        assert torch.allclose(own[key], state_dict[key]), key
    assert torch.allclose(own["scalar_enc.fourier_encoder.fourier_coefs"], math.pi * 2.0 ** torch.arange(10) / 1024)


def _numpy_mbstd(x, group_size, num_channels, grouping="strided"):
    """Minibatch std spelled out sample by sample: sample i's group is {j : j = i mod n} (strided)
    or {j : j // g = i // g} (consecutive)."""
    b, c, h, w = x.shape
    g = min(group_size, b)
    n = b // g
    same = (lambda i, j: j % n == i % n) if grouping == "strided" else (lambda i, j: j // g == i // g)
    extra = np.zeros((b, num_channels, h, w))
    for i in range(b):
        members = x[[j for j in range(b) if same(i, j)]]  # [g, c, h, w]
        std = np.sqrt(members.var(axis=0) + 1e-8)          # population variance
        for f in range(num_channels):
            chunk = std[f * (c // num_channels):(f + 1) * (c // num_channels)]
            extra[i, f] = chunk.mean()
    return np.concatenate([x, extra], axis=1)


@pytest.mark.parametrize("grouping", ["strided", "consecutive"])
@pytest.mark.parametrize("batch,group,channels", [(8, 4, 2), (6, 2, 1), (2, 4, 1)])
def test_minibatch_std_matches_a_hand_computation(batch, group, channels, grouping):
    x = np.random.RandomState(batch).randn(batch, 6, 3, 3)
    ours = minibatch_std(torch.from_numpy(x), group, channels, grouping).numpy()
    assert ours.shape == (batch, 6 + channels, 3, 3)
    assert np.allclose(ours, _numpy_mbstd(x, group, channels, grouping), atol=1e-10)


def test_consecutive_groups_of_a_batch_equal_the_groups_of_its_halves():
    # What makes a distributed run equal a single-process one: each rank's half forms the same groups.
    x = torch.randn(8, 4, 2, 2)
    whole = minibatch_std(x, 4, 1, "consecutive")
    halves = torch.cat([minibatch_std(x[:4], 4, 1, "consecutive"), minibatch_std(x[4:], 4, 1, "consecutive")])
    assert torch.allclose(whole, halves, atol=1e-6)
    assert not torch.allclose(minibatch_std(x, 4, 1, "strided"), halves, atol=1e-3)


def test_minibatch_std_rejects_a_batch_that_does_not_split_into_groups():
    with pytest.raises(ValueError, match="multiple"):
        minibatch_std(torch.zeros(6, 4, 4, 4), 4, 1)


def _tiny(**overrides):
    base = dict(patch_resolution=16, num_additional_start_blocks=1, channel_base=128, channel_max=16,
                hyper_mod=True, patch_cond=False, camera_cond=False, cmap_dim=None)
    base.update(overrides)
    return DiscriminatorConfig(**base)


def _patch(scales, offsets):
    return PatchParams(scale=torch.tensor(scales), offset=torch.tensor(offsets))


@torch.no_grad()
def test_hyper_modulation_alone_makes_the_logits_depend_on_the_patch():
    # No labels, no patch/camera code for the head: the only route for the patch is the modulation.
    D = Discriminator(_tiny(), c_dim=0).eval()
    assert not hasattr(D, "head_mapping") and D.b4.out.weight.shape == (1, 16)
    for block in (D.b32, D.b16, D.b8):  # give the modulation some strength
        torch.nn.init.normal_(block.conv1.affine.bias)
    a, b = torch.randn(2, 3, 16, 16)
    img = torch.stack([a, b, a, b])
    offsets = [[0.1, 0.2], [0.3, 0.0], [0.1, 0.2], [0.3, 0.0]]
    out = D(img, None, _patch([0.5, 0.8, 0.5, 0.8], offsets))
    assert out.shape == (4,)
    # Same image, same patch, same group -> same logit (up to batch-position rounding); and the
    # forward pass is deterministic.
    assert torch.allclose(out[0], out[2], rtol=0, atol=1e-6) and torch.allclose(out[1], out[3], rtol=0, atol=1e-6)
    assert torch.equal(out, D(img, None, _patch([0.5, 0.8, 0.5, 0.8], offsets)))
    changed = D(img, None, _patch([0.6, 0.8, 0.5, 0.8], offsets))
    assert (changed[0] - out[0]).abs() > 1e-4
    # Scale 1 at offset 0 is what a missing patch means.
    full = D(img, None, _patch([1.0] * 4, [[0.0, 0.0]] * 4))
    assert torch.equal(full, D(img, None, None))


def test_gradients_reach_every_parameter_but_the_unused_fromrgb_layers():
    cfg = _tiny(patch_cond=True, camera_cond=True, camera_cond_noise_std=0.1, camera_cond_drop_p=0.2)
    D = Discriminator(cfg, c_dim=3).train()
    img = torch.randn(8, 3, 16, 16)
    c = F.one_hot(torch.randint(0, 3, (8,)), 3).float()
    patch = _patch(torch.rand(8).tolist(), torch.rand(8, 2).tolist())
    angles = torch.stack([torch.randn(8) * 0.3, math.pi / 2 + torch.randn(8) * 0.1, torch.zeros(8)], dim=1)
    F.softplus(-D(img, c, patch, angles)).mean().backward()
    unused = {f"b{r}.fromrgb.{p}" for r in (16, 8) for p in ("weight", "bias")}
    for name, param in D.named_parameters():
        if name in unused:
            assert param.grad is None, name
        else:
            assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_head_input_is_labels_then_patch_code_then_camera_code():
    raw = Discriminator(_tiny(patch_cond=True, camera_cond=True, camera_cond_raw=True), c_dim=5)
    fourier = Discriminator(_tiny(patch_cond=True, camera_cond=True), c_dim=0)
    patch_only = Discriminator(_tiny(hyper_mod=False, patch_cond=True), c_dim=5)    # 3DGP allows this
    labels_only = Discriminator(_tiny(hyper_mod=False, patch_cond=False), c_dim=5)
    assert raw.head_mapping.embed.weight.shape == (16, 5 + 828 + 2)
    assert fourier.head_mapping.embed.weight.shape == (16, 828 + 24)
    assert patch_only.head_mapping.embed.weight.shape == (16, 5 + 828) and not hasattr(patch_only, "hyper_mod_mapping")
    assert labels_only.head_mapping.embed.weight.shape == (16, 5)
    assert not hasattr(labels_only, "scalar_enc")


def test_epigraf_ffhq512_discriminator_size():
    cfg = load_config("epigraf_ffhq512").discriminator
    with torch.device("meta"):
        D = Discriminator(cfg, c_dim=0)
    assert D.block_resolutions == [512, 256, 128, 64, 32, 16, 8]
    names = [n for n, _ in D.named_children() if n.startswith("b")]
    assert names == ["b512", "b256", "b128", "b64", "b32", "b16", "b8", "b4"]
    downs = [getattr(D, f"b{r}").conv1.down for r in D.block_resolutions]
    assert downs == [1, 1, 1, 2, 2, 2, 2]
    # channels tmp -> out per block (epigraf.md 5.1): 32->64, 64->128, 128->256, 256->512, then 512.
    shapes = [tuple(getattr(D, f"b{r}").conv1.weight.shape[:2]) for r in D.block_resolutions]
    assert shapes == [(64, 32), (128, 64), (256, 128), (512, 256), (512, 512), (512, 512), (512, 512)]
    assert D.b4.conv.weight.shape == (512, 513, 3, 3) and D.b4.fc.weight.shape == (512, 8192)
    assert D.b4.out.weight.shape == (512, 512) and D.fp16_resolution == 64
    count = sum(p.numel() for p in D.parameters())
    print(f"EpiGRAF FFHQ-512 D ({'raw' if cfg.camera_cond_raw else 'Fourier'} camera code): {count:,} parameters")
    assert abs(count - 27.5e6) <= 0.02 * 27.5e6
    with torch.device("meta"):
        fourier = Discriminator(dataclasses.replace(cfg, camera_cond_raw=False), c_dim=0)
    assert fourier.head_mapping.embed.weight.shape == (512, 852)  # as in epigraf.md 7.4
    assert abs(sum(p.numel() for p in fourier.parameters()) - 27.5e6) <= 0.02 * 27.5e6


def test_fp16_request_is_ignored_off_cuda():
    """Half precision is a CUDA speed-up only; on the CPU the request must not change the logits."""
    state_dict, cfg, c_dim = fixture_discriminator("uncond_gpc")
    D = Discriminator(cfg, c_dim).eval()
    D.load_state_dict(state_dict, strict=True)
    img, c, kwargs = fixture_inputs(dict(np.load(FIXTURES / "uncond_gpc_ref.npz")))
    with torch.no_grad():
        assert torch.equal(D(img, c, use_fp16=True, **kwargs), D(img, c, **kwargs))


@pytest.mark.parametrize("preset", ["demo", "3dgp_demo"])
def test_the_cpu_presets_discriminator_reads_the_class_from_the_start(preset):
    # A class-conditional D must judge each class, not the mix of all of them: its logits have to
    # move with the label about as much as with the image. Upstream's head input (the 828-dim patch
    # code beside the one-hot label) drowns a 4-class label: measured about 0.04 of the image's effect.
    def label_and_image_effects(cfg):
        torch.manual_seed(0)
        D = Discriminator(cfg.discriminator, cfg.model.c_dim).eval()
        gen = torch.Generator().manual_seed(1)
        p, k, n = cfg.discriminator.patch_resolution, cfg.model.c_dim, 16
        x = torch.randn(n, cfg.discriminator.img_channels, p, p, generator=gen)
        patch = PatchParams(scale=torch.full((n,), 0.7), offset=torch.rand(n, 2, generator=gen) * 0.3)
        with torch.no_grad():
            logits = torch.stack([D(x, F.one_hot(torch.full((n,), j), k).float(), patch) for j in range(k)])
        return logits.std(dim=0).mean().item(), logits.std(dim=1).mean().item()   # across labels, images

    label, image = label_and_image_effects(load_config(preset))
    assert label > 0.5 * image, (label, image)
    drowned, image_too = label_and_image_effects(load_config(preset, ["discriminator.patch_cond=true"]))
    assert drowned < 0.1 * image_too, (drowned, image_too)       # the upstream layout, for contrast


def test_camera_conditioning_reads_yaw_in_the_models_own_convention():
    """A 3DGP D (yaw_offset pi/2) given trigan's yaw y + pi/2 computes what it computes for its own yaw y."""
    torch.manual_seed(3)
    own = Discriminator(_tiny(patch_cond=True, camera_cond=True), c_dim=0).eval()
    shifted = Discriminator(_tiny(patch_cond=True, camera_cond=True), c_dim=0, yaw_offset=math.pi / 2).eval()
    shifted.load_state_dict(own.state_dict())
    img = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    angles = torch.tensor([[0.3, 1.2, 0.0], [-0.7, 1.6, 0.0], [1.0, 1.4, 0.0], [0.0, 1.57, 0.0]])
    with torch.no_grad():
        expected = own(img, camera_angles=angles)
        moved = angles + torch.tensor([math.pi / 2, 0.0, 0.0])
        assert torch.allclose(shifted(img, camera_angles=moved), expected, atol=1e-5)
        assert (own(img, camera_angles=moved) - expected).abs().max() > 1e-4      # the angle does matter
