"""Tests for the safe EpiGRAF snapshot reader (trigan.core.epigraf_pickle).

Expected values come from what upstream wrote and computed (tests/fixtures/README.md), not from the
reader itself: key lists and shapes (§7), configuration values (§4), optimizer facts (§3.6) and the
reference arrays in the *_ref.npz files.
"""

import contextlib
import os
import pickle
import sys
import types
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import EPIGRAF_FIXTURES
from trigan.core.epigraf_pickle import PickledConfigNode, PickledConfigResolver, is_epigraf_pickle, read_epigraf_pickle
from trigan.core.errors import CheckpointError, TriganError


def fixture_dir() -> Path:
    return EPIGRAF_FIXTURES


@pytest.fixture(scope="module")
def snapshots():
    return {name: read_epigraf_pickle(fixture_dir() / f"{name}.pkl") for name in ("uncond_gpc", "cond_white")}


def reference(name):
    return np.load(fixture_dir() / f"{name}_ref.npz", allow_pickle=False)


# ---------------------------------------------------------------------------------------------
# Networks and tensors

# (network, tensor count, first key, last key, a few key -> shape pairs) from README §7.
EXPECTED_NETWORKS = {
    ("uncond_gpc", "G_ema"): (82, "synthesis.tri_plane_decoder.b4.const", "mapping.fc1.bias", {
        "synthesis.tri_plane_decoder.b4.const": (16, 4, 4),
        "synthesis.tri_plane_decoder.b8.conv0.noise_const": (8, 8),
        "synthesis.tri_plane_decoder.b4.conv1.noise_strength": (),
        "synthesis.tri_plane_decoder.b4.torgb.weight": (96, 16, 1, 1),
        "synthesis.tri_plane_mlp.model.0.weight": (64, 32),
        "synthesis.tri_plane_mlp.model.1.weight": (4, 64),
        "mapping.fc0.weight": (32, 544),
        "mapping.embed.weight": (32, 2),
        "mapping.w_avg": (32,),
        "mapping.mean_camera_pose": (3,)}),
    ("uncond_gpc", "D"): (64, "scalar_enc.const_embed.weight", "b4.out.bias", {
        "scalar_enc.const_embed.weight": (1001, 256),
        "scalar_enc.fourier_encoder.fourier_coefs": (10,),
        "hyper_mod_mapping.embed.weight": (512, 828),
        "b32.conv1.affine.weight": (4, 512),
        "head_mapping.embed.weight": (16, 852),
        "head_mapping.camera_scalar_enc.fourier_encoder.fourier_coefs": (6,),
        "b4.conv.weight": (16, 17, 3, 3),
        "b4.fc.weight": (16, 256)}),
    ("cond_white", "G_ema"): (63, "synthesis.tri_plane_decoder.b4.const", "mapping.fc1.bias", {
        "synthesis.tri_plane_decoder.b4.const": (8, 4, 4),
        "synthesis.tri_plane_decoder.b16.conv1.noise_const": (16, 16),
        "synthesis.tri_plane_decoder.b16.torgb.weight": (96, 8, 1, 1),
        "mapping.embed.weight": (16, 4),
        "mapping.fc0.weight": (16, 528),
        "mapping.w_avg": (16,)}),
    ("cond_white", "D"): (37, "b16.resample_filter", "b4.out.bias", {
        "b16.fromrgb.weight": (4, 3, 1, 1),
        "b8.conv1.weight": (8, 8, 3, 3),
        "head_mapping.embed.weight": (8, 4),
        "b4.conv.weight": (8, 9, 3, 3),
        "b4.fc.weight": (8, 128)}),
}


@pytest.mark.parametrize("fixture, network", sorted(EXPECTED_NETWORKS))
def test_state_dict_keys_and_shapes(snapshots, fixture, network):
    count, first, last, shapes = EXPECTED_NETWORKS[(fixture, network)]
    state_dict = snapshots[fixture].networks[network].state_dict
    assert isinstance(state_dict, OrderedDict)
    assert len(state_dict) == count
    assert list(state_dict)[0] == first and list(state_dict)[-1] == last
    for key, shape in shapes.items():
        assert tuple(state_dict[key].shape) == shape, key
    for tensor in state_dict.values():
        assert tensor.device.type == "cpu" and not tensor.requires_grad and tensor.dtype == torch.float32


