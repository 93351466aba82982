"""What an inversion leaves on disk, and reading its record back.

`save_inversion` writes, for a result named NAME (the target image's stem):

* NAME.inversion.npz: the record. Plain arrays only (no pickles), every value checked when read:
    format "trigan-inversion", version 1, name (str), ws float32 [1, num_ws, w_dim],
    class_index int64 (-1: unconditional), pose float64 [10] (yaw, pitch, radius, fov, look_at xyz,
    pivot xyz), pose_given bool, noise.<buffer name> float32 [R, R] (one per synthesis noise buffer
    the fit changed, named as in G.state_dict()), reconstruction / reconstruction_latent uint8
    [R, R, 3] (the fit's final and latent-only renders at the pose, as the figure shows them),
    metrics_json, settings_json, model_json (str: the fit metrics, the InversionSettings, and the
    model's path, size, sha256 and shape).
* NAME.pti.ckpt: the tuned G_ema as a trigan checkpoint (core.checkpoint.save_checkpoint, loads with
  weights_only), only when pivotal tuning ran. Its noise buffers already hold the found noise.
* NAME.png: a figure, one row: input | reconstruction | the latent at yaw +60, +120, 180, -90
  degrees from the found pose (on the tuned model when there is one).
* NAME-orbit.mp4: a full turn around the found pose (core.exports' renderer, core.video's writer).
* NAME.ply: the coloured mesh of the latent (core.mesh), when its density has a surface.

Every name is known before any work (`planned_outputs`), existing files are refused unless force,
and each file appears atomically (written beside its final name, then renamed).

`load_inversion(path, G=None)` reads a record back as an `InversionRecord`. The file is hostile until
checked: it must be a regular file of bounded size and a zip of .npy members whose headers are read
and bounded (no object dtype, no huge shape) before any array is allocated; then `np.load(...,
allow_pickle=False)` reads them and every key, dtype, shape and value is checked, against the model
too when G is given. Anything wrong is one InversionError naming the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Union

import numpy as np
import torch

from trigan.core import mesh as M
from trigan.core.atomic import atomic_path
from trigan.core.cameras import Pose
from trigan.core.checkpoint import save_checkpoint
from trigan.core.config import SavedConfig
from trigan.core.errors import TriganError
from trigan.core.exports import ViewRenderer, latent_mesh, video_frames
from trigan.core.images import resize, save_png, tile, to_uint8
from trigan.core.limits import MAX_CLASSES, MAX_IMAGE_SIDE
from trigan.core.output_paths import refuse_existing
from trigan.core.read_budget import require_regular_file
from trigan.core.trajectories import Trajectory, make_trajectory
from trigan.core.video import VideoWriter
from trigan.training.inversion import generator_with
from trigan.training.inversion_inputs import InversionError

PathLike = Union[str, os.PathLike]
Progress = Optional[Callable[[str, int, int], None]]   # (output kind, done, total)

FORMAT = "trigan-inversion"
VERSION = 1
NOVEL_YAWS_DEG = (60.0, 120.0, 180.0, -90.0)
FIGURE_PAD = 2                    # black pixels between the figure's cells
ORBIT_FPS = 30.0
MESH_RESOLUTION = 256             # grid samples per axis, `trigan mesh`'s default
POSE_FIELDS = 10                  # yaw, pitch, radius, fov, look_at xyz, pivot xyz

# Bounds of a record file. A real one is a few MB (noise maps of a 512^2 tri-plane model are 1 MB
# each); these leave room and keep a hostile file from allocating gigabytes.
MAX_FILE_BYTES = 256 << 20
MAX_MEMBERS = 256
MAX_ARRAY_BYTES = 64 << 20        # one 4096^2 float32 noise map
MAX_TOTAL_BYTES = 512 << 20       # all arrays together, decoded
MAX_NUM_WS, MAX_W_DIM = 1024, 8192
MAX_JSON_CHARS = 1 << 20
MAX_NAME_CHARS = 200
NOISE_PREFIX = "noise."
FIXED_KEYS = ("format", "version", "name", "ws", "class_index", "pose", "pose_given", "reconstruction",
              "reconstruction_latent", "metrics_json", "settings_json", "model_json")
REQUIRED_KEYS = ("format", "version", "name", "ws", "class_index", "pose", "pose_given", "metrics_json",
                 "settings_json", "model_json")


# --------------------------------------------------------------------------------------------------
# Names

def check_output_name(name: str, what: str = "name") -> str:
    """A name that becomes file names in the output folder: printable, no folder part, not hidden."""
    name = str(name)
    if (not name or len(name) > MAX_NAME_CHARS or not name.isprintable() or "/" in name or "\\" in name
            or name.startswith(".")):
        raise InversionError(f"{what} {name[:60]!r}: expected a file stem (printable, at most {MAX_NAME_CHARS} "
                             "characters, no folder part, not starting with '.')")
    return name


def planned_outputs(out_dir: PathLike, name: str, *, tuned: bool, video: bool = True,
                    mesh: bool = True) -> Dict[str, Path]:
    """Every file `save_inversion` writes for `name`, by kind (npz, ckpt, figure, video, mesh), known
    before the inversion starts so that the command refuses existing ones up front."""
    out = Path(out_dir)
    name = check_output_name(name)
    paths = {"npz": out / f"{name}.inversion.npz"}
    if tuned:
        paths["ckpt"] = out / f"{name}.pti.ckpt"
    paths["figure"] = out / f"{name}.png"
    if video:
        paths["video"] = out / f"{name}-orbit.mp4"
    if mesh:
        paths["mesh"] = out / f"{name}.ply"
    return paths


# --------------------------------------------------------------------------------------------------
# Saving

def save_inversion(result, G, out_dir: PathLike, *, model_path: Optional[PathLike], video: bool = True,
                   mesh: bool = True, force: bool = False, progress: Progress = None, target=None,
                   config: Optional[Any] = None, mesh_resolution: int = MESH_RESOLUTION,
                   log: Optional[Callable[[str], None]] = None) -> Dict[str, Path]:
    """Write the outputs of one InversionResult (see the module docstring); returns the paths written,
    by kind. `target` (a training.inversion_inputs.Target or an image [3, R, R] in [-1, 1]) is the
    figure's first cell (grey when not given). `config` is the model's SavedConfig (or training
    Config) for the tuned checkpoint; by default the generator's own model config. A mesh that finds
    no surface is left out (and `log` told) rather than failing the other outputs. G is not modified."""
    tuned = result.tuned_state is not None
    paths = planned_outputs(out_dir, result.target_name, tuned=tuned, video=video, mesh=mesh)
    refuse_existing(paths.values(), force)
    stale = planned_outputs(out_dir, result.target_name, tuned=True, video=False, mesh=False)["ckpt"]
    if not tuned and log is not None and os.path.lexists(stale):
        # e.g. tuning was planned but Ctrl-C came first: the earlier file is not this fit's
        log(f"{stale}: left as it was; it is not this fit's (no tuning ran)")
    report = progress or (lambda *_: None)
    written: Dict[str, Path] = {}
    written["npz"] = write_record(paths["npz"], result, G, model_path)
    report("npz", 1, 1)
    if tuned:
        saved = config if config is not None else SavedConfig(model=G.cfg)
        written["ckpt"] = save_checkpoint(paths["ckpt"], saved, result.tuned_state,
                                          progress={"source": f"inversion of {result.target_name}",
                                                    "inverted_from": str(model_path or "")},
                                          metrics={k: v for k, v in result.metrics.items()
                                                   if isinstance(v, (int, float)) and not isinstance(v, bool)})
        report("ckpt", 1, 1)
    with torch.no_grad():
        shown = generator_with(G, result, tuned=True).eval()
        ws = result.ws.to(shown.device)
        renderer = ViewRenderer(shown, resolution=result.reconstruction.shape[-1], psi=1.0, batch=1)
        field_ = renderer.field(ws)
        written["figure"] = save_figure(paths["figure"], result, renderer, field_, target)
        report("figure", 1, 1)
        if video:
            written["video"] = save_orbit(paths["video"], renderer, field_, result.pose, force,
                                          lambda done, total: report("video", done, total))
        if mesh:
            try:
                written["mesh"] = latent_mesh(shown, ws, paths["mesh"], "ply", resolution=mesh_resolution,
                                             progress=lambda done, total: report("mesh", done, total),
                                             overwrite=force).path
            except M.NoSurfaceError as exc:
                if log is not None:
                    log(f"{paths['mesh']}: not written: {exc}")
    return written


def pose_array(pose: Pose) -> np.ndarray:
    return np.array([pose.yaw, pose.pitch, pose.radius, pose.fov, *pose.look_at, *pose.pivot], dtype=np.float64)


def pose_from_array(values: np.ndarray) -> Pose:
    v = [float(x) for x in values]
    return Pose(yaw=v[0], pitch=v[1], radius=v[2], fov=v[3], look_at=tuple(v[4:7]), pivot=tuple(v[7:10]))


def model_info(G, model_path: Optional[PathLike]) -> dict:
    """What the record says about the model it was fitted on: the file (path, size, sha256) and the
    shape of its latent space, so that a record is matched to the right model."""
    info = {"name": G.cfg.name, "img_resolution": int(G.cfg.img_resolution), "num_ws": int(G.mapping.num_ws),
            "w_dim": int(G.mapping.w_dim), "c_dim": int(G.c_dim), "path": None, "size": None, "sha256": None}
    if model_path is not None:
        info["path"] = str(model_path)
        if os.path.isfile(model_path):
            info["size"], info["sha256"] = file_digest(model_path)
    return info


_DIGESTS: Dict[tuple, tuple] = {}


def file_digest(path: PathLike) -> tuple:
    """(size, sha256 hex) of a file; remembered while its size and mtime stay the same, so inverting
    many images into one large model hashes it once."""
    info = os.stat(path)
    key = (os.path.abspath(path), info.st_size, info.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _DIGESTS[key] = (info.st_size, digest.hexdigest())
    return _DIGESTS[key]


def _json_safe(value):
    """Settings and metrics as JSON: tuples become lists, non-finite floats strings (JSON has none)."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    return str(value)


