"""Hostile and broken datasets (issue 29): names that leave the dataset, sizes that would allocate
without bound, inputs that used to end in a traceback or a hang, and outputs that cannot be written.

Every refusal is one line naming the file or entry; nothing outside the output is touched, and an
output that was already there survives a failed write.
"""

import errno
import io
import json
import os
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trigan.cli import dataset as cli_dataset
from trigan.cli.main import main
from trigan.core.errors import TriganError
from trigan.core.safe_paths import is_safe_member_name, member_path, unsafe_reason
from trigan.training import dataset as dataset_module
from trigan.training import dataset_tools, synth
from trigan.training.dataset import MAX_CLASSES, MAX_IMAGE_PIXELS, MAX_RESOLUTION, DatasetError, open_dataset
from trigan.training.dataset_tools import OutputWriter

RES = 8


# ----------------------------------------------------------------------------------------------
# helpers

def png(seed: int, res: int = RES) -> bytes:
    array = np.random.default_rng(seed).integers(0, 255, (res, res, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height RGB pixels but holds one row of data: what a
    decompression bomb looks like before it is decoded (a few dozen bytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def write_zip(path: Path, entries: dict) -> Path:
    """A zip with exactly these entry names (zipfile keeps them as given) and contents."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(zipfile.ZipInfo(name), data if isinstance(data, bytes) else json.dumps(data).encode())
    return path


def good_entries(n: int = 4) -> dict:
    names = [f"img{i}.png" for i in range(n)]
    entries = {name: png(i) for i, name in enumerate(names)}
    entries["dataset.json"] = {"labels": {name: i % 2 for i, name in enumerate(names)},
                               "camera_angles": {name: [-1.0 + 0.5 * i, 1.2 + 0.1 * i, 0.0]
                                                 for i, name in enumerate(names)}}
    return entries


def write_folder(path: Path, entries: dict) -> Path:
    for name, data in entries.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(data if isinstance(data, bytes) else json.dumps(data).encode())
    return path


def run(capsys, *argv):
    """(exit status, stdout, stderr) of the command line; argparse's own errors exit through
    SystemExit, which is the same status 2 and one `error:` line."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *fragments):
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and lines[0] == err.strip().splitlines()[-1], err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def leftovers(folder: Path):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ----------------------------------------------------------------------------------------------
# 1. names that leave the dataset

def escaping_names(tmp_path: Path) -> dict:
    """{case: entry name}; each one, written as it is, would land on tmp_path/victim.png (on
    POSIX or on Windows) instead of inside DST = tmp_path/dst."""
    victim = str(tmp_path / "victim.png")
    return {"absolute": victim, "double-slash": "/" + victim, "dotdot": "../victim.png",
            "nested-dotdot": "sub/../../victim.png", "backslash-dotdot": "..\\victim.png",
            "drive-backslash": "C:\\victim.png", "drive-relative": "C:victim.png"}


CASES = ["absolute", "double-slash", "dotdot", "nested-dotdot", "backslash-dotdot", "drive-backslash",
         "drive-relative"]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("command, dst_name", [("resize", "dst"), ("resize", "dst.zip"), ("select", "dst")])
def test_escaping_entries_are_refused_and_nothing_outside_dst_changes(tmp_path, capsys, case, command, dst_name):
    name = escaping_names(tmp_path)[case]
    victim = tmp_path / "victim.png"
    victim.write_bytes(b"precious")
    src = write_zip(tmp_path / "evil.zip", {**good_entries(), name: png(99)})
    dst = tmp_path / dst_name
    extra = ["--resolution", RES] if command == "resize" else ["--keep-ratio", "0.5"]
    code, _, err = run(capsys, "dataset", command, src, dst, *extra)
    assert_one_line_error(code, err, str(src), repr(name)[:40])
    assert victim.read_bytes() == b"precious"
    assert not dst.exists() and leftovers(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.zip", "victim.png"]


@pytest.mark.parametrize("case", CASES)
def test_check_and_open_report_escaping_entries(tmp_path, capsys, case):
    name = escaping_names(tmp_path)[case]
    src = write_zip(tmp_path / "evil.zip", {**good_entries(), name: png(99)})
    code, out, _ = run(capsys, "dataset", "check", src)
    assert code == 1
    errors = [line for line in out.splitlines() if ": error: " in line]
    # a long name (an absolute path under a deep temporary folder) is shown cut short: its start is
    assert len(errors) == 1 and errors[0].startswith(f"{src}: error: entry {repr(name)[:40]}")
    assert out.splitlines()[-1].endswith("1 error, 0 notes")
    with pytest.raises(DatasetError) as exc:       # and training refuses it before reading anything
        open_dataset(src)
    assert str(exc.value).startswith(f"{src}: entry {name!r}") and "\n" not in str(exc.value)


def test_pack_refuses_a_folder_file_whose_name_is_unsafe_in_a_zip(tmp_path, capsys):
    # a legal file name on POSIX that climbs out of the folder when the zip is unpacked on Windows
    folder = write_folder(tmp_path / "data", {**good_entries(), "..\\evil.png": png(7)})
    for extra in ([], ["--no-check"]):
        code, _, err = run(capsys, "dataset", "pack", folder, tmp_path / "out.zip", *extra)
        assert_one_line_error(code, err, repr("..\\evil.png"), "backslash")
        assert not (tmp_path / "out.zip").exists()


@pytest.mark.parametrize("field", ["labels", "camera_angles"])
@pytest.mark.parametrize("key, reason", [("/abs/img0.png", "absolute"), ("../img0.png", "'..'"),
                                         ("..\\img0.png", "'..'"), ("C:\\img0.png", "drive letter")])
def test_dataset_json_keys_must_name_files_inside_the_dataset(tmp_path, capsys, field, key, reason):
    entries = good_entries()
    table = entries["dataset.json"][field]
    table[key] = table.pop("img0.png")
    src = write_zip(tmp_path / "data.zip", entries)
    with pytest.raises(DatasetError) as exc:
        open_dataset(src)
    message = str(exc.value)
    assert message.startswith(f"{src}/dataset.json: {field}: entry {key!r}") and reason in message
    code, out, _ = run(capsys, "dataset", "check", src)
    assert code == 1 and f"{field}: entry {key!r}" in out


def test_windows_style_keys_of_real_images_still_match(tmp_path):
    entries = good_entries()
    entries["sub/img9.png"] = png(9)
    meta = entries["dataset.json"]
    meta["labels"]["sub\\img9.png"] = 1
    meta["camera_angles"]["sub\\img9.png"] = [0.3, 1.0, 0.0]
    with open_dataset(write_zip(tmp_path / "data.zip", entries)) as ds:
        assert ds.names[-1] == "sub/img9.png" and int(ds.labels[-1]) == 1


def test_the_writer_itself_never_writes_outside_its_output(tmp_path):
    (tmp_path / "victim.png").write_bytes(b"precious")
    for dst in (tmp_path / "out", tmp_path / "out.zip"):
        with pytest.raises(DatasetError) as exc:
            with OutputWriter(dst) as writer:
                writer.write("a.png", b"fine")
                writer.write("../victim.png", b"evil")
        assert "'../victim.png'" in str(exc.value) and not dst.exists()
    assert (tmp_path / "victim.png").read_bytes() == b"precious" and leftovers(tmp_path) == []


@pytest.mark.parametrize("name, safe", [
    ("img.png", True), ("a/b/c.png", True), ("..png", True), ("a/.hidden.png", True), ("a..b/c", True),
    ("", False), ("/a.png", False), ("//host/a.png", False), ("../a.png", False), ("a/../../b", False),
    ("a/..", False), ("./a.png", False), ("a//b.png", False), ("a/", False), ("a\\b.png", False),
    ("C:a.png", False), ("c:/a.png", False), ("a\nb.png", False), ("a\x00b.png", False),
])
def test_safe_member_names(name, safe):
    assert is_safe_member_name(name) is safe
    assert (unsafe_reason(name) is None) is safe


def test_member_path_stays_inside_the_root_even_through_links(tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    assert member_path(root, "sub/a.png", "x.zip") == (root / "sub" / "a.png").resolve()
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(TriganError) as exc:
        member_path(root, "link/a.png", "x.zip")
    assert str(exc.value).startswith("x.zip: entry 'link/a.png' resolves outside")
    with pytest.raises(TriganError) as exc:
        member_path(root, "/etc/passwd", "x.zip")
    assert str(exc.value).startswith("x.zip: entry '/etc/passwd' is an absolute path")


# ----------------------------------------------------------------------------------------------
# 2. sizes from the data are bounded before anything is allocated

@pytest.mark.parametrize("label, fragment", [
    (10 ** 9, "out of range"), (10 ** 6, "out of range"), (MAX_CLASSES, "out of range"),
    (1e300, "out of range"), (10 ** 400, "expected an integer class index"), (-1, "negative"),
    (float("nan"), "expected an integer class index"), (True, "expected an integer class index"),
    (1.5, "expected an integer class index"), ("3", "expected an integer class index"),
    ([[[[1]]]], "expected an integer class index"),
])
def test_labels_are_class_indices_below_the_bound(tmp_path, label, fragment):
    entries = good_entries()
    entries["dataset.json"]["labels"]["img2.png"] = label
    src = write_zip(tmp_path / "data.zip", entries)
    with pytest.raises(DatasetError) as exc:
        open_dataset(src)
    message = str(exc.value)
    assert message.startswith(f"{src}/dataset.json: labels['img2.png']: ") and fragment in message
    assert "\n" not in message and len(message) < 400


def test_the_largest_allowed_label_gives_that_many_classes(tmp_path):
    entries = good_entries()
    entries["dataset.json"]["labels"]["img2.png"] = MAX_CLASSES - 1
    with open_dataset(write_zip(tmp_path / "data.zip", entries)) as ds:
        assert ds.num_classes == MAX_CLASSES


@pytest.mark.parametrize("angles", [
    [float("nan"), 1.0, 0.0], [0.1, float("inf"), 0.0], [0.1, 1.0], [0.1, 1.0, 0.0, 0.0], [0.1, 1.0, 10 ** 400],
    [0.1, 1.0, True], ["0.1", 1.0, 0.0], {"yaw": 0.1}, None,
])
def test_camera_angles_are_three_finite_numbers(tmp_path, angles):
    entries = good_entries()
    entries["dataset.json"]["camera_angles"]["img1.png"] = angles
    src = write_zip(tmp_path / "data.zip", entries)
    with pytest.raises(DatasetError) as exc:
        open_dataset(src)
    assert str(exc.value).startswith(f"{src}/dataset.json: camera_angles['img1.png']: expected [yaw, pitch, roll]")


def test_a_number_too_long_to_read_is_one_line(tmp_path, capsys):
    text = '{"labels": {"img0.png": ' + "9" * 5000 + "}}"
    src = write_zip(tmp_path / "data.zip", {**good_entries(), "dataset.json": text.encode()})
    with pytest.raises(DatasetError) as exc:
        open_dataset(src)
    assert str(exc.value).startswith(f"{src}/dataset.json: not a usable JSON file")
    code, out, _ = run(capsys, "dataset", "check", src)
    assert code == 1 and "dataset.json: error: not a usable JSON file" in out


# ----------------------------------------------------------------------------------------------
# 3. inputs that used to end in a traceback or a hang

@pytest.mark.parametrize("text", [
    "[" * 100_000 + "]" * 100_000,                                          # past the json decoder's stack
    '{"extra": ' + "[" * 200 + "]" * 200 + "}",               # parses, but too deep to keep
    '{"class_names": [["a"], {"b": 1}]}',                                   # becomes part of the model config
])
def test_deep_or_odd_dataset_json_is_one_line(tmp_path, capsys, text):
    src = write_zip(tmp_path / "data.zip", {**good_entries(), "dataset.json": text.encode()})
    with pytest.raises(DatasetError) as exc:
        open_dataset(src)
    assert str(exc.value).startswith(f"{src}/dataset.json: ") and "\n" not in str(exc.value)
    code, out, err = run(capsys, "dataset", "check", src)
    assert code == 1 and "Traceback" not in out + err and "dataset.json: error: " in out


def test_training_images_larger_than_the_bound_are_refused_at_open(tmp_path, capsys):
    # 10000^2 used to reach the discriminator and end in a ZeroDivisionError; the header is enough
    side = 10_000
    assert side * side <= MAX_IMAGE_PIXELS and side > MAX_RESOLUTION
    src = write_folder(tmp_path / "big", {"a.png": png_header_only(side, side)})
    with pytest.raises(DatasetError) as exc:
        open_dataset(src)
    assert str(exc.value) == (f"{src}/a.png: {side}x{side} images are larger than trigan trains on (at most "
                              f"{MAX_RESOLUTION}x{MAX_RESOLUTION}); shrink them with trigan dataset resize")


@pytest.mark.parametrize("side", [12_000, 100_000])
def test_decompression_bombs_are_refused_from_the_header(tmp_path, capsys, side):
    assert side * side > MAX_IMAGE_PIXELS
    src = write_zip(tmp_path / "bomb.zip", {"a.png": png(0), "b.png": png_header_only(side, side)})
    # up to Pillow's own hard limit (179M pixels) the bound here is what refuses; beyond, Pillow's
    code, out, _ = run(capsys, "dataset", "check", src)
    problem = [line for line in out.splitlines() if line.startswith("b.png: error: cannot read image (")]
    assert code == 1 and len(problem) == 1 and "decompression bomb" in problem[0]
    code, _, err = run(capsys, "dataset", "resize", src, tmp_path / "out.zip", "--resolution", RES)
    assert_one_line_error(code, err, f"{src}/b.png: cannot read image (", "decompression bomb")
    assert not (tmp_path / "out.zip").exists()


def test_zip_entries_larger_than_they_may_be_are_not_read(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(dataset_module, "MAX_JSON_BYTES", 100)
    src = write_zip(tmp_path / "data.zip", good_entries())   # its dataset.json is a few hundred bytes
    code, out, _ = run(capsys, "dataset", "check", src)
    assert code == 1 and "dataset.json: error: too large to be a dataset.json" in out


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_named_pipes_in_or_as_a_dataset_do_not_hang(tmp_path):
    folder = write_folder(tmp_path / "data", good_entries())
    os.mkfifo(folder / "img9.png")
    os.mkfifo(tmp_path / "pipe.zip")
    for target, fragment in ((folder, "img9.png: error: cannot read image (not a regular file)"),
                             (tmp_path / "pipe.zip", "not a regular file, a zip or a folder")):
        # a subprocess, so that a regression hangs only it (bounded generously) and not the suite
        proc = subprocess.run([sys.executable, "-m", "trigan.cli.main", "dataset", "check", str(target)],
                              capture_output=True, text=True, timeout=300, check=False)
        assert fragment in proc.stdout + proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
@pytest.mark.parametrize("special", ["fifo", "symlink_loop"])
def test_pack_names_a_file_it_cannot_read(tmp_path, special):
    # pack reads every file's bytes (check only reads the index): a pipe or a symlink loop among
    # the images is one line naming it, and no zip is written.
    folder = write_folder(tmp_path / "data", good_entries())
    bad = folder / "img3.png"   # listed in dataset.json, so the index check passes
    bad.unlink()
    if special == "fifo":
        os.mkfifo(bad)
    else:
        bad.symlink_to(bad)
    out = tmp_path / "packed.zip"
    proc = subprocess.run([sys.executable, "-m", "trigan.cli.main", "dataset", "pack", str(folder), str(out)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"trigan: error: {bad}: cannot pack it (")
    assert not out.exists()


@pytest.mark.parametrize("argv, fragment", [
    (["synth", "{out}", "--num", "1000000000"], "--num 1000000000: expected an integer in 1..1000000"),
    (["synth", "{out}", "--num", "1e9"], "--num 1e9: expected an integer"),
    (["synth", "{out}", "--num", "-5"], "--num -5: expected"),
    (["synth", "{out}", "--resolution", "100000"], "--resolution 100000: expected an integer in 8..1024"),
    (["synth", "{out}", "--seed", "-1"], "--seed -1: expected"),
    (["synth", "{out}", "--seed", str(2 ** 70)], "--seed 1180591620717411303424: expected"),
    (["synth", "{out}", "--radius", "nan"], "--radius nan: expected a number"),
    (["synth", "{out}", "--far", "inf"], "--far inf: expected a number"),
    (["synth", "{out}", "--pitch-range", "nan", "1"], "--pitch-range nan: expected a number"),
    (["resize", "{src}", "{out}", "--resolution", "100000"], "--resolution 100000: expected an integer in 1..4096"),
    (["resize", "{src}", "{out}", "--resolution", "-1"], "--resolution -1: expected"),
    (["select", "{src}", "{out}", "--keep-ratio", "nan"], "--keep-ratio nan: expected a number"),
    (["select", "{src}", "{out}", "--num", "2", "--batch", "1000000000000"], "--batch 1000000000000: expected"),
    (["select", "{src}", "{out}", "--num", "2", "--embedder", "tiny:100000"], "--embedder tiny:100000: expected"),
    (["select", "{src}", "{out}", "--num", "2", "--reg-covar", "inf"], "--reg-covar inf: expected"),
    (["features", "{src}", "--out", "{out}", "--workers", "100000"], "--workers 100000: expected"),
    (["features", "{src}", "--out", "{out}", "--workers", "-1"], "--workers -1: expected"),
    (["features", "{src}", "--out", "{out}", "--batch-size", "1000000000"], "--batch-size 1000000000: expected"),
])
def test_huge_negative_or_non_finite_flags_are_one_line(tmp_path, capsys, argv, fragment):
    src = write_zip(tmp_path / "data.zip", good_entries())
    out = tmp_path / "out.zip"
    argv = [a.format(src=src, out=out) for a in argv]
    code, _, err = run(capsys, "dataset", *argv)
    assert_one_line_error(code, err, fragment)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.zip"]


def test_the_command_line_knows_the_synthetic_classes():
    # cli/dataset.py repeats the class count so that parsing needs no torch (the size bounds both
    # read from core/limits.py); it must not drift from the generator's list
    assert cli_dataset.SYNTH_CLASSES == len(synth.CLASS_NAMES)


# ----------------------------------------------------------------------------------------------
# outputs that cannot be written: one line naming the path, nothing lost

def _commands(src: Path, dst: Path):
    return {"synth": ["synth", dst.with_suffix(".zip"), "--num", "2", "--resolution", RES],
            "resize": ["resize", src, dst, "--resolution", RES],
            "resize-zip": ["resize", src, dst.with_suffix(".zip"), "--resolution", RES],
            "select": ["select", src, dst, "--num", "2"],
            "pack": ["pack", write_folder(src.parent / "folder", good_entries()), dst.with_suffix(".zip")]}


COMMANDS = ["synth", "resize", "resize-zip", "select", "pack"]


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
@pytest.mark.parametrize("command", COMMANDS)
def test_unwritable_output_folder_is_one_line(tmp_path, capsys, command):
    # nobody, root included, can create files in /proc: a root-proof unwritable folder
    src = write_zip(tmp_path / "data.zip", good_entries())
    argv = _commands(src, Path("/proc/trigan-test-dst"))[command]
    code, _, err = run(capsys, "dataset", *argv)
    assert_one_line_error(code, err, "/proc/trigan-test-dst", "cannot write (")


def _fail_after(monkeypatch, target, name, calls: int, once: bool = False):
    """Make target.name raise ENOSPC (disk full) from its (calls+1)-th call on (only that call
    with once=True)."""
    original = getattr(target, name)
    count = {"n": 0}

    def failing(*args, **kwargs):
        count["n"] += 1
        if count["n"] == calls + 1 or (count["n"] > calls and not once):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return original(*args, **kwargs)
    monkeypatch.setattr(target, name, failing)


@pytest.mark.parametrize("dst_name", ["dst.zip", "dst"])
def test_disk_full_while_writing_keeps_the_previous_output(tmp_path, capsys, monkeypatch, dst_name):
    src = write_zip(tmp_path / "data.zip", good_entries())
    dst = tmp_path / dst_name
    assert run(capsys, "dataset", "resize", src, dst, "--resolution", RES)[0] == 0
    before = {p.relative_to(dst).as_posix(): p.read_bytes() for p in dst.rglob("*") if p.is_file()} \
        if dst.is_dir() else dst.read_bytes()
    if dst_name.endswith(".zip"):
        _fail_after(monkeypatch, zipfile.ZipFile, "writestr", 2)
    else:
        _fail_after(monkeypatch, Path, "write_bytes", 2)
    code, _, err = run(capsys, "dataset", "resize", src, dst, "--resolution", RES // 2, "--force")
    assert_one_line_error(code, err, f"{dst}: cannot write (No space left on device)")
    after = {p.relative_to(dst).as_posix(): p.read_bytes() for p in dst.rglob("*") if p.is_file()} \
        if dst.is_dir() else dst.read_bytes()
    assert after == before and leftovers(tmp_path) == []


def test_a_failed_rename_puts_the_previous_output_back(tmp_path, capsys, monkeypatch):
    src = write_zip(tmp_path / "data.zip", good_entries())
    dst = tmp_path / "dst.zip"
    assert run(capsys, "dataset", "resize", src, dst, "--resolution", RES)[0] == 0
    before = dst.read_bytes()
    # the first rename moves the old output aside, the second (the new one into place) fails
    _fail_after(monkeypatch, dataset_tools.os, "replace", 1, once=True)
    code, _, err = run(capsys, "dataset", "resize", src, dst, "--resolution", RES // 2, "--force")
    monkeypatch.undo()
    assert_one_line_error(code, err, f"{dst}: cannot write")
    assert dst.read_bytes() == before and leftovers(tmp_path) == []