def test_synthesis_comes_before_mapping(snapshots):
    keys = list(snapshots["uncond_gpc"].networks["G_ema"].state_dict)
    assert max(i for i, k in enumerate(keys) if k.startswith("synthesis.")) < keys.index("mapping.w_avg")


def test_networks_present_and_modes(snapshots):
    assert set(snapshots["uncond_gpc"].networks) == {"G", "D", "G_ema"}  # augment_pipe is None there
    assert set(snapshots["cond_white"].networks) == {"G", "D", "G_ema", "augment_pipe"}
    for snapshot in snapshots.values():
        nets = snapshot.networks
        assert nets["G"].training and nets["D"].training and not nets["G_ema"].training
        assert list(nets["G"].state_dict) == list(nets["G_ema"].state_dict)
        assert nets["G_ema"].class_name == "Generator" and nets["D"].class_name == "Discriminator"
    pipe = snapshots["cond_white"].networks["augment_pipe"]
    shapes = {k: tuple(v.shape) for k, v in pipe.state_dict.items()}
    assert shapes == {"p": (), "Hz_geom": (12,), "Hz_fbank": (4, 43)}
    assert float(pipe.state_dict["p"]) == 0.0


@pytest.mark.parametrize("fixture", ["uncond_gpc", "cond_white"])
def test_w_avg_matches_reference_bit_exactly(snapshots, fixture):
    w_avg = snapshots[fixture].networks["G_ema"].state_dict["mapping.w_avg"].numpy()
    assert np.array_equal(w_avg, reference(fixture)["w_avg"])


def test_mean_camera_pose_matches_reference(snapshots):
    pose = snapshots["uncond_gpc"].networks["G_ema"].state_dict["mapping.mean_camera_pose"].numpy()
    assert np.array_equal(pose, reference("uncond_gpc")["mean_camera_pose"])


@pytest.mark.parametrize("fixture", ["uncond_gpc", "cond_white"])
def test_resample_filters_are_the_binomial_kernel(snapshots, fixture):
    kernel = torch.tensor([1.0, 3.0, 3.0, 1.0])
    expected = torch.outer(kernel, kernel) / 64
    filters = {k: v for net in ("G_ema", "D") for k, v in snapshots[fixture].networks[net].state_dict.items()
               if k.endswith("resample_filter")}
    assert len(filters) > 10
    for key, value in filters.items():
        assert torch.equal(value, expected), key


def test_module_attributes(snapshots):
    attributes = snapshots["uncond_gpc"].networks["G_ema"].attributes
    assert attributes[""]["class_name"] == "Generator"
    assert attributes["synthesis.tri_plane_mlp"]["class_name"] == "TriPlaneMLP"
    assert attributes["synthesis.tri_plane_mlp.model"]["class_name"] == "Sequential"
    gain = attributes["mapping.fc0"]["weight_gain"]  # a numpy float64 in the file
    assert type(gain) is float and gain == pytest.approx(0.01 / np.sqrt(544))
    assert attributes["synthesis"]["cfg"]["dataset"]["cube_scale"] == 0.2
    d_attributes = snapshots["uncond_gpc"].networks["D"].attributes
    assert d_attributes["scalar_enc.const_embed"]["class_name"] == "Embedding"


def test_shared_storage_is_decoded_once(snapshots):
    # vis.grid_z is one [8, 512] tensor split into two views; its storage is serialized per view.
    first, second = snapshots["uncond_gpc"].vis["grid_z"]
    assert first.shape == second.shape == (4, 512)
    assert first.untyped_storage().data_ptr() == second.untyped_storage().data_ptr()
    assert second.storage_offset() == 4 * 512


def test_vis_keeps_arrays_and_tensors(snapshots):
    vis = snapshots["cond_white"].vis
    assert vis["grid_size"] == (4, 2)
    assert isinstance(vis["labels"], np.ndarray) and vis["labels"].shape == (8, 4)
    assert isinstance(vis["grid_c"][0], torch.Tensor) and vis["grid_c"][0].shape == (4, 4)


# ---------------------------------------------------------------------------------------------
# Configuration

