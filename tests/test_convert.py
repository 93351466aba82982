"""`trigan convert` and opening official EpiGRAF pickles anywhere a checkpoint is accepted."""

import copy
import os
import pickle

import numpy as np
import pytest
import torch

from conftest import EPIGRAF_FIXTURES as FIXTURES
from conftest import THREEDGP_FIXTURES, tiny_config
from trigan.cli.main import main
from trigan.core.cameras import PatchParams
from trigan.core.checkpoint import load_checkpoint, save_checkpoint
from trigan.core.epigraf_import import generator_config
from trigan.core.epigraf_pickle import read_epigraf_pickle
from trigan.core.generator import Generator
from trigan.core.model_io import open_model
from trigan.training import official_import
from trigan.training.config import config_from_saved
from trigan.training.discriminator import Discriminator


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("name", ["uncond_gpc", "cond_white"])
def test_converted_checkpoint_equals_the_pickle(tmp_path, capsys, name):
    dst = tmp_path / f"{name}.ckpt"
    code, out, _ = cli(capsys, "convert", FIXTURES / f"{name}.pkl", dst)
    assert code == 0 and "wrote" in out
    from_pkl, from_ckpt = open_model(FIXTURES / f"{name}.pkl"), open_model(dst)
    a, b = from_pkl.G.state_dict(), from_ckpt.G.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert from_ckpt.config.model == from_pkl.config.model    # a .pkl opened as it is has no recipe
    assert set(load_checkpoint(dst).extra) == set()          # G_ema only by default
    ref = np.load(FIXTURES / f"{name}_ref.npz")
    with torch.no_grad():
        ws = from_ckpt.G.mapping(torch.from_numpy(ref["z"]), torch.from_numpy(ref["c"]),
                                 camera_angles=torch.from_numpy(ref["c_camera_angles"]) if "c_camera_angles" in ref else None)
    assert np.abs(ws.numpy() - ref["ws_psi1"]).max() <= 1e-5


def test_convert_all_keeps_g_d_and_optimizers(tmp_path, capsys):
    dst = tmp_path / "full.ckpt"
    assert cli(capsys, "convert", FIXTURES / "cond_white.pkl", dst, "--all")[0] == 0
    ckpt = load_checkpoint(dst)
    snap = read_epigraf_pickle(FIXTURES / "cond_white.pkl")
    for name in ("G", "D"):
        assert ckpt.extra[name].keys() == snap.networks[name].state_dict.keys()
        assert all(torch.equal(ckpt.extra[name][k], snap.networks[name].state_dict[k]) for k in ckpt.extra[name])
    assert len(ckpt.extra["G_opt"]["state"]) == 48 and len(ckpt.extra["D_opt"]["state"]) == 24
    d = config_from_saved(ckpt.config).discriminator
    assert (d.patch_resolution, d.num_additional_start_blocks, d.channel_base, d.channel_max, d.cmap_dim) == (16, 0, 64, 8, 8)
    assert not d.hyper_mod and not d.camera_cond
    assert ckpt.progress["kimg"] == pytest.approx(0.004)


def test_discriminator_settings_of_a_patch_model(tmp_path, capsys):
    dst = tmp_path / "u.ckpt"
    assert cli(capsys, "convert", FIXTURES / "uncond_gpc.pkl", dst, "--all")[0] == 0
    d = config_from_saved(load_checkpoint(dst).config).discriminator
    assert (d.patch_resolution, d.num_additional_start_blocks, d.channel_base, d.channel_max) == (16, 1, 128, 16)
    assert d.hyper_mod and d.patch_cond and d.camera_cond and not d.camera_cond_raw and d.cmap_dim == 16


def test_existing_output_is_not_overwritten(tmp_path, capsys):
    dst = tmp_path / "keep.ckpt"
    dst.write_bytes(b"precious")
    code, _, err = cli(capsys, "convert", FIXTURES / "cond_white.pkl", dst)
    assert code == 2 and "already exists" in err and dst.read_bytes() == b"precious"


