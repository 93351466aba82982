"""Compare grids (viewer/compare.py): the grid's cells are the single renders of their requests
(same camera), laid out where stats["cells"] says; a grid refines progressively (previews of every
cell, then exact cells), caches finished cells, cancels between cells, survives a failing cell,
stitches depth/opacity; what a person types is parsed or refused in one line; the worker serves
a grid like any request."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import tiny_config
from trigan.core.cameras import Pose
from trigan.core.checkpoint import save_checkpoint
from trigan.core.errors import TriganError
from trigan.core.generator import Generator
from trigan.core.renderer import RenderCancelled
from trigan.viewer import compare
from trigan.viewer.compare import (
    EMPTY_GREY,
    FAILED_GREY,
    GAP,
    GAP_GREY,
    MAX_CELLS,
    GridRequest,
    cell_boxes,
    composite_size,
    grid_from_values,
    grid_shape,
    make_grid,
    parse_classes,
    parse_psis,
    parse_seeds,
    render_grid,
    run_snapshots,
)
from trigan.viewer.panels.compare import restored_choices
from trigan.viewer.render_request import Frame, RenderRequest
from trigan.viewer.render_worker import RenderWorker
from trigan.viewer.scene import Scene

WAIT = 240.0   # generous: the machine is shared; no test asserts on time
# Two renders of one request march the same rays; the progressive (refining) order sums the same
# samples in other chunks, which changes float32 results in the last bits only (scene.py docstring).
FLOAT_TOL = 1e-5


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    cfg = tiny_config(**{"model.camera.fov": 30.0})
    path = tmp_path_factory.mktemp("compare") / "tiny.ckpt"
    save_checkpoint(path, cfg, Generator(cfg.model))
    return str(path)


def base_request(path, **kw):
    values = dict(seed=1, class_index=0, psi=0.7, pose=Pose(yaw=0.3, pitch=1.3, radius=1.0, fov=30.0),
                  resolution=64, quality="exact")
    values.update(kw)
    return RenderRequest(path, **values)


def cell_of(frame: Frame, i: int) -> np.ndarray:
    x, y, w, h = frame.stats["cells"][i]["box"]
    return frame.image[y:y + h, x:x + w]


# -- layout and the request -----------------------------------------------------------------------------

def test_grid_shape_and_boxes_follow_the_documented_layout():
    assert [grid_shape(n) for n in (1, 2, 3, 4, 5, 9, 10, 16)] == [
        (1, 1), (1, 2), (2, 2), (2, 2), (2, 3), (3, 3), (3, 4), (4, 4)]
    base = base_request("m.ckpt", resolution=100)
    grid = make_grid(base, [base.with_values(seed=s) for s in range(5)], [f"seed {s}" for s in range(5)])
    assert (grid.rows, grid.cols) == (2, 3)
    step = 100 + GAP
    assert cell_boxes(grid) == [[0, 0, 100, 100], [step, 0, 100, 100], [2 * step, 0, 100, 100],
                                [0, step, 100, 100], [step, step, 100, 100]]
    assert composite_size(grid) == (2 * 100 + GAP, 3 * 100 + 2 * GAP)


def test_a_grid_request_quacks_like_a_render_request():
    base = base_request("m.ckpt", seed=4)
    grid = make_grid(base, [base.with_values(seed=s) for s in (1, 2)], ["seed 1", "seed 2"])
    assert (grid.quality, grid.resolution, grid.mode, grid.pose, grid.seed, grid.model_path) == (
        "exact", 64, "rgb", base.pose, 4, "m.ckpt")
    preview = grid.with_values(quality="preview")
    assert preview.quality == "preview" and all(c.quality == "preview" for c in preview.cells)
    assert preview.with_values(quality="exact") == grid and hash(preview.with_values(quality="exact")) == hash(grid)
    assert grid != base and {grid: 1}[make_grid(base, list(grid.cells), list(grid.labels))] == 1
    failed = Frame.failed(grid, "boom")
    assert failed.image.shape == (64, 64, 4) and failed.error == "boom"


def test_a_grid_refuses_cells_that_do_not_share_the_camera_and_too_many_cells():
    base = base_request("m.ckpt")
    with pytest.raises(TriganError, match="pose"):
        make_grid(base, [base, base.with_values(pose=Pose(yaw=1.0))], ["a", "b"])
    with pytest.raises(TriganError, match="resolution"):
        make_grid(base, [base, base.with_values(resolution=128)], ["a", "b"])
    with pytest.raises(TriganError, match=f"expected 1..{MAX_CELLS}"):
        make_grid(base, [base.with_values(seed=s) for s in range(MAX_CELLS + 1)], ["x"] * (MAX_CELLS + 1))


# -- what a person types ----------------------------------------------------------------------------------

def test_values_typed_for_each_kind():
    assert parse_seeds("0-3") == [0, 1, 2, 3] and parse_seeds(" 1,5,9 ") == [1, 5, 9]
    assert parse_classes("all", 4) == [0, 1, 2, 3] and parse_classes("1,3", 4) == [1, 3]
    assert parse_psis("0.5,0.7,1") == [0.5, 0.7, 1.0]
    base = base_request("m.ckpt", latent_file="x.inversion.npz")
    grid = grid_from_values(base, "classes", "0-2", c_dim=4, class_names=("chair", "", "car", "cup"))
    assert grid.labels == ("class 0 (chair)", "class 1", "class 2 (car)")
    assert [c.class_index for c in grid.cells] == [0, 1, 2]
    assert all(c.latent_file is None for c in grid.cells)     # cells show seeds, not the inverted latent
    grid = grid_from_values(base_request("m.ckpt"), "psi", "0.5,1")
    assert grid.labels == ("psi 0.5", "psi 1") and [c.psi for c in grid.cells] == [0.5, 1.0]


@pytest.mark.parametrize("call, words", [
    (lambda: parse_seeds("0-100"), "seeds '0-100': 101 cells, at most 16"),
    (lambda: parse_seeds("0-999999999"), "at most 16"),
    (lambda: parse_seeds("3,x"), "'x' is not a number"),
    (lambda: parse_seeds(""), "expected seeds like 0-3"),
    (lambda: parse_classes("all", 40), "classes 'all': 40 cells, at most 16"),
    (lambda: parse_classes("0-3", 0), "unconditional"),
    (lambda: parse_classes("7", 4), "7 is out of range (expected 0..3)"),
    (lambda: parse_psis("0.5,big"), "psi 'big' in '0.5,big': expected numbers -1..2"),
    (lambda: parse_psis("0.5,nan"), "psi 'nan'"),
    (lambda: parse_psis(",".join(["0.1"] * 17)), "17 cells, at most 16"),
    (lambda: grid_from_values(base_request("m.ckpt"), "models", ""), "the other model's path is empty"),
    (lambda: grid_from_values(base_request("m.ckpt"), "nope", ""), "expected one of seeds"),
])
def test_bad_values_are_refused_in_one_line_naming_them(call, words):
    with pytest.raises(TriganError) as err:
        call()
    message = str(err.value)
    assert words in message and "\n" not in message and not message.startswith("-")


def test_latest_vs_best_and_two_models(tmp_path, tiny_ckpt):
    run = tmp_path / "run"
    run.mkdir()
    (run / "latest.ckpt").write_bytes(b"x")
    with pytest.raises(TriganError, match="has no best.ckpt"):
        run_snapshots(str(run / "latest.ckpt"))
    (run / "best.ckpt").write_bytes(b"x")
    assert run_snapshots(str(run / "best.ckpt")) == (str(run / "latest.ckpt"), str(run / "best.ckpt"))
    grid = grid_from_values(base_request(str(run)), "snapshots", "", model_file=str(run / "best.ckpt"))
    assert grid.labels == ("latest.ckpt", "best.ckpt")
    assert [c.model_path for c in grid.cells] == [str(run / "latest.ckpt"), str(run / "best.ckpt")]
    other = tmp_path / "other" / "tiny.ckpt"
    other.parent.mkdir()
    other.write_bytes(b"x")
    grid = grid_from_values(base_request(tiny_ckpt), "models", "", model_file=tiny_ckpt, other_model=str(other))
    # two files of one name are told apart by their folders
    assert grid.labels == (f"{Path(tiny_ckpt).parent.name}/tiny.ckpt", "other/tiny.ckpt")
    assert [c.model_path for c in grid.cells] == [tiny_ckpt, str(other)]
    with pytest.raises(TriganError, match="does not exist"):
        grid_from_values(base_request(tiny_ckpt), "models", "", other_model=str(tmp_path / "missing.ckpt"))


def test_restored_settings_fall_back_to_defaults_per_value():
    good = restored_choices({"kind": "psi", "values": {"psi": "0.3,1"}, "other_model": "/a.ckpt"})
    assert good["kind"] == "psi" and good["texts"]["psi"] == "0.3,1" and good["other_model"] == "/a.ckpt"
    bad = restored_choices({"kind": "bogus", "values": {"seeds": 5, "psi": "x" * 10_000}, "other_model": 3})
    assert bad["kind"] == "seeds" and bad["texts"] == compare.DEFAULT_VALUES and bad["other_model"] == ""
    assert restored_choices("junk")["kind"] == "seeds"


# -- rendering through a real scene ---------------------------------------------------------------------

def test_grid_cells_equal_single_renders_of_the_same_request(tiny_ckpt):
    base = base_request(tiny_ckpt)
    grid = grid_from_values(base, "seeds", "1,2,5")
    scene = Scene(device="cpu", use_preview_module=False)
    partials = []
    frame = scene.render(grid, partial=partials.append)
    assert frame.ok and not frame.partial and frame.request == grid
    assert frame.image.shape == (2 * 64 + GAP, 2 * 64 + GAP, 4)
    assert [c["label"] for c in frame.stats["cells"]] == ["seed 1", "seed 2", "seed 5"]
    assert frame.stats["grid"] == {"rows": 2, "cols": 2}
    single = Scene(device="cpu", use_preview_module=False)      # a scene that never saw the grid
    for i, seed in enumerate((1, 2, 5)):
        alone = single.render(base.with_values(seed=seed))
        assert alone.ok
        np.testing.assert_allclose(cell_of(frame, i), alone.image, atol=FLOAT_TOL)
    assert not np.allclose(cell_of(frame, 0), cell_of(frame, 1), atol=1e-3)   # the seeds differ
    # the gaps and the unused fourth cell are the documented greys
    np.testing.assert_allclose(frame.image[:, 64:64 + GAP, :3], GAP_GREY)
    np.testing.assert_allclose(frame.image[64 + GAP:, 64 + GAP:, :3], GAP_GREY)
    # progressive: partial composites of this grid came first (first looks of the cold latents,
    # then every cell's preview at once, then the exact cells one by one)
    assert partials and all(p.partial and p.request == grid for p in partials)
    whole = [p for p in partials if not any(np.allclose(cell_of(p, i)[..., :3], EMPTY_GREY) for i in range(3))]
    assert whole, "no partial composite showed every cell"


def test_finished_cells_are_reused_and_a_cancelled_grid_resumes(tiny_ckpt):
    base = base_request(tiny_ckpt, seed=3)
    scene = Scene(device="cpu", use_preview_module=False)
    rendered = []
    original = scene.render

    def counting(request, *args, **kwargs):
        if not isinstance(request, GridRequest):
            rendered.append((request.seed, request.quality))
        return original(request, *args, **kwargs)
    scene.render = counting
    grid = grid_from_values(base, "seeds", "3,4,6")
    exact_done = []

    def cancel_after_first_exact():
        exact_done[:] = [r for r in rendered if r[1] == "exact"]
        return len(exact_done) >= 2          # the second exact cell is cancelled at its first check
    with pytest.raises(RenderCancelled):
        scene.render(grid, should_cancel=cancel_after_first_exact)
    rendered.clear()
    frame = scene.render(grid)
    assert frame.ok and frame.stats["cells_cached"] == 1
    assert sorted(r for r in rendered if r[1] == "exact") == [(4, "exact"), (6, "exact")]
    rendered.clear()
    again = scene.render(grid)               # the same grid: every cell from the cache
    assert rendered == [] and again.stats["cells_cached"] == 3
    np.testing.assert_array_equal(again.image, frame.image)


def test_a_failing_cell_is_dark_and_labelled_and_the_grid_still_renders(tiny_ckpt, tmp_path):
    base = base_request(tiny_ckpt)
    missing = str(tmp_path / "missing.ckpt")
    grid = make_grid(base, [base, base.with_values(model_path=missing)], ["tiny.ckpt", "missing.ckpt"])
    frame = Scene(device="cpu", use_preview_module=False).render(grid)
    assert frame.ok
    label = frame.stats["cells"][1]["label"]
    assert label.startswith("missing.ckpt: ") and "missing.ckpt" in label[14:] and "\n" not in label
    np.testing.assert_allclose(cell_of(frame, 1)[..., :3], FAILED_GREY)
    assert frame.stats["cells"][0]["label"] == "tiny.ckpt"
    everything_wrong = make_grid(base.with_values(model_path=missing), [base.with_values(model_path=missing)], ["m"])
    failed = Scene(device="cpu", use_preview_module=False).render(everything_wrong)
    assert failed.error.startswith("every cell failed: ")


# -- stitching, with a scene that paints known values -------------------------------------------------

class PaintingScene:
    """Renders cell k (by seed) as the constant k/10, depth 1 + k, opacity 1: the composite's
    arithmetic is then checked against known values."""

    max_latents = 8

    def __init__(self, geometry=True):
        self.geometry = geometry

    def render(self, request, should_cancel=None, progress=None, partial=None, stage=None):
        res, k = request.resolution, request.seed
        image = np.full((res, res, 4), k / 10, dtype=np.float32)
        image[..., 3] = 1.0
        depth = np.full((res, res), 1.0 + k, dtype=np.float32) if self.geometry else None
        opacity = np.ones((res, res), dtype=np.float32) if self.geometry else None
        return Frame(request, image, 1.0, "painted", depth=depth, opacity=opacity)


def test_depth_and_opacity_are_stitched_like_the_image():
    base = base_request("painted.ckpt", resolution=64)
    grid = grid_from_values(base, "seeds", "1,2,3")
    scene = PaintingScene()
    frame = render_grid(scene, grid)
    assert scene.max_latents >= 3 + 4              # every cell's latent stays cached
    for i, k in enumerate((1, 2, 3)):
        x, y, w, h = frame.stats["cells"][i]["box"]
        np.testing.assert_array_equal(frame.image[y:y + h, x:x + w, :3], np.float32(k / 10))
        np.testing.assert_array_equal(frame.depth[y:y + h, x:x + w], 1.0 + k)
        np.testing.assert_array_equal(frame.opacity[y:y + h, x:x + w], 1.0)
    assert np.isinf(frame.depth[:, 64:64 + GAP]).all() and (frame.opacity[:, 64:64 + GAP] == 0).all()
    assert np.isinf(frame.depth[64 + GAP:, 64 + GAP:]).all()          # the unused fourth cell
    assert frame.depth.shape == frame.image.shape[:2]
    no_geometry = render_grid(PaintingScene(geometry=False), grid.with_values(resolution=128))
    assert no_geometry.depth is None and no_geometry.opacity is None


# -- the worker ------------------------------------------------------------------------------------------

def test_the_worker_serves_a_grid_with_partial_composites(tiny_ckpt):
    worker = RenderWorker(scene_factory=lambda: Scene(device="cpu", use_preview_module=False))
    try:
        grid = grid_from_values(base_request(tiny_ckpt, seed=7), "seeds", "7,8")
        worker.submit(grid)
        assert worker.wait_idle(WAIT)
        frame = worker.latest()
        assert frame.ok and frame.request == grid and not frame.partial
        assert worker.partial_frames >= 1          # the previews' composite came before the exact grid
        worker.submit(grid)                        # the grid on screen: nothing more to do
        assert not worker.busy
    finally:
        worker.stop()


def test_latest_vs_best_cells_are_each_snapshots_own_render(tmp_path):
    """A run folder whose latest and best snapshots hold different weights: each cell is the single
    render of its own file, and the open model (the run folder) need not be one of the cells."""
    run = tmp_path / "run"
    run.mkdir()
    cfg = tiny_config(**{"model.camera.fov": 30.0})
    for name, weights_seed in (("latest.ckpt", 1), ("best.ckpt", 2)):
        torch.manual_seed(weights_seed)
        save_checkpoint(run / name, cfg, Generator(cfg.model))
    base = base_request(str(run))
    grid = grid_from_values(base, "snapshots", "", model_file=str(run / "best.ckpt"))
    frame = Scene(device="cpu", use_preview_module=False).render(grid)
    assert frame.ok and [c["label"] for c in frame.stats["cells"]] == ["latest.ckpt", "best.ckpt"]
    single = Scene(device="cpu", use_preview_module=False)
    for i, name in enumerate(("latest.ckpt", "best.ckpt")):
        alone = single.render(base.with_values(model_path=str(run / name)))
        np.testing.assert_allclose(cell_of(frame, i), alone.image, atol=FLOAT_TOL)
    assert np.abs(cell_of(frame, 0) - cell_of(frame, 1)).max() > 1e-2     # the weights differ
    # a run replaces latest.ckpt: its cached cell is not reused, best.ckpt's is
    scene = Scene(device="cpu", use_preview_module=False)
    scene.render(grid)
    torch.manual_seed(3)
    save_checkpoint(run / "latest.ckpt", cfg, Generator(cfg.model))
    again = scene.render(grid)
    assert again.stats["cells_cached"] == 1
    assert np.abs(cell_of(again, 0) - cell_of(frame, 0)).max() > 1e-2
    np.testing.assert_allclose(cell_of(again, 1), cell_of(frame, 1), atol=FLOAT_TOL)
