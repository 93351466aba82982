"""Knowledge distillation into D (3DGP 4): the feature head, the scale-weighted L2 loss and its
decaying weight; and whole training runs with depth + distillation on the synthetic dataset."""

import io
import json
import math
from contextlib import redirect_stderr

import numpy as np
import pytest
import torch

from train_helpers import fitted_tiny_config, write_tiny_dataset
from trigan.cli.main import main
from trigan.core.cameras import PatchParams
from trigan.core.checkpoint import load_checkpoint
from trigan.core.errors import TriganError
from trigan.training import distributed as ddp
from trigan.training.config import DiscriminatorConfig, DistillConfig, load_config
from trigan.training.dataset import open_dataset
from trigan.training.discriminator import Discriminator
from trigan.training.distillation import distill_weight, distillation_distances, scale_weights
from trigan.training.feature_extraction import extract_dataset_features
from trigan.training.loop import LATEST, Trainer
from trigan.training.session import Session, save_run_config
from trigan.training.synth import SynthSettings, write_synth_dataset


def test_distillation_loss_against_hand_computed_values():
    predicted = torch.tensor([[3.0, 4.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 2.0]])
    target = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 2.0, 0.0]])
    scale = torch.tensor([1.0, 0.5, 0.25])
    # distances 5, 0, 3; weights s / mean(s) with mean 0.583333...
    mean = (1.0 + 0.5 + 0.25) / 3
    want = [5 * 1.0 / mean, 0.0, 3 * 0.25 / mean]
    got = distillation_distances(predicted, target, scale, power=1.0)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6)
    assert got.mean().item() == pytest.approx((5 / mean + 0.75 / mean) / 3, rel=1e-6)
    # power 2: s^2 / mean(s^2)
    mean2 = (1.0 + 0.25 + 0.0625) / 3
    np.testing.assert_allclose(distillation_distances(predicted, target, scale, power=2.0).numpy(),
                               [5 / mean2, 0.0, 3 * 0.0625 / mean2], rtol=1e-6)
    # power 0: every sample counts the same
    np.testing.assert_allclose(distillation_distances(predicted, target, scale, power=0.0).numpy(), [5, 0, 3],
                               rtol=1e-6)


def test_scale_weights_normalised_by_the_global_batch_split_equal_the_whole():
    gen = torch.Generator().manual_seed(0)
    pred, target = torch.randn(8, 5, generator=gen), torch.randn(8, 5, generator=gen)
    scale = 0.25 + 0.75 * torch.rand(8, generator=gen)
    whole = distillation_distances(pred, target, scale).mean()
    halves = [distillation_distances(pred[s], target[s], scale[s], mean_of=scale).mean()
              for s in (slice(0, 4), slice(4, 8))]
    assert ((halves[0] + halves[1]) / 2).item() == pytest.approx(whole.item(), rel=1e-6)
    assert scale_weights(scale, 1.0).mean().item() == pytest.approx(1.0)


def test_the_gradient_at_a_perfect_prediction_is_zero_not_nan():
    pred = torch.ones(2, 3, requires_grad=True)
    distillation_distances(pred, torch.ones(2, 3), torch.ones(2)).sum().backward()
    assert torch.equal(pred.grad, torch.zeros(2, 3))


def test_weight_decays_linearly_to_zero():
    cfg = DistillConfig(weight=1.0, anneal_kimg=100000.0)
    assert distill_weight(cfg, 0.0) == 1.0
    assert distill_weight(cfg, 25000.0) == pytest.approx(0.75)          # 3DGP's ImageNet run ends here
    assert distill_weight(cfg, 100000.0) == 0.0 and distill_weight(cfg, 2e5) == 0.0
    assert distill_weight(DistillConfig(weight=2.0, anneal_kimg=10.0), 2.5) == pytest.approx(1.5)
    assert distill_weight(DistillConfig(weight=0.5, anneal_kimg=0.0), 1e9) == 0.5
    assert distill_weight(DistillConfig(), 0.0) == 0.0                  # off by default


def _d(**kw):
    cfg = DiscriminatorConfig(patch_resolution=16, num_additional_start_blocks=0, channel_base=128,
                              channel_max=16, **kw)
    torch.manual_seed(0)
    return Discriminator(cfg, c_dim=0)


