"""The logic behind the viewer's file picker, path fields, job rows and model summary, without a
display: what a folder listing shows and in which order, how sizes and durations read, how typed
and dropped paths are taken, and how a cancelled job differs from a done one.
(The window itself: tests/test_viewer_gui_files.py.)"""

from __future__ import annotations

import os
import time

import pytest

from trigan.core.summary import format_duration, format_summary, progress_parts, readable_number, summary_rows
from trigan.viewer.file_picker import (
    ALL_FILES,
    PickerError,
    extensions_of_filter,
    filter_choices,
    filter_label,
    format_modified,
    format_size,
    list_folder,
    parent_folder,
    resolve_typed,
    start_folder,
)
from trigan.viewer.panels.common import BAD, CANCELLED, GOOD, job_look
from trigan.viewer.panels.model import NBSP, choose_dropped, keep_numbers_with_labels

CHECKPOINTS = (".ckpt", ".pkl")


@pytest.fixture
def folder(tmp_path):
    """Files in an order that differs from the listing's: names of mixed case, folders among files."""
    for name, size in (("b.pkl", 5_767_042), ("A.ckpt", 720_258), ("notes.txt", 10), ("c.PKL", 0),
                       (".hidden.ckpt", 1)):
        with open(tmp_path / name, "wb") as f:
            f.truncate(size)                 # sparse: the size without writing the bytes
    for name in ("zeta", "Alpha", ".git"):
        (tmp_path / name).mkdir()
    return tmp_path


# -- sizes and dates ---------------------------------------------------------------------------------

