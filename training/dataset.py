"""Image datasets: a zip or a folder of square images with an optional `dataset.json`.

The format (EpiGRAF/3DGP, see docs/datasets.md):

* Every file whose extension Pillow can open is an image, sorted by its relative path (posix
  separators); hidden files and `__MACOSX/` are skipped. Files named `<stem>_depth.png` are depth
  maps of the image `<stem>.<ext>` beside them, not images.
* At most one `dataset.json`, anywhere, with `camera_angles` ({path: [yaw, pitch, roll]} radians)
  and `labels` ({path: int} or StyleGAN's [[path, int], ...]); other top-level keys are kept as
  `meta`. Keys match images after stripping the extension and a leading "<dataset name>/" (the zip
  name without .zip, or the folder name). Without camera_angles the angles are zeros.
* Depth maps are 8- or 16-bit PNGs; a 3-D array uses channel 0; 8-bit values are multiplied by 256
  so that every depth is on the 16-bit scale 0..65535.
* Mirroring doubles the dataset: item i >= N is item i - N flipped left-right with its yaw negated.

`ImageDataset` checks the index (listing, json, labels, angles) when it opens and raises a one-line
`DatasetError` on the first problem; image contents are checked when an image is read.
`validate_dataset` reads every file and lists every problem instead of raising.
"""

from __future__ import annotations

import io
import json
import math
import os
import posixpath
import sys
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from trigan.core.errors import TriganError
from trigan.core.limits import MAX_CLASSES, MAX_IMAGE_SIDE
from trigan.core.read_budget import open_without_blocking
from trigan.core.safe_paths import shown, unsafe_reason

DEPTH_SUFFIX = "_depth.png"
JSON_NAME = "dataset.json"
ANGLE_TOLERANCE = 1e-3            # radians beyond [-pi, pi] (yaw) and [0, pi] (pitch) still accepted
ZERO_COLUMN_NORM = 0.1            # a yaw or pitch column with a norm this small is "all zero"

# Bounds on sizes that come from the data, checked before anything of that size is allocated.
# Labels are class indices below MAX_CLASSES, and training images at most MAX_RESOLUTION pixels a
# side (core/limits.py says why).
MAX_RESOLUTION = MAX_IMAGE_SIDE
# Any image decoded (training or resize): 2^27 pixels (a 100-megapixel photo fits) is at most
# 384 MiB as RGB; checked from the header before decoding, so a decompression bomb (a tiny PNG
# that claims 100000 x 100000 pixels) never allocates. Pillow's own hard limit is larger (179M).
MAX_IMAGE_PIXELS = 2 ** 27
# One file read whole from a dataset (an image, a depth map): a zip entry's declared size (which
# Python's zipfile never reads past) or a file's size on disk, checked before reading.
MAX_FILE_BYTES = 1 << 30
# dataset.json: ImageNet's 1.28M images with angles and labels take ~200 MB of JSON.
MAX_JSON_BYTES = 512 << 20
# Nesting of the kept json keys (meta): a real dataset.json is 3 levels deep; a deep one makes any
# later json.dumps or OmegaConf conversion of it recurse past Python's stack.
MAX_META_DEPTH = 32


class DatasetError(TriganError):
    """A dataset (or dataset-tool argument) that cannot be used; the message names the file."""


@dataclass
class Problem:
    """One finding of validation."""

    path: str       # the file: a relative path inside the dataset, or the dataset's own path
    message: str    # what is wrong and what was expected
    severity: str   # "error" or "note" (a note is harmless, e.g. a grayscale image converted to RGB)

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


# ----------------------------------------------------------------------------------------------
# Files: a zip or a folder behind one small interface.

_IMAGE_EXTENSIONS: Optional[frozenset] = None


def image_extensions() -> frozenset:
    """Lower-case extensions (with the dot) of the formats Pillow can open."""
    global _IMAGE_EXTENSIONS
    if _IMAGE_EXTENSIONS is None:
        Image.init()
        _IMAGE_EXTENSIONS = frozenset(ext.lower() for ext, fmt in Image.registered_extensions().items()
                                      if fmt in Image.OPEN)
    return _IMAGE_EXTENSIONS


def is_depth_name(rel: str) -> bool:
    return rel.lower().endswith(DEPTH_SUFFIX)


