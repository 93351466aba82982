"""The outline D (training/outline.py): real masks from depth maps on the fakes' pixel grid, a D that
learns outlines, and training runs with it on the synthetic dataset (gradients into G, exact resume,
turning it on for a resumed run, one-line errors)."""

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from analytic_fields import OPTS, RadialField, sphere
from train_helpers import fitted_tiny_config, tiny_session, write_tiny_dataset
from trigan.core.cameras import Camera
from trigan.core.checkpoint import load_checkpoint
from trigan.core.errors import TriganError
from trigan.core.renderer import render
from trigan.training import distributed as ddp
from trigan.training import synth
from trigan.training.dataset import open_dataset
from trigan.training.loop import LATEST, Trainer
from trigan.training.losses import generator_loss
from trigan.training.outline import BACKGROUND_DEPTH, OutlineDiscriminator, real_outlines, whole_image
from trigan.training.randomness import PHASE_G


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """The synthetic dataset at 16^2 (with depth maps)."""
    data = tmp_path_factory.mktemp("outline") / "shapes.zip"
    synth.write_synth_dataset(data, synth.SynthSettings(num=12, resolution=16, classes=2, seed=4), progress=False)
    return data


def _config(data, *overrides):
    return fitted_tiny_config(data, "training.outline.weight=1.0", "training.outline.resolution=8", *overrides)


def test_a_real_mask_is_the_disc_of_its_depth_map_sampled_on_the_render_grid():
    # A disc of radius 20 px in a 64^2 depth map; 16^2 samples on a corner-aligned grid (4.2 px apart).
    yy, xx = np.mgrid[0:64, 0:64]
    disc = (yy - 30.0) ** 2 + (xx - 36.0) ** 2 < 20.0 ** 2
    depth = torch.from_numpy(np.where(disc, 1000.0, BACKGROUND_DEPTH)).float()[None, None]
    mask = real_outlines(depth, 16)[0, 0].numpy()
    assert mask.shape == (16, 16) and mask.min() >= 0 and mask.max() <= 1
    spacing = 63 / 15
    assert mask.sum() * spacing ** 2 == pytest.approx(math.pi * 20 ** 2, rel=0.08)
    # samples well inside the disc are 1, well outside 0 (sample j sits at pixel j * spacing)
    pos = np.arange(16) * spacing
    r = np.sqrt((pos[:, None] - 30.0) ** 2 + (pos[None, :] - 36.0) ** 2)
    assert np.all(mask[r < 18] == 1) and np.all(mask[r > 22] == 0)


def test_the_real_mask_of_an_object_lines_up_with_the_opacity_the_renderer_draws_of_it():
    # The same ball as a synthetic object (depth map at 64^2) and as a field rendered whole at 16^2
    # from the same off-axis camera: the outline D must see the two at the same place.
    centre, radius = (0.05, 0.08, -0.1), 0.12
    cam = Camera.from_angles(0.7, 1.25, radius=1.0, fov=30.0)
    ball = synth.Sphere(center=np.array([centre]), radius=np.array([radius]), color=np.ones((1, 3)))
    _, dist = synth.render([ball], cam, 64, supersample=1)
    depth = torch.from_numpy(synth.encode_depth(dist, OPTS.ray_start, OPTS.ray_end).astype(np.float32))[:, None]
    real = real_outlines(depth, 16)[0, 0]
    field = RadialField(sphere(radius=radius, edge=0.002, rise=60.0), centre=centre)
    fake = render(field, cam, 16, replace(OPTS, opaque_far_end=False)).opacity[0, 0]   # empty rays stay empty
    iou = float(torch.minimum(real, fake).sum() / torch.maximum(real, fake).sum())
    assert iou > 0.85, iou
    def centroid(m):
        ys, xs = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
        return torch.stack([(m * ys).sum(), (m * xs).sum()]) / m.sum()
    assert (centroid(real) - centroid(fake)).abs().max() < 0.3
    assert real.sum() > 10                      # the ball is off-centre and well inside the image


def test_the_outline_d_learns_to_tell_discs_from_bars_of_the_same_area_and_heeds_the_class():
    torch.manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    def discs(n, gen):
        c = 6 + torch.rand(n, 2, generator=gen) * 4
        return (((yy - c[:, :1, None]) ** 2 + (xx - c[:, 1:, None]) ** 2) < 16).float()[:, None]
    def bars(n, gen):            # 2 x 25 pixels: the disc's area (about 50), a sliver's outline
        x0 = (6 + torch.rand(n, generator=gen) * 4).long()
        m = torch.zeros(n, 1, 16, 16)
        for i, x in enumerate(x0.tolist()):
            m[i, 0, 2:14, x:x + 2] = 1
            m[i, 0, 14, x] = 1
        return m
    D = OutlineDiscriminator(c_dim=2, resolution=16, channels=8)
    opt = torch.optim.Adam(D.parameters(), lr=0.002, betas=(0.0, 0.99))
    gen = torch.Generator().manual_seed(1)
    c = torch.nn.functional.one_hot(torch.zeros(16, dtype=torch.long), 2).float()
    for _ in range(60):
        loss = (torch.nn.functional.softplus(D(bars(16, gen), c)).mean()
                + torch.nn.functional.softplus(-D(discs(16, gen), c)).mean())
        opt.zero_grad()
        loss.backward()
        opt.step()
    test = torch.Generator().manual_seed(99)
    with torch.no_grad():
        real, fake = D(discs(32, test), c[:1].expand(32, -1)), D(bars(32, test), c[:1].expand(32, -1))
        assert real.min() > fake.max(), (real.min(), fake.max())
        other = torch.tensor([[0.0, 1.0]]).expand(32, -1)
        assert (D(discs(32, test), other) - real).abs().mean() > 1e-3     # the label reaches the logit
    with pytest.raises(ValueError, match="expects 16\\^2 masks"):
        D(torch.zeros(1, 1, 8, 8), c[:1])
    with pytest.raises(TriganError, match="resolution=12: expected a power of two"):
        OutlineDiscriminator(2, resolution=12)