def test_the_feature_head_predicts_features_beside_unchanged_logits():
    plain, with_head = _d(), _d(feat_predict_dim=7)
    assert not any("feat_head" in k for k in plain.state_dict())        # old checkpoints keep loading
    extra = {k for k in with_head.state_dict() if k not in plain.state_dict()}
    assert extra == {"b4.feat_head.fc.weight", "b4.feat_head.fc.bias", "b4.feat_head.out.weight",
                     "b4.feat_head.out.bias"}
    assert with_head.state_dict()["b4.feat_head.fc.weight"].shape == (16, 16 * 16)
    img = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    patch = PatchParams(scale=torch.full((4,), 0.5), offset=torch.zeros(4, 2))
    logits, feats = with_head(img, None, patch, predict_features=True)
    assert feats.shape == (4, 7)
    assert torch.equal(logits, with_head(img, None, patch))
    # the head shares the epilogue with the logits, and only it gets the head's gradient
    feats.square().sum().backward()
    assert with_head.b4.feat_head.out.weight.grad.abs().sum() > 0 and with_head.b4.conv.weight.grad.abs().sum() > 0
    assert with_head.b4.out.weight.grad is None
    with pytest.raises(ValueError, match="feat_predict_dim"):
        plain(img, None, patch, predict_features=True)


# ---------------------------------------------------------------------------------------------
# Training with depth + distillation

FEAT_DIM = 6


def colour_stats(images):
    return torch.cat([images.mean(dim=(2, 3)), images.std(dim=(2, 3))], dim=1)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """The synthetic dataset (with depth maps) and features of its images."""
    root = tmp_path_factory.mktemp("kd")
    data = root / "shapes.zip"
    write_synth_dataset(data, SynthSettings(num=12, resolution=16, classes=2, seed=4), progress=False)
    extract_dataset_features(data, root / "shapes.memmap", colour_stats)
    return data, root / "shapes.memmap"


def _config(data, features, *overrides):
    return fitted_tiny_config(data, "discriminator.img_channels=4", f"discriminator.feat_predict_dim={FEAT_DIM}",
                              "training.distill.weight=1.0", f"training.distill.features={features}",
                              "training.depth.anneal_kimg=0.016", "training.distill.anneal_kimg=0.05",
                              *overrides)


def _session(tmp_path, name, cfg, resume=False):
    run = tmp_path / name
    (run / "samples").mkdir(parents=True, exist_ok=True)
    save_run_config(run, cfg)
    return Session(cfg, run, ddp.DistInfo(), resume=resume)


def test_depth_and_distillation_train_on_the_synthetic_dataset_and_resume_exactly(tmp_path, synth):
    data, features = synth
    cfg, ds = _config(data, features, "training.kimg=0.032")
    assert _session(tmp_path, "straight", cfg).run(ds) == "done"
    half, _ = _config(data, features, "training.kimg=0.016")
    _session(tmp_path, "halves", half).run(ds)
    half.training.kimg = 0.032
    _session(tmp_path, "halves", half, resume=True).run(ds)
    a, b = load_checkpoint(tmp_path / "straight" / LATEST), load_checkpoint(tmp_path / "halves" / LATEST)
    assert a.progress["step"] == b.progress["step"] == 4
    for key in ("G", "D", "depth_adaptor"):
        for name, value in a.extra[key].items():
            assert torch.equal(value, b.extra[key][name]), f"{key}.{name} differs after resume"
    assert set(a.extra["depth_adaptor"]) >= {"near_plane_offset", "head.weight"}
    assert a.extra["D"]["b4.feat_head.out.weight"].shape[0] == FEAT_DIM
    assert a.extra["D"][f"b{16}.fromrgb.weight"].shape[1] == 4             # D reads RGB + depth
    ticks = [json.loads(x) for x in (tmp_path / "straight" / "stats.jsonl").read_text().splitlines()]
    assert all(math.isfinite(t["distill_l2"]) and math.isfinite(t["loss_D"]) for t in ticks)
    # the schedules: D sees the raw depth with p 0.25 -> 0.1; the distillation weight falls
    assert ticks[0]["depth_raw_p"] == pytest.approx(0.25 - 0.15 * 0.008 / 0.016)
    assert ticks[-1]["depth_raw_p"] == pytest.approx(0.1)
    assert ticks[-1]["distill_weight"] == pytest.approx(1 - 0.032 / 0.05)