def is_image_name(rel: str) -> bool:
    return posixpath.splitext(rel)[1].lower() in image_extensions() and not is_depth_name(rel)


def depth_name(image_rel: str) -> str:
    """The depth map that belongs to an image: `<stem>_depth.png`."""
    return posixpath.splitext(image_rel)[0] + DEPTH_SUFFIX


def _skipped(rel: str) -> bool:
    """Hidden files and macOS resource forks; an unsafe name (`..`, `/x`) is never skipped silently:
    the index reports it (see core/safe_paths.py)."""
    if unsafe_reason(rel) is not None:
        return False
    parts = rel.split("/")
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


# What reading one file of a dataset can raise when the file (not the program) is at fault:
# ValueError (and FileTooLarge), OSError, a corrupt zip entry (bad CRC, bad deflate stream, a
# truncated entry, a compression method zipfile lacks).
_READ_ERRORS = (ValueError, OSError, zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, KeyError)


class FileTooLarge(ValueError):
    """A file bigger than the bound for its kind; its message says both sizes."""


def _check_size(size: int, limit: int) -> None:
    if size > limit:
        raise FileTooLarge(f"{size} bytes, more than the limit of {limit} bytes")


class _FolderFiles:
    kind = "folder"

    def __init__(self, path: Path):
        self.path = path

    def list(self) -> List[str]:
        out = []
        for root, dirs, files in os.walk(self.path):
            dirs.sort()
            rel_root = Path(root).relative_to(self.path).as_posix()
            for name in files:
                rel = name if rel_root == "." else f"{rel_root}/{name}"
                if not _skipped(rel):
                    out.append(rel)
        return sorted(out)

    def read(self, rel: str, limit: int = MAX_FILE_BYTES) -> bytes:
        """The bytes of a listed file (a plain relative name); never blocks on a pipe or a device,
        never reads more than `limit` bytes."""
        if unsafe_reason(rel) is not None:
            raise ValueError(f"unsafe path {shown(rel)}")
        with open_without_blocking(self.path / rel) as f:   # a pipe or a device: NotRegularFile (a ValueError)
            _check_size(os.fstat(f.fileno()).st_size, limit)
            data = f.read(limit + 1)        # the file may have grown since fstat
            _check_size(len(data), limit)
            return data

    def close(self) -> None:
        pass


class _ZipFiles:
    """A zip read lazily; each process opens its own handle (DataLoader workers fork or spawn)."""

    kind = "zip"

    def __init__(self, path: Path):
        self.path = path
        self._zip: Optional[zipfile.ZipFile] = None
        self._pid: Optional[int] = None

    def _handle(self) -> zipfile.ZipFile:
        if self._zip is None or self._pid != os.getpid():
            self._zip, self._pid = zipfile.ZipFile(self.path), os.getpid()
        return self._zip

    def list(self) -> List[str]:
        return sorted(i.filename for i in self._handle().infolist() if not i.is_dir() and not _skipped(i.filename))

    def read(self, rel: str, limit: int = MAX_FILE_BYTES) -> bytes:
        """The bytes of an entry, at most `limit`: the declared size is checked first, and zipfile
        never decompresses past it (a zip bomb stops at the size it admits)."""
        handle = self._handle()
        _check_size(handle.getinfo(rel).file_size, limit)
        return handle.read(rel)

    def close(self) -> None:
        if self._zip is not None and self._pid == os.getpid():
            self._zip.close()
        self._zip, self._pid = None, None

    def __getstate__(self):
        return {"path": self.path, "_zip": None, "_pid": None}