def _image_uint8(image: torch.Tensor) -> np.ndarray:
    """[3, R, R] in [-1, 1] -> uint8 [R, R, 3] (core.images.to_uint8's mapping)."""
    return to_uint8(image.detach().float().cpu()[None])[0]


def record_arrays(result, G, model_path: Optional[PathLike]) -> Dict[str, np.ndarray]:
    """The npz members of a result (module docstring)."""
    settings = result.settings
    settings = dataclasses.asdict(settings) if dataclasses.is_dataclass(settings) else dict(settings or {})
    arrays = {
        "format": np.array(FORMAT), "version": np.array(VERSION, dtype=np.int64),
        "name": np.array(check_output_name(result.target_name)),
        "ws": result.ws.detach().float().cpu().numpy().astype(np.float32),
        "class_index": np.array(-1 if result.class_index is None else int(result.class_index), dtype=np.int64),
        "pose": pose_array(result.pose), "pose_given": np.array(bool(result.pose_given)),
        "reconstruction": _image_uint8(result.reconstruction),
        "reconstruction_latent": _image_uint8(result.reconstruction_latent),
        "metrics_json": np.array(json.dumps(_json_safe(dict(result.metrics)))),
        "settings_json": np.array(json.dumps(_json_safe(settings))),
        "model_json": np.array(json.dumps(model_info(G, model_path))),
    }
    for buffer, noise in (result.noise or {}).items():
        arrays[NOISE_PREFIX + buffer] = noise.detach().float().cpu().numpy().astype(np.float32)
    return arrays


