"""training/inversion_outputs.py: what an inversion writes (record, tuned checkpoint, figure, video,
mesh) and reading the record back, exactly, and refusing hostile records in one line.

The results here are built by hand (a known latent, noise map, pose and tuned weights of a tiny
model), not fitted, so every saved value has an independent answer to compare with."""

from __future__ import annotations

import dataclasses
import io
import math
import zipfile

import imageio_ffmpeg
import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from conftest import tiny_config
from trigan.core.cameras import Pose
from trigan.core.checkpoint import build_generator, load_checkpoint
from trigan.core.errors import TriganError
from trigan.core.generator import Generator
from trigan.core.images import to_uint8
from trigan.core.rendering import field_renderer
from trigan.core.views import options_at_distance
from trigan.training.inversion import InversionResult, InversionSettings, generator_with, noise_buffers
from trigan.training.inversion_inputs import InversionError
from trigan.training.inversion_outputs import (
    FIGURE_PAD,
    NOVEL_YAWS_DEG,
    check_output_name,
    load_inversion,
    planned_outputs,
    record_arrays,
    save_inversion,
)

RES = 16


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(3)
    cfg = tiny_config()
    return Generator(cfg.model).eval().requires_grad_(False)


def render_at(G, ws, pose, resolution=RES):
    """A render of ws at pose by the exact path with deterministic options (as the optimiser's final render)."""
    opts = options_at_distance(G.render_options(deterministic=True, density_noise_std=0.0), pose.radius,
                               float(G.cfg.camera.radius))
    with torch.no_grad():
        out = field_renderer("accelerated", G.field_from_ws(ws), opts).render(pose.to_camera(), resolution)
    return out.rgb[0].clamp(-1, 1)


def make_result(G, name="photo", tuned=True, class_index=2):
    """An InversionResult with known values: seed 5's latent of class 2, one noise map replaced, the
    tri-plane decoder's weights shifted when tuned, renders made from exactly these."""
    gen = torch.Generator().manual_seed(11)
    with torch.no_grad():
        ws = G.map_latents(G.latents([5]), G.labels([class_index], 1)).cpu()
    buffers = noise_buffers(G)
    first = sorted(buffers)[0]
    noise = {first: torch.randn(buffers[first].shape, generator=gen)}
    state = None
    if tuned:
        state = {k: v.clone() for k, v in G.state_dict().items()}
        for k in state:
            if k.endswith("weight") and "tri_plane_decoder" in k:
                state[k] += 0.01 * torch.randn(state[k].shape, generator=gen)
                break
    pose = Pose.for_generator(G).with_values(yaw=0.7, pitch=1.3)
    result = InversionResult(target_name=name, ws=ws, class_index=class_index, pose=pose, pose_given=False,
                             noise=noise, tuned_state=state, reconstruction_latent=torch.zeros(3, RES, RES),
                             reconstruction=torch.zeros(3, RES, RES),
                             metrics={"psnr_latent": 21.123456789, "ssim_latent": 0.5, "psnr": 30.1,
                                      "ssim": 0.9, "seconds": 1.25, "steps_done": 7, "interrupted": False,
                                      "tuned": tuned},
                             settings=InversionSettings(steps=7, pti_steps=3 if tuned else 0))
    shown = generator_with(G, result)
    result.reconstruction = render_at(shown, ws, pose)
    result.reconstruction_latent = render_at(generator_with(G, result, tuned=False), ws, pose)
    return result


@pytest.fixture(scope="module")
def tuned(model):
    return make_result(model)


@pytest.fixture(scope="module")
def untuned(model):
    return make_result(model, tuned=False)


def one_line_error(excinfo, path):
    text = str(excinfo.value)
    assert "\n" not in text and str(path) in text, text
    return text


# --------------------------------------------------------------------------------------------------
# Round trip

def test_record_round_trips_exactly(model, tuned, tmp_path):
    result = tuned
    written = save_inversion(result, model, tmp_path, model_path=None, video=False, mesh=False)
    assert set(written) == {"npz", "ckpt", "figure"}
    record = load_inversion(written["npz"], model)
    assert record.name == "photo" and record.class_index == 2 and record.pose_given is False
    assert torch.equal(record.ws, result.ws)
    assert record.pose == result.pose                    # every float of the pose, exactly
    assert record.noise.keys() == result.noise.keys()
    assert all(torch.equal(record.noise[k], v) for k, v in result.noise.items())
    assert record.metrics == result.metrics              # JSON keeps Python floats exactly
    assert record.settings == dataclasses.asdict(result.settings)
    assert np.array_equal(record.reconstruction, to_uint8(result.reconstruction[None])[0])
    assert record.model["num_ws"] == model.mapping.num_ws and record.model["c_dim"] == model.c_dim