def open_files(path) -> "_FolderFiles | _ZipFiles":
    """The files of a dataset; DatasetError for a missing path or something that is neither."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder")
    if path.is_dir():
        return _FolderFiles(path)
    if not path.is_file():    # a pipe or a device would block or never end
        raise DatasetError(f"{path}: not a regular file, a zip or a folder")
    if not zipfile.is_zipfile(path):
        raise DatasetError(f"{path}: not a zip or a folder")
    files = _ZipFiles(path)
    try:
        files.list()
    except (zipfile.BadZipFile, OSError) as exc:
        raise DatasetError(f"{path}: not a readable zip ({short_reason(exc)})") from None
    return files


def dataset_name(path) -> str:
    """The prefix that json keys and image paths may carry: the zip name without .zip, or the folder name."""
    path = Path(path)
    return path.name[:-4] if path.name.lower().endswith(".zip") else path.name


def match_key(rel: str, prefix: str) -> str:
    """The key an image path or a json key is matched by: no extension, no leading "<prefix>/"."""
    key = posixpath.splitext(rel.replace("\\", "/"))[0]
    if prefix and key.startswith(prefix + "/"):
        key = key[len(prefix) + 1:]
    return key


def short_reason(exc: BaseException) -> str:
    """An exception's message on one line of at most 200 characters (a dataset problem's reason)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


# ----------------------------------------------------------------------------------------------
# Pixels

_GRAY_MODES = {"1": "1-bit", "L": "grayscale", "I": "32-bit grayscale", "F": "float grayscale",
               "I;16": "16-bit grayscale", "I;16B": "16-bit grayscale", "I;16L": "16-bit grayscale",
               "I;16N": "16-bit grayscale"}


def conversion_note(image) -> Optional[str]:
    """What reading does to an image that is not plain RGB (None for RGB)."""
    mode = image.mode
    if mode == "RGB":
        return None
    if mode in _GRAY_MODES:
        return f"{_GRAY_MODES[mode]} (mode {mode}): converted to RGB"
    if _has_alpha(image):
        return f"has transparency (mode {mode}): composited on white"
    if mode == "P":
        return "palette image (mode P): converted to RGB"
    if mode == "CMYK":
        return "CMYK: converted to RGB"
    return f"mode {mode}: converted to RGB"


def _has_alpha(image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info)


def to_rgb(image):
    """A Pillow image as RGB: grayscale replicated, 16-bit scaled to 8, alpha composited on white."""
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        arr = np.asarray(image).astype(np.float64)
        if image.mode.startswith("I;16") or (image.mode == "I" and arr.max(initial=0) > 255):
            arr = arr / 257.0
        image = Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8), "L")
    if _has_alpha(image):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def open_image_header(data: bytes):
    """A Pillow image with only its header read; ValueError when it claims more than
    MAX_IMAGE_PIXELS, so that nothing of that size is ever decoded."""
    with warnings.catch_warnings():
        # Pillow warns above 89M pixels; the bound below is the one that applies here
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        image = Image.open(io.BytesIO(data))
    w, h = image.size
    if w * h > MAX_IMAGE_PIXELS:
        image.close()
        raise ValueError(f"{w}x{h} is {w * h} pixels, more than the limit of {MAX_IMAGE_PIXELS} "
                         f"(a decompression bomb, or an image far too large to use)")
    return image


def read_image(data: bytes):
    """Decode bytes into a fully loaded Pillow image (first frame); raises on any decoding problem,
    and before decoding when the header claims more than MAX_IMAGE_PIXELS."""
    image = open_image_header(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        image.load()
    return image


def depth_array(image) -> np.ndarray:
    """A depth map image -> float32 [H, W] on the 16-bit scale (8-bit values x 256; channel 0)."""
    if image.mode in ("1", "P"):
        image = image.convert("L")
    arr = np.asarray(image)
    if arr.ndim == 3:
        arr = arr[..., 0]
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) * 256
    if arr.dtype.kind in "ui" and arr.dtype.itemsize <= 4:
        return arr.astype(np.float32)
    raise ValueError(f"mode {image.mode} is not an 8- or 16-bit depth map")


# ----------------------------------------------------------------------------------------------
# The index: which files are images, depth maps, json; what the json says about each image.

@dataclass
class _Index:
    files: List[str]
    images: List[str]
    depth: Dict[str, str]                 # image -> its depth map
    json_path: Optional[str] = None
    meta: dict = field(default_factory=dict)
    angles: Optional[np.ndarray] = None   # [N, 3] float32, images order
    labels: Optional[np.ndarray] = None   # [N] int64
    problems: List[Problem] = field(default_factory=list)
    missing_depth: List[Problem] = field(default_factory=list)  # only an error when depth is used
    unsafe: List[Problem] = field(default_factory=list)   # entries whose names leave the dataset (also in problems)


