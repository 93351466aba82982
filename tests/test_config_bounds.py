"""Issue 29, item 4: every size and value of a config is bounded (training.config.validate_config,
core.config.validate_model_config), read from a preset, the command line or a checkpoint, and the
generator it describes must fit in memory. Issue 31: choice fields refuse other values at load; the
recipe lives in training.config and core never imports training."""

import ast
import dataclasses
import math
import typing
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import THREEDGP_FIXTURES
from trigan.core import config as C
from trigan.core.checkpoint import load_checkpoint, save_checkpoint
from trigan.core.config import (
    SavedConfig,
    apply_overrides,
    check_model_memory,
    config_to_dict,
    saved_config_from_dict,
)
from trigan.core.epigraf_pickle import read_epigraf_pickle
from trigan.core.errors import CheckpointError, ConfigError
from trigan.core.generator import Generator
from trigan.training.config import (
    BOUNDS,
    PRESETS_DIR,
    RECIPE_RULES,
    Config,
    config_from_dict,
    config_from_saved,
    list_presets,
    load_config,
    validate_config,
)
from trigan.training.discriminator import Discriminator
from trigan.training.official_import import snapshot_config

DEMO_CKPT = Path(__file__).resolve().parents[1] / "assets" / "demo.ckpt"


def numeric_fields(cls=Config, prefix=""):
    """Dotted keys of every int, float, Optional[int/float] and List[float] field of the schema, found by
    walking the dataclasses (independently of training.config.BOUNDS)."""
    keys = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(kind):
            keys += numeric_fields(kind, key + ".")
            continue
        args = [a for a in typing.get_args(kind) if a is not type(None)] or [kind]
        inner = typing.get_args(args[0]) or args
        if any(a in (int, float) for a in inner) and bool not in inner:
            keys.append(key)
    return keys


def refused(overrides, fragment=None):
    with pytest.raises(ConfigError) as exc:
        load_config("demo", overrides)
    message = str(exc.value)
    assert len(message.splitlines()) == 1, message
    if fragment is not None:
        assert fragment in message, message
    return message


def test_every_numeric_field_has_a_bound():
    assert sorted(numeric_fields()) == sorted(BOUNDS)
    assert sorted(numeric_fields(SavedConfig)) == sorted(C.MODEL_RULES.bounds)   # core checks the model alone


@pytest.mark.parametrize("preset", list_presets())
def test_shipped_presets_validate(preset):
    cfg = load_config(preset)
    assert validate_config(cfg, preset) is cfg


def test_demo_checkpoint_validates():
    ckpt = load_checkpoint(DEMO_CKPT)
    validate_config(config_from_saved(ckpt.config), str(DEMO_CKPT))


@pytest.mark.parametrize("key", numeric_fields())
def test_nan_and_infinities_are_refused_everywhere(key):
    """No numeric field takes NaN or an infinity (for integer fields the schema itself refuses them)."""
    for text in ("nan", "inf", "-inf"):
        lengths = {**C.MODEL_RULES.list_lengths, **RECIPE_RULES.list_lengths}
        value = f"[{', '.join([text] * lengths[key])}]" if key in lengths else text
        with pytest.raises(ConfigError) as exc:
            load_config("demo", [f"{key}={value}"])
        assert key in str(exc.value) and len(str(exc.value).splitlines()) == 1


