"""The pre-flight check of a training run (training/preflight.py, `trigan train --strict`): each
warning fires on a config and dataset made to trigger it, and on nothing else; a clean setup (the
demo preset on the synthetic dataset) has none; the CLI prints them, logs them in the run, and with
--strict refuses before anything is written."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from train_helpers import TINY_TRAIN, tiny_train_config, write_tiny_dataset
from trigan.cli.main import main
from trigan.training.config import load_config
from trigan.training.pose_import import yaw_center
from trigan.training.preflight import (
    DEFAULT_GAMMA,
    DatasetFacts,
    dataset_facts,
    preflight,
    yaw_spread,
)


def _facts(yaws=None, resolution=16, classes=3, path="/data/faces.zip"):
    """Dataset facts with these yaws (pitch at the horizon), or unposed when yaws is None."""
    angles = None
    if yaws is not None:
        yaws = np.asarray(yaws, dtype=np.float64)
        angles = np.stack([yaws, np.full_like(yaws, math.pi / 2), np.zeros_like(yaws)], axis=1)
    n = 100 if yaws is None else len(yaws)
    return DatasetFacts(path, resolution, n, angles, classes)


def _narrow_yaws(centre=0.0, std=0.3, n=400, seed=0):
    """FFHQ-like yaws: normal around `centre` with a std of ~17 degrees, wrapped to [-pi, pi)."""
    yaws = np.random.RandomState(seed).normal(centre, std, n)
    return (yaws + math.pi) % (2 * math.pi) - math.pi


def _wide_yaws(n=400, seed=0):
    return np.random.RandomState(seed).uniform(-math.pi, math.pi, n)


def _codes(cfg, facts):
    return [w.code for w in preflight(cfg, facts)]


# -- statistics against hand-computed values ---------------------------------------------------------

def test_yaw_statistics_are_circular():
    # two yaws either side of the +-pi seam: their centre is pi, not 0
    assert abs(abs(yaw_center([math.pi - 0.1, -math.pi + 0.1])) - math.pi) < 1e-12
    assert abs(yaw_center([0.2, 0.4]) - 0.3) < 1e-12
    # +-a: R = cos a, so the circular std is sqrt(-2 ln cos a)
    a = 0.4
    assert abs(yaw_spread([-a, a]) - math.sqrt(-2 * math.log(math.cos(a)))) < 1e-12
    # evenly around the circle: R = 0 (to rounding), the spread is unbounded
    assert yaw_spread(np.linspace(-math.pi, math.pi, 8, endpoint=False)) > 5


# -- a clean setup -----------------------------------------------------------------------------------

def test_the_demo_preset_on_the_synthetic_dataset_is_clean(tmp_path):
    data = tmp_path / "shapes.zip"
    assert main(["dataset", "synth", str(data), "--num", "16", "--resolution", "16", "--classes", "4",
                 "--seed", "0"]) == 0
    facts = dataset_facts(data)
    assert (facts.resolution, facts.num_images, facts.num_classes) == (16, 16, 4)
    assert facts.camera_angles is not None and facts.camera_angles.shape == (16, 3)
    assert preflight(load_config("demo", ["model.triplane.resolution=16"]), facts) == []


def test_a_pose_conditioned_face_recipe_on_centred_faces_is_clean():
    cfg = load_config("epigraf_ffhq512")           # D and G pose-conditioned, patch 64, gamma 0.05
    assert preflight(cfg, _facts(_narrow_yaws(), resolution=512, classes=0)) == []


# -- each warning, and only it -------------------------------------------------------------------------

def test_front_facing_data_without_d_pose_conditioning_warns():
    facts = _facts(_narrow_yaws())
    off = tiny_train_config("discriminator.camera_cond=false", "model.mapping.camera_cond=true")
    warnings = preflight(off, facts)
    assert [w.code for w in warnings] == ["d_pose_cond"]
    assert "discriminator.camera_cond=true" in warnings[0].message
    on = tiny_train_config("discriminator.camera_cond=true", "model.mapping.camera_cond=true")
    assert _codes(on, facts) == []
    # seen from all around, a flat card fails from the side: no warning (upstream's Megascans recipe)
    assert _codes(off, _facts(_wide_yaws())) == []


def test_narrow_yaw_spread_without_generator_pose_conditioning_warns():
    facts = _facts(_narrow_yaws())
    cfg = tiny_train_config("discriminator.camera_cond=true", "model.mapping.camera_cond=false")
    warnings = preflight(cfg, facts)
    assert [w.code for w in warnings] == ["g_pose_cond"]
    assert "model.mapping.camera_cond=true" in warnings[0].message
    assert _codes(cfg, _facts(_wide_yaws())) == []


@pytest.mark.parametrize("centre", [math.pi / 2, -0.5, math.pi])
def test_yaw_not_zero_centred_warns(centre):
    cfg = tiny_train_config("discriminator.camera_cond=true", "model.mapping.camera_cond=true")
    warnings = preflight(cfg, _facts(_narrow_yaws(centre)))
    assert [w.code for w in warnings] == ["yaw_centre"]
    # the mean is reported in degrees: 90, -29, +-180 (seeded draws: within a few degrees)
    shown = float(warnings[0].message.split("mean ")[1].split(" deg")[0])
    assert abs(abs(shown) - abs(math.degrees(centre))) < 5
    assert "--center" in warnings[0].message
    # centred within the tolerance: nothing
    assert _codes(cfg, _facts(_narrow_yaws(math.radians(4)))) == []


def test_a_patch_size_other_than_64_with_the_default_gamma_warns():
    facts = _facts(_wide_yaws())
    warnings = preflight(tiny_train_config(f"training.gamma={DEFAULT_GAMMA}"), facts)     # patch 8
    assert [w.code for w in warnings] == ["gamma_patch"]
    assert "training.gamma=" in warnings[0].message
    assert _codes(tiny_train_config("training.gamma=0.01"), facts) == []                     # re-tuned
    at_64 = tiny_train_config(f"training.gamma={DEFAULT_GAMMA}", "discriminator.patch_resolution=64")
    assert _codes(at_64, facts) == []


def test_images_larger_than_the_triplanes_warn():
    cfg = tiny_train_config()                                       # tri-planes of 16^2
    warnings = preflight(cfg, _facts(_wide_yaws(), resolution=32))
    assert [w.code for w in warnings] == ["resolution"]
    assert "model.triplane.resolution=32" in warnings[0].message
    assert _codes(cfg, _facts(_wide_yaws(), resolution=16)) == []


def test_labels_without_a_conditional_model_and_the_reverse_warn():
    labelled, unlabelled = _facts(_wide_yaws(), classes=3), _facts(_wide_yaws(), classes=0)
    ignored = preflight(tiny_train_config("training.use_labels=false"), labelled)
    assert [w.code for w in ignored] == ["labels_unused"]
    missing = preflight(tiny_train_config("model.c_dim=4"), unlabelled)
    assert [w.code for w in missing] == ["labels_missing"]
    assert "model.c_dim=4" in missing[0].message
    assert _codes(tiny_train_config("model.c_dim=0"), unlabelled) == []
    assert _codes(tiny_train_config(), labelled) == []


def test_an_unposed_dataset_gets_no_pose_warnings():
    cfg = tiny_train_config("model.c_dim=0")
    assert _codes(cfg, _facts(None, classes=0)) == []


def test_every_warning_is_one_line():
    cfg = tiny_train_config(f"training.gamma={DEFAULT_GAMMA}", "training.use_labels=false",
                            "discriminator.camera_cond=false", "model.mapping.camera_cond=false")
    warnings = preflight(cfg, _facts(_narrow_yaws(math.pi / 2), resolution=32))
    assert sorted(w.code for w in warnings) == sorted(["d_pose_cond", "g_pose_cond", "yaw_centre",
                                                       "gamma_patch", "resolution", "labels_unused"])
    for w in warnings:
        assert "\n" not in w.message and len(w.message) < 300


# -- trigan train --------------------------------------------------------------------------------------

def _off_centre_dataset(tmp_path):
    """The tiny dataset with its yaws moved to a hump around +90 degrees."""
    data = write_tiny_dataset(tmp_path / "faces", num=8)
    meta = json.loads((data / "dataset.json").read_text())
    yaws = _narrow_yaws(math.pi / 2, n=len(meta["camera_angles"]))
    for (_, angles), yaw in zip(sorted(meta["camera_angles"].items()), yaws, strict=True):
        angles[0] = float(yaw)
    (data / "dataset.json").write_text(json.dumps(meta))
    return data


def test_train_strict_refuses_before_anything_is_written(tmp_path, capsys):
    data = _off_centre_dataset(tmp_path)
    out = tmp_path / "runs"
    code = main(["train", "--config", "demo", "--data", str(data), "--out", str(out), "--kimg", "0.008",
                 "--device", "cpu", "--strict", *TINY_TRAIN, "discriminator.camera_cond=true",
                 "model.mapping.camera_cond=true"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("trigan: error: pre-flight: yaw is not zero-centred")
    assert "--strict" in err[-1] and "yaw_centre" in err[-1]
    assert not out.exists() or not any(out.iterdir())


def test_train_logs_the_warnings_in_the_run(tmp_path, capsys):
    data = _off_centre_dataset(tmp_path)
    code = main(["train", "--config", "demo", "--data", str(data), "--out", str(tmp_path / "runs"), "--kimg", "0.008",
                 "--device", "cpu", *TINY_TRAIN, "discriminator.camera_cond=true", "model.mapping.camera_cond=true"])
    assert code == 0
    assert "warning: yaw is not zero-centred" in capsys.readouterr().out
    (run,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    assert "warning: yaw is not zero-centred" in (run / "log.txt").read_text()
    status = json.loads((run / "status.json").read_text())
    assert any(n.startswith("warning: yaw is not zero-centred") for n in status["notes"])


def test_the_fix_the_yaw_warning_names_removes_it(tmp_path, capsys):
    """An unposed folder, poses imported in degrees around +90 (the +Z-front mistake): the check
    warns; the command it names (`trigan dataset poses ... --center`) makes it clean."""
    data = write_tiny_dataset(tmp_path / "faces", num=8)
    (data / "dataset.json").unlink()
    yaws = np.degrees(_narrow_yaws(math.pi / 2, n=8))
    names = sorted(p.name for p in data.glob("*.png"))
    src = tmp_path / "poses.csv"
    src.write_text("".join(f"{n},{y:.6f},80\n" for n, y in zip(names, yaws, strict=True)))
    cfg = load_config("epigraf_ffhq512")
    assert main(["dataset", "poses", str(src), "--format", "angles", "--degrees", "--out", str(data)]) == 0
    warnings = preflight(cfg, dataset_facts(data))
    assert [w.code for w in warnings] == ["yaw_centre"] and "--center" in warnings[0].message
    assert main(["dataset", "poses", str(src), "--format", "angles", "--degrees", "--center", "--force",
                 "--out", str(data)]) == 0
    assert preflight(cfg, dataset_facts(data)) == []
