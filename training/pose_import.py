"""Pose import: `dataset.json` camera_angles from the pose files people actually have.

Everything ends in trigan's convention (core/cameras.py, docs/datasets.md): [yaw, pitch, roll] in
radians, pitch the polar angle from +Y (pi/2 is the horizon), yaw 0 puts the camera on +X and
increasing yaw moves it toward +Z; "zero-centred" means the front of the objects is at yaw 0.

Formulas (the source's world is y-up in all three formats; `wrap` maps to [-pi, pi)):

* Every converter first finds the camera's azimuth `a` in the source world, measured from +X
  toward +Z (the sense of trigan's yaw), then `yaw = wrap(a - z0)` with z0 = 0 for `--yaw-zero +x`
  and pi/2 for `--yaw-zero +z`: the named axis of the source becomes trigan's yaw 0 (a rotation of
  the world about Y, never a mirror, so images and poses stay consistent).
* eg3d: each label is 16 values of a row-major 4x4 cam2world (OpenCV camera: columns right, down,
  forward, position) then 9 of the normalised intrinsics (fx, 0, cx, 0, fy, cy, 0, 0, 1; fx in
  image widths). With t = (x, y, z) the position and r = |t|: a = atan2(z, x), pitch = acos(y / r).
  EG3D's world has +Y up and its FFHQ/AFHQ front on +Z (its frontal label is the identity rotation
  with y and z flipped at t = (0, 0, 2.7)), so the default is `--yaw-zero +z`.
  fov = 2 atan(1 / (2 fx)) degrees (horizontal; EG3D's own "18.837" is a diagonal figure: its
  FOV_to_intrinsics divides by 1.414). Roll, from the camera's up u = -(down column) and forward f:
  right0 = normalize(f x Y), up0 = right0 x f (the frame trigan builds without roll), and
  roll = atan2(-u . right0, u . up0): positive turns the camera counter-clockwise as seen from
  behind it (its picture turns clockwise).
* gram: microsoft/GRAM datasets.py. FFHQ: `<stem>.mat` (Deep3DFaceRecon output, scipy .mat) whose
  `angle` (1x3, radians, face rotation about x, y, z) gives GRAM's camera phi = pi/2 + 0.1 -
  angle[0] (polar from +Y) and theta = pi/2 + angle[1] (azimuth from +X); Cats: `<stem>_pose.npy`
  with phi = P[0] + 0.14 and theta = P[1]. GRAM (like pi-GAN) puts the camera at
  (r sin phi cos theta, r cos phi, r sin phi sin theta) (GRAM generators.py), exactly trigan's
  formula, so pitch = phi, a = theta, and the front (theta = pi/2) is on +Z: default `--yaw-zero +z`.
  GRAM ignores angle[2]; its sign convention is not pinned down, so roll is written as 0.
* angles: a CSV (name, yaw, pitch[, roll]; an optional header line) or a JSON ({name: [yaw, pitch,
  roll?]}, [[name, [...]], ...], or a dataset.json's camera_angles). yaw is the azimuth a (from +X
  toward +Z), pitch the polar angle from +Y (or with `elevation`, 90 degrees minus it); `degrees`
  says the numbers are degrees. Default `--yaw-zero +x`: the yaws are kept as they are.
* `center`: subtract the circular mean yaw atan2(mean sin yaw, mean cos yaw) (`yaw_center`), pitch
  untouched.

Source files are hostile: sizes are bounded before reading, every number must be finite, every
name a plain relative path; each refusal is one PoseImportError line naming the file or entry.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from trigan.core.atomic import atomic_write_text
from trigan.core.errors import TriganError
from trigan.core.read_budget import open_without_blocking
from trigan.core.safe_paths import shown, unsafe_reason
from trigan.training.dataset import (
    JSON_NAME,
    MAX_JSON_BYTES,
    build_index,
    dataset_name,
    match_key,
    open_files,
    short_reason,
)

FORMATS = ("eg3d", "gram", "angles")
YAW_ZERO = {"+x": 0.0, "+z": math.pi / 2}
DEFAULT_YAW_ZERO = {"eg3d": "+z", "gram": "+z", "angles": "+x"}
GRAM_MAT_SUFFIX = ".mat"
GRAM_NPY_SUFFIX = "_pose.npy"
# GRAM's offsets (microsoft/GRAM datasets.py read_pose / read_pose_npy).
GRAM_FFHQ_PITCH_OFFSET = 0.1
GRAM_CATS_PITCH_OFFSET = 0.14

MAX_SOURCE_BYTES = MAX_JSON_BYTES      # an EG3D dataset.json or an angles file (FFHQ's is ~20 MB)
MAX_POSE_FILE_BYTES = 16 << 20         # one GRAM pose file (a Deep3DFaceRecon .mat is a few KB)
MAX_POSES = 10_000_000                 # entries or files in one source (ImageNet has 1.28M images)
FOV_TOLERANCE_DEG = 0.01               # fov spread beyond this is warned about
ORTHONORMAL_TOLERANCE = 1e-3           # a cam2world rotation further from orthonormal is refused
SHOW_FIRST = 5                         # names listed in a count message


class PoseImportError(TriganError):
    """A pose source or a dataset that cannot be converted; one line naming the file or entry."""


@dataclass
class PoseTable:
    """Poses read from a source, in trigan's convention, keyed by the source's names."""

    source: str
    angles: Dict[str, Tuple[float, float, float]]
    fov: Optional[np.ndarray] = None       # degrees, one per pose (eg3d)
    radius: Optional[np.ndarray] = None    # world units, one per pose (eg3d)
    notes: List[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------
# Angles

def wrap_angle(a):
    """a (a number or a numpy array) in [-pi, pi)."""
    return (a + math.pi) % (2 * math.pi) - math.pi


def _yaw_column(angles) -> np.ndarray:
    if isinstance(angles, dict):
        angles = list(angles.values())
    arr = np.asarray(angles, dtype=np.float64)
    return arr.reshape(-1) if arr.ndim <= 1 else arr[:, 0]


def yaw_concentration(angles) -> float:
    """Mean resultant length of the yaws, 0..1: 1 when all are equal, about 0 when they cover the
    circle evenly (then no mean yaw means anything)."""
    yaw = _yaw_column(angles)
    if yaw.size == 0:
        return 0.0
    return float(math.hypot(np.mean(np.sin(yaw)), np.mean(np.cos(yaw))))


# When yaw counts as "not zero-centred" (trigan dataset check and the training pre-flight share it):
# the yaws have a centre (mean resultant length at least YAW_CENTRED_MIN_R, i.e. a circular std
# below 67 degrees; data seen from all around has none) more than YAW_CENTRE_TOLERANCE from 0 (a few
# degrees is the noise of a face detector's pose estimate; a quarter turn is the +Z-origin mistake
# of EpiGRAF issue #11).
YAW_CENTRED_MIN_R = 0.5
YAW_CENTRE_TOLERANCE = math.radians(10.0)


def yaw_off_centre(angles) -> bool:
    """True when the yaws have a clear centre that is not 0 (see YAW_CENTRE_TOLERANCE)."""
    return yaw_concentration(angles) >= YAW_CENTRED_MIN_R and abs(yaw_center(angles)) > YAW_CENTRE_TOLERANCE


def yaw_center(angles) -> float:
    """Circular mean yaw in [-pi, pi): atan2(mean sin, mean cos), right across the +-pi seam.
    `angles`: [N, 3] (or [N]) array-like, or {name: [yaw, pitch, roll]}. 0.0 for no angles or
    yaws spread so evenly that the mean is undefined."""
    yaw = _yaw_column(angles)
    if yaw.size == 0 or yaw_concentration(yaw) < 1e-9:
        return 0.0
    return wrap_angle(math.atan2(float(np.mean(np.sin(yaw))), float(np.mean(np.cos(yaw)))))


def center_yaws(table: PoseTable) -> float:
    """Subtract the circular mean yaw from every pose (in place); returns what was subtracted."""
    mean = yaw_center(table.angles)
    table.angles = {k: (wrap_angle(y - mean), p, r) for k, (y, p, r) in table.angles.items()}
    return mean


def _finite(values, what: str) -> List[float]:
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise PoseImportError(f"{what}: expected numbers, got {_short(v)}")
        try:
            f = float(v)
        except OverflowError:
            f = math.inf
        if not math.isfinite(f):
            raise PoseImportError(f"{what}: {v!r} is not a finite number")
        out.append(f)
    return out


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_pitch(pitch: float, what: str) -> float:
    if not 0.0 <= pitch <= math.pi:
        raise PoseImportError(f"{what}: pitch {pitch:.6g} rad ({math.degrees(pitch):.4g} degrees) is outside "
                              f"[0, pi] (polar angle from +Y; pi/2 is the horizon)")
    return pitch


def _check_name(name, source: str) -> str:
    if not isinstance(name, str):
        raise PoseImportError(f"{source}: entry name {_short(name)}: expected a string (an image path)")
    reason = unsafe_reason(name.replace("\\", "/"))
    if reason is not None:
        raise PoseImportError(f"{source}: entry {shown(name)} {reason}; names must be relative paths of images")
    return name


# ----------------------------------------------------------------------------------------------
# Bounded reading

def _read_bounded(path: Path, limit: int) -> bytes:
    """A regular file's bytes, refused (one line) beyond `limit` before anything is read."""
    try:
        with open_without_blocking(path) as f:
            size = os.fstat(f.fileno()).st_size
            if size > limit:
                raise PoseImportError(f"{path}: {size} bytes, more than the limit of {limit} bytes for a pose file")
            data = f.read(limit + 1)
    except PoseImportError:
        raise
    except (OSError, ValueError) as exc:   # missing, a pipe or a device, no permission
        raise PoseImportError(f"{path}: cannot read ({short_reason(exc)})") from None
    if len(data) > limit:
        raise PoseImportError(f"{path}: more than the limit of {limit} bytes for a pose file")
    return data


