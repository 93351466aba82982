"""`trigan --help` and every `trigan COMMAND --help` stay quick: building the parser imports neither
torch nor numpy (cli/main.py: the commands import the rest of trigan inside the functions that run
them). No timing is asserted here; benchmarks/startup.py measures the wall times."""

from __future__ import annotations

import random
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

from conftest import REPO, tiny_config
from trigan.cli.info import describe_loaded, describe_without_torch
from trigan.cli.mesh import HELP_FORMATS
from trigan.core.checkpoint import save_checkpoint
from trigan.core.checkpoint_meta import (
    BUFFER_NAMES,
    StorageRecord,
    TensorRecord,
    num_ws_of,
    parameter_counts_of,
    read_checkpoint_meta,
)
from trigan.core.epigraf_pickle import read_epigraf_pickle
from trigan.core.errors import TriganError
from trigan.core.generator import Generator, parameter_counts
from trigan.core.mesh import FORMATS
from trigan.training.config import list_presets, load_config

HEAVY = ("torch", "numpy")


def imported_modules(argv) -> set:
    """The top-level modules `python -X importtime -m trigan.cli.main ARGV` imported."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "trigan.cli.main", *argv],
                          capture_output=True, text=True, timeout=120, check=False, cwd=REPO.parent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line.split("|")[-1] for line in proc.stderr.splitlines() if line.startswith("import time:")]
    return {line.strip().split(".")[0] for line in lines}


def test_help_imports_neither_torch_nor_numpy():
    modules = imported_modules(["--help"])
    assert "trigan" in modules                      # the probe sees trigan's own imports
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))


@pytest.mark.parametrize("command", ["render", "mesh", "info", "invert"])
def test_a_subcommand_help_imports_neither_torch_nor_numpy(command):
    modules = imported_modules([command, "--help"])
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))


def test_building_every_parser_imports_neither_torch_nor_numpy():
    """All subcommands' add_parser at once, in a fresh interpreter (this test process has torch)."""
    probe = ("import sys\nfrom trigan.cli.main import build_parser\nbuild_parser()\n"
             f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                          check=False, cwd=REPO.parent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]", proc.stdout


def test_mesh_help_lists_the_formats_core_writes():
    assert tuple(HELP_FORMATS) == tuple(FORMATS)


# --------------------------------------------------------------------------------------------------
# `trigan info CKPT` without torch: the same description as loading the generator

def tiny_checkpoints(folder):
    """Checkpoints of every kind of part the summary counts: plain, with the background network,
    3DGP's camera generator; one with progress (an RNG state among it), metrics and G's weights."""
    tiny = ["model.img_resolution=16", "model.triplane.resolution=16", "model.triplane.channel_base=256",
            "model.triplane.channel_max=16", "model.triplane.feat_dim=8", "model.triplane.mlp_hidden=16",
            "model.mapping.w_dim=16", "model.mapping.z_dim=32", "model.render.num_steps=8"]
    configs = {"plain": tiny_config(), "sphere": tiny_config(**{"model.background.type": "sphere"}),
               "3dgp": load_config("3dgp_demo", tiny)}
    paths = {}
    for name, cfg in configs.items():
        torch.manual_seed(0)
        G = Generator(cfg.model)
        extra = {"G": G, "progress": {"kimg": 12.5, "rng": torch.arange(4)}, "metrics": {"fid2k": 55.25}} \
            if name == "plain" else {}
        paths[name] = save_checkpoint(folder / f"{name}.ckpt", cfg, G, **extra)
    return paths


def test_info_without_torch_describes_a_checkpoint_as_loading_it_does(tmp_path):
    paths = {**tiny_checkpoints(tmp_path), "demo": REPO / "assets" / "demo.ckpt"}
    for name, path in paths.items():
        quick = describe_without_torch(str(path))
        assert quick is not None, name
        assert quick == describe_loaded(str(path)), name


def test_info_of_a_checkpoint_imports_no_torch():
    modules = imported_modules(["info", str(REPO / "assets" / "demo.ckpt")])
    assert "trigan" in modules and "torch" not in modules


