"""An official EpiGRAF generator loaded into trigan reproduces upstream's outputs (fixtures README 5)."""

import math

import numpy as np
import pytest
import torch

from conftest import EPIGRAF_FIXTURES as FIXTURES
from trigan.core.cameras import Camera
from trigan.core.model_io import open_model
from trigan.core.renderer import render

NAMES = ["uncond_gpc", "cond_white"]


@pytest.fixture(scope="module", params=NAMES)
def loaded(request):
    model = open_model(FIXTURES / f"{request.param}.pkl")
    ref = dict(np.load(FIXTURES / f"{request.param}_ref.npz"))
    return request.param, model, ref


def tolerance(ref_array):
    """The fixture's suggested bound: max(1e-4, 1e-5 x the array's largest magnitude)."""
    return max(1e-4, 1e-5 * float(np.abs(ref_array).max()))


def test_architecture_read_from_the_snapshot(loaded):
    name, model, _ = loaded
    m = model.config.model
    if name == "uncond_gpc":
        assert (m.img_resolution, m.c_dim, m.mapping.w_dim, m.triplane.resolution) == (32, 0, 32, 32)
        assert m.mapping.camera_cond and m.camera.fov == 12.0 and m.camera.cube_scale == 0.2
        assert not m.render.white_background and (m.camera.ray_start, m.camera.ray_end) == (0.88, 1.12)
    else:
        assert (m.img_resolution, m.c_dim, m.mapping.w_dim, m.triplane.resolution) == (16, 4, 16, 16)
        assert not m.mapping.camera_cond and m.camera.fov == 30.0 and m.camera.cube_scale == 0.475
        assert m.render.white_background and m.camera.dist == "spherical_uniform"
    assert m.triplane.feat_dim == 32 and m.render.num_steps == 48 and model.format == "EpiGRAF pickle"


@torch.no_grad()
def test_mapping_matches_upstream(loaded):
    _, model, ref = loaded
    G = model.G
    z, c = torch.from_numpy(ref["z"]), torch.from_numpy(ref["c"])
    angles = torch.from_numpy(ref["c_camera_angles"]) if "c_camera_angles" in ref else None
    assert torch.equal(G.latents(ref["seeds"].tolist()), z)
    assert np.abs(G.mapping(z, c, camera_angles=angles).numpy() - ref["ws_psi1"]).max() <= 1e-5
    assert np.abs(G.mapping(z, c, psi=0.7, camera_angles=angles).numpy() - ref["ws_psi07"]).max() <= 1e-5
    if "ws_psi1_meanpose" in ref:
        assert np.abs(G.mapping(z, c).numpy() - ref["ws_psi1_meanpose"]).max() <= 1e-5


@torch.no_grad()
def test_planes_and_mlp_match_upstream(loaded):
    _, model, ref = loaded
    G = model.G
    planes = G.synthesis(torch.from_numpy(ref["ws_psi1"][ref["planes_seed_index"]]), noise_mode="const")
    assert np.abs(planes.numpy() - ref["planes"]).max() <= tolerance(ref["planes"])
    field = G.field_from_ws(torch.from_numpy(ref["ws_psi1"]))
    rgb, sigma = field(torch.from_numpy(ref["points"]))
    out = torch.cat([rgb, sigma[..., None]], dim=-1).numpy()
    assert np.abs(out - ref["mlp_out"]).max() <= tolerance(ref["mlp_out"])


def _field(model, ref):
    return model.G.field_from_ws(torch.from_numpy(ref["ws_psi1"]))


def _cameras(ref, k):
    return Camera.from_angles(*ref["render_cameras"][k][:2], radius=float(ref["render_radius"]),
                              fov=float(ref["render_fov_deg"]), batch=len(ref["seeds"]))


@torch.no_grad()
@pytest.mark.parametrize("k", [0, 1])
def test_render_with_mirrored_random_numbers_matches_upstream(loaded, k):
    """Drawing upstream's two random tensors in its order reproduces its render almost exactly."""
    _, model, ref = loaded
    G, field = model.G, _field(model, ref)
    opts = G.render_options(num_steps=int(ref["render_num_ray_steps"]), deterministic=False,
                            max_points_per_chunk=1 << 40)   # one chunk: upstream's draw order
    torch.manual_seed(int(ref["render_torch_seed"][k]))
    out = render(field, _cameras(ref, k), G.cfg.img_resolution, opts)
    assert np.abs(out.rgb.numpy() - ref["render_rgb"][k]).max() <= 1e-4
    assert np.abs(out.depth.numpy() - ref["render_depth"][k]).max() <= 1e-4


@torch.no_grad()
@pytest.mark.parametrize("k", [0, 1])
def test_deterministic_render_is_within_the_upstream_noise_floor(loaded, k):
    """trigan's own (hash-jittered, chunked) render differs from upstream's only by sampling noise."""
    _, model, ref = loaded
    G, field = model.G, _field(model, ref)
    out = G.render(field, _cameras(ref, k), num_steps=int(ref["render_num_ray_steps"]), max_points_per_chunk=1 << 18)
    diff = out.rgb.numpy() - ref["render_rgb"][k]
    psnr = 10 * math.log10(4 / float((diff ** 2).mean()))
    assert psnr >= float(ref["noise_floor_rgb_psnr"][k]) - 3
    assert np.abs(diff).max() <= 2 * float(ref["noise_floor_rgb_max_abs"][k])
    depth_diff = np.abs(out.depth.numpy() - ref["render_depth"][k]).max()
    assert depth_diff <= 2 * float(ref["noise_floor_depth_max_abs"][k])
