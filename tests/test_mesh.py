"""Meshes: analytic fields through the same code as generated ones, and `trigan mesh`."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
import trimesh

from conftest import tiny_config
from trigan.cli.main import main
from trigan.core import mesh as M
from trigan.core.cameras import Camera
from trigan.core.checkpoint import save_checkpoint
from trigan.core.generator import Generator
from trigan.core.renderer import RenderOptions, render

DENSE = 50.0   # density inside the analytic objects, 1/world-units


def raw_sigma(density: torch.Tensor) -> torch.Tensor:
    """Inverse softplus: the raw sigma whose activated density (shift 0) is `density`."""
    return density + torch.log(-torch.expm1(-density))


class Spheres:
    """An analytic stand-in for TriPlaneField: balls of density DENSE (smooth edge of width `edge`)
    in the box [-s, s]^3; colour red where x > the first centre's x, blue where x is below it."""

    batch_size = 1
    device = torch.device("cpu")

    def __init__(self, balls=(((0.05, -0.03, 0.02), 0.2),), s=0.4, edge=0.002, floor=1e-4):
        self.balls = [(torch.tensor(c), r) for c, r in balls]
        self.s, self.edge, self.floor, self.calls = s, edge, floor, 0

    @property
    def bounds(self):
        return (-self.s,) * 3, (self.s,) * 3

    def __call__(self, points):
        self.calls += 1
        density = torch.zeros(points.shape[:-1])
        for c, r in self.balls:
            d = (points - c).norm(dim=-1)
            density = torch.maximum(density, DENSE * torch.sigmoid((r - d) / self.edge))
        right = points[..., 0] > self.balls[0][0][0]
        rgb = torch.stack([torch.where(right, 1.0, -1.0), torch.full_like(density, -1.0),
                           torch.where(right, -1.0, 1.0)], dim=-1)
        return rgb, raw_sigma(density + self.floor)


class XRamp(Spheres):
    """Density depending on x only: 10 * (x + s) / (2 s) + 1."""

    def __call__(self, points):
        density = 10 * (points[..., 0] + self.s) / (2 * self.s) + 1
        return torch.zeros(*points.shape[:-1], 3), raw_sigma(density)


# --------------------------------------------------------------------------------------------------
# Geometry and colour through the mesher

def test_sphere_is_watertight_with_its_radius_and_centre_in_world_units():
    field = Spheres()
    volume = M.density_grid(field, 64)
    voxel = float(volume.spacing[0])
    mesh = M.extract_mesh(field, volume, level=DENSE / 2, color=False)
    tm = mesh.to_trimesh()
    assert tm.is_watertight and tm.is_winding_consistent and tm.volume > 0   # outward normals
    centre, radius = field.balls[0][0].numpy(), field.balls[0][1]
    dist = np.linalg.norm(mesh.vertices - centre, axis=1)
    assert np.abs(dist - radius).max() < voxel
    assert np.allclose(mesh.vertices.mean(axis=0), centre, atol=voxel / 4)
    assert tm.volume == pytest.approx(4 / 3 * math.pi * radius ** 3, rel=0.02)
    # Normals point away from the centre.
    assert (np.einsum("ij,ij->i", tm.vertex_normals, mesh.vertices - centre) > 0).mean() > 0.99


def test_auto_level_lies_inside_the_transition_and_is_reported():
    field = Spheres(edge=0.0005)
    volume = M.density_grid(field, 48)
    mesh = M.extract_mesh(field, volume, "auto", color=False)
    assert 1.0 < mesh.level < DENSE - 1.0 and mesh.info["auto"]
    dist = np.linalg.norm(mesh.vertices - field.balls[0][0].numpy(), axis=1)
    assert np.abs(dist - 0.2).max() < volume.spacing[0]


def test_two_coloured_field_colours_the_right_halves():
    field = Spheres()
    volume = M.density_grid(field, 48)
    mesh = M.extract_mesh(field, volume, DENSE / 2)
    cx, voxel = float(field.balls[0][0][0]), volume.spacing[0]
    right, left = mesh.vertices[:, 0] > cx + voxel, mesh.vertices[:, 0] < cx - voxel
    assert right.sum() > 100 and left.sum() > 100
    assert (mesh.colors[right] == [255, 0, 0]).all()
    assert (mesh.colors[left] == [0, 0, 255]).all()


def test_colours_use_the_images_mapping_of_raw_rgb():
    raw = torch.tensor([[-1.0, 0.0, 1.0], [-3.0, 0.5, 7.0]])
    assert M.rgb_to_uint8(raw).tolist() == [[0, 128, 255], [0, 191, 255]]