def _load_json(path: Path):
    data = _read_bounded(path, MAX_SOURCE_BYTES)
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise PoseImportError(f"{path}: not valid JSON (not UTF-8)") from None
    except json.JSONDecodeError as exc:
        raise PoseImportError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except (RecursionError, ValueError):
        raise PoseImportError(f"{path}: not a usable JSON file (nested too deeply or a number too long)") from None


def _pairs(table, source: str, what: str) -> List[Tuple[str, object]]:
    """(name, value) of a {name: value} dict or a [[name, value], ...] list, bounded in count."""
    if isinstance(table, dict):
        items = list(table.items())
    elif isinstance(table, list):
        items = []
        for k, item in enumerate(table):
            if not (isinstance(item, (list, tuple)) and len(item) == 2):
                raise PoseImportError(f"{source}: {what}[{k}]: expected [name, values], got {_short(item)}")
            items.append((item[0], item[1]))
    else:
        raise PoseImportError(f"{source}: {what}: expected {{name: values}} or [[name, values], ...], "
                              f"got {type(table).__name__}")
    if len(items) > MAX_POSES:
        raise PoseImportError(f"{source}: {len(items)} entries, more than the limit of {MAX_POSES}")
    if not items:
        raise PoseImportError(f"{source}: no poses in {what}")
    return items


