"""`trigan dataset check`'s pose report and picture (training/dataset_report.py): statistics against
hand-computed values, the outlier rule at its boundary, coverage with and without mirroring, and a
picture whose scatter puts a point where a known pose is."""

import json
import math

import numpy as np
import pytest
from PIL import Image

from trigan.cli.main import main
from trigan.training import dataset_report as report
from trigan.training.dataset_report import (
    MARGIN,
    MIRROR,
    POINT,
    circular_mean,
    draw_report,
    format_pose_report,
    picture_layout,
    pose_stats,
    robust_outliers,
    yaw_coverage,
)

D = math.radians
EPS = 1e-9     # float64 arithmetic on a handful of angles: errors are ~1e-15


def names(n):
    return [f"img{i:03d}.png" for i in range(n)]


def angles(yaw_deg, pitch_deg):
    return np.stack([np.radians(yaw_deg), np.radians(pitch_deg), np.zeros(len(yaw_deg))], axis=1)


def write_folder(root, yaw_deg=None, pitch_deg=None, count=None, broken=()):
    """A dataset folder of 16x16 PNGs (colour by index) and, given angles, a dataset.json."""
    root.mkdir()
    count = count if count is not None else len(yaw_deg)
    for i, name in enumerate(names(count)):
        if i in broken:
            (root / name).write_bytes(b"not a png")
        else:
            Image.new("RGB", (16, 16), (i * 37 % 256, 100, 200)).save(root / name)
    if yaw_deg is not None:
        table = {n: [D(y), D(p), 0.0] for n, y, p in zip(names(count), yaw_deg, pitch_deg, strict=True)}
        (root / "dataset.json").write_text(json.dumps({"camera_angles": table}))
    return root


# ----------------------------------------------------------------------------------------------
# statistics

def test_circular_mean_across_the_seam():
    mean, r = circular_mean(np.radians([179.0, -179.0]))
    assert abs(abs(mean) - math.pi) < EPS          # 180 degrees, not 0
    assert abs(r - math.cos(D(1))) < EPS           # the unit vectors at +-179 average to (-cos 1, 0)
    mean, r = circular_mean(np.radians([10.0, 30.0]))
    assert abs(mean - D(20)) < EPS and abs(r - math.cos(D(10))) < EPS


def test_stats_match_hand_computed_values_across_the_seam():
    s = pose_stats(angles([170.0, 180.0, -170.0], [80.0, 90.0, 100.0]), names(3))
    assert abs(abs(s.yaw_centre) - math.pi) < EPS
    # deviations from the centre are -10, 0, 10 degrees: population std sqrt(200/3)
    assert abs(s.yaw_std - D(math.sqrt(200 / 3))) < EPS
    # numpy's linear percentiles of (-10, 0, 10): 5 % -> -9, 95 % -> 9, around 180 -> 171 .. -171
    assert abs(s.yaw_range[0] - D(171)) < EPS and abs(s.yaw_range[1] - D(-171)) < EPS
    assert abs(s.pitch_mean - D(90)) < EPS and abs(s.pitch_std - D(math.sqrt(200 / 3))) < EPS
    assert abs(s.pitch_range[0] - D(81)) < EPS and abs(s.pitch_range[1] - D(99)) < EPS
    assert s.off_centre     # 180 degrees from the frontal view


def test_yaw_round_the_whole_circle_has_no_centre_and_no_warning():
    yaw = np.arange(-180.0, 180.0, 10.0)     # evenly spaced: resultant exactly 0
    s = pose_stats(angles(yaw, np.full(len(yaw), 90.0)), names(len(yaw)))
    assert s.yaw_centre is None and s.yaw_resultant < EPS and not s.off_centre
    lines = format_pose_report(s)
    assert "no centre" in lines[0] and not any("warning" in line for line in lines)


def test_off_centre_warning_names_the_fix_and_a_centred_dataset_has_none():
    rng = np.random.default_rng(0)
    yaw = rng.normal(0.0, 15.0, 200)
    pitch = rng.normal(90.0, 5.0, 200)
    centred = format_pose_report(pose_stats(angles(yaw - yaw.mean(), pitch), names(200)))
    assert not any("warning" in line for line in centred)
    shifted = format_pose_report(pose_stats(angles(yaw - yaw.mean() + 30.0, pitch), names(200)))
    warning = [line for line in shifted if "warning" in line]
    assert len(warning) == 1 and "centre 30.0" in warning[0] and "--center" in warning[0]
    assert "trigan dataset poses" in warning[0]


def test_outlier_rule_at_its_boundary():
    # 7 values: median 0, absolute deviations 0, .01, .01, .02, .02, .03, |d| -> MAD 0.02;
    # the cut is 3.5 * 1.4826 * 0.02 = 0.103782
    base = [-0.03, -0.02, -0.01, 0.0, 0.01, 0.02]
    assert list(robust_outliers(base + [0.103])) == []
    assert list(robust_outliers(base + [0.105])) == [6]
    mirrored = [0.03, 0.02, 0.01, 0.0, -0.01, -0.02]        # the same on the negative side
    assert list(robust_outliers(mirrored + [-0.103])) == []
    assert list(robust_outliers(mirrored + [-0.105])) == [6]