def test_chunking_does_not_change_the_volume_or_the_mesh():
    field = Spheres()
    small = M.density_grid(field, 32, chunk_points=997)
    calls = field.calls
    big = M.density_grid(field, 32, chunk_points=1 << 20)
    # chunks of whole z-rows (32 points): 31 rows fit in 997 points, so each x-slab of 32 rows takes 2
    assert calls == M.chunk_count(32, 997) == 64 and field.calls == calls + 1
    # Equal up to float rounding (vectorised kernels round a chunk's tail differently).
    assert np.allclose(small.density, big.density, rtol=1e-6, atol=1e-7)
    a, b = (M.extract_mesh(field, v, DENSE / 2, chunk_points=c) for v, c in ((small, 7), (big, 1 << 20)))
    assert np.allclose(a.vertices, b.vertices, atol=1e-6) and np.array_equal(a.faces, b.faces)
    # Colours switch at x = the first centre's x: a vertex within rounding of that plane may take
    # either side; everywhere else they are the same.
    away = np.abs(a.vertices[:, 0] - float(field.balls[0][0][0])) > 1e-5
    assert away.mean() > 0.95 and np.array_equal(a.colors[away], b.colors[away])


def test_chunking_of_a_generator_field_matches_one_chunk():
    G = Generator(tiny_config().model).eval()
    with torch.no_grad():
        field = G.field_from_ws(G.map_latents(G.latents([3]), G.labels([1], 1)))
    a = M.density_grid(field, 20, chunk_points=333).density
    b = M.density_grid(field, 20, chunk_points=1 << 20).density
    assert np.allclose(a, b, rtol=1e-5, atol=1e-6)


def test_measured_chunks_give_the_same_volume_and_colours():
    """chunk_points None: the chunk is chosen by timing candidates (core.chunking); only speed may
    depend on it, so the volume equals a given chunk's up to rounding and the colours exactly
    (uint8 of the same per-point decoder)."""
    G = Generator(tiny_config().model).eval()
    with torch.no_grad():
        field = G.field_from_ws(G.map_latents(G.latents([3]), G.labels([1], 1)))
    auto = M.density_grid(field, 20)
    given = M.density_grid(field, 20, chunk_points=400)
    assert np.allclose(auto.density, given.density, rtol=1e-5, atol=1e-6)
    verts = M.grid_points(field.bounds, 7, 0, 7 ** 3).numpy()
    assert np.array_equal(M.vertex_colors(field, verts), M.vertex_colors(field, verts, chunk_points=50))


def test_density_grid_of_a_generator_field_equals_point_queries():
    """The grid reads the tri-planes on the lattice's projections (core.field.query_lattice); it
    must equal querying the grid's points one by one, up to float rounding (sums in another
    order: relative 1e-5 of the density, 1e-6 absolute near zero)."""
    G = Generator(tiny_config().model).eval()
    with torch.no_grad():
        field = G.field_from_ws(G.map_latents(G.latents([5]), G.labels([0], 1)))
        n = 18
        volume = M.density_grid(field, n, chunk_points=700)
        _, sigma = field(M.grid_points(field.bounds, n, 0, n ** 3)[None])
    expected = M.DensityActivation()(sigma.reshape(-1)).numpy().reshape(n, n, n)
    assert np.allclose(volume.density, expected, rtol=1e-5, atol=1e-6)


def test_grid_index_maps_to_world_and_axis_zero_is_x(tmp_path):
    field = XRamp(s=0.3)
    n = 16
    volume = M.density_grid(field, n)
    path = M.save_volume(volume, tmp_path / "v.npy")
    data = np.load(path)
    assert data.shape == (n, n, n) and data.dtype == np.float32
    x = -0.3 + np.arange(n) * 0.6 / (n - 1)
    expected = 10 * (x + 0.3) / 0.6 + 1
    assert np.allclose(data[:, 5, 7], expected, rtol=1e-4)
    assert np.ptp(data, axis=(1, 2)).max() < 1e-4     # no variation along y or z
    assert np.ptp(data[:, 0, 0]) > 9
    # A level set of the ramp is the plane x = x0, in world units (capped by the box: closed).
    mesh = M.extract_mesh(field, volume, 6.0, color=False)
    x0 = (6.0 - 1) / 10 * 0.6 - 0.3
    plane = np.abs(mesh.vertices[:, 0] - x0) < 1e-4
    assert plane.sum() > 0.2 * len(plane)
    assert mesh.vertices[:, 0].max() == pytest.approx(0.3, abs=1e-6)   # the cap on the +x face
    assert mesh.to_trimesh().is_watertight