def _is_number(v) -> bool:
    """A finite int or float (not a bool); a json integer too large for a float is not one."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


def _entries(table, field_name: str, json_path: str, problems: List[Problem]) -> Optional[List[Tuple[str, object]]]:
    """(key, value) pairs of a dict or of a [[key, value], ...] list; None (with a problem) otherwise."""
    if isinstance(table, dict):
        return list(table.items())
    if isinstance(table, list):
        out = []
        for k, item in enumerate(table):
            if not (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], str)):
                problems.append(Problem(json_path, f"{field_name}[{k}]: expected [path, value], got {_short(item)}", "error"))
                return None
            out.append((item[0], item[1]))
        return out
    problems.append(Problem(json_path, f"{field_name}: expected {{path: value}} or [[path, value], ...], "
                                       f"got {type(table).__name__}", "error"))
    return None


def _short(value) -> str:
    try:
        text = json.dumps(value) if not isinstance(value, str) else repr(value)
    except (RecursionError, ValueError):    # a deeply nested value, a number too long to print
        text = f"a {type(value).__name__}"
    return text if len(text) <= 60 else text[:57] + "..."


def _depth_exceeds(value, limit: int) -> bool:
    """Whether a parsed json value nests containers more than `limit` deep (without recursing)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def _match(entries, field_name: str, keys: Dict[str, str], prefix: str, json_path: str,
           problems: List[Problem]) -> Dict[str, object]:
    """Map json entries to image keys; duplicates are errors, entries with no image are notes."""
    out: Dict[str, object] = {}
    seen: Dict[str, str] = {}
    for raw_key, value in entries:
        # keys name files: the same rule as archive entries (backslashes are read as separators,
        # as match_key does, so a dataset.json written on Windows still matches)
        reason = unsafe_reason(str(raw_key).replace("\\", "/"))
        if reason is not None:
            problems.append(Problem(json_path, f"{field_name}: entry {shown(str(raw_key))} {reason}; "
                                               f"keys must be relative paths of images in the dataset", "error"))
            continue
        key = match_key(str(raw_key), prefix)
        if key in seen:
            problems.append(Problem(json_path, f"{field_name}: '{raw_key}' and '{seen[key]}' name the same image", "error"))
            continue
        seen[key] = raw_key
        if key not in keys:
            problems.append(Problem(json_path, f"{field_name}: entry '{raw_key}' has no image (ignored)", "note"))
            continue
        out[key] = value
    return out


_MISSING = object()


def _per_image(matched: Dict[str, object], field_name: str, images: List[str], prefix: str, json_path: str,
               problems: List[Problem]):
    """(index, key, value) for every image in order; an image without an entry is reported once
    and yields _MISSING."""
    for i, rel in enumerate(images):
        key = match_key(rel, prefix)
        if key not in matched:
            problems.append(Problem(rel, f"no {field_name} entry in {json_path}", "error"))
            yield i, key, _MISSING
        else:
            yield i, key, matched[key]


def _check_angles(table, keys: Dict[str, str], images: List[str], prefix: str, json_path: str,
                  problems: List[Problem]) -> Optional[np.ndarray]:
    entries = _entries(table, "camera_angles", json_path, problems)
    if entries is None:
        return None
    matched = _match(entries, "camera_angles", keys, prefix, json_path, problems)
    angles = np.zeros((len(images), 3), dtype=np.float64)
    ok = True
    for i, key, value in _per_image(matched, "camera_angles", images, prefix, json_path, problems):
        if value is _MISSING:
            ok = False
            continue
        if not (isinstance(value, (list, tuple)) and len(value) == 3 and all(_is_number(v) for v in value)):
            problems.append(Problem(json_path, f"camera_angles['{keys[key]}']: expected [yaw, pitch, roll] "
                                               f"(radians), got {_short(value)}", "error"))
            ok = False
            continue
        yaw, pitch, _ = value
        if abs(yaw) > math.pi + ANGLE_TOLERANCE:
            problems.append(Problem(json_path, f"camera_angles['{keys[key]}']: yaw {yaw:.4g} is outside [-pi, pi]", "error"))
            ok = False
        if not -ANGLE_TOLERANCE <= pitch <= math.pi + ANGLE_TOLERANCE:
            problems.append(Problem(json_path, f"camera_angles['{keys[key]}']: pitch {pitch:.4g} is outside [0, pi] "
                                               f"(polar angle from +Y; pi/2 is the horizon)", "error"))
            ok = False
        angles[i] = value
    if not ok:
        return None
    for col, name in ((0, "yaw"), (1, "pitch")):
        norm = float(np.linalg.norm(angles[:, col]))
        if norm <= ZERO_COLUMN_NORM:
            problems.append(Problem(json_path, f"camera_angles: every {name} is zero (column norm {norm:.3g} <= "
                                               f"{ZERO_COLUMN_NORM}); expected angles in radians", "error"))
            ok = False
    return angles.astype(np.float32) if ok else None