def write_record(path: PathLike, result, G, model_path: Optional[PathLike]) -> Path:
    """NAME.inversion.npz, atomically (uncompressed: the noise maps do not compress)."""
    path = Path(path)
    arrays = record_arrays(result, G, model_path)
    with atomic_path(path, keep_suffix=True) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    return path


def novel_poses(pose: Pose):
    """The figure's four novel views: the found pose turned by NOVEL_YAWS_DEG."""
    return [pose.with_values(yaw=pose.yaw + math.radians(d)) for d in NOVEL_YAWS_DEG]


def figure_cells(result, renderer: ViewRenderer, field_, target=None) -> np.ndarray:
    """uint8 [6, R, R, 3]: input, reconstruction, the four novel views."""
    R = renderer.resolution
    if target is None:
        first = np.full((R, R, 3), 128, dtype=np.uint8)   # no input given: a neutral grey cell
    else:
        image = getattr(target, "image", target)
        first = _image_uint8(image)
        if first.shape[:2] != (R, R):
            first = resize(first, R, R)
    views = Trajectory.from_poses("novel", novel_poses(result.pose))
    novel = list(renderer.render(field_, [0] * len(views), views, range(len(views))))
    return np.stack([first, _image_uint8(result.reconstruction), *novel])


def save_figure(path: PathLike, result, renderer: ViewRenderer, field_, target=None) -> Path:
    """NAME.png: the cells in one row, FIGURE_PAD black pixels apart: [R, 6R + 5 pad, 3]."""
    cells = figure_cells(result, renderer, field_, target)
    return save_png(tile(cells, 1, len(cells), pad=FIGURE_PAD), path)