# ----------------------------------------------------------------------------------------------
# EG3D

def eg3d_pose(values: Sequence[float], yaw_zero: str = "+z", what: str = "label"
              ) -> Tuple[Tuple[float, float, float], float, float]:
    """((yaw, pitch, roll), fov in degrees, radius) of one EG3D label of 25 numbers."""
    if not isinstance(values, (list, tuple)) or len(values) != 25:
        n = len(values) if isinstance(values, (list, tuple)) else type(values).__name__
        raise PoseImportError(f"{what}: expected 25 numbers (16 of cam2world, 9 of intrinsics), got {n}")
    v = np.array(_finite(values, what), dtype=np.float64)
    c2w, k = v[:16].reshape(4, 4), v[16:].reshape(3, 3)
    rot, t = c2w[:3, :3], c2w[:3, 3]
    if np.abs(rot.T @ rot - np.eye(3)).max() > ORTHONORMAL_TOLERANCE:
        raise PoseImportError(f"{what}: the cam2world rotation is not orthonormal (not an EG3D camera label)")
    radius = float(np.linalg.norm(t))
    if radius < 1e-9:
        raise PoseImportError(f"{what}: the camera sits at the origin; no direction to take yaw and pitch from")
    fx = k[0, 0]
    if not fx > 0:
        raise PoseImportError(f"{what}: focal length fx {fx:.6g}: expected a positive number (in image widths)")
    x, y, z = t
    yaw = wrap_angle(math.atan2(z, x) - YAW_ZERO[yaw_zero])
    pitch = math.acos(min(max(y / radius, -1.0), 1.0))
    roll = _roll(forward=rot[:, 2], up=-rot[:, 1])
    fov = math.degrees(2 * math.atan(1 / (2 * fx)))
    return (yaw, pitch, roll), fov, radius


