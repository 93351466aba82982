"""Official 3DGP snapshots in every command: info, convert (--all), render, mesh, metrics, train --init.

What the files hold is taken from tests/fixtures/README.md (sizes, settings, optimiser entries), not
from the reader; upstream's outputs come from the *_ref.npz files. The safety of the reader against
files that only pretend to be snapshots is tested here for the globals 3DGP added.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import pickletools
import re

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import THREEDGP_FIXTURES as FIXTURES
from trigan.cli.main import main
from trigan.core.checkpoint import load_checkpoint
from trigan.core.errors import TriganError
from trigan.training.config import config_from_saved
from trigan.training.loop import Trainer

NAMES = ["3dgp_cond", "3dgp_uncond_origin"]


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------------------------------------------
# info, convert

def test_info_describes_the_prior_the_convention_and_the_camera_generator(capsys):
    code, out, _ = cli(capsys, "info", FIXTURES / "3dgp_cond.pkl")
    assert code == 0 and "(3DGP pickle)" in out and "(3dgp), 5 classes" in out
    # upstream's prior (yaw -1.57..1.57 on +Z) in trigan's convention, and its fov and look-at ball
    assert "camera prior uniform, yaw 0.001..3.141, pitch 0.785..2.356, fov 10..45 deg, look-at radius 0..0.2" in out
    assert "the model's own yaw 0 lies at trigan yaw 1.5708" in out
    assert "adapts angles, fov, look_at; radius fixed; MLPs 32 wide, 8-d z/class embeddings" in out
    code, out, _ = cli(capsys, "info", FIXTURES / "3dgp_uncond_origin.pkl", "--json")
    summary = json.loads(out)
    assert code == 0 and summary["camera"]["generator_adapts"] == ["angles"]
    assert summary["camera"]["prior"]["fov_range_deg"] == [15.0, 25.0]


@pytest.mark.parametrize("name", NAMES)
def test_convert_all_keeps_every_network_and_translates_the_recipe(tmp_path, capsys, name):
    dst = tmp_path / "full.ckpt"
    code, out, _ = cli(capsys, "convert", FIXTURES / f"{name}.pkl", dst, "--all")
    assert code == 0 and "with G, D and optimizer states" in out
    ckpt = load_checkpoint(dst)
    assert {"G", "D", "G_opt", "D_opt", "depth_adaptor"} <= set(ckpt.extra)
    assert ckpt.progress["source"] == f"3DGP snapshot {name}.pkl" and ckpt.progress["kimg"] == pytest.approx(0.004)
    cfg = config_from_saved(ckpt.config)
    d, t = cfg.discriminator, cfg.training
    assert (d.img_channels, d.mbstd_grouping, t.batch_size, t.gamma) == (4, "strided", 4, 0.05)
    assert t.ema_multiplier * t.batch_size == pytest.approx(1.25)          # upstream's ema_kimg
    g_opt, d_opt = ckpt.extra["G_opt"], ckpt.extra["D_opt"]
    assert g_opt["defaults"]["lr"] == pytest.approx(0.0025)
    assert d_opt["defaults"]["lr"] == pytest.approx(0.002 * 16 / 17)        # lazy R1 rescaling (README 3.6)
    if name == "3dgp_cond":
        assert (d.patch_resolution, d.num_additional_start_blocks, d.hyper_mod, d.patch_cond) == (16, 1, True, True)
        assert d.feat_predict_dim == 2048 and t.distill.weight == 1.0 and t.patch.dist == "beta"
        assert (t.depth.kernel_size, t.depth.hidden_dim, t.depth.num_hidden_layers) == (5, 8, 3)
        assert g_opt["state"] == {} and len(g_opt["param_groups"][0]["params"]) == 89   # state emptied upstream
    else:
        assert (d.patch_resolution, d.hyper_mod, d.patch_cond, d.feat_predict_dim) == (32, False, False, 0)
        assert t.patch.dist == "full" and t.distill.weight == 0.0
        assert (t.depth.kernel_size, t.depth.num_hidden_layers) == (3, 2)
        assert len(g_opt["state"]) == 67 and len(d_opt["state"]) == 23          # README 1 and deviation 3
    # trigan's names: the camera generator under G, the depth adaptor beside it
    assert any(k.startswith("camera_generator.") for k in ckpt.G_ema)
    assert not any("depth_adaptor" in k or "mean_camera_params" in k for k in ckpt.G_ema)
    assert any(k.startswith("depth_adaptor.") for k in g_opt["param_groups"][0]["params"])
    assert ckpt.extra["depth_adaptor"]["near_plane_offset"].shape == ()


# ---------------------------------------------------------------------------------------------------
# render, mesh, metrics

def test_converted_model_renders_upstreams_camera_zero(tmp_path, capsys):
    """trigan convert + trigan render --camera (3DGP's yaw 0 is trigan's pi/2; its look-at point the
    origin): each seed/class of the fixture matches upstream's camera-0 render within its noise floor."""
    ckpt = tmp_path / "cond.ckpt"
    assert cli(capsys, "convert", FIXTURES / "3dgp_cond.pkl", ckpt)[0] == 0
    ref = dict(np.load(FIXTURES / "3dgp_cond_ref.npz"))
    fov = float(ref["render_camera_fov"][0, 0])
    ours, theirs = [], []
    for i, (seed, cls) in enumerate(zip(ref["seeds"].tolist(), ref["classes"].tolist(), strict=True)):
        code, _, err = cli(capsys, "render", ckpt, "--out", tmp_path / "out", "--seeds", seed, "--classes", cls,
                           "--camera", f"yaw=pi/2,pitch=pi/2,fov={fov},radius=1,look_at=0", "--psi", "1", "--quiet")
        assert code == 0, err
        png = np.asarray(Image.open(tmp_path / "out" / f"class{cls:03d}-seed{seed:04d}.png"), dtype=np.float64)
        ours.append(png / 255 * 2 - 1)
        theirs.append(np.clip(ref["render_rgb"][0][i].transpose(1, 2, 0), -1, 1))   # what a PNG can hold
    mse = float(((np.stack(ours) - np.stack(theirs)) ** 2).mean())
    assert 10 * math.log10(4 / mse) >= float(ref["noise_floor_rgb_psnr"][0]) - 3


