"""Progress pictures: grid layout and value mapping, PNG files, fixed sample sets, orbit videos."""

from __future__ import annotations

import math

import imageio_ffmpeg
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import tiny_config
from trigan.core.generator import Generator
from trigan.core.images import grid_shape, image_grid, save_png
from trigan.training.visuals import SampleSet, save_reals_grid


def _decode(path):
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    w, h = meta["size"]
    frames = [np.frombuffer(f, dtype=np.uint8).reshape(h, w, 3).copy() for f in reader]
    return meta, frames


# --------------------------------------------------------------------------------------------------
# Grids

def test_image_grid_puts_each_image_in_its_cell():
    rows, cols, h, w = 2, 3, 4, 5
    values = torch.linspace(-1, 1, rows * cols)
    images = values.view(-1, 1, 1, 1).expand(rows * cols, 3, h, w).clone()
    images[:, 1] = -values.view(-1, 1, 1)  # channels differ, so a channel mix-up shows
    grid = image_grid(images, rows, cols)
    assert grid.shape == (rows * h, cols * w, 3) and grid.dtype == np.uint8
    for k in range(rows * cols):
        r, c = k // cols, k % cols
        cell = grid[r * h:(r + 1) * h, c * w:(c + 1) * w]
        expected = np.round((np.array([values[k], -values[k], values[k]]) + 1) * 127.5)
        assert (cell == expected.astype(np.uint8)).all(), k


def test_image_grid_value_mapping_clamping_and_gray():
    images = torch.tensor([-1.0, 1.0, -7.0, 3.0, 0.0, 2 / 255 - 1]).view(6, 1, 1, 1).expand(6, 1, 2, 2)
    grid = image_grid(images, 1, 6)
    assert grid.shape == (2, 12, 3)
    assert grid[0, ::2, 0].tolist() == [0, 255, 0, 255, 128, 1]
    assert (grid[..., 0] == grid[..., 1]).all() and (grid[..., 1] == grid[..., 2]).all()


def test_image_grid_padding_and_bad_counts():
    images = torch.ones(4, 3, 3, 3)
    grid = image_grid(images, 2, 2, pad=1)
    assert grid.shape == (7, 7, 3)
    assert (grid[3] == 0).all() and (grid[:, 3] == 0).all() and (grid[:3, :3] == 255).all()
    with pytest.raises(ValueError, match="2x3"):
        image_grid(images, 2, 3)


def test_grid_shape_is_wide_and_holds_everything():
    assert grid_shape(32, 64) == (4, 8)
    assert grid_shape(16, 64) == (4, 4)
    assert grid_shape(1, 64) == (1, 1)
    for num in (1, 2, 3, 5, 7, 13, 50, 64, 100):
        for res in (16, 256, 1024):
            rows, cols = grid_shape(num, res)
            assert rows * cols >= num and (rows - 1) * cols < num
            assert cols * res <= 7680 or cols == 1
            assert cols >= rows or cols * res * 2 > 7680


def test_save_png_round_trips_and_leaves_no_temporary(tmp_path):
    array = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    path = save_png(array, tmp_path / "sub" / "grid.png")
    assert np.array_equal(np.array(Image.open(path)), array)
    assert [p.name for p in path.parent.iterdir()] == ["grid.png"]


def test_save_reals_grid_keeps_pixels_exact(tmp_path):
    reals = torch.randint(0, 256, (6, 3, 4, 4), dtype=torch.uint8)
    path = save_reals_grid(reals, tmp_path / "reals.png", rows=2, cols=3)
    grid = np.array(Image.open(path))
    assert grid.shape == (8, 12, 3)
    assert np.array_equal(grid[4:8, 8:12], reals[5].permute(1, 2, 0).numpy())


# --------------------------------------------------------------------------------------------------
# Sample sets

def test_sample_grid_is_deterministic_and_sized():
    G = Generator(tiny_config().model)
    samples = SampleSet.create(G, 6, seed=3, rows=2, cols=3)
    first = samples.render_grid(G, resolution=16, batch=4)
    again = SampleSet.create(G, 6, seed=3, rows=2, cols=3).render_grid(G, resolution=16, batch=4)
    assert first.shape == (2 * 16, 3 * 16, 3) and first.dtype == np.uint8
    assert np.array_equal(first, again)
    assert first.std() > 0
    other_seed = SampleSet.create(G, 6, seed=4, rows=2, cols=3).render_grid(G, resolution=16, batch=4)
    assert not np.array_equal(first, other_seed)
    assert G.training  # the caller's mode comes back