@pytest.mark.parametrize("fixture, cube_scale, fov, ray_range, white_back, resolution", [
    ("uncond_gpc", 0.2, 12.0, (0.88, 1.12), False, 32),
    ("cond_white", 0.475, 30.0, (0.75, 1.25), True, 16),
])
def test_generator_config_interpolations_resolved(snapshots, fixture, cube_scale, fov, ray_range, white_back,
                                                  resolution):
    snapshot = snapshots[fixture]
    cfg = snapshot.networks["G_ema"].init_kwargs["cfg"]  # the model.generator node; `dataset` is `${dataset}`
    assert cfg["dataset"]["cube_scale"] == cube_scale
    assert cfg["dataset"]["camera"]["fov"] == fov
    assert (cfg["dataset"]["camera"]["ray_start"], cfg["dataset"]["camera"]["ray_end"]) == ray_range
    assert cfg["dataset"]["white_back"] is white_back
    assert cfg["num_ray_steps"] == 48 and cfg["tri_plane"]["mlp"] == {"n_layers": 2, "hid_dim": 64}
    assert cfg == snapshot.config["model"]["generator"]
    assert snapshot.training_set_kwargs["resolution"] == resolution
    assert snapshot.stats["cur_nimg"] == 4


def test_experiment_config_strings_resolved(snapshots):
    config = snapshots["uncond_gpc"].config
    assert config["git_hash"] == "bda8d47"
    assert config["model"]["generator"]["patch"]["resolution"] == 16  # `${training.patch}`
    assert config["dataset"]["name"] == "ffhq_32_posed"  # `ffhq_${dataset.resolution}_posed`
    assert config["experiment_dir"] == f"/data/experiments/{config['experiment_name_with_hash']}"
    discriminator = config["model"]["discriminator"]
    assert discriminator["hyper_mod"] is True and discriminator["num_additional_start_blocks"] == 1
    kwargs = snapshots["uncond_gpc"].networks["G_ema"].init_kwargs
    assert type(kwargs["mapping_kwargs"]) is dict and kwargs["mapping_kwargs"]["camera_cond"] is True
    assert kwargs["mapping_kwargs"]["mean_camera_pose"].device.type == "cpu"


# ---------------------------------------------------------------------------------------------
# Optimizers

def test_optimizer_state_keyed_by_parameter_names(snapshots):
    snapshot = snapshots["cond_white"]
    g_opt, d_opt = snapshot.optimizers["G_opt"], snapshot.optimizers["D_opt"]
    g_params, d_params = snapshot.networks["G"].state_dict, snapshot.networks["D"].state_dict
    assert len(g_opt["state"]) == 48 and {s["step"] for s in g_opt["state"].values()} == {1}
    assert len(d_opt["state"]) == 24 and len(d_opt["param_groups"][0]["params"]) == 26
    assert d_opt["state"]["b4.out.bias"]["step"] == 1 and d_opt["state"]["b4.out.weight"]["step"] == 2
    for opt, params in ((g_opt, g_params), (d_opt, d_params)):
        assert set(opt["state"]) <= set(opt["param_groups"][0]["params"]) <= set(params)
        for name, entry in opt["state"].items():
            assert entry["exp_avg"].shape == entry["exp_avg_sq"].shape == params[name].shape
    assert g_opt["defaults"]["lr"] == 0.0025
    assert d_opt["defaults"]["lr"] == pytest.approx(0.002 * 16 / 17)


def test_optimizer_state_empty_in_uncond(snapshots):
    optimizers = snapshots["uncond_gpc"].optimizers
    assert set(optimizers) == {"G_opt", "D_opt"}
    assert optimizers["G_opt"]["state"] == {} and len(optimizers["G_opt"]["param_groups"][0]["params"]) > 0


# ---------------------------------------------------------------------------------------------
# Refusals