def test_the_reader_leaves_unusual_checkpoints_to_the_loader(tmp_path):
    """Non-finite or integer weights, a config without the weights' parts, an official .pkl: the
    torch-free reader does not vouch for them, so `trigan info` loads them the full way (and says
    what is wrong in the loader's words: tests/test_hostile_*.py)."""

    plain = tiny_checkpoints(tmp_path)["plain"]
    payload = torch.load(plain, weights_only=True)
    first = next(iter(payload["G_ema"]))
    variants = {"nan": lambda p: p["G_ema"][first].view(-1).__setitem__(0, float("nan")),
                "int": lambda p: p["G_ema"].__setitem__(first, p["G_ema"][first].long()),
                "sphere": lambda p: p["config"]["model"]["background"].__setitem__("type", "sphere")}
    for name, change in variants.items():
        bad = torch.load(plain, weights_only=True)
        change(bad)
        torch.save(bad, tmp_path / f"{name}.ckpt")
        assert read_checkpoint_meta(tmp_path / f"{name}.ckpt") is None, name


# --------------------------------------------------------------------------------------------------
# `trigan info X.pkl` without torch: an official EpiGRAF / 3DGP snapshot, described as loading it does

OFFICIAL = sorted([*(REPO / "tests" / "fixtures" / "epigraf").glob("*.pkl"),
                   *(REPO / "tests" / "fixtures" / "3dgp").glob("*.pkl")])


@pytest.mark.parametrize("path", OFFICIAL, ids=lambda p: p.name)
def test_info_without_torch_describes_an_official_snapshot_as_loading_it_does(path):
    quick = describe_without_torch(str(path))
    assert quick is not None
    assert quick == describe_loaded(str(path))


@pytest.mark.parametrize("path", OFFICIAL, ids=lambda p: p.name)
def test_info_of_an_official_snapshot_imports_no_torch(path):
    modules = imported_modules(["info", str(path)])
    assert "trigan" in modules and "torch" not in modules


def test_mutated_snapshots_are_described_as_the_loader_would_or_left_to_it(tmp_path):
    """Seeded byte flips anywhere in an official snapshot (its network tree, config, tensor data):
    the torch-free route never raises; what it describes, the loader describes alike. The one gap
    allowed is the documented one: it does not check weight names and shapes (only the loader builds
    the generator)."""
    data = (REPO / "tests" / "fixtures" / "epigraf" / "cond_white.pkl").read_bytes()
    rng = random.Random(32)
    described = 0
    for i in range(40):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        path = tmp_path / f"mutated{i}.pkl"
        path.write_bytes(bytes(mutated))
        quick = describe_without_torch(str(path))
        if quick is None:
            continue
        described += 1
        assert loader_view(path) in (quick, "weights do not fit the architecture"), i
    assert described > 0     # most flips land in tensor data the description does not show


def test_a_snapshot_with_a_non_finite_weight_is_left_to_the_loader(tmp_path):
    """The loader refuses NaN weights (core.checkpoint.check_generator_weights); the torch-free route
    does not describe such a file but leaves it to the loader, which says what is wrong."""
    from trigan.core.epigraf_import import read_snapshot_meta  # noqa: PLC0415

    source = REPO / "tests" / "fixtures" / "epigraf" / "cond_white.pkl"
    snapshot = read_epigraf_pickle(source, tensors="records")
    weight = next(t for t in snapshot.networks["G_ema"].state_dict.values() if t.dtype == "float32" and t.numel > 4)
    data = source.read_bytes()
    needle = weight.values.tobytes()[:16]
    assert data.count(needle) >= 1
    at = data.index(needle)
    path = tmp_path / "nan.pkl"
    path.write_bytes(data[:at] + np.float32("nan").tobytes() + data[at + 4:])
    assert read_snapshot_meta(source) is not None
    assert read_snapshot_meta(path) is None
    with pytest.raises(TriganError, match="nan.pkl"):
        describe_loaded(str(path))