def _check_labels(table, keys: Dict[str, str], images: List[str], prefix: str, json_path: str,
                  problems: List[Problem]) -> Optional[np.ndarray]:
    entries = _entries(table, "labels", json_path, problems)
    if entries is None:
        return None
    matched = _match(entries, "labels", keys, prefix, json_path, problems)
    labels = np.zeros(len(images), dtype=np.int64)
    ok = True
    for i, key, value in _per_image(matched, "labels", images, prefix, json_path, problems):
        if value is _MISSING:
            ok = False
            continue
        if not (_is_number(value) and float(value).is_integer()):
            problems.append(Problem(json_path, f"labels['{keys[key]}']: expected an integer class index, got {_short(value)}", "error"))
            ok = False
        elif value < 0:
            problems.append(Problem(json_path, f"labels['{keys[key]}']: class {_short(value)} is negative", "error"))
            ok = False
        elif value >= MAX_CLASSES:
            problems.append(Problem(json_path, f"labels['{keys[key]}']: class {_short(value)} is out of range: labels are "
                                               f"class indices 0..{MAX_CLASSES - 1} (at most {MAX_CLASSES} classes)", "error"))
            ok = False
        else:
            labels[i] = int(value)
    return labels if ok else None


def build_index(files, require_camera_angles: bool = False) -> _Index:
    """List and classify the files and check dataset.json against the images (no image decoding)."""
    where = str(files.path)
    listing = []
    unsafe = []
    for rel in files.list():
        reason = unsafe_reason(rel)
        if reason is None:
            listing.append(rel)
        else:   # reported first (ImageDataset raises the first error), never used as a path
            unsafe.append(Problem(where, f"entry {shown(rel)} {reason}; every path in a dataset must be "
                                         f"relative and stay inside it (refused)", "error"))
    prefix = dataset_name(files.path)
    images = [rel for rel in listing if is_image_name(rel)]
    index = _Index(files=listing, images=images, depth={}, unsafe=unsafe)
    problems = index.problems
    problems.extend(unsafe)
    present = set(listing)
    for rel in listing:
        if is_depth_name(rel):
            continue
        if posixpath.basename(rel) == JSON_NAME:
            if index.json_path is None:
                index.json_path = rel
            else:
                problems.append(Problem(rel, f"a second {JSON_NAME} (the first is {index.json_path}); keep exactly one", "error"))
        elif not is_image_name(rel):
            problems.append(Problem(rel, "not an image (unknown extension; ignored)", "note"))
    if not images:
        problems.insert(len(unsafe), Problem(where, "no images found", "error"))
        return index
    # images and depth maps
    keys: Dict[str, str] = {}
    for rel in images:
        key = match_key(rel, prefix)
        if key in keys:
            problems.append(Problem(rel, f"same name as {keys[key]} apart from the extension; names must be unique", "error"))
        else:
            keys[key] = rel
        if depth_name(rel) in present:
            index.depth[rel] = depth_name(rel)
    if index.depth and len(index.depth) < len(images):
        index.missing_depth = [Problem(rel, f"no depth map {depth_name(rel)} (other images have one)", "error")
                               for rel in images if rel not in index.depth]
    owned = set(index.depth.values())
    for rel in listing:
        if is_depth_name(rel) and rel not in owned:
            problems.append(Problem(rel, "depth map without an image (ignored)", "note"))
    # dataset.json
    meta = _read_json(files, index.json_path, problems) if index.json_path is not None else None
    if meta is not None:
        index.meta = {k: v for k, v in meta.items() if k not in ("camera_angles", "labels")}
        _check_meta(index.meta, index.json_path, problems)
        if meta.get("camera_angles") is not None:
            index.angles = _check_angles(meta["camera_angles"], keys, images, prefix, index.json_path, problems)
        if meta.get("labels") is not None:
            index.labels = _check_labels(meta["labels"], keys, images, prefix, index.json_path, problems)
    if require_camera_angles and (meta is None or meta.get("camera_angles") is None):
        problems.append(Problem(index.json_path or where, "no camera_angles in dataset.json (the model takes its "
                                                          "cameras from the dataset poses)", "error"))
    return index


