"""Dataset tools behind `trigan dataset check | resize | pack`.

Outputs are written next to their destination under a temporary name and renamed into place when
complete, so a crash or Ctrl-C never leaves a half-written zip or folder; an existing destination
is only replaced with `force`. Every name written is a plain relative path (core/safe_paths.py):
a source whose entries would leave the output is refused before anything is written, and the
writer itself refuses such a name. A folder that cannot be written (read-only, no permission, disk
full) is a one-line DatasetError naming the path and the reason.
"""

from __future__ import annotations

import io
import os
import posixpath
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
from PIL import Image
from tqdm import tqdm

from trigan.core.errors import TriganError
from trigan.core.safe_paths import member_path, refusal, unsafe_reason
from trigan.training.dataset import (
    MAX_RESOLUTION,
    DatasetError,
    DatasetSummary,
    ImageDataset,
    Problem,
    build_index,
    depth_array,
    inspect_dataset,
    open_files,
    read_image,
    short_reason,
    to_rgb,
)

ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_STORED_EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".gif"}   # already compressed
JPEG_QUALITY = 95


def _cannot_write(path, exc: OSError) -> DatasetError:
    """One line naming the path and why the system refused (read-only, no permission, disk full)."""
    # the path the user named, not the hidden temporary one the system call saw
    reason = exc.strerror or short_reason(exc)
    return DatasetError(f"{path}: cannot write ({reason})")


def refuse_unsafe_entries(index) -> None:
    """Stop, naming the first entry of the indexed source whose name would leave an output folder."""
    if index.unsafe:
        first = index.unsafe[0]
        more = f" (and {len(index.unsafe) - 1} more)" if len(index.unsafe) > 1 else ""
        raise DatasetError(f"{first.path}: {first.message}{more}")


def file_progress(iterable, desc: str, enabled: bool, total: Optional[int] = None):
    return tqdm(iterable, desc=desc, unit="file", file=sys.stderr, disable=not enabled, leave=False, total=total)


# ----------------------------------------------------------------------------------------------
# check

def check_dataset(path, require_camera_angles: bool = False, progress: bool = True
                  ) -> Tuple[List[Problem], DatasetSummary]:
    """Every problem of the dataset (reads every image and depth map) and a summary."""
    return inspect_dataset(path, require_camera_angles, progress)


def format_summary(s: DatasetSummary) -> str:
    res = f"{s.resolution[0]}x{s.resolution[1]}" if s.resolution else "unknown resolution"
    classes = f"{s.num_classes} classes" if s.num_classes else "no labels"
    return (f"{s.path}: {s.images} images, {res}, {classes}, depth {'yes' if s.has_depth else 'no'}, "
            f"camera angles {'yes' if s.has_camera_angles else 'no'}: "
            f"{s.errors} error{'s' if s.errors != 1 else ''}, {s.notes} note{'s' if s.notes != 1 else ''}")


# ----------------------------------------------------------------------------------------------
# Atomic outputs