class _Payload:
    """Unpickling this with a stock unpickler would run os.system and create the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _ExecPayload(_Payload):
    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


@pytest.mark.parametrize("payload_class, global_name", [(_Payload, "system"), (_ExecPayload, "builtins.exec")])
def test_malicious_pickle_refused_without_side_effect(tmp_path, payload_class, global_name):
    marker, path = tmp_path / "marker", tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(payload_class(marker), protocol=4))
    with pytest.raises(CheckpointError) as caught:
        read_epigraf_pickle(path)
    message = str(caught.value)
    assert "evil.pkl" in message and global_name in message and "\n" not in message
    assert not marker.exists()


def test_malicious_payload_nested_in_snapshot_refused(tmp_path):
    marker, path = tmp_path / "marker", tmp_path / "nested.pkl"
    snapshot = {"training_set_kwargs": {"resolution": 32}, "G_ema": _Payload(marker), "stats": {}}
    path.write_bytes(pickle.dumps(snapshot, protocol=4))
    with pytest.raises(CheckpointError, match="nested.pkl.*system"):
        read_epigraf_pickle(path)
    assert not marker.exists()


def test_persistent_ids_refused(tmp_path):
    class PidPickler(pickle.Pickler):
        def persistent_id(self, obj):
            return "external" if obj == "x" else None
    path = tmp_path / "pid.pkl"
    with open(path, "wb") as f:
        PidPickler(f, protocol=4).dump({"G_ema": "x"})
    with pytest.raises(CheckpointError, match="pid.pkl.*persistent"):
        read_epigraf_pickle(path)


def test_truncated_fixture(tmp_path):
    data = (fixture_dir() / "cond_white.pkl").read_bytes()
    path = tmp_path / "cond_white_half.pkl"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cond_white_half\.pkl.*(truncated|incomplete)"):
        read_epigraf_pickle(path)


@pytest.mark.parametrize("tensors", ["torch", "records"])
def test_bad_tensor_view_is_corrupt_not_traceback(tmp_path, tensors):
    class BadView:
        def __reduce__(self):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                storage = torch.zeros(3).storage()
            return torch._utils._rebuild_tensor_v2, (storage, 0, (100,), (1,), False, OrderedDict())
    path = tmp_path / "bad_view.pkl"
    path.write_bytes(pickle.dumps({"G_ema": BadView()}, protocol=4))
    with pytest.raises(CheckpointError, match="bad_view.pkl.*corrupt"):
        read_epigraf_pickle(path, tensors=tensors)


ALL_FIXTURES = sorted([*EPIGRAF_FIXTURES.glob("*.pkl"), *(EPIGRAF_FIXTURES.parent / "3dgp").glob("*.pkl")])


@pytest.mark.parametrize("path", ALL_FIXTURES, ids=lambda p: p.name)
def test_the_record_route_reads_what_the_torch_route_reads(path):
    """tensors="records" (no torch; `trigan info`) gives every network's tensors with the same names,
    dtypes, shapes and values, bit for bit (both views of the same decoded bytes), and the same
    plain data: the same configs follow from it."""
    with_torch, records = read_epigraf_pickle(path), read_epigraf_pickle(path, tensors="records")
    assert records.networks.keys() == with_torch.networks.keys()
    for key, network in with_torch.networks.items():
        record_state = records.networks[key].state_dict
        assert list(record_state) == list(network.state_dict), key
        for name, tensor in network.state_dict.items():
            record = record_state[name]
            assert record.dtype == str(tensor.dtype).removeprefix("torch."), name
            assert record.shape == tuple(tensor.shape) and record.numel == tensor.numel(), name
            assert np.array_equal(record.values, tensor.numpy()), name
            assert record.tolist() == tensor.tolist(), name
        assert records.networks[key].attributes.keys() == network.attributes.keys(), key
    assert records.config == with_torch.config and records.stats == with_torch.stats
    assert records.optimizers.keys() == with_torch.optimizers.keys()


@pytest.mark.parametrize("zip_format", [True, False])
def test_torch_save_file_refused(tmp_path, zip_format):
    path = tmp_path / "weights.pt"
    torch.save({"fc.weight": torch.zeros(2, 2)}, path, _use_new_zipfile_serialization=zip_format)
    with pytest.raises(CheckpointError, match=r"weights\.pt.*torch\.save.*EpiGRAF network-snapshot pickle"):
        read_epigraf_pickle(path)


def test_plain_pickle_of_arrays_is_not_a_snapshot(tmp_path):
    path = tmp_path / "arrays.pkl"
    path.write_bytes(pickle.dumps({"w": np.ones((2, 2), np.float32), "b": np.zeros(2)}, protocol=4))
    with pytest.raises(CheckpointError, match=r"arrays\.pkl.*not an EpiGRAF network snapshot"):
        read_epigraf_pickle(path)


def test_missing_empty_and_non_pickle_files(tmp_path):
    with pytest.raises(CheckpointError, match=r"absent\.pkl.*no such file"):
        read_epigraf_pickle(tmp_path / "absent.pkl")
    (tmp_path / "empty.pkl").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty\.pkl.*empty"):
        read_epigraf_pickle(tmp_path / "empty.pkl")
    (tmp_path / "notes.txt").write_text("hello, not a network\n")
    with pytest.raises(CheckpointError, match=r"notes\.txt.*not a pickle"):
        read_epigraf_pickle(tmp_path / "notes.txt")
    assert issubclass(CheckpointError, TriganError)


# ---------------------------------------------------------------------------------------------
# Hand-made snapshots written through a fake `src.torch_utils.persistence` module

@contextlib.contextmanager
def fake_upstream_persistence():
    """Registers fake upstream modules just long enough to pickle; yields the reconstructor to name."""
    names = ("src", "src.torch_utils", "src.torch_utils.persistence")
    saved = {name: sys.modules.get(name) for name in names}

    def _reconstruct_persistent_obj(meta):
        raise AssertionError("only referenced while pickling")
    _reconstruct_persistent_obj.__module__ = names[-1]
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    for name in names:
        sys.modules[name] = types.ModuleType(name)
    sys.modules[names[-1]]._reconstruct_persistent_obj = _reconstruct_persistent_obj
    try:
        yield _reconstruct_persistent_obj
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


class FakeModule:
    """Pickles like an upstream persistent network: meta dict with source text and module state."""

    def __init__(self, reconstruct, class_name, module_src="# none", params=None, buffers=None,
                 non_persistent=(), children=None, **attributes):
        self.reconstruct, self.class_name, self.module_src = reconstruct, class_name, module_src
        self.state = {"training": False, "_parameters": OrderedDict(params or {}),
                      "_buffers": OrderedDict(buffers or {}), "_non_persistent_buffers_set": set(non_persistent),
                      "_modules": OrderedDict(children or {}), **attributes,
                      "_init_args": (), "_init_kwargs": {"w_dim": 4}}

    def __reduce__(self):
        meta = {"type": "class", "version": 6, "module_src": self.module_src, "class_name": self.class_name,
                "state": self.state}
        return self.reconstruct, (meta,)


def write_fake_snapshot(path, build_synthesis, module_src="# none"):
    with fake_upstream_persistence() as reconstruct:
        def module(class_name, **kwargs):
            return FakeModule(reconstruct, class_name, module_src=module_src, **kwargs)
        mapping = module("MappingNetwork", params={"fc0.weight": torch.nn.Parameter(torch.ones(4, 4))},
                         buffers={"w_avg": torch.zeros(4), "scratch": torch.ones(2)}, non_persistent={"scratch"})
        g_ema = module("Generator", children={"synthesis": build_synthesis(module), "mapping": mapping})
        snapshot = {"training_set_kwargs": {"resolution": 8}, "G": None, "D": None, "G_ema": g_ema,
                    "augment_pipe": None, "stats": {"cur_nimg": 0}}
        path.write_bytes(pickle.dumps(snapshot, protocol=4))
    assert "src.torch_utils.persistence" not in sys.modules


def test_fake_tri_plane_snapshot_loads_without_running_source(tmp_path):
    marker, path = tmp_path / "source_ran", tmp_path / "tiny.pkl"
    source = f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"

    def synthesis(module):
        fc = module("FullyConnectedLayer", params={"weight": torch.nn.Parameter(torch.ones(3, 2)), "bias": None})
        mlp = module("TriPlaneMLP", children={"fc": fc})
        return module("SynthesisNetwork", children={"tri_plane_mlp": mlp}, img_resolution=8)

    write_fake_snapshot(path, synthesis, module_src=source)
    assert is_epigraf_pickle(path)
    snapshot = read_epigraf_pickle(path)
    assert not marker.exists()
    g_ema = snapshot.networks["G_ema"]
    assert list(g_ema.state_dict) == ["synthesis.tri_plane_mlp.fc.weight", "mapping.fc0.weight", "mapping.w_avg"]
    assert torch.equal(g_ema.state_dict["mapping.fc0.weight"], torch.ones(4, 4))
    expected_attributes = {"class_name": "SynthesisNetwork", "training": False, "img_resolution": 8}
    assert g_ema.attributes["synthesis"] == expected_attributes
    assert set(snapshot.networks) == {"G_ema"}


def test_fake_stylegan2_snapshot_refused_as_2d(tmp_path):
    path = tmp_path / "stylegan2.pkl"

    def synthesis(module):
        torgb = module("ToRGBLayer", params={"weight": torch.nn.Parameter(torch.ones(3, 4, 1, 1))})
        conv1 = module("SynthesisLayer", params={"weight": torch.nn.Parameter(torch.ones(4, 4, 3, 3))})
        b4 = module("SynthesisBlock", params={"const": torch.nn.Parameter(torch.ones(4, 4, 4))},
                    children={"conv1": conv1, "torgb": torgb})
        return module("SynthesisNetwork", children={"b4": b4})

    write_fake_snapshot(path, synthesis)
    with pytest.raises(CheckpointError, match=r"stylegan2\.pkl.*2-D StyleGAN"):
        read_epigraf_pickle(path)


# ---------------------------------------------------------------------------------------------
# Sniffing

def test_is_epigraf_pickle(tmp_path):
    assert is_epigraf_pickle(fixture_dir() / "uncond_gpc.pkl")
    assert is_epigraf_pickle(fixture_dir() / "cond_white.pkl")
    torch.save({"w": torch.zeros(2)}, tmp_path / "state.pt")
    assert not is_epigraf_pickle(tmp_path / "state.pt")
    (tmp_path / "notes.txt").write_text("_reconstruct_persistent_obj is mentioned, but this is text\n")
    assert not is_epigraf_pickle(tmp_path / "notes.txt")
    (tmp_path / "arrays.pkl").write_bytes(pickle.dumps({"w": np.zeros(3)}, protocol=4))
    assert not is_epigraf_pickle(tmp_path / "arrays.pkl")
    assert not is_epigraf_pickle(tmp_path / "absent.pkl")


@pytest.mark.parametrize("fraction", [i / 40 for i in range(1, 40)])
def test_any_truncation_is_a_checkpoint_error(tmp_path, fraction):
    data = (fixture_dir() / "uncond_gpc.pkl").read_bytes()
    path = tmp_path / "cut.pkl"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(CheckpointError, match=r"cut\.pkl.*(truncated|incomplete)"):
        read_epigraf_pickle(path)


# ---------------------------------------------------------------------------------------------
# Interpolation edge cases, on hand-built OmegaConf stand-in trees

def _config_tree(value, parent=None):
    node = PickledConfigNode()
    if isinstance(value, dict):
        node.__setstate__({"_content": {k: _config_tree(v, node) for k, v in value.items()}, "_parent": parent})
    elif isinstance(value, list):
        node.__setstate__({"_content": [_config_tree(v, node) for v in value], "_parent": parent})
    else:
        node.__setstate__({"_val": value, "_parent": parent})
    return node


def test_interpolation_edge_cases():
    root = _config_tree({
        "a": {"x": 1, "items": [10, "${a.x}"]}, "alias": "${a}", "through_alias": "${alias.x}",
        "spliced": "v${a.x}-${missing}", "null": None, "null_ref": "${null}", "null_spliced": "p/${null}",
        "loop1": "${loop2}", "loop2": "${loop1}", "resolver": "${env:HOME}", "indexed": "${alias.items.1}"})
    inner = root.raw["a"].raw["items"].raw[1]
    plain = PickledConfigResolver(inner).plain(root)  # the root is found through the _parent chain
    assert plain["alias"] == {"x": 1, "items": [10, 1]}
    assert plain["through_alias"] == 1 and plain["indexed"] == 1
    assert plain["spliced"] == "v1-${missing}"
    assert plain["null_ref"] is None and plain["null_spliced"] == "p/${null}"
    assert plain["resolver"] == "${env:HOME}"
    assert "${" in plain["loop1"] and "${" in plain["loop2"]  # a reference loop stays text, no hang