def test_the_outline_loss_reaches_g_through_whole_rendered_images(tmp_path, shapes):
    # no density noise and many samples per ray, so that two renders differ only by their jitter
    cfg, ds = _config(shapes, "model.render.nerf_noise_std_init=0", "model.render.num_steps=64")
    trainer = Trainer(cfg, tmp_path / "run", ds, ddp.DistInfo())
    real = trainer.next_real()
    assert real.outline_masks.shape == (8, 1, 8, 8) and 0 < real.outline_masks.mean() < 1
    inputs = trainer.fake_inputs(torch.Generator().manual_seed(0))
    rendered = trainer.render_fakes(inputs, PHASE_G, outline=True)
    whole = rendered.whole_opacity
    assert whole.shape == (8, 1, 8, 8) and rendered.images.shape[-1] == cfg.discriminator.patch_resolution
    # the whole image is the same fake: a patch covering all of it sees the same opacity
    full_patch = trainer.render_fakes(replace(inputs, patches=trainer.local_patch(whole_image(8))), PHASE_G)
    assert full_patch.whole_opacity is None
    torch.testing.assert_close(full_patch.opacity, whole, atol=0.02, rtol=0)   # up to the sample jitter
    trainer.G.requires_grad_(True)
    generator_loss(trainer.D_outline(whole, inputs.labels)).backward()
    grads = {name: p.grad for name, p in trainer.G.named_parameters()}
    assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if "synthesis" in n)
    assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if "mlp" in n or "decoder" in n)


def test_a_run_with_the_outline_d_resumes_exactly_and_logs_its_losses(tmp_path, shapes):
    cfg, ds = _config(shapes, "training.kimg=0.032")
    assert tiny_session(tmp_path / "straight", cfg).run(ds) == "done"
    half, _ = _config(shapes, "training.kimg=0.016")
    tiny_session(tmp_path / "halves", half).run(ds)
    half.training.kimg = 0.032
    tiny_session(tmp_path / "halves", half, resume=True).run(ds)
    a, b = load_checkpoint(tmp_path / "straight" / LATEST), load_checkpoint(tmp_path / "halves" / LATEST)
    assert a.progress["step"] == b.progress["step"] == 4
    for key in ("G", "D", "D_outline"):
        for name, value in a.extra[key].items():
            assert torch.equal(value, b.extra[key][name]), f"{key}.{name} differs after resume"
    assert a.extra["D_outline_opt"]["state"]                   # its optimiser state travels too
    fresh = OutlineDiscriminator(2, 8).state_dict()
    assert any(not torch.equal(v, fresh[k]) for k, v in a.extra["D_outline"].items())
    ticks = [json.loads(x) for x in (tmp_path / "straight" / "stats.jsonl").read_text().splitlines()]
    for key in ("loss_G_outline", "loss_D_outline", "D_outline_real", "D_outline_fake", "outline_r1_penalty"):
        assert all(math.isfinite(t[key]) for t in ticks if key in t) and any(key in t for t in ticks), key


def test_a_resumed_run_may_turn_the_outline_d_on_and_a_fine_tune_takes_it(tmp_path, shapes):
    plain, ds = fitted_tiny_config(shapes, "training.kimg=0.016")
    tiny_session(tmp_path / "run", plain).run(ds)
    on, _ = _config(shapes, "training.kimg=0.032")
    tiny_session(tmp_path / "run", on, resume=True).run(ds)
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "outline D (training.outline) is new to this run" in log
    ckpt = load_checkpoint(tmp_path / "run" / LATEST)
    assert ckpt.progress["step"] == 4 and "D_outline" in ckpt.extra
    fine, _ = _config(shapes)
    trainer = Trainer(fine, tmp_path / "fine", ds, ddp.DistInfo())
    assert "outline D" in trainer.init_from(tmp_path / "run" / LATEST)
    for name, value in trainer.D_outline.state_dict().items():
        assert torch.equal(value, ckpt.extra["D_outline"][name])


def test_without_depth_maps_the_outline_d_is_refused_in_one_line(tmp_path):
    plain = write_tiny_dataset(tmp_path / "nodepth")
    cfg, _ = fitted_tiny_config(plain, "training.outline.weight=0.5")
    with pytest.raises(TriganError, match=r"training.outline.weight=0.5 .*/nodepth has none"):
        Trainer(cfg, tmp_path / "run", open_dataset(plain), ddp.DistInfo())


def test_with_an_opaque_far_end_the_outline_d_is_refused_in_one_line(tmp_path, shapes):
    cfg, ds = _config(shapes, "model.render.opaque_far_end=true")
    with pytest.raises(TriganError, match="opaque_far_end is true .*no outline"):
        Trainer(cfg, tmp_path / "run", ds, ddp.DistInfo())