class OutputWriter:
    """Files written into a zip (DST ends in .zip) or a folder, atomically renamed into place.

    Use as a context manager: the output appears at `dst` only when the block ends without an
    exception; otherwise the temporary output is removed.
    """

    def __init__(self, dst, force: bool = False):
        self.dst = Path(dst)
        self.is_zip = self.dst.suffix.lower() == ".zip"
        if self.dst.exists() and not force:
            raise DatasetError(f"{self.dst}: already exists (use --force to overwrite)")
        parent = self.dst.parent
        if not parent.is_dir():
            raise DatasetError(f"{parent}: no such folder (for {self.dst})")
        self._zip = None
        try:
            self._tmp_dir = Path(tempfile.mkdtemp(prefix=f".{self.dst.name}.", suffix=".partial", dir=parent))
        except OSError as exc:
            raise _cannot_write(self.dst, exc) from None
        self._tmp = self._tmp_dir / self.dst.name   # same name as the result: json key prefixes still match
        try:
            if self.is_zip:
                self._zip = zipfile.ZipFile(self._tmp, "w")
            else:
                self._tmp.mkdir()
        except OSError as exc:
            shutil.rmtree(self._tmp_dir, ignore_errors=True)
            raise _cannot_write(self.dst, exc) from None
        self.names: List[str] = []

    def write(self, rel: str, data: bytes) -> None:
        """Add the file `rel` (a plain relative path; anything else is refused, naming it)."""
        reason = unsafe_reason(rel)
        if reason is not None:
            raise DatasetError(refusal(rel, self.dst, reason))
        try:
            if self._zip is not None:
                info = zipfile.ZipInfo(rel, date_time=ZIP_DATE)
                info.external_attr = 0o644 << 16
                stored = posixpath.splitext(rel)[1].lower() in _STORED_EXTENSIONS
                info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
                self._zip.writestr(info, data)
            else:
                try:
                    target = member_path(self._tmp, rel, self.dst)
                except TriganError as exc:
                    raise DatasetError(str(exc)) from None
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
        except OSError as exc:
            raise _cannot_write(self.dst, exc) from None
        self.names.append(rel)

    def __enter__(self) -> "OutputWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if self._zip is not None:
                try:
                    self._zip.close()
                except OSError as close_exc:
                    if exc_type is None:     # else the first failure is the one to report
                        raise _cannot_write(self.dst, close_exc) from None
            if exc_type is None:
                self._commit()
        finally:
            shutil.rmtree(self._tmp_dir, ignore_errors=True)

    def _commit(self) -> None:
        """Rename the finished output over `dst`; if that fails, the old `dst` is put back."""
        old = None
        try:
            if self.dst.exists() or self.dst.is_symlink():
                old = self._tmp_dir / ".replaced"
                os.replace(self.dst, old)
            os.replace(self._tmp, self.dst)
        except OSError as exc:
            if old is not None and (old.exists() or old.is_symlink()):
                os.replace(old, self.dst)    # the same folder: a rename back cannot need space
            raise _cannot_write(self.dst, exc) from None
        if old is not None and old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        elif old is not None:
            old.unlink()


def same_or_inside(a: Path, b: Path) -> bool:
    """a is b or lies inside the folder b."""
    a, b = a.resolve(), b.resolve()
    return a == b or b in a.parents


# ----------------------------------------------------------------------------------------------
# resize

def center_crop_box(width: int, height: int) -> Tuple[int, int, int, int]:
    """The centred square of the short side, as a Pillow box (left, top, right, bottom)."""
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def resize_image(image, resolution: int):
    """RGB (converted as when reading), centre-cropped to a square, Lanczos-resized to resolution^2."""
    rgb = to_rgb(image)
    # crop first: resizing with box= would let the filter reach past the crop into the borders
    square = rgb.crop(center_crop_box(*rgb.size))
    return square.resize((resolution, resolution), Image.LANCZOS)


def resize_depth(image, resolution: int) -> np.ndarray:
    """A depth map centre-cropped and resized to resolution^2 as uint16 on the 16-bit scale.

    Resampled in 32-bit float with Pillow's bilinear filter (which averages over the footprint
    when shrinking), then rounded: the 16-bit range is kept, 8-bit inputs come out x256.
    """
    depth = Image.fromarray(depth_array(image), "F")
    square = depth.crop(center_crop_box(*depth.size))
    out = np.asarray(square.resize((resolution, resolution), Image.BILINEAR))
    return np.clip(np.round(out), 0, 65535).astype(np.uint16)


def _encode(image, ext: str) -> bytes:
    buf = io.BytesIO()
    if ext in (".jpg", ".jpeg"):
        image.save(buf, format="JPEG", quality=JPEG_QUALITY)
    else:
        image.save(buf, format="PNG")
    return buf.getvalue()


def _output_name(rel: str, png: bool) -> str:
    stem, ext = posixpath.splitext(rel)
    ext = ext.lower()
    if png or ext not in (".png", ".jpg", ".jpeg"):
        return stem + ".png"
    return rel