def test_every_command_opens_the_pickle(tmp_path, capsys):
    pkl = FIXTURES / "3dgp_uncond_origin.pkl"
    code, out, err = cli(capsys, "mesh", pkl, "--out", tmp_path / "m", "--seeds", 0, "--resolution", 24, "--quiet")
    assert code == 0 and (tmp_path / "m" / "seed0000.ply").is_file(), err
    code, out, err = cli(capsys, "metrics", pkl, "--metrics", "nfs8", "--json", "--no-log", "--quiet")
    assert code == 0, err
    nfs = json.loads(out)["results"][0]["metrics"]["nfs8"]
    assert 1.0 <= nfs <= 64.0
    code, _, err = cli(capsys, "render", pkl, "--out", tmp_path / "r", "--seeds", 0, "--vis", "video", "--trajectory", "orbit",
                       "--frames", 2, "--format", "png", "--quiet")
    assert code == 0 and len(list((tmp_path / "r").rglob("*.png"))) == 2, err


# ---------------------------------------------------------------------------------------------------
# training goes on in trigan

def test_an_upstream_run_goes_on_in_trigan_with_its_weights_and_adam_moments(tmp_path, capsys):
    ckpt = tmp_path / "up.ckpt"
    assert cli(capsys, "convert", FIXTURES / "3dgp_uncond_origin.pkl", ckpt, "--all")[0] == 0
    data = tmp_path / "dogs.zip"
    assert cli(capsys, "dataset", "synth", data, "--num", 8, "--resolution", 32, "--classes", 1, "--seed", 0)[0] == 0
    code, out, err = cli(capsys, "train", "--config", ckpt, "--init", ckpt, "--data", data, "--out", tmp_path / "runs",
                         "--kimg", 0.004, "--device", "cpu", "training.use_labels=false", "training.num_workers=0",
                         "training.tick_kimg=0.004", "training.video_ticks=0", "training.samples=4")
    assert code == 0, err
    run = next((tmp_path / "runs").iterdir())
    log = (run / "log.txt").read_text()
    # README: G_opt holds 67 entries, D_opt 23 (of 27 parameters)
    assert "weights from" in log and "G, G_ema, D, depth adaptor, Adam moments of 67 G and 23 D parameters" in log
    after = load_checkpoint(run / "latest.ckpt")
    assert after.progress["step"] >= 1 and after.config.model.family == "3dgp"
    before = load_checkpoint(ckpt)
    moved = [k for k, v in before.extra["G"].items() if not torch.equal(v, after.extra["G"][k])]
    assert moved                                                  # one step of G changed its weights
    assert after.extra["G_opt"]["state"]                          # and Adam carried on