def _roll(forward: np.ndarray, up: np.ndarray) -> float:
    """The camera's rotation about its viewing axis against the frame trigan builds without roll."""
    world_up = np.array([0.0, 1.0, 0.0])
    right0 = np.cross(forward, world_up)
    norm = np.linalg.norm(right0)
    if norm < 1e-9:       # looking straight up or down: roll is undefined
        return 0.0
    right0 /= norm
    up0 = np.cross(right0, forward)
    return float(math.atan2(-float(up @ right0), float(up @ up0)))


def read_eg3d(path, yaw_zero: str = "+z") -> PoseTable:
    """EG3D's dataset.json: {"labels": [[name, [25 numbers]], ...]} (or a {name: [...]} dict)."""
    path = Path(path)
    doc = _load_json(path)
    if not (isinstance(doc, dict) and "labels" in doc):
        raise PoseImportError(f"{path}: expected EG3D's dataset.json, an object with \"labels\": [[name, [25 numbers]], ...]")
    table = PoseTable(source=str(path), angles={})
    fovs, radii = [], []
    for name, values in _pairs(doc["labels"], str(path), "labels"):
        name = _check_name(name, str(path))
        angles, fov, radius = eg3d_pose(values, yaw_zero, what=f"{path}: labels[{shown(name)}]")
        _check_pitch(angles[1], f"{path}: labels[{shown(name)}]")
        _add(table, name, angles)
        fovs.append(fov)
        radii.append(radius)
    table.fov, table.radius = np.array(fovs), np.array(radii)
    return table


def _add(table: PoseTable, name: str, angles) -> None:
    if name in table.angles:
        raise PoseImportError(f"{table.source}: {shown(name)} appears twice")
    table.angles[name] = tuple(float(a) for a in angles)


# ----------------------------------------------------------------------------------------------
# GRAM

def gram_pose_from_angle(angle: Sequence[float], yaw_zero: str = "+z") -> Tuple[float, float, float]:
    """trigan angles of a Deep3DFaceRecon `angle` (GRAM's FFHQ .mat)."""
    phi = math.pi / 2 + GRAM_FFHQ_PITCH_OFFSET - angle[0]
    theta = math.pi / 2 + angle[1]
    return wrap_angle(theta - YAW_ZERO[yaw_zero]), phi, 0.0


def gram_pose_from_npy(p: Sequence[float], yaw_zero: str = "+z") -> Tuple[float, float, float]:
    """trigan angles of GRAM's Cats `_pose.npy` [P0, P1]."""
    phi = p[0] + GRAM_CATS_PITCH_OFFSET
    theta = p[1]
    return wrap_angle(theta - YAW_ZERO[yaw_zero]), phi, 0.0


def _mat_angle(path: Path) -> List[float]:
    import scipy.io  # noqa: PLC0415 (only this format needs scipy)
    data = _read_bounded(path, MAX_POSE_FILE_BYTES)
    try:
        # the header of each variable first: a huge declared `angle` is refused before loading
        shapes = {name: shape for name, shape, _ in scipy.io.whosmat(io.BytesIO(data))}
        if "angle" not in shapes:
            raise PoseImportError(f"{path}: no 'angle' variable (expected GRAM's Deep3DFaceRecon pose .mat)")
        if int(np.prod(shapes["angle"])) != 3:
            raise PoseImportError(f"{path}: 'angle' has shape {tuple(shapes['angle'])}; expected 1x3 (radians)")
        angle = scipy.io.loadmat(io.BytesIO(data), variable_names=["angle"])["angle"]
    except PoseImportError:
        raise
    except Exception as exc:  # noqa: BLE001 - any parser failure is the file's fault
        raise PoseImportError(f"{path}: not a readable .mat file ({short_reason(exc)})") from None
    return _finite(np.asarray(angle, dtype=np.float64).reshape(-1).tolist(), str(path))


def _npy_pose(path: Path) -> List[float]:
    data = _read_bounded(path, MAX_POSE_FILE_BYTES)
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:  # noqa: BLE001
        raise PoseImportError(f"{path}: not a readable .npy file ({short_reason(exc)})") from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiu" or arr.size not in (2, 3):
        shape = getattr(arr, "shape", "?")
        raise PoseImportError(f"{path}: expected 2 or 3 numbers [pitch, yaw(, roll)], got shape {shape}")
    return _finite(arr.astype(np.float64).reshape(-1).tolist(), str(path))