def test_sample_set_defaults_spread_yaw_over_columns():
    G = Generator(tiny_config().model)
    samples = SampleSet.create(G, 8)
    assert (samples.rows, samples.cols) == (2, 4)
    yaws = samples.camera_angles[:, 0].view(2, 4)
    assert torch.allclose(yaws[0], torch.linspace(-math.pi / 4, math.pi / 4, 4))
    assert torch.equal(yaws[0], yaws[1])
    assert torch.allclose(samples.camera_angles[:, 1], torch.full((8,), G.cfg.camera.mean_pose[1]))

    sphere = Generator(tiny_config(**{"model.camera.dist": "spherical_uniform"}).model)
    yaws = SampleSet.create(sphere, 4, rows=1, cols=4).camera_angles[:, 0]
    assert torch.allclose(yaws, torch.tensor([0, math.pi / 2, math.pi, 3 * math.pi / 2]))


def test_sample_set_spreads_classes_over_rows():
    G = Generator(tiny_config().model)  # the demo preset has 4 classes
    assert G.c_dim == 4
    samples = SampleSet.create(G, 15, rows=5, cols=3)
    classes = samples.labels.argmax(dim=1).view(5, 3)
    assert classes.tolist() == [[r % 4] * 3 for r in range(5)]
    assert (samples.labels.sum(dim=1) == 1).all()


def test_sample_set_takes_given_labels_and_cameras():
    G = Generator(tiny_config().model)
    labels = torch.eye(4)[[3, 3, 1, 0]]
    angles = torch.tensor([[0.1, 1.2, 0.0], [0.2, 1.3, 0.0], [0.3, 1.4, 0.0], [0.4, 1.5, 0.0]])
    samples = SampleSet.create(G, 4, labels=labels, camera_angles=angles)
    assert torch.equal(samples.labels, labels) and torch.equal(samples.camera_angles, angles)
    with pytest.raises(ValueError, match="labels"):
        SampleSet.create(G, 3, labels=labels)


def test_unconditional_grid_with_empty_cells():
    G = Generator(tiny_config(**{"model.c_dim": 0}).model)
    samples = SampleSet.create(G, 5, rows=2, cols=3)
    assert samples.labels.shape == (5, 0)
    grid = samples.render_grid(G, resolution=8, batch=2)
    assert grid.shape == (16, 24, 3)
    assert (grid[8:, 16:] == 0).all()  # the sixth cell is empty


# --------------------------------------------------------------------------------------------------
# Orbit videos

def test_orbit_video_decodes_with_the_requested_frames_size_and_fps(tmp_path):
    # Raw colours: an untrained model's are high-contrast noise that looks different from each side
    # (squashed ones are all near grey).
    G = Generator(tiny_config(**{"model.triplane.color_activation": "none"}).model)
    samples = SampleSet.create(G, 4, rows=1, cols=4)
    # Three samples of 15 px side by side: 45 x 15, padded to 46 x 16 for yuv420p.
    path = samples.render_orbit_video(G, tmp_path / "orbit.mp4", frames=8, fps=10, resolution=15, max_samples=3)
    assert path == tmp_path / "orbit.mp4"
    assert [p.name for p in tmp_path.iterdir()] == ["orbit.mp4"]
    meta, frames = _decode(path)
    assert meta["codec"] == "h264" and meta["pix_fmt"].startswith("yuv420p")
    assert tuple(meta["size"]) == (46, 16) and meta["fps"] == pytest.approx(10)
    assert len(frames) == 8

    def diff(a, b):  # mean luma difference over the picture (yuv420p keeps luma at full resolution)
        luma = np.array([0.299, 0.587, 0.114])
        return np.abs(a[:15, :45].astype(float) @ luma - b[:15, :45].astype(float) @ luma).mean()

    middle = frames[4]  # half way round: every camera is on the other side
    assert diff(frames[0], middle) > 5 and diff(frames[-1], middle) > 5

    # Frame 0 shows each sample from its own camera, as the still grid does (up to compression).
    grid = SampleSet.create(G, 3, rows=1, cols=3, camera_angles=samples.camera_angles[:3]).render_grid(G, 15)
    assert diff(frames[0], grid) < 4
    assert diff(frames[0], grid) < diff(middle, grid) / 3

def test_orbit_video_is_deterministic(tmp_path):
    G = Generator(tiny_config().model)
    samples = SampleSet.create(G, 2, rows=1, cols=2)
    a = samples.render_orbit_video(G, tmp_path / "a.mp4", frames=3, resolution=16, batch=1)
    b = samples.render_orbit_video(G, tmp_path / "b.mp4", frames=3, resolution=16, batch=1)
    frames_a, frames_b = _decode(a)[1], _decode(b)[1]
    assert len(frames_a) == 3 and all(np.array_equal(x, y) for x, y in zip(frames_a, frames_b, strict=True))