@pytest.mark.parametrize("kind", ["truncated", "state_dict", "not_snapshot"])
def test_bad_pickles_give_one_line_errors_in_every_command(tmp_path, capsys, kind):
    bad = tmp_path / f"{kind}.pkl"
    if kind == "truncated":
        data = (FIXTURES / "cond_white.pkl").read_bytes()
        bad.write_bytes(data[: len(data) // 3])
    elif kind == "state_dict":
        torch.save({"w": torch.zeros(3)}, bad, _use_new_zipfile_serialization=False)
    else:
        bad.write_bytes(pickle.dumps({"weights": np.zeros(3)}))
    for argv in (["info", bad], ["convert", bad, tmp_path / "out.ckpt"]):
        code, _, err = cli(capsys, *argv)
        errors = [line for line in err.splitlines() if line.startswith("trigan: error:")]
        assert code == 2 and len(errors) == 1 and bad.name in errors[0], err
        assert "Traceback" not in err
    assert not (tmp_path / "out.ckpt").exists()


def test_payload_in_a_pickle_never_runs(tmp_path, capsys):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    bad = tmp_path / "evil.pkl"
    bad.write_bytes(pickle.dumps({"G_ema": Payload()}))
    code, _, err = cli(capsys, "info", bad)
    assert code == 2 and "refuses to load" in err and "system" in err
    assert not marker.exists()


@pytest.mark.parametrize("name", ["uncond_gpc", "cond_white"])
def test_converted_discriminator_reproduces_upstream_logits(tmp_path, capsys, name):
    """convert --all -> trigan's Discriminator built from the saved config gives upstream's logits."""
    dst = tmp_path / "full.ckpt"
    assert cli(capsys, "convert", FIXTURES / f"{name}.pkl", dst, "--all")[0] == 0
    ckpt = load_checkpoint(dst)
    D = Discriminator(config_from_saved(ckpt.config).discriminator, ckpt.config.model.c_dim).eval()
    D.load_state_dict(ckpt.extra["D"], strict=True)
    ref = np.load(FIXTURES / f"{name}_ref.npz")
    kwargs = {}
    if "d_patch_params" in ref:
        pp = torch.from_numpy(ref["d_patch_params"])
        kwargs["patch"] = PatchParams(scale=pp[:, 0], offset=pp[:, 2:4])
    if "d_camera_angles" in ref:
        kwargs["camera_angles"] = torch.from_numpy(ref["d_camera_angles"])
    with torch.no_grad():
        logits = D(torch.from_numpy(ref["d_input"]), torch.from_numpy(ref["d_c"]), **kwargs)
    assert np.abs(logits.numpy().reshape(-1) - ref["d_logits"]).max() <= max(1e-4, 1e-5 * np.abs(ref["d_logits"]).max())


def test_older_snapshots_without_newer_config_keys_get_upstream_defaults():
    """Reference 7.2: older snapshots lack density_shift, tri_plane.has_view_cond and bg_model."""
    g = copy.deepcopy(read_epigraf_pickle(FIXTURES / "uncond_gpc.pkl").networks["G_ema"])
    cfg = g.init_kwargs["cfg"]
    for key in ("density_shift", "bg_model", "clamp_mode", "nerf_noise_std_init"):
        cfg.pop(key, None)
    cfg["tri_plane"].pop("has_view_cond", None)
    m = generator_config(g, "old.pkl")
    assert m.render.density_shift == 0.0 and m.render.density_activation == "softplus"
    assert m.background.type is None and m.render.nerf_noise_std_init == 1.0
    cfg["tri_plane"]["has_view_cond"] = True
    with pytest.raises(Exception, match="old.pkl: uses a view-direction-conditioned MLP"):
        generator_config(g, "old.pkl")


def test_set_changes_render_settings_and_refuses_what_the_weights_do_not_fit(tmp_path, capsys):
    """`trigan convert --set`: the stored config changes (a support radius that clears the space no
    camera saw), the weights are the same, and architecture changes or bad values are refused with
    one line, writing nothing."""
    cfg = tiny_config()
    src = save_checkpoint(tmp_path / "src.ckpt", cfg, Generator(cfg.model))
    dst = tmp_path / "out.ckpt"
    code, out, err = cli(capsys, "convert", src, dst, "--set", "model.camera.support_radius=0.25",
                         "--set", "model.render.num_steps=32")
    assert code == 0, err
    assert "with model.camera.support_radius=0.25 model.render.num_steps=32" in out
    before, after = load_checkpoint(src), load_checkpoint(dst)
    assert after.config.model.camera.support_radius == 0.25 and after.config.model.render.num_steps == 32
    assert before.config.model.camera.support_radius is None
    assert after.progress["config_overrides"] == ["model.camera.support_radius=0.25", "model.render.num_steps=32"]
    assert all(torch.equal(before.G_ema[k], after.G_ema[k]) for k in before.G_ema)
    for bad, fragment in (("model.triplane.resolution=32", "weights do not fit"),
                          ("model.camera.support_radius=-1", "model.camera.support_radius=-1.0: expected"),
                          ("model.camera.nonsense=1", "nonsense"),
                          ("support_radius", "expected key=value")):
        target = tmp_path / "bad.ckpt"
        code, out, err = cli(capsys, "convert", src, target, "--set", bad)
        assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1, (bad, err)
        assert not target.exists()
    code, _, err = cli(capsys, "convert", FIXTURES / "cond_white.pkl", tmp_path / "p.ckpt", "--set",
                       "model.render.num_steps=8")
    assert code == 2 and "convert the .pkl first" in err


def _mutated_snapshot(path, mutate):
    snap = copy.deepcopy(read_epigraf_pickle(path))
    mutate(snap)
    return snap


@pytest.mark.parametrize("fixture, mutate, fragment", [
    (FIXTURES / "uncond_gpc.pkl", lambda s: s.networks["G_ema"].init_kwargs["cfg"]["tri_plane"].pop("res"),
     "its config has no 'res'"),
    (THREEDGP_FIXTURES / "3dgp_cond.pkl", lambda s: s.config["camera"]["ray"].pop("start"),
     "its config has no 'start'"),
    (THREEDGP_FIXTURES / "3dgp_cond.pkl", lambda s: s.networks["G_ema"].init_kwargs["cfg"].update(w_dim="wide"),
     "its config cannot be read (invalid literal for int() with base 10: 'wide')"),
    (FIXTURES / "uncond_gpc.pkl", lambda s: s.networks["D"].init_kwargs.pop("channel_max"),   # --all's D
     "its config has no 'channel_max'"),
])
def test_a_snapshot_with_a_malformed_config_is_refused_in_one_line(tmp_path, capsys, monkeypatch,
                                                                    fixture, mutate, fragment):
    """A key missing from upstream's config, or a value of the wrong kind, names the file and the
    key; nothing is written."""
    monkeypatch.setattr(official_import, "read_epigraf_pickle", lambda path: _mutated_snapshot(path, mutate))
    dst = tmp_path / "out.ckpt"
    code, out, err = cli(capsys, "convert", fixture, dst, "--all")
    assert code != 0 and not dst.exists()
    assert "Traceback" not in err and err.strip().splitlines()[-1] == f"trigan: error: {fixture}: is malformed: {fragment}"