def test_real_batches_carry_depth_and_the_source_images_features(tmp_path, synth):
    data, features = synth
    cfg, ds = _config(data, features)
    trainer = Trainer(cfg, tmp_path / "run", ds, ddp.DistInfo())
    for _ in range(3):                                                   # 24 items: both halves of the mirror
        real = trainer.next_real()
        assert real.images.shape[1] == 4 and real.images[:, 3].min() >= -1 and real.images[:, 3].max() < 1
        for k in range(real.images.shape[0]):
            rgb = (real.images[k:k + 1, :3] + 1) / 2
            # colour stats do not change under a flip: the row of the source image matches the item
            torch.testing.assert_close(real.features[k:k + 1], colour_stats(rgb), atol=1e-4, rtol=0)


def test_training_start_errors_name_the_missing_piece(tmp_path, synth):
    data, features = synth
    cfg, ds = _config(data, features, "training.distill.features=null")
    with pytest.raises(TriganError, match=r"training.distill.weight=1.0 needs training.distill.features"):
        Trainer(cfg, tmp_path / "a", ds, ddp.DistInfo())
    cfg, ds = _config(data, features, "discriminator.feat_predict_dim=2048")
    with pytest.raises(TriganError, match=f"{FEAT_DIM}-d features, but discriminator.feat_predict_dim=2048"):
        Trainer(cfg, tmp_path / "b", ds, ddp.DistInfo())
    plain = write_tiny_dataset(tmp_path / "nodepth")
    cfg, _ = _config(data, features, "training.distill.weight=0")
    with pytest.raises(TriganError, match="img_channels=4 trains D on depth.*no depth maps"):
        Trainer(cfg, tmp_path / "c", open_dataset(plain), ddp.DistInfo())


def test_without_the_adaptor_d_sees_the_rendered_depth_normalised_by_the_ray_bounds(tmp_path, synth):
    data, features = synth
    cfg, ds = _config(data, features, "training.depth.adaptor=false", "training.distill.weight=0")
    trainer = Trainer(cfg, tmp_path / "run", ds, ddp.DistInfo())
    assert trainer.depth_adaptor is None and trainer.features is None
    near, far = cfg.model.camera.ray_start, cfg.model.camera.ray_end
    depth = torch.tensor([near, (near + far) / 2, far]).view(3, 1, 1, 1)
    np.testing.assert_allclose(trainer.fake_depth(depth, None).flatten().numpy(), [-1.0, 0.0, 1.0], atol=1e-6)
    fake = trainer.render_fakes(trainer.fake_inputs(torch.Generator().manual_seed(0)), phase=2).images
    assert fake.shape[1] == 4 and fake[:, 3].min() >= -1 - 1e-5 and fake[:, 3].max() <= 1 + 1e-5


def test_with_an_open_far_end_empty_space_is_far_in_the_depth_d_sees(tmp_path, synth):
    # Real depth maps hold the background at the far bound; a fake ray that ends in nothing must too.
    data, features = synth
    cfg, ds = _config(data, features, "training.depth.adaptor=false", "training.distill.weight=0",
                      "model.render.opaque_far_end=false", "model.render.density_shift=-20")
    trainer = Trainer(cfg, tmp_path / "run", ds, ddp.DistInfo())
    fake = trainer.render_fakes(trainer.fake_inputs(torch.Generator().manual_seed(0)), phase=2).images
    assert torch.allclose(fake[:, 3], torch.ones_like(fake[:, 3]), atol=1e-4)


def test_3dgp_presets_enable_depth_and_imagenet_distillation_fails_at_once_without_features(tmp_path, synth):
    demo, imagenet = load_config("3dgp_demo"), load_config("3dgp_imagenet256")
    assert demo.discriminator.img_channels == 4 and demo.training.distill.weight == 0
    assert imagenet.discriminator.img_channels == 4 and imagenet.discriminator.feat_predict_dim == 2048
    assert imagenet.training.distill.weight == 1.0 and imagenet.training.distill.features is None
    data, _ = synth
    err = io.StringIO()
    with redirect_stderr(err):
        code = main(["train", "--config", "3dgp_imagenet256", "--data", str(data), "--out", str(tmp_path / "runs"),
                     "--device", "cpu", "discriminator.patch_resolution=16"])
    assert code == 2 and err.getvalue().count("\n") == 1
    assert "training.distill.weight=1.0 needs training.distill.features" in err.getvalue()