def test_model_file_is_identified_by_size_and_hash(model, untuned, tmp_path):
    fake_model = tmp_path / "m.ckpt"
    fake_model.write_bytes(b"abc")
    written = save_inversion(untuned, model, tmp_path / "out", model_path=fake_model,
                             video=False, mesh=False)
    info = load_inversion(written["npz"]).model
    # sha256("abc"), the FIPS 180-2 test vector
    assert info["sha256"] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert info["size"] == 3 and info["path"] == str(fake_model)
    assert "ckpt" not in written and not (tmp_path / "out" / "photo.pti.ckpt").exists()


def test_tuned_checkpoint_holds_the_tuned_weights_and_noise(model, tuned, tmp_path):
    result = tuned
    written = save_inversion(result, model, tmp_path, model_path=None, video=False, mesh=False)
    ckpt = load_checkpoint(written["ckpt"])            # weights_only
    assert ckpt.G_ema.keys() == result.tuned_state.keys()
    assert all(torch.equal(ckpt.G_ema[k], v) for k, v in result.tuned_state.items())
    G2 = build_generator(ckpt.config.model, ckpt.G_ema)
    # The record's latent on the tuned model, with the record's noise, is the reconstruction.
    record = load_inversion(written["npz"], G2)
    shown = generator_with(G2, record)
    assert torch.allclose(render_at(shown, record.ws, record.pose), result.reconstruction, atol=1e-5)


def test_figure_is_input_reconstruction_and_four_novel_views(model, tuned, tmp_path):
    result = tuned
    target = torch.linspace(-1, 1, 3 * RES * RES).reshape(3, RES, RES)
    written = save_inversion(result, model, tmp_path, model_path=None, video=False, mesh=False, target=target)
    figure = np.asarray(Image.open(written["figure"]).convert("RGB"))
    assert figure.shape == (RES, 6 * RES + 5 * FIGURE_PAD, 3)
    cells = [figure[:, k * (RES + FIGURE_PAD):k * (RES + FIGURE_PAD) + RES] for k in range(6)]
    assert np.array_equal(cells[0], to_uint8(target[None])[0])
    assert np.array_equal(cells[1], to_uint8(result.reconstruction[None])[0])
    shown = generator_with(model, result)
    for cell, degrees in zip(cells[2:], NOVEL_YAWS_DEG, strict=True):
        pose = result.pose.with_values(yaw=result.pose.yaw + math.radians(degrees))
        expected = to_uint8(render_at(shown, result.ws, pose)[None])[0].astype(int)
        # The same exact path at the same pose: at most one level of rounding apart.
        assert np.abs(cell.astype(int) - expected).max() <= 1, degrees
    assert not np.array_equal(cells[2], cells[4])      # the views differ: the yaw really turned


def test_video_and_mesh_are_written(model, tuned, tmp_path):
    result = tuned
    written = save_inversion(result, model, tmp_path, model_path=None, mesh_resolution=32)
    assert written["video"] == tmp_path / "photo-orbit.mp4" and written["mesh"] == tmp_path / "photo.ply"
    reader = imageio_ffmpeg.read_frames(str(written["video"]))
    meta = next(reader)
    assert meta["size"] == (RES, RES) and sum(1 for _ in reader) == 64     # the orbit's full turn
    mesh = trimesh.load(written["mesh"], process=False)
    assert len(mesh.faces) > 0 and mesh.visual.vertex_colors.shape == (len(mesh.vertices), 4)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]    # no temporaries left


def test_existing_outputs_are_refused_before_any_work(model, tuned, tmp_path):
    result = tuned
    (tmp_path / "photo.png").write_bytes(b"mine")
    with pytest.raises(TriganError, match="already exists") as excinfo:
        save_inversion(result, model, tmp_path, model_path=None, video=False, mesh=False)
    one_line_error(excinfo, tmp_path / "photo.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.png"]    # nothing else was written
    assert (tmp_path / "photo.png").read_bytes() == b"mine"
    save_inversion(result, model, tmp_path, model_path=None, video=False, mesh=False, force=True)
    assert (tmp_path / "photo.png").read_bytes()[:4] == b"\x89PNG"