@pytest.mark.parametrize("size, text", [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KB"), (720_258, "703.4 KB"),
                                        (5_767_042, "5.50 MB"), (3 * 1024 ** 3 // 2, "1.50 GB"),
                                        (5 * 1024 ** 4, "5.00 TB"), (None, "")])
def test_sizes_read_in_english_binary_units(size, text):
    assert format_size(size) == text
    assert "Mo" not in format_size(size) and "Ko" not in format_size(size)


def test_modified_times_read_as_local_date_and_minute():
    stamp = time.mktime((2026, 3, 4, 5, 6, 59, 0, 0, -1))
    assert format_modified(stamp) == "2026-03-04 05:06"
    assert format_modified(None) == ""


# -- listing -----------------------------------------------------------------------------------------

def test_a_listing_shows_folders_first_then_checkpoints_by_name(folder):
    entries = list_folder(str(folder), CHECKPOINTS)
    assert [(e.name, e.is_dir) for e in entries] == [("Alpha", True), ("zeta", True), ("A.ckpt", False),
                                                     ("b.pkl", False), ("c.PKL", False)]
    sizes = {e.name: e.size for e in entries}
    assert sizes == {"Alpha": None, "zeta": None, "A.ckpt": 720_258, "b.pkl": 5_767_042, "c.PKL": 0}
    assert all(e.path == os.path.join(str(folder), e.name) for e in entries)
    assert all(abs(e.modified - os.stat(e.path).st_mtime) < 1e-6 for e in entries)


def test_all_files_shows_every_file_and_hidden_ones(folder):
    names = [e.name for e in list_folder(str(folder), None, show_hidden=True)]
    assert names == [".git", "Alpha", "zeta", ".hidden.ckpt", "A.ckpt", "b.pkl", "c.PKL", "notes.txt"]
    assert "notes.txt" in [e.name for e in list_folder(str(folder), None)]
    assert ".hidden.ckpt" not in [e.name for e in list_folder(str(folder), None)]


def test_folder_mode_lists_folders_only(folder):
    assert [e.name for e in list_folder(str(folder), CHECKPOINTS, folders_only=True)] == ["Alpha", "zeta"]


def test_a_link_to_a_folder_is_a_folder_and_a_dangling_link_has_no_size(folder):
    os.symlink(folder / "zeta", folder / "link-to-zeta")
    os.symlink(folder / "gone.ckpt", folder / "dangling.ckpt")
    entries = {e.name: e for e in list_folder(str(folder), CHECKPOINTS)}
    assert entries["link-to-zeta"].is_dir
    assert entries["dangling.ckpt"].size is None and not entries["dangling.ckpt"].is_dir


def test_folders_that_cannot_be_read_give_one_line(folder, monkeypatch):
    with pytest.raises(PickerError, match=r"no such folder$"):
        list_folder(str(folder / "missing"), CHECKPOINTS)
    with pytest.raises(PickerError, match=r"not a folder$"):
        list_folder(str(folder / "b.pkl"), CHECKPOINTS)

    def refused(path):
        raise PermissionError(13, "Permission denied", path)
    monkeypatch.setattr(os, "scandir", refused)       # (the tests may run as root, which chmod cannot stop)
    with pytest.raises(PickerError) as err:
        list_folder(str(folder), CHECKPOINTS)
    assert str(err.value) == f"{folder}: cannot read this folder (permission denied)"
    assert "\n" not in str(err.value)


def test_filters_name_the_field_types_and_default_to_them():
    assert filter_label(CHECKPOINTS) == "checkpoints (.ckpt, .pkl) and folders"
    assert filter_label((".zip",)) == "datasets (.zip) and folders"
    assert filter_label((".npz", ".zip")) == "files (.npz, .zip) and folders"
    assert filter_choices(CHECKPOINTS) == ["checkpoints (.ckpt, .pkl) and folders", ALL_FILES]
    assert filter_choices(()) == [ALL_FILES]
    assert extensions_of_filter(filter_label(CHECKPOINTS), CHECKPOINTS) == CHECKPOINTS
    assert extensions_of_filter(ALL_FILES, CHECKPOINTS) is None


# -- typed paths ---------------------------------------------------------------------------------------

def test_a_typed_path_replaces_the_folder_shown(tmp_path, monkeypatch):
    shown = str(tmp_path / "shown")
    assert resolve_typed("/data/runs", shown) == "/data/runs"          # never appended to `shown`
    assert resolve_typed("  /data/runs/  ", shown) == "/data/runs"
    assert resolve_typed("sub/x.ckpt", shown) == os.path.join(shown, "sub", "x.ckpt")
    assert resolve_typed("..", shown) == str(tmp_path)
    assert resolve_typed("", shown) == shown
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_typed("~/m.pkl", shown) == str(tmp_path / "home" / "m.pkl")


def test_the_picker_starts_where_the_field_points(folder):
    assert start_folder(str(folder / "b.pkl")) == str(folder)
    assert start_folder(str(folder / "zeta")) == str(folder / "zeta")
    assert start_folder(str(folder / "not-yet.ckpt")) == str(folder)       # a file still to be written
    assert start_folder("/no/such/place/x.ckpt", fallback="/tmp") == "/tmp"
    assert start_folder("", fallback="/tmp") == "/tmp"
    assert parent_folder("/a/b/") == "/a" and parent_folder("/") == "/"


# -- dropped files -----------------------------------------------------------------------------------

def test_the_first_model_among_dropped_paths_opens(folder):
    assert choose_dropped([str(folder / "notes.txt"), str(folder / "b.pkl"), str(folder / "A.ckpt")]) == \
        (str(folder / "b.pkl"), "")
    assert choose_dropped([str(folder / "zeta")]) == (str(folder / "zeta"), "")      # a run folder
    assert choose_dropped([str(folder / "c.PKL")]) == (str(folder / "c.PKL"), "")


def test_dropping_something_else_says_what_was_expected_in_one_line(folder):
    path, message = choose_dropped([str(folder / "notes.txt")])
    assert path is None
    assert message == "dropped notes.txt: not a model; expected a checkpoint (.ckpt, .pkl) or a run folder"
    path, message = choose_dropped([str(folder / "notes.txt"), str(folder / "gone.pkl")])
    assert path is None and message.startswith("dropped notes.txt (and 1 more): not a model;")
    assert choose_dropped([str(folder / "gone.pkl")])[1].startswith("dropped gone.pkl: a missing file;")
    assert choose_dropped([])[0] is None


# -- job rows ----------------------------------------------------------------------------------------

def test_a_cancelled_job_looks_neither_done_nor_failed():
    done = job_look("done", 1.0, "", "/x/a.mp4")
    failed = job_look("failed", 0.4, "out of memory")
    cancelled = job_look("cancelled", 0.4, "cancelled (nothing written)")
    assert done == (1.0, "done", "saved /x/a.mp4", GOOD)
    assert failed == (0.4, "failed at 40%", "out of memory", BAD)
    assert cancelled == (0.4, "cancelled at 40%", "cancelled (nothing written)", CANCELLED)
    assert len({done.colour, failed.colour, cancelled.colour}) == 3
    # a job cancelled after its last frame still does not show a full bar called "done"
    late = job_look("cancelled", 1.0, "")
    assert late.overlay == "cancelled at 100%" and late.text == "cancelled" and late.colour == CANCELLED
    assert job_look("running", 0.255, "frame 5/20").overlay == "running 26%"


# -- the model summary -------------------------------------------------------------------------------

@pytest.mark.parametrize("seconds, text", [(0, "0.0s"), (8.24, "8.2s"), (59.9, "59.9s"), (60, "1m00s"),
                                           (725, "12m05s"), (16442.988, "4h34m"), (86399, "23h59m"),
                                           (86400 * 3 + 7 * 3600 + 59, "3d07h"), (-5, "0.0s")])
def test_durations_read_as_hours_and_minutes(seconds, text):
    assert format_duration(seconds) == text


@pytest.mark.parametrize("value, text", [(81760, "81,760"), (16442.988, "16,443"), (5110.0, "5,110"),
                                         (0.05000000074505806, "0.05"), (2e-05, "0.00002"), (1.5e-7, "0.00000015"),
                                         (3.14159, "3.142"), (True, "yes"), (None, "None"), ("abc", "abc"),
                                         (float("nan"), "nan")])
def test_numbers_read_without_e_notation(value, text):
    assert readable_number(value) == text
    assert "e+" not in readable_number(value) and "e-" not in readable_number(value)


DEMO_PROGRESS = {"cur_nimg": 81760, "kimg": 81.76, "step": 5110, "tick": 83, "rollbacks": 0, "seed_offset": 0,
                 "best_metric": None, "train_seconds": 16442.988255023956, "world_size": 1,
                 "source": "trigan checkpoint snapshot_000081760.ckpt"}


def test_training_progress_reads_as_phrases():
    assert progress_parts(DEMO_PROGRESS) == [
        "81.76 kimg seen", "4h34m of training", "step 5,110", "tick 83", "rollbacks 0", "seed offset 0",
        "processes 1", "source trigan checkpoint snapshot_000081760.ckpt"]
    assert progress_parts({"cur_nimg": 4000}) == ["images 4,000"]          # no kimg: the image count stays


def _summary(progress=None):
    params = {"total": 1_490_000, "mapping": 99_200, "tri_plane_decoder": 1_390_000, "tri_plane_mlp": 676,
              "background": 0}
    s = {"name": "demo", "family": "epigraf", "image_resolution": 64, "classes": 0, "class_names": [],
         "triplane": {"resolution": 64, "channels_per_plane": 16, "mlp": "16 -> 32 -> 4", "colors": "sigmoid"},
         "latent": {"z_dim": 512, "w_dim": 128, "num_ws": 10, "pose_conditioning": False}, "parameters": params,
         "camera": {"fov_deg": 30.0, "radius": 1.0, "ray": [0.6, 1.4], "cube_scale": 0.4, "distribution": "custom",
                    "mean_pose": [0.0, 1.399], "prior": {"dist": "custom"}},
         "render": {"coarse_steps": 24, "fine_steps": 24, "background": "white", "background_model": "none"}}
    if progress:
        s["progress"] = progress
    return s


def test_format_summary_keeps_its_lines_and_reads_the_progress():
    text = format_summary(_summary(DEMO_PROGRESS), "demo.ckpt (trigan checkpoint)")
    lines = text.splitlines()
    assert lines[0] == "demo.ckpt (trigan checkpoint)"
    assert "  parameters   1.49M (mapping 99,200, decoder 1.39M, MLP 676)" in lines
    assert "  camera       fov 30 deg, radius 1, rays 0.6..1.4, scene box +-0.4, mean yaw/pitch 0.000/1.399 rad, " \
           "poses from the dataset" in lines
    assert "  training     81.76 kimg seen, 4h34m of training, step 5,110, tick 83, rollbacks 0, seed offset 0, " \
           "processes 1, source trigan checkpoint snapshot_000081760.ckpt" in lines
    assert "e+0" not in text and "None" not in text
    assert [label for label, _ in summary_rows(_summary())] == ["model", "image", "tri-planes", "latent",
                                                                "parameters", "camera", "rendering"]


def test_a_label_stays_with_its_number_when_the_panel_wraps():
    assert keep_numbers_with_labels("step 5,110") == f"step{NBSP}5,110"
    assert keep_numbers_with_labels("fov 30 deg") == f"fov{NBSP}30{NBSP}deg"
    assert keep_numbers_with_labels("mean yaw/pitch 0.000/1.399 rad") == f"mean yaw/pitch{NBSP}0.000/1.399{NBSP}rad"
    assert keep_numbers_with_labels("scene box +-0.4") == "scene box +-0.4"        # no number right after a space
    assert keep_numbers_with_labels("poses from the dataset") == "poses from the dataset"