def test_buffer_names_and_counts_agree_with_the_generator_on_every_preset():

    for preset in list_presets():
        model = load_config(preset).model
        with torch.device("meta"):
            G = Generator(model)
        saved = G.state_dict()
        buffers = {name for name, _ in G.named_buffers() if name in saved}   # non-persistent ones are not saved
        assert {name.rsplit(".", 1)[-1] for name in buffers} <= BUFFER_NAMES, preset
        assert not {name.rsplit(".", 1)[-1] for name, _ in G.named_parameters()} & BUFFER_NAMES, preset
        records = {k: TensorRecord(StorageRecord("float32", 4, k, v.numel()), 0, tuple(v.shape))
                   for k, v in saved.items()}
        assert parameter_counts_of(records) == parameter_counts(G), preset
        assert num_ws_of(model) == G.synthesis.num_ws, preset


def meta_device_memory_parts(model):
    """generator_memory_parts as it was before issue 32: the generator built on torch's meta device."""
    from trigan.core.config import _FLOAT_BYTES  # noqa: PLC0415

    with torch.device("meta"):
        G = Generator(model)
    size = lambda m: 0 if m is None else sum(t.numel() for t in [*m.parameters(), *m.buffers()]) * _FLOAT_BYTES
    return {"mapping network": size(G.mapping), "tri-plane decoder": size(G.synthesis.tri_plane_decoder),
            "tri-plane MLP": size(G.synthesis.tri_plane_mlp), "background network": size(G.synthesis.bg_model),
            "camera generator": size(G.camera_generator)}


def memory_test_models():
    """Every preset, each with the background network and without noise too, and the official fixtures'."""
    from trigan.core.epigraf_import import read_snapshot_meta  # noqa: PLC0415

    models = {}
    for preset in list_presets():
        models[preset] = load_config(preset).model
        models[f"{preset}+sphere"] = load_config(preset, ["model.background.type=sphere",
                                                          "model.background.num_blocks=3",
                                                          "model.triplane.use_noise=false"]).model
    for path in OFFICIAL:
        models[path.name] = read_snapshot_meta(path)[0].config.model
    return models


def test_memory_parts_in_closed_form_equal_the_meta_device_generator():
    from trigan.core.config import generator_memory_parts  # noqa: PLC0415

    for name, model in memory_test_models().items():
        parts = generator_memory_parts(model)
        assert parts is not None, name
        assert {k: v for k, v in parts.items() if k != "tri-planes of one sample"} == meta_device_memory_parts(model), name


def loader_view(path):
    """describe_loaded's answer, or the gap's wording when the loader refuses for that reason."""
    try:
        return describe_loaded(str(path))
    except TriganError as exc:
        return "weights do not fit the architecture" if "weights do not fit the architecture" in str(exc) else str(exc)


def test_mutated_checkpoints_are_described_as_the_loader_would_or_left_to_it(tmp_path):
    """Seeded byte flips in a checkpoint's data.pkl: the torch-free reader never raises; what it
    describes, the loader describes alike. The one difference allowed is the documented one: it
    does not check weight names and shapes against the architecture (only the loader builds it)."""
    source = tiny_checkpoints(tmp_path)["plain"]
    with zipfile.ZipFile(source) as archive:
        entries = [(e.filename, archive.read(e)) for e in archive.infolist()]
    rng = random.Random(32)
    described = 0
    for i in range(150):
        path = tmp_path / f"mutated{i}.ckpt"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as out:
            for name, data in entries:
                if name.endswith("data.pkl"):
                    data = bytearray(data)
                    for _ in range(rng.randint(1, 4)):
                        data[rng.randrange(len(data))] = rng.randrange(256)
                out.writestr(name, bytes(data))
        quick = describe_without_torch(str(path))
        if quick is None:
            continue
        described += 1
        assert loader_view(path) in (quick, "weights do not fit the architecture"), i
    assert described > 0     # some flips land in values the summary shows (progress numbers, ...)