def test_object_cut_by_the_box_is_capped_inside_the_box():
    field = Spheres(balls=(((0.0, 0.0, 0.0), 0.5),), s=0.4)
    mesh = M.extract_mesh(field, M.density_grid(field, 24), DENSE / 2, color=False)
    assert mesh.to_trimesh().is_watertight
    assert np.abs(mesh.vertices).max() <= 0.4 + 1e-6


def test_largest_component_keeps_the_big_sphere_only():
    field = Spheres(balls=(((-0.1, 0.0, 0.0), 0.18), ((0.25, 0.2, 0.1), 0.06)))
    volume = M.density_grid(field, 48)
    both = M.extract_mesh(field, volume, DENSE / 2)
    big = M.extract_mesh(field, volume, DENSE / 2, keep_largest=True)
    assert big.info["components"] == 2
    assert len(big.vertices) < len(both.vertices) and len(big.colors) == len(big.vertices)
    dist = np.linalg.norm(big.vertices - [-0.1, 0.0, 0.0], axis=1)
    assert np.abs(dist - 0.18).max() < volume.spacing[0]
    tm = big.to_trimesh()
    assert tm.is_watertight and len(tm.split(only_watertight=False)) == 1
    # Face counts per piece, largest first: trimesh's own split of the full mesh agrees.
    counts = M.component_face_counts(both)
    pieces = sorted((len(p.faces) for p in both.to_trimesh().split(only_watertight=False)), reverse=True)
    assert list(counts) == pieces and counts[0] == len(big.faces)
    assert len(M.component_face_counts(M.MeshResult(np.zeros((0, 3)), np.zeros((0, 3), np.int64), 1.0))) == 0


class Shell(Spheres):
    """A ball of radius `outer` with an empty hollow of radius `inner` at the origin; with `open_above`
    the shell is cut off above that height, a bowl whose hollow opens to the outside."""

    def __init__(self, outer=0.2, inner=0.1, open_above=None, s=0.3, edge=0.002):
        super().__init__(balls=(((0.0, 0.0, 0.0), outer),), s=s, edge=edge)
        self.outer, self.inner, self.open_above = outer, inner, open_above

    def __call__(self, points):
        d = points.norm(dim=-1)
        density = DENSE * torch.sigmoid((self.outer - d) / self.edge) * torch.sigmoid((d - self.inner) / self.edge)
        if self.open_above is not None:
            density = density * torch.sigmoid((self.open_above - points[..., 1]) / self.edge)
        return torch.zeros(*points.shape[:-1], 3), raw_sigma(density + self.floor)


def test_the_wall_of_a_sealed_hollow_is_dropped_and_kept_on_request():
    field = Shell()
    volume = M.density_grid(field, 64)
    voxel = float(volume.spacing[0])
    solid = M.extract_mesh(field, volume, DENSE / 2, color=False)
    hollow = M.extract_mesh(field, volume, DENSE / 2, color=False, keep_cavities=True)
    # Kept: the outer sphere and the inward-facing wall of the hollow, the volume between them.
    assert len(M.component_face_counts(hollow)) == 2 and "cavities" not in hollow.info
    assert hollow.to_trimesh().volume == pytest.approx(4 / 3 * math.pi * (0.2 ** 3 - 0.1 ** 3), rel=0.03)
    # Dropped: one closed outward piece, the outer sphere alone, with the whole ball's volume.
    tm = solid.to_trimesh()
    assert solid.info["cavities"] == 1 and len(M.component_face_counts(solid)) == 1
    assert tm.is_watertight and tm.volume == pytest.approx(4 / 3 * math.pi * 0.2 ** 3, rel=0.03)
    assert np.abs(np.linalg.norm(solid.vertices, axis=1) - 0.2).max() < voxel


def test_a_hollow_open_to_the_outside_is_kept():
    field = Shell(open_above=0.05)   # a bowl: the hollow meets the outside above y = 0.05
    volume = M.density_grid(field, 64)
    mesh = M.extract_mesh(field, volume, DENSE / 2, color=False)
    assert mesh.info["cavities"] == 0 and len(M.component_face_counts(mesh)) == 1
    assert np.array_equal(mesh.faces, M.extract_mesh(field, volume, DENSE / 2, color=False,
                                                     keep_cavities=True).faces)
    # The inside of the bowl is still surface: vertices at the hollow's radius, below the rim.
    r = np.linalg.norm(mesh.vertices, axis=1)
    assert ((np.abs(r - 0.1) < volume.spacing[0]) & (mesh.vertices[:, 1] < 0.0)).sum() > 100