@pytest.mark.parametrize("override, fragment", [
    # model sizes: zero, negative, huge
    ("model.img_resolution=0", "model.img_resolution=0: expected an integer in [4, 4096]"),
    ("model.img_resolution=1000000000", "model.img_resolution=1000000000: expected"),
    ("model.c_dim=-1", "model.c_dim=-1: expected an integer in [0, 10000]"),
    ("model.c_dim=1000000", "model.c_dim=1000000: expected"),
    ("model.mapping.z_dim=0", "model.mapping.z_dim=0: expected"),
    ("model.mapping.w_dim=100000", "model.mapping.w_dim=100000: expected"),
    ("model.triplane.feat_dim=10000000", "model.triplane.feat_dim=10000000: expected an integer in [1, 1024]"),
    ("model.triplane.resolution=48", "model.triplane.resolution=48: expected a power of two in [4, 4096]"),
    ("model.triplane.mlp_layers=0", "model.triplane.mlp_layers=0: expected"),
    ("model.background.hidden_dim=-3", "model.background.hidden_dim=-3: expected"),
    # camera
    ("model.camera.fov=0", "model.camera.fov=0.0: expected a finite number in (0, 180)"),
    ("model.camera.fov=180", "model.camera.fov=180.0: expected"),
    ("model.camera.fov=-10", "model.camera.fov=-10.0: expected"),
    ("model.camera.radius=-1", "model.camera.radius=-1.0: expected a finite number in (0, 1000000]"),
    ("model.camera.radius=0", "model.camera.radius=0.0: expected"),
    ("model.camera.cube_scale=1e300", "model.camera.cube_scale=1e+300: expected"),
    ("model.camera.ray_end=0.5", "model.camera.ray_start=0.6 and model.camera.ray_end=0.5: expected"),
    ("model.camera.yaw_range=[1.0,-1.0]", "model.camera.yaw_range=[1.0, -1.0]: expected [min, max]"),
    ("model.camera.mean_pose=[0.0,1.0]", "model.camera.mean_pose=[0.0, 1.0]: expected a list of 3 numbers"),
    # render
    ("model.render.num_steps=0", "model.render.num_steps=0: expected an integer in [1, 4096]"),
    ("model.render.num_steps=100000000", "model.render.num_steps=100000000: expected"),
    ("model.render.num_fine_steps=-1", "model.render.num_fine_steps=-1: expected"),
    # training
    ("training.batch_size=0", "training.batch_size=0: expected an integer in [1, 65536]"),
    ("training.g_lr=-1", "training.g_lr=-1.0: expected a finite number in (0, 100]"),
    ("training.d_lr=0", "training.d_lr=0.0: expected"),
    ("training.betas=[0.0,1.0]", "training.betas=[0.0, 1.0]: expected each entry to be a finite number in [0, 1)"),
    ("training.num_workers=-1", "training.num_workers=-1: expected an integer in [0, 256]"),
    ("training.gamma=-0.1", "training.gamma=-0.1: expected"),
    ("training.kimg=-5", "training.kimg=-5.0: expected"),
    ("training.snapshot_ticks=0", "training.snapshot_ticks=0: expected"),
    ("training.augment.flip_p=1.5", "training.augment.flip_p=1.5: expected"),
    ("discriminator.patch_resolution=24", "discriminator.patch_resolution=24: expected a power of two"),
])
def test_out_of_bound_values_are_refused_in_one_line(override, fragment):
    refused([override], fragment)


def test_ordered_pairs():
    refused(["training.patch.min_scale=0.9", "training.patch.max_scale=0.5"],
            "training.patch.min_scale=0.9 and training.patch.max_scale=0.5: expected")
    refused(["model.camera.fov_min=40", "model.camera.fov_max=20"], "model.camera.fov_min=40.0 and")
    refused(["model.camera.look_at_radius_min=0.3", "model.camera.look_at_radius_max=0.1"], "look_at_radius_min")


def test_bounds_apply_to_overrides_of_a_config_and_to_checkpoints(tmp_path):
    cfg = load_config("demo")
    with pytest.raises(ConfigError, match=r"model.camera.fov=nan"):
        apply_overrides(cfg, ["model.camera.fov=nan"])
    data = config_to_dict(cfg)
    data["model"]["img_resolution"] = 10 ** 9
    with pytest.raises(ConfigError, match=r"model.img_resolution=1000000000: expected"):
        config_from_dict(data, "ckpt")
    # A checkpoint whose config says so is refused at load, before any model is built.
    path = tmp_path / "big.ckpt"
    save_checkpoint(path, cfg, {"w": torch.zeros(1)})
    payload = torch.load(path, weights_only=True)
    payload["config"] = data
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=r"img_resolution=1000000000"):
        load_checkpoint(path)


@pytest.mark.parametrize("value", ["${model.family}", "${oc.env:HOME}", "a${model.name}b"])
def test_interpolations_are_refused(tmp_path, value):
    """OmegaConf would resolve `${...}` (an interpolation chain can hang; oc.env reads the environment)."""
    with pytest.raises(ConfigError, match=r"interpolations .* are not allowed"):
        load_config("demo", [f"model.name={value}"])
    data = config_to_dict(load_config("demo"))
    data["model"]["name"] = value
    with pytest.raises(ConfigError, match=r"model.name=.*interpolations"):
        config_from_dict(data)
    yaml = tmp_path / "bad.yaml"
    yaml.write_text(f"model:\n  name: '{value}'\n")
    with pytest.raises(ConfigError, match=r"interpolations"):
        load_config(str(yaml))


def test_recursive_interpolation_bomb_is_refused_not_resolved():
    data = {"model": {"name": "${model.family}", "family": "${model.name}"}}
    with pytest.raises(ConfigError, match="interpolations"):
        config_from_dict(data)