def save_orbit(path: PathLike, renderer: ViewRenderer, field_, pose: Pose, force: bool = False,
               progress: Optional[Callable[[int, int], None]] = None) -> Path:
    """NAME-orbit.mp4: `trigan render --vis video --trajectory orbit` of the latent around its pose."""
    traj = make_trajectory("orbit", pose, None, ORBIT_FPS)
    with VideoWriter(path, ORBIT_FPS, "mp4", overwrite=force) as video:
        for k, frame in enumerate(video_frames(renderer, field_, traj)):
            video.append(frame)
            if progress is not None:
                progress(k + 1, len(traj))
    return video.path




# --------------------------------------------------------------------------------------------------
# Reading

@dataclass
class InversionRecord:
    """An inversion read back from NAME.inversion.npz (see the module docstring)."""

    path: str
    name: str
    ws: torch.Tensor                      # [1, num_ws, w_dim] float32, CPU
    class_index: Optional[int]
    pose: Pose
    pose_given: bool
    noise: Dict[str, torch.Tensor]        # buffer name -> [R, R] float32, CPU
    metrics: Dict[str, Any]
    settings: Dict[str, Any]
    model: Dict[str, Any]                 # name, img_resolution, num_ws, w_dim, c_dim, path, size, sha256
    reconstruction: Optional[np.ndarray] = None          # uint8 [R, R, 3]
    reconstruction_latent: Optional[np.ndarray] = None   # uint8 [R, R, 3]
    # A record holds no weights: the tuned ones are NAME.pti.ckpt, the model to render it on. Kept so
    # that code taking "a result or a record" (training.inversion.generator_with) reads both alike.
    tuned_state: None = field(default=None, repr=False)

    @property
    def target_name(self) -> str:
        return self.name


def load_inversion(path: PathLike, G=None) -> InversionRecord:
    """Read and check NAME.inversion.npz; with G, also that it fits G's latent space (num_ws, w_dim,
    classes, noise buffers). Every problem is one InversionError naming the file."""
    name = str(path)
    arrays = read_checked_npz(path, name)
    record = record_from_arrays(arrays, name)
    if G is not None:
        check_record_fits(record, G)
    return record


def _member_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str):
    """(shape, dtype) of one .npy member, from its header alone (nothing allocated for the data)."""
    with zf.open(info) as f:
        major, _minor = np.lib.format.read_magic(f)
        if major == 1:
            shape, _fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif major == 2:
            shape, _fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"npy format version {major} is not one trigan writes")
    return tuple(int(s) for s in shape), np.dtype(dtype)