def resize_dataset(src, dst, resolution: int, force: bool = False, png: bool = False,
                   progress: bool = True) -> dict:
    """Centre-crop and resize every image (and depth map) of SRC into DST; copy dataset.json.

    PNG and JPEG images keep their format (JPEG at quality 95); other formats, or all with `png`,
    become PNG. Files that are neither images, depth maps nor dataset.json are not copied.
    """
    if not 1 <= resolution <= MAX_RESOLUTION:
        raise DatasetError(f"--resolution {resolution}: expected 1 to {MAX_RESOLUTION} pixels")
    src, dst = Path(src), Path(dst)
    files = open_files(src)
    if same_or_inside(dst, src) or (dst.exists() and same_or_inside(src, dst)):
        raise DatasetError(f"{dst}: the output would overwrite or lie inside the input {src}")
    index = build_index(files)
    refuse_unsafe_entries(index)
    if not index.images:
        raise DatasetError(f"{src}: no images found")
    out_names = {}
    for rel in index.images:
        name = _output_name(rel, png)
        if name in out_names:
            raise DatasetError(f"{src}/{rel}: would be written as {name}, like {out_names[name]}; rename one")
        out_names[name] = rel
    counts = {"images": 0, "depth": 0, "skipped": 0}
    try:
        with OutputWriter(dst, force) as out:
            for rel in file_progress(index.images, "resize", progress):
                try:
                    image = read_image(files.read(rel))
                except Exception as exc:  # noqa: BLE001 - any decoder failure is the file's fault
                    raise DatasetError(f"{src}/{rel}: cannot read image ({short_reason(exc)})") from None
                name = _output_name(rel, png)
                out.write(name, _encode(resize_image(image, resolution), posixpath.splitext(name)[1].lower()))
                counts["images"] += 1
                if rel in index.depth:
                    depth_rel = index.depth[rel]
                    try:
                        depth = resize_depth(read_image(files.read(depth_rel)), resolution)
                    except Exception as exc:  # noqa: BLE001
                        raise DatasetError(f"{src}/{depth_rel}: cannot read depth map ({short_reason(exc)})") from None
                    buf = io.BytesIO()
                    Image.fromarray(depth).save(buf, format="PNG")
                    out.write(depth_rel, buf.getvalue())
                    counts["depth"] += 1
            if index.json_path is not None:
                out.write(index.json_path, files.read(index.json_path))
            counts["skipped"] = len(index.files) - counts["images"] - counts["depth"] - (index.json_path is not None)
    finally:
        files.close()
    return {"path": str(dst), "resolution": resolution, **counts}


# ----------------------------------------------------------------------------------------------
# pack

def pack_dataset(folder, out, check: bool = True, force: bool = False, progress: bool = True) -> dict:
    """Zip a dataset folder (images, their depth maps, dataset.json), sorted, with fixed timestamps.

    With `check`, the folder must open as an ImageDataset first (the index-level checks: json,
    labels, angles, names, depth maps); image contents are not decoded (use `check_dataset`).
    """
    folder, out = Path(folder), Path(out)
    files = open_files(folder)
    if files.kind != "folder":
        raise DatasetError(f"{folder}: already a zip (pack takes a folder)")
    if out.suffix.lower() != ".zip":
        raise DatasetError(f"{out}: the output of pack must be a .zip")
    if same_or_inside(out, folder):
        raise DatasetError(f"{out}: the zip must not be written inside the folder it packs")
    if check:
        ImageDataset(folder).close()
    index = build_index(files)
    refuse_unsafe_entries(index)
    if not index.images:
        raise DatasetError(f"{folder}: no images found")
    keep = set(index.images) | set(index.depth.values()) | ({index.json_path} if index.json_path else set())
    names = [rel for rel in index.files if rel in keep]
    with OutputWriter(out, force) as writer:
        for rel in file_progress(names, "pack", progress):
            try:
                data = files.read(rel)
            except (ValueError, OSError) as exc:   # a pipe, a device, a symlink loop, an oversized file
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                raise DatasetError(f"{folder / rel}: cannot pack it ({reason})") from None
            writer.write(rel, data)
    return {"path": str(out), "images": len(index.images), "depth": len(index.depth),
            "json": index.json_path is not None, "skipped": len(index.files) - len(names),
            "bytes": out.stat().st_size}


__all__ = ["check_dataset", "format_summary", "OutputWriter", "refuse_unsafe_entries", "center_crop_box", "resize_image", "resize_depth",
           "resize_dataset", "pack_dataset"]