def test_shared_reference_bomb_and_deep_nesting_are_refused():
    """A config of shared lists ("billion laughs": 30 levels of 2 references = 2^30 leaves) is refused
    after a bounded walk, as is one nested far deeper than the schema (no RecursionError)."""
    laughs = ["lol"]
    for _ in range(30):
        laughs = [laughs, laughs]
    with pytest.raises(ConfigError, match="not a trigan config"):
        config_from_dict({"model": {"class_names": laughs}})
    deep = {}
    node = deep
    for _ in range(5000):
        node["x"] = {}
        node = node["x"]
    with pytest.raises(ConfigError, match="nested more than"):
        config_from_dict({"model": deep})
    with pytest.raises(ConfigError, match="20000 entries"):
        config_from_dict({"model": {"class_names": ["a"] * 20000}})
    with pytest.raises(ConfigError, match="is a bytes"):
        config_from_dict({"model": {"name": b"x"}})


def test_class_names_cannot_outnumber_the_classes():
    refused(["model.c_dim=2", "model.class_names=[a,b,c]"], "model.class_names has 3 names for model.c_dim=2")


def test_a_huge_config_file_is_refused_before_parsing(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text("model:\n  name: x\n" + "#" * (C.MAX_YAML_BYTES + 10) + "\n")
    with pytest.raises(ConfigError, match="a config file is at most"):
        load_config(str(path))


def test_memory_check_names_the_part_and_values(monkeypatch):
    """The generator's size is measured without allocating it; the demo (a few MB) fits in 1 GiB, not
    in 1 MiB; values each within bounds whose product is too big are refused when loaded."""
    cfg = load_config("demo")
    check_model_memory(cfg.model, "demo", available=2 ** 30)
    with pytest.raises(ConfigError) as exc:
        check_model_memory(cfg.model, "demo", available=2 ** 20)
    assert "mostly its tri-plane decoder" in str(exc.value) and "model.triplane.channel_max=128" in str(exc.value)
    # Tri-planes of 3 x 1024 x 4096^2 floats plus the decoder's last activation (2 x 1 channel, as
    # channel_base 4096 // 4096 = 1): 192.1 GiB per sample.
    monkeypatch.setattr(C, "available_memory_bytes", lambda: 16 * 2 ** 30)
    message = refused(["model.triplane.resolution=4096", "model.triplane.feat_dim=1024"],
                      "tri-planes of one sample")
    planes = (3 * 1024 + 2 * 1) * 4096 ** 2 * 4 / 2 ** 30
    assert f"({planes:.1f} GiB: model.triplane.resolution=4096, model.triplane.feat_dim=1024)" in message
    assert "16.0 GiB of memory is available" in message


def test_memory_parts_match_the_built_generator():
    """The meta-device measurement equals the real generator's parameter and buffer bytes."""
    cfg = load_config("demo")
    parts = C.generator_memory_parts(cfg.model)
    G = Generator(cfg.model)
    real = sum(t.numel() * t.element_size() for t in [*G.parameters(), *G.buffers()])
    weights = sum(v for k, v in parts.items() if k != "tri-planes of one sample")
    assert weights == real
    assert math.isclose(parts["tri-planes of one sample"],
                        (3 * 16 + 2 * min(4096 // 64, 128)) * 64 ** 2 * 4)


@pytest.mark.parametrize("override, top", [
    ("discriminator.channel_base=32", 64),            # D's top block sees 64^2 patches
    ("model.triplane.channel_base=32", 64),           # the demo's tri-planes are 64^2
])
def test_a_channel_base_below_the_top_resolution_is_refused(override, top):
    # channels = min(base // resolution, max): 32 // 64 == 0 channels, which crashed the weight init.
    with pytest.raises(ConfigError, match=f"expected .*channel_base >= {top}") as info:
        load_config("demo", [override])
    assert "\n" not in str(info.value)
    # At the boundary the top layer has one channel, and the networks build.
    cfg = load_config("demo", [override.replace("=32", f"={top}")])
    Generator(cfg.model)
    Discriminator(cfg.discriminator, cfg.model.c_dim)


# ---------------------------------------------------------------------------------------------------
# Issue 31: choice fields are checked at load; the recipe's config is training's; core stays below it.

CHOICE_FIELDS = {"model.family", "model.triplane.color_activation", "model.background.type", "model.camera.dist",
                 "model.render.density_activation", "model.render.importance_spacing",
                 "discriminator.mbstd_grouping", "training.patch.dist", "training.depth.out_strategy"}


def choice_fields(cls=Config, prefix=""):
    """{dotted key: allowed values} of every choice field of the schema."""
    found = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            found.update(choice_fields(hints[f.name], f"{prefix}{f.name}."))
        elif "choices" in f.metadata:
            found[f"{prefix}{f.name}"] = f.metadata["choices"]
    return found


def nested(key: str, value) -> dict:
    """{"a": {"b": value}} for key "a.b"."""
    for part in reversed(key.split(".")):
        value = {part: value}
    return value


def test_every_fixed_set_of_strings_is_a_choice_field():
    assert set(choice_fields()) == CHOICE_FIELDS
    assert choice_fields()["model.camera.dist"] == C.CAMERA_DISTS


@pytest.mark.parametrize("key", sorted(CHOICE_FIELDS))
def test_every_allowed_choice_loads(key):
    for value in choice_fields()[key]:
        cfg = load_config("demo", [f"{key}={'null' if value is None else value}"])
        assert C.config_value(cfg, key) == value


@pytest.mark.parametrize("key", sorted(CHOICE_FIELDS))
def test_a_bad_choice_is_refused_at_load_in_one_line(tmp_path, key):
    """From an override, a preset file and a checkpoint alike: one line naming the key, the value and
    the allowed values, before anything is built."""
    allowed = ", ".join(C.show_value(v) for v in choice_fields()[key])
    expected = f"{key}='bogus': expected one of {allowed}"
    assert refused([f"{key}=bogus"], expected).startswith("demo.yaml ")
    preset = tmp_path / "bad.yaml"
    preset.write_text(OmegaConf.to_yaml(OmegaConf.merge(OmegaConf.load(PRESETS_DIR / "demo.yaml"),
                                                        nested(key, "bogus"))))
    with pytest.raises(ConfigError) as exc:
        load_config(str(preset))
    assert expected in str(exc.value) and len(str(exc.value).splitlines()) == 1
    data = config_to_dict(load_config("demo"))
    section = data
    for part in key.split(".")[:-1]:
        section = section[part]
    section[key.split(".")[-1]] = "bogus"
    path = tmp_path / "bad.ckpt"
    save_checkpoint(path, load_config("demo"), {"w": torch.zeros(1)})
    payload = torch.load(path, weights_only=True)
    payload["config"] = data
    torch.save(payload, path)
    if key.startswith("model."):
        with pytest.raises(CheckpointError) as exc:       # core refuses the model's own choices
            load_checkpoint(path)
    else:
        saved = load_checkpoint(path).config               # core keeps the recipe as saved ...
        assert C.config_value(saved, key.split(".")[0])    # ... and training refuses it when it reads it
        with pytest.raises(ConfigError) as exc:
            config_from_saved(saved, f"{path}: config")
    assert expected in str(exc.value) and "bad.ckpt" in str(exc.value) and len(str(exc.value).splitlines()) == 1


def test_round_trips_of_the_demo_preset_and_the_3dgp_fixture_config():
    demo = load_config("demo")
    assert config_from_dict(config_to_dict(demo)) == demo
    tdgp = snapshot_config(read_epigraf_pickle(THREEDGP_FIXTURES / "3dgp_cond.pkl"), "3dgp_cond", with_training=True)
    assert config_from_dict(config_to_dict(tdgp)) == tdgp
    # core's reading keeps everything: the same dict comes back, and training reads it whole
    for cfg in (demo, tdgp):
        saved = saved_config_from_dict(config_to_dict(cfg))
        assert saved.model == cfg.model and config_to_dict(saved) == config_to_dict(cfg)
        assert config_from_saved(saved) == cfg


def test_an_old_checkpoint_loads_and_saves_in_the_same_format(tmp_path):
    """assets/demo.ckpt predates several fields: they get their defaults; every stored value is kept,
    and saving what core read writes the same sections (the format is unchanged)."""
    stored = torch.load(DEMO_CKPT, weights_only=True)["config"]
    ckpt = load_checkpoint(DEMO_CKPT)
    written = config_to_dict(ckpt.config)
    assert list(written) == list(stored) == ["model", "discriminator", "training"]
    assert written["discriminator"] == stored["discriminator"] and written["training"] == stored["training"]

    def kept(old, new):
        return all(kept(v, new[k]) if isinstance(v, dict) else new[k] == v for k, v in old.items())
    assert kept(stored["model"], written["model"])
    cfg = config_from_saved(ckpt.config)
    assert cfg.model == ckpt.config.model and kept(stored, config_to_dict(cfg))


def test_core_imports_neither_training_nor_viewer():
    core = Path(C.__file__).parent
    offenders = []
    for path in sorted(core.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
                     if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.name}: {name}" for name in names
                          if name.split(".")[:2] in (["trigan", "training"], ["trigan", "viewer"])]
    assert offenders == []