def test_mesh_lines_up_with_the_renderers_camera():
    """Vertices projected with the camera model land inside the rendered silhouette, and they cover it."""
    # Empty space exactly empty (raw sigma -inf): with no background model the renderer's last
    # interval is infinitely long, so any floor density would make every pixel opaque.
    field = Spheres(balls=(((0.12, 0.05, -0.08), 0.1),), s=0.4, floor=0.0)
    mesh = M.extract_mesh(field, M.density_grid(field, 96), DENSE / 2, color=False)
    cam = Camera.from_angles(yaw=0.7, pitch=1.2, fov=30.0)
    res = 48
    opts = RenderOptions(num_steps=64, num_fine_steps=64, ray_start=0.5, ray_end=1.5)
    opacity = render(field, cam, res, opts).opacity[0, 0].numpy()
    rows, cols = project(cam, mesh.vertices, res)
    assert ((rows >= 0) & (rows < res) & (cols >= 0) & (cols < res)).all()
    # Every vertex falls on the rendered object (rim vertices may round to the pixel just outside
    # the silhouette: a 3x3 neighbourhood allows for that).
    padded = np.pad(opacity, 1)
    near = np.max([padded[rows + 1 + dr, cols + 1 + dc] for dr in (-1, 0, 1) for dc in (-1, 0, 1)], axis=0)
    assert near.min() > 0.5 and (opacity[rows, cols] > 0.5).mean() > 0.8
    # The vertices cover the object's pixels, and none lands where the image is empty.
    hits = np.zeros((res, res), bool)
    hits[rows, cols] = True
    assert hits[opacity > 0.9].mean() > 0.95 and not hits[opacity < 0.01].any()
    # The silhouettes' centres agree to a fraction of a pixel.
    r, c = np.mgrid[:res, :res]
    mask = opacity > 0.5
    assert abs(r[mask].mean() - r[hits].mean()) < 0.5 and abs(c[mask].mean() - c[hits].mean()) < 0.5


def project(cam: Camera, points: np.ndarray, res: int):
    """Pixel (row, col) of world points, with the renderer's conventions (corner-aligned NDC)."""
    c2w = cam.cam2world()[0].double().numpy()
    local = (points - c2w[:3, 3]) @ c2w[:3, :3]        # camera frame: x right, y up, looking down -z
    focal = 1 / math.tan(math.radians(float(cam.fov[0])) / 2)
    x, y = focal * local[:, 0] / -local[:, 2], focal * local[:, 1] / -local[:, 2]
    cols = np.rint((x + 1) / 2 * (res - 1)).astype(int)
    rows = np.rint((1 - y) / 2 * (res - 1)).astype(int)
    return rows, cols


# --------------------------------------------------------------------------------------------------
# Levels

def test_auto_level_splits_a_bimodal_distribution():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.uniform(0, 0.5, 9000), rng.uniform(60, 90, 1000), [1e6]])
    level = M.auto_level(values)
    assert 0.5 < level < 60


def test_levels_outside_the_density_range_are_refused_with_the_range():
    volume = M.density_grid(Spheres(), 16)
    with pytest.raises(M.NoSurfaceError, match=r"no surface at density 500.*range from 0\.0001 to 50"):
        M.resolve_level(volume, 500.0)
    with pytest.raises(M.NoSurfaceError, match="constant"):
        M.auto_level(np.ones((4, 4, 4)))
    assert M.parse_level("auto") == "auto" and M.parse_level("12.5") == 12.5
    for bad in ("abc", "-3", "0", "nan"):
        with pytest.raises(M.TriganError, match="--threshold"):
            M.parse_level(bad)


# --------------------------------------------------------------------------------------------------
# The command line

@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    cfg = tiny_config()
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt", cfg, Generator(cfg.model))


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("fmt", ["ply", "obj", "glb"])
def test_cli_writes_coloured_meshes_named_by_class_and_seed(tmp_path, capsys, tiny_ckpt, fmt):
    code, out, err = run(capsys, "mesh", tiny_ckpt, "--out", tmp_path, "--seeds", "0,5", "--classes", "2",
                         "--resolution", 24, "--format", fmt, "--quiet")
    assert code == 0, err
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [f"class002_seed0000.{fmt}", f"class002_seed0005.{fmt}"]
    assert "density level" in out and "(auto;" in out
    s = tiny_config().model.camera.cube_scale
    for path in tmp_path.iterdir():
        tm = trimesh.load(path, force="mesh")
        assert len(tm.faces) > 0 and tm.visual.kind == "vertex"
        colors = tm.visual.vertex_colors
        assert colors.shape == (len(tm.vertices), 4) and np.ptp(colors[:, :3]) > 0
        assert np.abs(tm.vertices).max() <= s + 1e-5          # world units, inside the scene box