def test_outlier_rule_floors_the_mad():
    # identical values: MAD 0, floored at 1e-3 rad -> cut 3.5 * 1.4826e-3 = 0.005189
    assert list(robust_outliers([1.0] * 9 + [1.004])) == []
    assert list(robust_outliers([1.0] * 9 + [1.006])) == [9]


def test_outliers_are_named_in_the_report():
    yaw = [-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 40.0]
    pitch = [88.0, 89.0, 90.0, 90.0, 90.0, 91.0, 92.0, 150.0]
    s = pose_stats(angles(yaw, pitch), names(8))
    assert s.yaw_outliers == ["img007.png"] and s.pitch_outliers == ["img007.png"]
    lines = format_pose_report(s)
    assert any(line.startswith("poses: 1 yaw outlier") and line.endswith("img007.png") for line in lines)


def test_coverage_with_and_without_mirroring():
    centres = np.radians(2.5 + 5.0 * np.arange(18))       # bin centres of 0..90 degrees: 18 of 72 bins
    assert yaw_coverage(centres) == 18 / 72
    assert yaw_coverage(centres, mirrored=True) == 36 / 72
    assert yaw_coverage(np.radians([-180.0, 180.0])) == 1 / 72      # the same direction, the same bin
    assert yaw_coverage(np.radians([-90.0, 90.0]), mirrored=True) == 2 / 72
    full = np.radians(np.arange(-177.5, 180.0, 5.0))
    assert yaw_coverage(full) == 1.0


def test_stats_refuse_mismatched_input():
    with pytest.raises(ValueError):
        pose_stats(np.zeros((3, 3)), names(2))


# ----------------------------------------------------------------------------------------------
# picture

def test_scatter_puts_a_point_where_a_known_pose_is():
    thumbs = [Image.new("RGB", (report.THUMB, report.THUMB), (0, 200, 0))] * 3
    image = draw_report("t", thumbs, ["a", "b", "c"], angles([45.0], [60.0]), ["line"])
    size, layout = picture_layout(3, text_lines=1)      # one line of statistics, short enough not to wrap
    assert image.size == size
    # hand-computed: 2 pixels a degree, yaw -180 at the left edge, pitch 0 at the top
    x, y = MARGIN + (45 + 180) * 2, layout.top + 60 * 2
    assert tuple(int(v) for v in layout.xy(D(45), D(60))) == (x, y)
    pixels = np.asarray(image)
    assert tuple(pixels[y, x]) == POINT                       # the pose
    mx = MARGIN + (-45 + 180) * 2
    assert tuple(pixels[y, mx]) == MIRROR                     # its mirrored copy (yaw -> -yaw)
    assert tuple(pixels[y, MARGIN + (135 + 180) * 2]) not in (POINT, MIRROR)
    assert tuple(pixels[y + 60, x]) not in (POINT, MIRROR)    # 30 degrees lower: empty
    # the contact sheet: the thumbnails are pasted as they are
    assert tuple(pixels[44 + 10, report.SHEET_LEFT + 10]) == (0, 200, 0)