def read_checked_npz(path: PathLike, name: str) -> Dict[str, np.ndarray]:
    """The arrays of an npz whose members were bounded from their headers first (see the module
    docstring); then read with np.load(allow_pickle=False)."""
    size = require_regular_file(path, name, expected="a NAME.inversion.npz from trigan invert", error=InversionError)
    if size > MAX_FILE_BYTES:
        raise InversionError(f"{name}: {size} bytes; an inversion record is at most {MAX_FILE_BYTES >> 20} MiB")
    total = 0
    try:
        with zipfile.ZipFile(path) as zf:
            members = zf.infolist()
            if len(members) > MAX_MEMBERS:
                raise InversionError(f"{name}: {len(members)} arrays; an inversion record has at most {MAX_MEMBERS}")
            for info in members:
                key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                if not info.filename.endswith(".npy") or not (key in FIXED_KEYS or key.startswith(NOISE_PREFIX)):
                    raise InversionError(f"{name}: unexpected member {info.filename[:80]!r}; not an inversion record")
                shape, dtype = _member_header(zf, info, name)
                if dtype.hasobject:
                    raise InversionError(f"{name}: array {key!r} holds Python objects (a pickle); refused")
                nbytes = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize if shape else dtype.itemsize
                if nbytes > MAX_ARRAY_BYTES:
                    raise InversionError(f"{name}: array {key!r} of shape {shape[:6]} is too large "
                                         f"(over {MAX_ARRAY_BYTES >> 20} MiB)")
                total += nbytes
                if total > MAX_TOTAL_BYTES:
                    raise InversionError(f"{name}: its arrays add up to over {MAX_TOTAL_BYTES >> 20} MiB")
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except InversionError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError, KeyError,
            NotImplementedError, RuntimeError) as exc:
        detail = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise InversionError(f"{name}: not a readable inversion record ({detail})") from None


def _scalar(arrays, key: str, kind: str, name: str):
    """A 0-d member of dtype kind ('U' text, 'i' integer, 'b' bool)."""
    value = arrays[key]
    ok_kind = value.dtype.kind in (("i", "u") if kind == "i" else (kind,))
    if value.shape != () or not ok_kind:
        raise InversionError(f"{name}: {key} is {value.dtype} {value.shape}; expected a single "
                             f"{ {'U': 'string', 'i': 'integer', 'b': 'bool'}[kind] }")
    return value.item()


def _json(arrays, key: str, name: str) -> dict:
    text = _scalar(arrays, key, "U", name)
    if len(text) > MAX_JSON_CHARS:
        raise InversionError(f"{name}: {key} is over {MAX_JSON_CHARS} characters")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InversionError(f"{name}: {key} is not valid JSON ({str(exc)[:80]})") from None
    if not isinstance(value, dict):
        raise InversionError(f"{name}: {key} is a JSON {type(value).__name__}; expected an object")
    return value


def _float_array(arrays, key: str, name: str, ndim: int) -> np.ndarray:
    value = arrays[key]
    if value.dtype.kind != "f" or value.ndim != ndim:
        raise InversionError(f"{name}: {key} is {value.dtype} of shape {value.shape}; expected "
                             f"{ndim}-d floating-point values")
    if not np.isfinite(value).all():
        raise InversionError(f"{name}: {key} holds non-finite values (NaN or infinity)")
    return value


def _image(arrays, key: str, name: str) -> Optional[np.ndarray]:
    if key not in arrays:
        return None
    value = arrays[key]
    if (value.dtype != np.uint8 or value.ndim != 3 or value.shape[2] != 3 or value.shape[0] != value.shape[1]
            or not 1 <= value.shape[0] <= MAX_IMAGE_SIDE):
        raise InversionError(f"{name}: {key} is {value.dtype} of shape {value.shape}; expected uint8 [R, R, 3]")
    return value