def read_gram(folder, yaw_zero: str = "+z") -> PoseTable:
    """GRAM's folder of pose files: `<stem>.mat` (FFHQ) or `<stem>_pose.npy` (Cats); the names are
    the stems (image `<stem>.png`). Only the folder itself is listed (GRAM's `poses/`)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PoseImportError(f"{folder}: expected GRAM's folder of pose files (<name>.mat or <name>_pose.npy)")
    names = sorted(os.listdir(folder))
    if len(names) > MAX_POSES:
        raise PoseImportError(f"{folder}: {len(names)} files, more than the limit of {MAX_POSES}")
    table = PoseTable(source=str(folder), angles={})
    for name in names:
        path = folder / name
        if name.endswith(GRAM_NPY_SUFFIX):
            stem, pose = name[:-len(GRAM_NPY_SUFFIX)], gram_pose_from_npy(_npy_pose(path), yaw_zero)
        elif name.lower().endswith(GRAM_MAT_SUFFIX):
            stem, pose = name[:-len(GRAM_MAT_SUFFIX)], gram_pose_from_angle(_mat_angle(path), yaw_zero)
        else:
            continue
        _check_name(stem, str(folder))
        _check_pitch(pose[1], str(path))
        _add(table, stem, pose)
    if not table.angles:
        raise PoseImportError(f"{folder}: no GRAM pose files (<name>.mat or <name>_pose.npy) in it")
    return table


# ----------------------------------------------------------------------------------------------
# Plain angles

def plain_pose(values: Sequence[float], yaw_zero: str = "+x", degrees: bool = False, elevation: bool = False,
               what: str = "angles") -> Tuple[float, float, float]:
    """trigan angles of [yaw, pitch(, roll)] given as azimuth from +X and polar angle (or elevation)."""
    if not isinstance(values, (list, tuple)) or len(values) not in (2, 3):
        raise PoseImportError(f"{what}: expected [yaw, pitch] or [yaw, pitch, roll], got {_short(values)}")
    v = _finite(values, what)
    if degrees:
        v = [math.radians(a) for a in v]
    yaw, pitch = v[0], v[1]
    roll = v[2] if len(v) == 3 else 0.0
    if elevation:
        pitch = math.pi / 2 - pitch
    return wrap_angle(yaw - YAW_ZERO[yaw_zero]), _check_pitch(pitch, what), roll


def read_angles(path, yaw_zero: str = "+x", degrees: bool = False, elevation: bool = False) -> PoseTable:
    """A CSV (name, yaw, pitch[, roll]) or a JSON of plain angles; see the module doc."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        doc = _load_json(path)
        if isinstance(doc, dict) and "camera_angles" in doc:
            doc = doc["camera_angles"]
        rows = _pairs(doc, str(path), "angles")
    else:
        rows = _csv_rows(path)
    table = PoseTable(source=str(path), angles={})
    for name, values in rows:
        name = _check_name(name, str(path))
        _add(table, name, plain_pose(values, yaw_zero, degrees, elevation, what=f"{path}: {shown(name)}"))
    return table


def _csv_rows(path: Path) -> List[Tuple[str, List[float]]]:
    try:
        text = _read_bounded(path, MAX_SOURCE_BYTES).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise PoseImportError(f"{path}: not a UTF-8 text file (expected CSV lines: name, yaw, pitch[, roll])") from None
    rows = []
    for n, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or all(not c.strip() for c in row) or row[0].lstrip().startswith("#"):
            continue
        if len(row) not in (3, 4):
            raise PoseImportError(f"{path}: line {n}: expected name, yaw, pitch[, roll], got {len(row)} fields")
        try:
            values = [float(c) for c in row[1:]]
        except ValueError:
            if not rows and n == 1:     # a header line
                continue
            raise PoseImportError(f"{path}: line {n}: {_short(row[1:])} are not numbers") from None
        rows.append((row[0].strip(), values))
        if len(rows) > MAX_POSES:
            raise PoseImportError(f"{path}: more than the limit of {MAX_POSES} lines")
    if not rows:
        raise PoseImportError(f"{path}: no poses (expected CSV lines: name, yaw, pitch[, roll])")
    return rows