def test_adam_moments_by_name_load_where_they_fit_and_are_refused_in_one_line_where_not():
    gen = torch.Generator().manual_seed(0)
    named = [("a", torch.nn.Parameter(torch.randn(3, 2, generator=gen))),
             ("b", torch.nn.Parameter(torch.randn(4, generator=gen)))]
    opt = torch.optim.Adam([p for _, p in named], lr=0.1)
    m1, m2 = torch.randn(3, 2, generator=gen), torch.rand(3, 2, generator=gen)
    saved = {"state": {"a": {"step": 7, "exp_avg": m1, "exp_avg_sq": m2}, "c": {"step": 1}}}
    assert Trainer.adam_state_by_name(opt, named, saved) == 1
    loaded = opt.state_dict()["state"]
    assert set(loaded) == {0} and float(loaded[0]["step"]) == 7.0
    assert torch.equal(loaded[0]["exp_avg"], m1) and torch.equal(loaded[0]["exp_avg_sq"], m2)
    assert opt.param_groups[0]["lr"] == 0.1                          # this run's learning rate stays
    assert Trainer.adam_state_by_name(opt, named, {"state": {0: {}}}) == 0   # trigan's own, by index
    for bad, fragment in ((torch.zeros(2, 3), "exp_avg_sq is shape (2, 3), the weight is (3, 2)"),
                          ([0.0] * 6, "exp_avg_sq is not a tensor, the weight is (3, 2)")):
        wrong = {"state": {"a": {"step": 1, "exp_avg": m1, "exp_avg_sq": bad}}}
        with pytest.raises(TriganError, match=re.escape(f"optimiser state of a: {fragment}")):
            Trainer.adam_state_by_name(opt, named, wrong)


# ---------------------------------------------------------------------------------------------------
# The reader stays a reader

def _pickle_naming(module: str, name: str, args=()) -> bytes:
    """A protocol-2 pickle that calls module.name(*args) (GLOBAL + REDUCE), built by hand."""
    body = b"\x80\x02" + f"c{module}\n{name}\n".encode() + pickle.dumps(tuple(args), protocol=2)[2:-1] + b"R."
    pickletools.dis(body, out=open(os.devnull, "w"))   # a well-formed stream
    return body


@pytest.mark.parametrize("module,name", [("training.networks_discriminator", "DiscriminatorBlock"),
                                         ("training.networks_discriminator", "os"),
                                         ("src.training.networks_epigraf", "Generator")])
def test_only_the_known_discriminator_class_is_accepted_by_reference(tmp_path, capsys, module, name):
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(_pickle_naming(module, name))
    code, _, err = cli(capsys, "info", bad)
    assert code == 2 and "refuses to load" in err and f"{module}.{name}" in err and "\n" not in err.strip()


def test_the_discriminator_class_only_holds_state(tmp_path, capsys):
    """Named by a stream that calls it with arguments (as a payload would), it does nothing."""
    marker = tmp_path / "pwned"
    bad = tmp_path / "call.pkl"
    bad.write_bytes(_pickle_naming("training.networks_discriminator", "Discriminator", (f"touch {marker}",)))
    code, _, err = cli(capsys, "info", bad)
    assert code == 2 and "\n" not in err.strip() and not marker.exists()
    tensor_group = tmp_path / "group.pkl"
    tensor_group.write_bytes(_pickle_naming("src.dnnlib.util", "TensorGroup", ([("a", 1)],)))
    code, _, err = cli(capsys, "info", tensor_group)
    assert code == 2 and "not an EpiGRAF network snapshot" in err