def record_from_arrays(arrays: Dict[str, np.ndarray], name: str) -> InversionRecord:
    """An InversionRecord from checked npz members; shapes and values bounded on their own (not yet
    against a model: check_record_fits)."""
    missing = [k for k in REQUIRED_KEYS if k not in arrays]
    if missing:
        raise InversionError(f"{name}: lacks {missing[0]!r}; not a complete inversion record from trigan invert")
    if _scalar(arrays, "format", "U", name) != FORMAT:
        raise InversionError(f"{name}: format is not {FORMAT!r}; not an inversion record")
    version = _scalar(arrays, "version", "i", name)
    if not 1 <= version <= VERSION:
        raise InversionError(f"{name}: record version {version}; this trigan reads versions 1..{VERSION}")
    stem = check_output_name(_scalar(arrays, "name", "U", name), f"{name}: name")
    ws = _float_array(arrays, "ws", name, 3)
    if ws.shape[0] != 1 or not 1 <= ws.shape[1] <= MAX_NUM_WS or not 1 <= ws.shape[2] <= MAX_W_DIM:
        raise InversionError(f"{name}: ws has shape {ws.shape}; expected [1, num_ws, w_dim]")
    class_index = _scalar(arrays, "class_index", "i", name)
    if not -1 <= class_index < MAX_CLASSES:
        raise InversionError(f"{name}: class_index {class_index}; expected -1 (none) or 0..{MAX_CLASSES - 1}")
    pose_values = _float_array(arrays, "pose", name, 1)
    if pose_values.shape != (POSE_FIELDS,):
        raise InversionError(f"{name}: pose has shape {pose_values.shape}; expected [{POSE_FIELDS}]")
    try:
        pose = pose_from_array(pose_values)
    except TriganError as exc:
        raise InversionError(f"{name}: {exc}") from None
    noise = {}
    for key, value in arrays.items():
        if key.startswith(NOISE_PREFIX):
            value = _float_array(arrays, key, name, 2)
            if value.shape[0] != value.shape[1] or value.shape[0] > MAX_IMAGE_SIDE:
                raise InversionError(f"{name}: {key} has shape {value.shape}; expected a square noise map")
            noise[key[len(NOISE_PREFIX):]] = torch.from_numpy(value.astype(np.float32))
    return InversionRecord(
        path=name, name=stem, ws=torch.from_numpy(ws.astype(np.float32)),
        class_index=None if class_index < 0 else int(class_index), pose=pose,
        pose_given=bool(_scalar(arrays, "pose_given", "b", name)), noise=noise,
        metrics=_json(arrays, "metrics_json", name), settings=_json(arrays, "settings_json", name),
        model=_json(arrays, "model_json", name), reconstruction=_image(arrays, "reconstruction", name),
        reconstruction_latent=_image(arrays, "reconstruction_latent", name))


def check_record_fits(record: InversionRecord, G) -> None:
    """InversionError unless the record's latent fits G: ws [1, num_ws, w_dim], a class of G when G is
    conditional (none when it is not), noise maps of G's own buffers and shapes."""
    expected = (1, int(G.mapping.num_ws), int(G.mapping.w_dim))
    if tuple(record.ws.shape) != expected:
        raise InversionError(f"{record.path}: ws has shape {tuple(record.ws.shape)} but this model takes "
                             f"{list(expected)}: the record was fitted on another model")
    if G.c_dim == 0 and record.class_index is not None:
        raise InversionError(f"{record.path}: class {record.class_index}, but this model is unconditional")
    if G.c_dim > 0 and (record.class_index is None or record.class_index >= G.c_dim):
        raise InversionError(f"{record.path}: class {record.class_index} does not fit this model's "
                             f"{G.c_dim} classes (0..{G.c_dim - 1})")
    buffers = dict(G.named_buffers())
    for key, value in record.noise.items():
        own = buffers.get(key)
        if own is None or not key.endswith("noise_const"):
            raise InversionError(f"{record.path}: noise map {key[:80]!r} is not a noise buffer of this model")
        if tuple(own.shape) != tuple(value.shape):
            raise InversionError(f"{record.path}: noise map {key} is {tuple(value.shape)}, this model's is "
                                 f"{tuple(own.shape)}")