def test_picture_of_a_dataset_and_the_check_lines(tmp_path, capsys):
    rng = np.random.default_rng(1)
    yaw, pitch = rng.normal(25.0, 10.0, 40), rng.normal(85.0, 5.0, 40)
    data = write_folder(tmp_path / "faces", yaw, pitch, broken=(3,))
    out = tmp_path / "faces.png"
    code = main(["dataset", "check", str(data), "--picture", str(out)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 1                                          # the broken image is an error ...
    assert any(line.startswith("poses: 40 images; yaw centre 2") for line in lines)
    assert any("poses: warning: yaw is not zero-centred" in line for line in lines)
    assert lines[-1].endswith("1 error, 0 notes") and f"wrote {out}" in lines
    with Image.open(out) as im:                               # ... and the picture is still drawn
        # 32 sampled thumbnails; 5 statistics lines at least (yaw, pitch, coverage, outliers, warning), more
        # where the long warning wraps
        width, height = picture_layout(32, text_lines=5)[0]
        assert im.size[0] == width and height < im.size[1] <= height + 3 * report.TEXT_LINE
        pixels = np.asarray(im.convert("RGB"))
    _, layout = picture_layout(32)
    x, y = layout.xy(D(yaw[0]), D(pitch[0]))
    assert tuple(pixels[int(y), int(x)])[2] > pixels[int(y), int(x)][0]    # shaded blue: a pose is there


def test_picture_is_refused_in_one_line_before_anything_runs(tmp_path, capsys):
    data = write_folder(tmp_path / "d", [0.0, 10.0], [90.0, 90.0])
    for target, expected in ((tmp_path / "p.jpg", "expected a file name ending in .png"),
                             (tmp_path / "no" / "p.png", "does not exist")):
        code = main(["dataset", "check", str(data), "--picture", str(target)])
        captured = capsys.readouterr()
        assert code == 2 and captured.out == "" and not target.exists()
        assert captured.err.count("\n") == 1 and expected in captured.err and str(target) in captured.err
    existing = tmp_path / "old.png"
    existing.write_bytes(b"keep")
    assert main(["dataset", "check", str(data), "--picture", str(existing)]) == 2
    assert "--force" in capsys.readouterr().err and existing.read_bytes() == b"keep"
    assert main(["dataset", "check", str(data), "--picture", str(existing), "--force"]) == 0
    with Image.open(existing) as im:
        assert im.format == "PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "old.png"]    # no temporary left


def test_dataset_without_angles_has_no_pose_lines(tmp_path, capsys):
    data = write_folder(tmp_path / "plain", count=3)
    out = tmp_path / "plain.png"
    assert main(["dataset", "check", str(data), "--picture", str(out)]) == 0
    text = capsys.readouterr().out
    assert "poses:" not in text and out.exists()


def test_an_unreadable_image_is_a_gap_on_the_sheet_not_a_crash(tmp_path):
    data = write_folder(tmp_path / "d", count=3, broken=(1,))
    thumbs = report.load_thumbnails(data, names(3), report.THUMB)
    assert thumbs[1] is None and thumbs[0].size == (report.THUMB, report.THUMB)
    assert tuple(np.asarray(thumbs[2])[5, 5]) == (2 * 37, 100, 200)     # the image's own colour


def test_sample_indices_are_seeded_sorted_and_distinct():
    a, b = report.sample_indices(1000), report.sample_indices(1000)
    assert list(a) == list(b) and len(set(a.tolist())) == 32 and list(a) == sorted(a)
    assert list(report.sample_indices(5)) == [0, 1, 2, 3, 4]


# ----------------------------------------------------------------------------------------------
# With `trigan dataset poses` (training/pose_import.py): the fix the warning names works

def test_the_named_fix_centres_the_yaws(tmp_path, capsys):
    rng = np.random.default_rng(2)
    data = write_folder(tmp_path / "off", rng.normal(40.0, 8.0, 20), np.full(20, 85.0))
    assert main(["dataset", "check", str(data)]) == 0
    warning = [line for line in capsys.readouterr().out.splitlines() if "warning" in line]
    fix = warning[0].split("fix: ")[1]
    assert fix == (f"trigan dataset poses {data / 'dataset.json'} --format angles --out {data} --center --force")
    assert main(fix.split()[1:]) == 0
    capsys.readouterr()
    assert main(["dataset", "check", str(data)]) == 0
    out = capsys.readouterr().out
    assert "warning" not in out and "poses: 20 images; yaw centre 0.0" in out.replace("-0.0", "0.0")


def _eg3d_label(yaw, pitch, radius=2.7, focal=4.2647):
    """EG3D's 25 numbers for a camera at trigan's (yaw, pitch): EG3D's front is +Z (azimuth yaw + 90
    degrees from +X toward +Z), OpenCV camera axes (right, down, forward) as columns."""
    a = yaw + math.pi / 2
    t = radius * np.array([math.sin(pitch) * math.cos(a), math.cos(pitch), math.sin(pitch) * math.sin(a)])
    forward = -t / radius
    right = np.cross(forward, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, np.cross(forward, right), forward, t
    return c2w.reshape(-1).tolist() + [focal, 0, 0.5, 0, focal, 0.5, 0, 0, 1]


def test_check_after_an_eg3d_import_reports_the_known_poses(tmp_path, capsys):
    yaw = np.array([-20.0, -10.0, 0.0, 10.0, 20.0, 15.0])       # circular mean 2.5 degrees (small angles)
    pitch = np.array([80.0, 85.0, 90.0, 95.0, 100.0, 90.0])
    data = write_folder(tmp_path / "faces", count=len(yaw))
    src = tmp_path / "eg3d.json"
    src.write_text(json.dumps({"labels": [[n, _eg3d_label(D(y), D(p))]
                                          for n, y, p in zip(names(len(yaw)), yaw, pitch, strict=True)]}))
    assert main(["dataset", "poses", str(src), "--format", "eg3d", "--out", str(data)]) == 0
    capsys.readouterr()
    out = tmp_path / "faces.png"
    assert main(["dataset", "check", str(data), "--picture", str(out)]) == 0
    text = capsys.readouterr().out
    expected_centre = math.degrees(math.atan2(np.sin(np.radians(yaw)).mean(), np.cos(np.radians(yaw)).mean()))
    assert f"yaw centre {expected_centre:.1f}" in text
    assert f"pitch mean {pitch.mean():.1f}" in text
    pixels = np.asarray(Image.open(out).convert("RGB"))
    _, layout = picture_layout(len(yaw))
    for y, p in zip(yaw, pitch, strict=True):                   # every imported pose is on the scatter
        col, row = layout.xy(D(y), D(p))
        assert tuple(pixels[int(row), int(col)]) == POINT