def test_cli_no_color_threshold_and_unconditional_names(tmp_path, capsys):
    cfg = tiny_config(**{"model.c_dim": 0})
    ckpt = save_checkpoint(tmp_path / "u.ckpt", cfg, Generator(cfg.model))
    volume_dir = tmp_path / "v"
    code, out, err = run(capsys, "mesh", ckpt, "--out", volume_dir, "--seeds", 1, "--resolution", 16,
                         "--format", "npy")
    assert code == 0, err
    density = np.load(volume_dir / "seed0001.npy")
    assert density.shape == (16, 16, 16) and "auto level would be" in out
    level = float(np.median(density))
    code, out, err = run(capsys, "mesh", ckpt, "--out", tmp_path / "m", "--seeds", 1, "--resolution", 16,
                         "--threshold", level, "--no-color", "--largest-component")
    assert code == 0, err
    assert f"level {level:.4g} " in out and "(given;" in out and "kept the largest of" in out
    tm = trimesh.load(tmp_path / "m" / "seed0001.ply", force="mesh")
    assert len(tm.faces) > 0 and len(tm.split(only_watertight=False)) == 1
    # Without --largest-component the line counts the pieces, as trimesh splits the file.
    code, out, err = run(capsys, "mesh", ckpt, "--out", tmp_path / "all", "--seeds", 1, "--resolution", 16,
                         "--threshold", level, "--no-color")
    pieces = trimesh.load(tmp_path / "all" / "seed0001.ply", force="mesh").split(only_watertight=False)
    assert code == 0 and f", {len(pieces)} component(s), the largest with " in out


def test_cli_reads_a_run_directory(tmp_path, capsys, tiny_ckpt):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "latest.ckpt").write_bytes(tiny_ckpt.read_bytes())
    code, _, err = run(capsys, "mesh", run_dir, "--latest", "--out", tmp_path / "o", "--classes", 0,
                       "--resolution", 12, "--quiet")
    assert code == 0, err
    assert (tmp_path / "o" / "class000_seed0000.ply").is_file()


@pytest.mark.parametrize("extra, fragment", [
    (["--threshold", "1e9"], r"no surface at density 1e\+09: the densities in the box range from"),
    (["--format", "stl"], "--format stl: expected one of ply, obj, glb, npy"),
    (["--threshold", "dense"], "--threshold dense: expected 'auto' or a density"),
    (["--resolution", "4"], "--resolution 4: expected an integer in 8..1024"),
    (["--classes", "9"], "--classes 9: class 9 is out of range: this model has 4 classes"),
    (["--psi", "nan"], r"--psi nan: expected a number in \[-10, 10\]"),
])
def test_cli_bad_values_give_one_line_errors(tmp_path, capsys, tiny_ckpt, extra, fragment):
    argv = ["mesh", tiny_ckpt, "--out", tmp_path, "--resolution", 12, "--quiet", "--classes", "1", *extra]
    code, _, err = run(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("trigan: error: ")
    assert re.search(fragment, lines[0]), lines[0]
    assert not list(tmp_path.glob("*.ply"))


def test_cli_takes_class_0_of_a_conditional_model_as_render_does(tmp_path, capsys, tiny_ckpt):
    """One rule for render and mesh: a conditional model without --classes means class 0."""
    code, _, err = run(capsys, "mesh", tiny_ckpt, "--out", tmp_path / "a", "--resolution", 12, "--quiet")
    assert code == 0, err
    code, _, err = run(capsys, "mesh", tiny_ckpt, "--out", tmp_path / "b", "--resolution", 12, "--quiet",
                       "--classes", "0")
    assert code == 0, err
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["class000_seed0000.ply"]
    assert (tmp_path / "a" / "class000_seed0000.ply").read_bytes() == (tmp_path / "b" / "class000_seed0000.ply").read_bytes()


def test_cli_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        main(["mesh", "--help"])
    out = capsys.readouterr().out
    assert "examples:" in out and "--threshold" in out and "1/world-units" in out