def _read_json(files, json_path: str, problems: List[Problem]) -> Optional[dict]:
    """dataset.json parsed, or None with a problem: too large, not UTF-8, not JSON, nested past
    Python's stack, numbers too long to convert, or not an object."""
    try:
        meta = json.loads(files.read(json_path, limit=MAX_JSON_BYTES).decode("utf-8"))
    except FileTooLarge as exc:
        problems.append(Problem(json_path, f"too large to be a dataset.json ({exc})", "error"))
    except UnicodeDecodeError as exc:
        problems.append(Problem(json_path, f"not valid JSON (not UTF-8: {short_reason(exc)})", "error"))
    except json.JSONDecodeError as exc:
        problems.append(Problem(json_path, f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})", "error"))
    except RecursionError:
        problems.append(Problem(json_path, "not a usable JSON file (nested too deeply to read); expected an "
                                           "object with camera_angles and/or labels", "error"))
    except _READ_ERRORS as exc:   # e.g. an integer of more than 4300 digits, a corrupt zip entry
        problems.append(Problem(json_path, f"not a usable JSON file ({short_reason(exc)})", "error"))
    else:
        if isinstance(meta, dict):
            return meta
        problems.append(Problem(json_path, f"expected a JSON object with camera_angles and/or labels, "
                                           f"got {type(meta).__name__}", "error"))
    return None


def _check_meta(meta: dict, json_path: str, problems: List[Problem]) -> None:
    """The kept keys reach the trainer (class_names becomes part of the model's config)."""
    for key, value in meta.items():
        if _depth_exceeds(value, MAX_META_DEPTH):
            problems.append(Problem(json_path, f"{shown(key)}: nested more than {MAX_META_DEPTH} levels deep", "error"))
    names = meta.get("class_names")
    if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        problems.append(Problem(json_path, f"class_names: expected a list of strings, got {_short(names)}", "error"))


def _first_error(problems: Sequence[Problem], dataset_path) -> Optional[DatasetError]:
    errors = [p for p in problems if p.severity == "error"]
    if not errors:
        return None
    p = errors[0]
    where = p.path if p.path == str(dataset_path) else f"{dataset_path}/{p.path}"
    more = f" (and {len(errors) - 1} more; see `trigan dataset check {dataset_path}`)" if len(errors) > 1 else ""
    return DatasetError(f"{where}: {p.message}{more}")


# ----------------------------------------------------------------------------------------------
# The dataset