def test_planned_outputs_follow_the_switches(tmp_path):
    assert sorted(planned_outputs(tmp_path, "a", tuned=True)) == ["ckpt", "figure", "mesh", "npz", "video"]
    plan = planned_outputs(tmp_path, "a", tuned=False, video=False, mesh=False)
    assert plan == {"npz": tmp_path / "a.inversion.npz", "figure": tmp_path / "a.png"}


@pytest.mark.parametrize("name", ["", "../up", "a/b", ".hidden", "x" * 300, "tab\there"])
def test_names_that_are_not_file_stems_are_refused(name):
    with pytest.raises(InversionError):
        check_output_name(name)


# --------------------------------------------------------------------------------------------------
# Hostile records

@pytest.fixture(scope="module")
def good_arrays(model, untuned):
    return record_arrays(untuned, model, None)


def write_npz(path, arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def test_a_pickled_object_array_is_refused_unread(good_arrays, model, tmp_path):
    arrays = dict(good_arrays, ws=np.array([{"evil": 1}], dtype=object))
    path = write_npz(tmp_path / "x.inversion.npz", arrays)
    with pytest.raises(InversionError, match="Python objects") as excinfo:
        load_inversion(path, model)
    one_line_error(excinfo, path)


@pytest.mark.parametrize("key, value, fragment", [
    ("ws", np.zeros((1, 3, 16), np.float32), "another model"),
    ("ws", np.zeros((2, 3), np.float32), "ws"),
    ("ws", np.full((1, 3, 16), np.nan, np.float32), "non-finite"),
    ("pose", np.zeros(4), "pose"),
    ("pose", np.array([0, 1.5, -1, 12, 0, 0, 0, 0, 0, 0.0]), "radius"),
    ("class_index", np.array(9, np.int64), "class 9"),
    ("class_index", np.array("two"), "class_index"),
    ("name", np.array("../../etc/x"), "file stem"),
    ("metrics_json", np.array("{not json"), "JSON"),
    ("reconstruction", np.zeros((4, 5, 3), np.uint8), "reconstruction"),
    ("noise.synthesis.nope.noise_const", np.zeros((4, 4), np.float32), "not a noise buffer"),
    ("format", np.array("something-else"), "format"),
])
def test_wrong_values_are_refused_in_one_line(good_arrays, model, tmp_path, key, value, fragment):
    path = write_npz(tmp_path / "x.inversion.npz", dict(good_arrays, **{key: value}))
    with pytest.raises(InversionError, match=fragment) as excinfo:
        load_inversion(path, model)
    one_line_error(excinfo, path)


@pytest.mark.parametrize("key", ["ws", "pose", "format", "metrics_json"])
def test_missing_keys_are_refused(good_arrays, model, tmp_path, key):
    path = write_npz(tmp_path / "x.inversion.npz", {k: v for k, v in good_arrays.items() if k != key})
    with pytest.raises(InversionError, match=f"lacks '{key}'") as excinfo:
        load_inversion(path, model)
    one_line_error(excinfo, path)


def test_a_huge_declared_array_is_refused_before_allocating(good_arrays, tmp_path):
    """A member whose header declares 2^40 floats (4 TiB) with no data behind it: refused from the
    header, never allocated (np.load itself would try to allocate it first)."""
    path = write_npz(tmp_path / "x.inversion.npz", good_arrays)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (1 << 40,)})
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("noise.huge.npy", header.getvalue() + b"\0" * 16)
    with pytest.raises(InversionError, match="too large") as excinfo:
        load_inversion(path)
    one_line_error(excinfo, path)


@pytest.mark.parametrize("content", [b"", b"not a zip at all", b"PK\x03\x04truncated"])
def test_files_that_are_not_records_are_refused(tmp_path, content):
    path = tmp_path / "x.inversion.npz"
    path.write_bytes(content)
    with pytest.raises(InversionError) as excinfo:
        load_inversion(path)
    one_line_error(excinfo, path)


def test_a_folder_or_missing_file_is_refused(tmp_path):
    for path in (tmp_path, tmp_path / "missing.inversion.npz"):
        with pytest.raises(InversionError) as excinfo:
            load_inversion(path)
        one_line_error(excinfo, path)


def test_an_unknown_member_is_refused(good_arrays, tmp_path):
    path = write_npz(tmp_path / "x.inversion.npz", dict(good_arrays, payload=np.zeros(3)))
    with pytest.raises(InversionError, match="unexpected member") as excinfo:
        load_inversion(path)
    one_line_error(excinfo, path)
