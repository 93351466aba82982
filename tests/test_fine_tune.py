"""Starting a new run from a checkpoint's weights (`trigan train --init`, training.init): which
networks it takes, that the run's own progress starts at zero, and that a resume does not take them
again."""

from __future__ import annotations

import contextlib
import io
import json

import pytest
import torch

from train_helpers import TINY_TRAIN, fitted_tiny_config, tiny_session, write_tiny_dataset
from trigan.cli.main import main
from trigan.core.checkpoint import export_generator, load_checkpoint
from trigan.core.errors import TriganError
from trigan.training.config import config_from_saved
from trigan.training.loop import LATEST


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_tiny_dataset(tmp_path_factory.mktemp("data") / "squares")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data):
    """A tiny run after two steps: its latest.ckpt (G, D, G_ema, optimisers) and a G_ema-only copy."""
    root = tmp_path_factory.mktemp("source")
    cfg, ds = fitted_tiny_config(data, "training.kimg=0.016")
    tiny_session(root / "run", cfg).run(ds)
    full = root / "run" / LATEST
    return full, export_generator(full, root / "g_ema.ckpt")


def _first_step_weights(run_dir, cfg, ds, resume=False):
    """The session's G, G_ema and D just before its first training step, and the session."""
    seen = {}

    def grab(trainer):
        if not seen:
            seen.update({name: {k: v.clone() for k, v in getattr(trainer, name).state_dict().items()}
                         for name in ("G", "G_ema", "D")})

    session = tiny_session(run_dir, cfg, resume=resume)
    session.run(ds, step_hook=grab)
    return seen, session


def _equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_g_ema_only_checkpoint_starts_g_and_g_ema_and_leaves_d_fresh(tmp_path, data, trained):
    full, g_ema_only = trained
    source = load_checkpoint(full)
    cfg, ds = fitted_tiny_config(data, "training.kimg=0.008", f"training.init={g_ema_only}")
    start, session = _first_step_weights(tmp_path / "tuned", cfg, ds)
    assert _equal(start["G"], source.G_ema) and _equal(start["G_ema"], source.G_ema)
    plain_cfg, _ = fitted_tiny_config(data, "training.kimg=0.008")
    plain, _ = _first_step_weights(tmp_path / "plain", plain_cfg, ds)
    assert _equal(start["D"], plain["D"])                  # the same fresh D a new run builds
    assert not _equal(start["D"], source.extra["D"])
    assert not _equal(start["G"], plain["G"])
    tuned = load_checkpoint(tmp_path / "tuned" / LATEST)
    assert tuned.progress["cur_nimg"] == 8 and tuned.progress["step"] == 1   # its own count, from zero
    assert config_from_saved(tuned.config).training.init == str(g_ema_only)
    log = (tmp_path / "tuned" / "log.txt").read_text()
    assert f"weights from {g_ema_only}: G (from its G_ema), G_ema; D starts fresh, after 0.016 kimg" in log


def test_a_training_checkpoint_also_gives_g_and_d_but_not_the_optimisers(tmp_path, data, trained):
    full, _ = trained
    source = load_checkpoint(full)
    cfg, ds = fitted_tiny_config(data, "training.kimg=0.008", f"training.init={full}")
    start, session = _first_step_weights(tmp_path / "tuned", cfg, ds)
    assert _equal(start["G"], source.extra["G"]) and _equal(start["D"], source.extra["D"])
    assert _equal(start["G_ema"], source.G_ema)
    assert not _equal(source.extra["G"], source.G_ema)      # so G really came from G, not G_ema
    assert session.trainer.opt_G.state_dict()["state"][0]["step"] == 1     # Adam began again


def test_a_resumed_run_keeps_its_own_weights(tmp_path, data, trained):
    _, g_ema_only = trained
    cfg, ds = fitted_tiny_config(data, "training.kimg=0.008", f"training.init={g_ema_only}")
    tiny_session(tmp_path / "tuned", cfg).run(ds)
    own = load_checkpoint(tmp_path / "tuned" / LATEST)
    cfg.training.kimg = 0.016
    start, _ = _first_step_weights(tmp_path / "tuned", cfg, ds, resume=True)
    assert _equal(start["G"], own.extra["G"]) and _equal(start["D"], own.extra["D"])
    assert not _equal(start["G_ema"], load_checkpoint(g_ema_only).G_ema)


def test_weights_of_another_architecture_are_refused_in_one_line(tmp_path, data, trained):
    _, g_ema_only = trained
    cfg, ds = fitted_tiny_config(data, "training.kimg=0.008", f"training.init={g_ema_only}",
                                 "model.triplane.feat_dim=4")
    with pytest.raises(TriganError, match=r"g_ema\.ckpt: weights do not fit the run's config"):
        tiny_session(tmp_path / "wrong", cfg).run(ds)


def test_init_command_errors_are_one_line(tmp_path, data, trained):
    _, g_ema_only = trained
    for argv, expected in [
        (["train", "--data", str(data), "--out", str(tmp_path), "--init", str(tmp_path / "no.ckpt")],
         "no.ckpt: no such checkpoint"),
        (["train", "--resume", str(tmp_path), "--init", str(g_ema_only)], "pass one of them"),
    ]:
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main(argv)
        assert code == 2 and expected in err.getvalue(), err.getvalue()
        assert len(err.getvalue().strip().splitlines()) == 1


def test_the_init_command_starts_a_run_from_the_checkpoint(tmp_path, data, trained):
    _, g_ema_only = trained
    with contextlib.redirect_stdout(io.StringIO()) as out:
        code = main(["train", "--data", str(data), "--out", str(tmp_path / "runs"), "--init", str(g_ema_only),
                     "--kimg", "0.008", *TINY_TRAIN])
    assert code == 0, out.getvalue()
    run = next((tmp_path / "runs").iterdir())
    assert config_from_saved(load_checkpoint(run / LATEST).config).training.init == str(g_ema_only.resolve())
    assert "weights from" in (run / "log.txt").read_text()


def test_during_the_d_warmup_only_d_learns_and_g_follows_after_it(tmp_path, data, trained):
    _, g_ema_only = trained
    source = load_checkpoint(g_ema_only).G_ema
    cfg, ds = fitted_tiny_config(data, "training.kimg=0.032", f"training.init={g_ema_only}",
                                 "training.d_warmup_kimg=0.016", "training.snapshot_ticks=2",
                                 "training.keep_snapshots=true", "training.opacity_reg=1")
    session = tiny_session(tmp_path / "warm", cfg)
    session.run(ds)
    warm, done = (load_checkpoint(p) for p in sorted((tmp_path / "warm" / "snapshots").glob("*.ckpt")))
    assert warm.progress["cur_nimg"] == 16 and done.progress["cur_nimg"] == 32
    # two D-only steps: G and G_ema are the checkpoint's (but for w_avg, which the D phase tracks)
    for key, value in source.items():
        if not key.endswith("w_avg"):
            assert torch.equal(warm.extra["G"][key], value) and torch.equal(warm.G_ema[key], value), key
    first = [json.loads(x) for x in (tmp_path / "warm" / "stats.jsonl").read_text().splitlines()][0]
    assert "loss_D" in first and "loss_G" not in first and "opacity_binarity" not in first
    fresh, _ = _first_step_weights(tmp_path / "fresh", cfg, ds)          # the D this run began with
    assert not _equal(warm.extra["D"], fresh["D"])                     # D learned meanwhile
    assert not _equal(done.extra["G"], warm.extra["G"])               # then G trains
    assert not _equal(done.G_ema, warm.G_ema)