class ImageDataset(torch.utils.data.Dataset):
    """Images (uint8 [3, H, W]) with camera angles, labels and optional depth; see the module doc.

    `use_labels=False` makes the dataset unlabelled (label -1, num_classes 0); `load_depth=False`
    ignores depth maps. `max_size` keeps a fixed pseudo-random subset of that many images (seed 0,
    kept in path order) before mirroring.
    """

    def __init__(self, path, mirror: bool = False, use_labels: bool = True, load_depth: bool = True,
                 require_camera_angles: bool = False, max_size: Optional[int] = None):
        self.path = Path(path)
        self.mirror = bool(mirror)
        self._files = open_files(self.path)
        index = build_index(self._files, require_camera_angles)
        error = _first_error(index.problems + (index.missing_depth if load_depth else []), self.path)
        if error is not None:
            raise error
        keep = np.arange(len(index.images))
        if max_size is not None:
            if max_size < 1:
                raise DatasetError(f"max_size {max_size}: need at least 1 image")
            if max_size < len(keep):
                keep = np.sort(np.random.RandomState(0).choice(len(keep), max_size, replace=False))
        self.names: List[str] = [index.images[i] for i in keep]
        self.meta: dict = index.meta
        self.json_path: Optional[str] = index.json_path
        self.has_camera_angles = index.angles is not None
        self.camera_angles = (index.angles[keep] if index.angles is not None
                              else np.zeros((len(keep), 3), dtype=np.float32))
        self.has_labels = use_labels and index.labels is not None
        self.labels: Optional[np.ndarray] = index.labels[keep] if self.has_labels else None
        self.num_classes = int(index.labels.max()) + 1 if self.has_labels else 0
        self.has_depth = load_depth and bool(index.depth)
        self._depth = index.depth if self.has_depth else {}
        # the resolution, from the first image's header
        first = self.names[0]
        try:
            with open_image_header(self._files.read(first)) as im:
                w, h = im.size
        except Exception as exc:  # noqa: BLE001 - any decoder failure is the file's fault
            raise DatasetError(f"{self._where(first)}: cannot read image ({short_reason(exc)})") from None
        if w != h:
            raise DatasetError(f"{self._where(first)}: not square ({w}x{h}); crop it, e.g. trigan dataset resize")
        if w > MAX_RESOLUTION:
            raise DatasetError(f"{self._where(first)}: {w}x{h} images are larger than trigan trains on (at most "
                               f"{MAX_RESOLUTION}x{MAX_RESOLUTION}); shrink them with trigan dataset resize")
        self.resolution = int(w)

    # -- reading ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.names) * (2 if self.mirror else 1)

    def __getitem__(self, i) -> dict:
        i = int(i)
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} items")
        i %= len(self)
        raw, flip = i % len(self.names), i >= len(self.names)
        image = self.load_image(raw)
        angles = self.camera_angles[raw].copy()
        if flip:
            image = image[:, ::-1]
            angles[0] = -angles[0]
        item = {"image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
                "camera_angles": torch.from_numpy(angles.astype(np.float32)),
                "label": torch.tensor(int(self.labels[raw]) if self.has_labels else -1, dtype=torch.int64),
                "index": torch.tensor(i, dtype=torch.int64)}
        if self.has_depth:
            depth = self.load_depth(raw)
            if flip:
                depth = depth[:, ::-1]
            item["depth"] = torch.from_numpy(np.ascontiguousarray(depth)[None])
        return item

    def load_image(self, raw: int) -> np.ndarray:
        """Image `raw` (unmirrored) as uint8 RGB [H, W, 3]."""
        rel = self.names[raw]
        try:
            image = read_image(self._files.read(rel))
        except Exception as exc:  # noqa: BLE001
            raise DatasetError(f"{self._where(rel)}: cannot read image ({short_reason(exc)})") from None
        self._check_size(rel, image.size, "image")
        return np.asarray(to_rgb(image), dtype=np.uint8)

    def load_depth(self, raw: int) -> np.ndarray:
        """Depth map of image `raw` (unmirrored) as float32 [H, W] on the 16-bit scale."""
        rel = self._depth[self.names[raw]]
        try:
            image = read_image(self._files.read(rel))
            depth = depth_array(image)
        except Exception as exc:  # noqa: BLE001
            raise DatasetError(f"{self._where(rel)}: cannot read depth map ({short_reason(exc)})") from None
        self._check_size(rel, image.size, "depth map")
        return depth

    def _check_size(self, rel: str, size: Tuple[int, int], what: str) -> None:
        if size != (self.resolution, self.resolution):
            raise DatasetError(f"{self._where(rel)}: {what} is {size[0]}x{size[1]} but the dataset is "
                               f"{self.resolution}x{self.resolution} (from {self.names[0]})")

    def _where(self, rel: str) -> str:
        return f"{self.path}/{rel}"

    # -- summaries -------------------------------------------------------------------------------
    def mean_camera_pose(self) -> List[float]:
        """Mean (yaw, pitch, roll) over the items (mirrored copies included: their yaws cancel)."""
        angles = self.camera_angles.astype(np.float64)
        if self.mirror:
            angles = np.concatenate([angles, angles * np.array([-1.0, 1.0, 1.0])])
        return [float(v) for v in angles.mean(axis=0)]

    def close(self) -> None:
        self._files.close()

    def __enter__(self) -> "ImageDataset":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"ImageDataset({str(self.path)!r}, {len(self.names)} images{' x2 mirrored' if self.mirror else ''}, "
                f"{self.resolution}px, classes={self.num_classes}, depth={self.has_depth}, "
                f"camera_angles={self.has_camera_angles})")