def read_poses(src, fmt: str, yaw_zero: Optional[str] = None, degrees: bool = False,
               elevation: bool = False) -> PoseTable:
    """The poses of `src` in format `fmt` (eg3d, gram, angles)."""
    if fmt not in FORMATS:
        raise PoseImportError(f"--format {fmt}: expected one of {', '.join(FORMATS)}")
    yaw_zero = yaw_zero or DEFAULT_YAW_ZERO[fmt]
    if yaw_zero not in YAW_ZERO:
        raise PoseImportError(f"--yaw-zero {yaw_zero}: expected +x or +z")
    if (degrees or elevation) and fmt != "angles":
        raise PoseImportError(f"--{'degrees' if degrees else 'elevation'} applies to --format angles only "
                              f"({fmt} files have fixed units)")
    if fmt == "eg3d":
        return read_eg3d(src, yaw_zero)
    if fmt == "gram":
        return read_gram(src, yaw_zero)
    return read_angles(src, yaw_zero, degrees, elevation)


# ----------------------------------------------------------------------------------------------
# Writing into a dataset

@dataclass
class ImportResult:
    path: str                 # the dataset.json written (or the zip)
    written: int              # images given camera_angles
    extra: List[str]          # source names with no image
    centered_by: Optional[float]
    table: PoseTable


def _first(names: List[str]) -> str:
    head = ", ".join(shown(n) for n in names[:SHOW_FIRST])
    return head + (f", ... ({len(names) - SHOW_FIRST} more)" if len(names) > SHOW_FIRST else "")


def match_poses(table: PoseTable, images: List[str], prefix: str) -> Tuple[Dict[str, list], List[str]]:
    """{image path: [yaw, pitch, roll]} for every image, and the source names with no image.
    Names match as training/dataset.py matches json keys (no extension, no leading "<prefix>/").
    An image without a pose is a PoseImportError (counts and the first few)."""
    by_key: Dict[str, str] = {}
    for name in table.angles:
        key = match_key(name, prefix)
        if key in by_key:
            raise PoseImportError(f"{table.source}: {shown(name)} and {shown(by_key[key])} name the same image")
        by_key[key] = name
    out, used = {}, set()
    missing = []
    for rel in images:
        name = by_key.get(match_key(rel, prefix))
        if name is None:
            missing.append(rel)
        else:
            out[rel] = list(table.angles[name])
            used.add(name)
    if missing:
        raise PoseImportError(f"{len(missing)} of {len(images)} images have no pose in {table.source}: "
                              f"{_first(missing)}; remove them from the dataset (or add their poses) first")
    extra = [n for n in table.angles if n not in used]
    return out, extra


def _holds_eg3d_cameras(labels) -> bool:
    """True for EG3D's camera labels: [[name, [25 numbers]], ...] or {name: [25 numbers]}."""
    entries = labels.values() if isinstance(labels, dict) else (
        [e[1] for e in labels if isinstance(e, list) and len(e) == 2] if isinstance(labels, list) else [])
    first = next(iter(entries), None)
    return isinstance(first, list) and len(first) == 25