def open_dataset(path, **kwargs) -> ImageDataset:
    """`ImageDataset(path, **kwargs)`; DatasetError with one line naming the file on bad input."""
    return ImageDataset(path, **kwargs)


# ----------------------------------------------------------------------------------------------
# Validation

@dataclass
class DatasetSummary:
    """What validation found, for the one-line summary of `trigan dataset check`."""

    path: str
    images: int = 0
    resolution: Optional[Tuple[int, int]] = None   # (width, height) of the first readable image
    num_classes: int = 0
    has_depth: bool = False
    has_camera_angles: bool = False
    errors: int = 0
    notes: int = 0


def inspect_dataset(path, require_camera_angles: bool = False, progress: bool = False
                    ) -> Tuple[List[Problem], DatasetSummary]:
    """Read every image and depth map; every problem found, and a summary. Raises DatasetError
    only when `path` is missing or is neither a zip nor a folder."""
    files = open_files(path)
    try:
        index = build_index(files, require_camera_angles)
        problems = list(index.problems) + list(index.missing_depth)
        summary = DatasetSummary(str(path), images=len(index.images), has_depth=bool(index.depth),
                                 has_camera_angles=index.angles is not None,
                                 num_classes=int(index.labels.max()) + 1 if index.labels is not None else 0)
        for rel in tqdm(index.images, desc="check", unit="img", file=sys.stderr, disable=not progress, leave=False):
            problems.extend(_check_image_file(files, rel, index.depth.get(rel), summary))
    finally:
        files.close()
    summary.errors = sum(p.severity == "error" for p in problems)
    summary.notes = sum(p.severity == "note" for p in problems)
    return problems, summary


def _check_image_file(files, rel: str, depth_rel: Optional[str], summary: DatasetSummary) -> List[Problem]:
    out: List[Problem] = []
    try:
        image = read_image(files.read(rel))
    except Exception as exc:  # noqa: BLE001
        return [Problem(rel, f"cannot read image ({short_reason(exc)})", "error")]
    w, h = image.size
    if w != h:
        out.append(Problem(rel, f"not square ({w}x{h}); images must be square (trigan dataset resize crops them)", "error"))
    if summary.resolution is None:
        summary.resolution = (w, h)
        if max(w, h) > MAX_RESOLUTION:
            out.append(Problem(rel, f"{w}x{h} is larger than trigan trains on (at most {MAX_RESOLUTION}x"
                                    f"{MAX_RESOLUTION}); shrink the images with trigan dataset resize", "error"))
    elif (w, h) != summary.resolution:
        rw, rh = summary.resolution
        out.append(Problem(rel, f"size {w}x{h} differs from the first image ({rw}x{rh}); all images must have one size", "error"))
    note = conversion_note(image)
    if note:
        out.append(Problem(rel, note, "note"))
    if depth_rel is not None:
        try:
            depth = read_image(files.read(depth_rel))
            depth_array(depth)
        except Exception as exc:  # noqa: BLE001
            out.append(Problem(depth_rel, f"cannot read depth map ({short_reason(exc)}); expected an 8- or 16-bit PNG", "error"))
        else:
            if depth.size != (w, h):
                out.append(Problem(depth_rel, f"depth map is {depth.size[0]}x{depth.size[1]} but its image is {w}x{h}", "error"))
    return out


def validate_dataset(path, require_camera_angles: bool = False, progress: bool = False) -> List[Problem]:
    """Every problem of the dataset at `path`, each naming its file (see `inspect_dataset`)."""
    return inspect_dataset(path, require_camera_angles, progress)[0]


__all__ = ["DatasetError", "Problem", "ImageDataset", "open_dataset", "validate_dataset", "inspect_dataset",
           "DatasetSummary", "image_extensions", "is_image_name", "is_depth_name", "depth_name", "match_key",
           "to_rgb", "read_image", "open_image_header", "depth_array", "conversion_note", "open_files", "build_index"]