def _merged_json(old: Optional[bytes], where: str, angles: Dict[str, list], force: bool) -> str:
    meta = {}
    if old is not None:
        try:
            meta = json.loads(old.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise PoseImportError(f"{where}: the existing {JSON_NAME} is not valid JSON; fix or remove it first") from None
        if not isinstance(meta, dict):
            raise PoseImportError(f"{where}: the existing {JSON_NAME} is not a JSON object; fix or remove it first")
        if _holds_eg3d_cameras(meta.get("labels")):
            # EG3D keeps its cameras under "labels"; trigan reads "labels" as class labels and
            # would refuse the dataset, so keeping them would leave a dataset that does not open
            raise PoseImportError(f"{where}: its \"labels\" are EG3D's cameras (25 numbers per image), not "
                                  f"class labels; move that {JSON_NAME} aside (it is the --format eg3d SRC) and run again")
        if meta.get("camera_angles") and not force:
            raise PoseImportError(f"{where}: already has camera_angles ({len(meta['camera_angles'])} entries); "
                                  f"--force replaces them")
    meta["camera_angles"] = angles
    return json.dumps(meta)


def import_poses(table: PoseTable, data, force: bool = False) -> ImportResult:
    """Write `table` as the camera_angles of dataset `data` (a folder, a zip, or a dataset.json path).

    Other keys of an existing dataset.json are kept. Folder / json: the json is replaced atomically.
    Zip: a new zip (every other entry copied unchanged, dataset.json replaced or added at the root)
    is written beside it and renamed over it when complete. Existing camera_angles need `force`."""
    data = Path(data)
    if data.suffix.lower() == ".json" and not data.is_dir():
        return _import_into_json(table, data, force)
    try:
        files = open_files(data)
    except TriganError as exc:
        raise PoseImportError(str(exc)) from None
    try:
        index = build_index(files)
        if index.unsafe:     # as resize and pack do: a name that leaves the dataset stops everything
            raise PoseImportError(f"{index.unsafe[0].path}: {index.unsafe[0].message}")
        if not index.images:
            raise PoseImportError(f"{data}: no images found (expected a dataset folder or zip)")
        angles, extra = match_poses(table, index.images, dataset_name(data))
        json_rel = index.json_path or JSON_NAME
        old = files.read(index.json_path, limit=MAX_JSON_BYTES) if index.json_path else None
        text = _merged_json(old, f"{data}/{json_rel}", angles, force)
    finally:
        files.close()
    if files.kind == "folder":
        target = data / json_rel
        atomic_write_text(target, text)
    else:
        target = data
        _rewrite_zip(data, json_rel, text)
    return ImportResult(str(target), len(angles), extra, None, table)


def _import_into_json(table: PoseTable, path: Path, force: bool) -> ImportResult:
    """No images to match against: the source names are the keys."""
    old = _read_bounded(path, MAX_JSON_BYTES) if path.exists() else None
    text = _merged_json(old, str(path), {k: list(v) for k, v in table.angles.items()}, force)
    atomic_write_text(path, text)
    return ImportResult(str(path), len(table.angles), [], None, table)


def _rewrite_zip(path: Path, json_rel: str, text: str) -> None:
    """Copy every entry but `json_rel` (same names, order, dates, compression), then the new json;
    renamed over `path` only when complete."""
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    except OSError as exc:    # a read-only folder, no permission
        raise PoseImportError(f"{path}: cannot write beside it ({short_reason(exc)}); it is unchanged") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w") as dst:
            for info in src.infolist():
                if info.filename == json_rel:
                    continue
                with src.open(info) as fin, dst.open(_copy_info(info), "w", force_zip64=True) as fout:
                    shutil.copyfileobj(fin, fout, 1 << 20)
            out = zipfile.ZipInfo(json_rel, date_time=(1980, 1, 1, 0, 0, 0))
            out.external_attr = 0o644 << 16
            out.compress_type = zipfile.ZIP_DEFLATED
            dst.writestr(out, text)
        os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise PoseImportError(f"{path}: cannot rewrite the zip ({short_reason(exc)}); it is unchanged") from None
    finally:
        if tmp.exists():
            tmp.unlink()


def _copy_info(info: zipfile.ZipInfo) -> zipfile.ZipInfo:
    out = zipfile.ZipInfo(info.filename, date_time=info.date_time)
    out.compress_type, out.external_attr, out.comment = info.compress_type, info.external_attr, info.comment
    return out


def describe(table: PoseTable) -> List[str]:
    """Report lines: count, fov (mean, min, max; a warning when it varies), radius."""
    lines = [f"read {len(table.angles)} poses from {table.source}"]
    if table.fov is not None and table.fov.size:
        fov = table.fov
        lines.append(f"fov {fov.mean():.4g} degrees (min {fov.min():.4g}, max {fov.max():.4g}; "
                     f"from the intrinsics: 2 atan(1 / (2 fx)))")
        if fov.max() - fov.min() > FOV_TOLERANCE_DEG:
            lines.append(f"warning: the fov differs between images by {fov.max() - fov.min():.3g} degrees "
                         f"(more than {FOV_TOLERANCE_DEG}); trigan trains with one fov (camera.fov)")
    if table.radius is not None and table.radius.size:
        r = table.radius
        lines.append(f"radius {r.mean():.4g} (min {r.min():.4g}, max {r.max():.4g})")
    return lines


def format_angle(rad: float) -> str:
    return f"{math.degrees(rad):+.2f} degrees ({rad:+.4f} rad)"


__all__ = ["PoseImportError", "PoseTable", "ImportResult", "FORMATS", "DEFAULT_YAW_ZERO", "wrap_angle",
           "yaw_center", "yaw_concentration", "center_yaws", "eg3d_pose", "read_eg3d", "gram_pose_from_angle",
           "gram_pose_from_npy", "read_gram", "plain_pose", "read_angles", "read_poses", "match_poses",
           "import_poses", "describe", "format_angle"]
