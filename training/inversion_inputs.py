"""What an inversion starts from: the target image (read, cropped, resized, masked) and its camera.

Images. Any file Pillow reads in one of SAFE_FORMATS, any mode (RGB, RGBA, L, LA, P, CMYK, 16-bit
grayscale...), its EXIF orientation applied. The header is checked before anything is decoded: a
file over the dataset reader's byte limit or a header claiming more than its pixel limit
(training/dataset.py: MAX_FILE_BYTES, MAX_IMAGE_PIXELS) is refused. Then

* geometry: the centred square of side min(w, h) is cut out and resized (Lanczos, antialiased) to
  the model's resolution; with crop=False the whole image is resized, so a non-square photo is
  squashed (its aspect ratio changes);
* mask, in this order: a mask file (any image of the same size; its alpha channel when it has a
  real one, else its grey level; greyscale values are kept as soft weights), the image's own alpha
  channel (RGBA, LA, PA; a fully opaque alpha is no mask), or background keying (below). Masks are
  cropped and resized with the image. A mask with no object pixels (none >= 0.5) or, from a mask
  file, no background pixels, is refused;
* keying ("white", "black", or "auto": the model's backdrop colour when it has one): the
  background is the pixels within a tolerance of the key colour that are connected to the image
  border, so a white object inside a white-background photo keeps its white parts. Pixels between
  KEY_HARD and KEY_SOFT from the key colour get partial weight (antialiased edges). "auto" finding
  no such background simply gives no mask; an explicit key that finds none is an error;
* compositing: where a mask is known and the model has a fixed backdrop (`model_backdrop`), the
  image is composited over that backdrop, so it is what the renderer would draw (premultiplied
  colour + backdrop x (1 - opacity)). Without a fixed backdrop an alpha image is composited over
  white, as the dataset reader does.

Cameras. `parse_camera_spec` puts `--camera yaw=..,pitch=..` values (trigan's convention) on the
model's start view; `pose_from_dataset` reads an image's [yaw, pitch, roll] from a dataset.json
exactly as training/dataset.py does. Those angles are trigan's convention for every model (see
docs/datasets.md): the data loader hands them to the model unchanged and a 3DGP model's
`yaw_offset` is applied inside its networks only, so the pose takes them as they are.

Every problem with a user's file is a one-line InversionError naming the file.
"""

from __future__ import annotations

import io
import json
import math
import os
import posixpath
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from trigan.core.cameras import Pose
from trigan.core.errors import TriganError
from trigan.core.limits import MAX_IMAGE_SIDE
from trigan.core.read_budget import NotRegularFile, open_without_blocking
from trigan.core.trajectories import apply_camera_values, parse_camera
from trigan.training.dataset import (
    ANGLE_TOLERANCE,
    JSON_NAME,
    MAX_FILE_BYTES,
    MAX_IMAGE_PIXELS,
    MAX_JSON_BYTES,
    dataset_name,
    match_key,
    short_reason,
    to_rgb,
)

# Formats read. Others Pillow knows (EPS runs Ghostscript, PDF, ...) are not photos and are refused.
SAFE_FORMATS = ("PNG", "JPEG", "MPO", "WEBP", "BMP", "TIFF", "GIF", "PPM", "TGA")
KEY_MODES = ("auto", "white", "black", "off")
KEY_COLOURS = {"white": 1.0, "black": 0.0}       # [0, 1] grey level of the keyed background
# Keying tolerances on the largest channel difference from the key colour, in [0, 1] units: at most
# KEY_HARD is background (JPEG noise on a plain backdrop stays within ~10/255), from KEY_SOFT on it
# is the object, in between a partial weight.
KEY_HARD = 16 / 255
KEY_SOFT = 40 / 255
OBJECT_LEVEL = 0.5              # a mask value from which a pixel counts as the object


class InversionError(TriganError):
    """A problem with an inversion's input (image, mask, camera, weights file, settings), in one line."""


@dataclass
class Target:
    """One image to invert, ready for the model (see the module doc)."""

    name: str                        # the file's stem: names the outputs
    path: str
    image: torch.Tensor              # [3, R, R] in [-1, 1]
    mask: Optional[torch.Tensor]     # [1, R, R] in [0, 1], 1 = the object; None: every pixel counts
    mask_source: Optional[str]       # "file" (a mask file or the image's alpha), "key", or None
    source_size: Tuple[int, int]     # (w, h) of the file, after its EXIF orientation


def model_backdrop(G) -> Optional[float]:
    """What empty space renders as in G's [-1, 1] images: +1 with a white background, 0 without.

    None where there is no fixed backdrop, so nothing may be keyed or composited against one: a
    background network paints it, and rays that end opaque (EpiGRAF's `opaque_far_end`, 3DGP's
    `last_back`) show whatever colour the field has at the far end."""
    render = G.cfg.render
    if getattr(G.synthesis, "bg_model", None) is not None:
        return None
    if render.opaque_far_end or render.last_back:
        return None
    return 1.0 if render.white_background else 0.0


# --------------------------------------------------------------------------------------------------
# Reading

def _read_bytes(path: str, limit: int, what: str) -> bytes:
    """A regular file read whole, refused (one line) when larger than `limit` bytes."""
    try:
        handle = open_without_blocking(path)
    except FileNotFoundError:
        raise InversionError(f"{path}: no such file") from None
    except NotRegularFile:
        raise InversionError(f"{path}: not a regular file; expected {what}") from None
    except OSError as exc:
        raise InversionError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    with handle:
        size = os.fstat(handle.fileno()).st_size
        if size > limit:
            raise InversionError(f"{path}: {size} bytes, more than the limit of {limit} for {what}")
        return handle.read(limit + 1)


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info)


def readable_formats() -> Tuple[str, ...]:
    """SAFE_FORMATS this Pillow has a reader for (Pillow raises KeyError on a name it lacks, e.g.
    "MPO" where its JPEG plugin reads those files, and would then try no later format)."""
    Image.init()
    return tuple(f for f in SAFE_FORMATS if f in Image.OPEN)


def _open_image(path: str, what: str) -> Image.Image:
    """A fully decoded Pillow image (first frame), EXIF orientation applied; the pixel count is
    checked from the header before decoding."""
    data = _read_bytes(path, MAX_FILE_BYTES, what)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=readable_formats())
        except Image.DecompressionBombError:     # Pillow's own ceiling, above ours: same refusal
            raise InversionError(f"{path}: declares more pixels than the limit of {MAX_IMAGE_PIXELS}; "
                                 f"shrink it first") from None
        except UnidentifiedImageError:           # its reason names the last format tried, not the file's
            raise InversionError(f"{path}: not an image trigan reads (no image format recognised); expected "
                                 f"{what} as {', '.join(readable_formats())}") from None
        except Exception as exc:  # noqa: BLE001 - any failure to identify is the file's fault
            raise InversionError(f"{path}: not an image trigan reads ({short_reason(exc)}); expected "
                                 f"{what} as {', '.join(readable_formats())}") from None
        w, h = image.size
        if w * h > MAX_IMAGE_PIXELS:
            raise InversionError(f"{path}: {w}x{h} is {w * h} pixels, more than the limit of "
                                 f"{MAX_IMAGE_PIXELS}; shrink it first")
        try:
            image.load()
            image = ImageOps.exif_transpose(image) or image
        except Exception as exc:  # noqa: BLE001 - truncated data, decoder errors
            raise InversionError(f"{path}: cannot decode the image ({short_reason(exc)})") from None
    if min(image.size) < 1:
        raise InversionError(f"{path}: empty image ({w}x{h})")
    return image


def _crop_box(size: Tuple[int, int], crop: bool) -> Tuple[int, int, int, int]:
    """The centred square of side min(w, h) (crop), or the whole image."""
    w, h = size
    if not crop:
        return 0, 0, w, h
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return left, top, left + side, top + side


def _resized(image: Image.Image, box, resolution: int) -> np.ndarray:
    """`box` of the image resized to resolution^2 (Lanczos; RGBA is resampled premultiplied by
    Pillow, so transparent pixels' colours do not bleed), as float [R, R, C] in [0, 1]."""
    out = image.resize((resolution, resolution), Image.LANCZOS, box=box)
    arr = np.asarray(out, dtype=np.float32) / 255.0
    return arr[..., None] if arr.ndim == 2 else arr


def _image_channels(image: Image.Image) -> Tuple[Image.Image, bool]:
    """(RGB or RGBA image, whether it carries a real alpha channel)."""
    if _has_alpha(image):
        rgba = image.convert("RGBA")
        if rgba.getchannel("A").getextrema()[0] < 255:
            return rgba, True
        return rgba.convert("RGB"), False
    return to_rgb(image), False


def _mask_channel(image: Image.Image) -> Image.Image:
    """A mask image as one 8-bit channel: its alpha when it has a real one, else its grey level."""
    if _has_alpha(image):
        alpha = image.convert("RGBA").getchannel("A")
        if alpha.getextrema()[0] < 255:
            return alpha
    return to_rgb(image).convert("L")


# --------------------------------------------------------------------------------------------------
# Keying

def _spread_along_rows(reached: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Every run of allowed pixels along a row that holds a reached pixel becomes reached."""
    starts = allowed & ~np.pad(allowed, ((0, 0), (1, 0)))[:, :-1]
    run = np.cumsum(starts.ravel()).reshape(allowed.shape)
    hit = np.zeros(int(run.max()) + 1, dtype=bool)
    hit[run[reached & allowed]] = True
    return allowed & hit[run]


def border_connected(allowed: np.ndarray) -> np.ndarray:
    """The pixels of `allowed` [H, W] (bool) 4-connected to the image border through `allowed`.

    Row and column runs are filled alternately until nothing changes: a few passes for ordinary
    shapes, one per turn of the path for winding ones."""
    reached = np.zeros_like(allowed)
    reached[0, :], reached[-1, :], reached[:, 0], reached[:, -1] = (
        allowed[0, :], allowed[-1, :], allowed[:, 0], allowed[:, -1])
    while True:
        grown = _spread_along_rows(reached, allowed)
        grown = _spread_along_rows(grown.T, allowed.T).T
        if np.array_equal(grown, reached):
            return grown
        reached = grown


def key_mask(rgb: np.ndarray, level: float) -> np.ndarray:
    """Object weights [H, W] in [0, 1] of a [0, 1] image [H, W, 3] on a backdrop of grey `level`
    (see the module doc): 0 on the border-connected backdrop, 1 on the object, soft in between."""
    distance = np.abs(rgb - level).max(axis=2)
    background = border_connected(distance < KEY_SOFT)
    softness = np.clip((distance - KEY_HARD) / (KEY_SOFT - KEY_HARD), 0.0, 1.0)
    return np.where(background, softness, 1.0).astype(np.float32)


def _key_level(key: str, backdrop: Optional[float]) -> Optional[float]:
    if key == "off":
        return None
    if key == "auto":
        return None if backdrop is None else (float(backdrop) + 1) / 2
    return KEY_COLOURS[key]


# --------------------------------------------------------------------------------------------------
# The target

def _check_options(path: str, resolution, key: str, backdrop) -> int:
    if key not in KEY_MODES:
        raise InversionError(f"--key {key!r}: expected one of {', '.join(KEY_MODES)}")
    if isinstance(resolution, bool) or not isinstance(resolution, int) or not 1 <= resolution <= MAX_IMAGE_SIDE:
        raise InversionError(f"{path}: resolution {resolution!r}: expected an integer 1..{MAX_IMAGE_SIDE}")
    if backdrop is not None and not (isinstance(backdrop, (int, float)) and -1 <= backdrop <= 1):
        raise InversionError(f"backdrop {backdrop!r}: expected a value in [-1, 1] or None")
    return int(resolution)


def _check_mask(mask: np.ndarray, where: str, need_background: bool) -> None:
    """A mask must show some object and (when it was given as a mask) some background."""
    if not (mask >= OBJECT_LEVEL).any():
        raise InversionError(f"{where}: the mask is empty after cropping (no pixel >= {OBJECT_LEVEL}); "
                             f"expected white (or opaque) object pixels")
    if need_background and (mask >= OBJECT_LEVEL).all():
        raise InversionError(f"{where}: the mask covers the whole image after cropping (no background "
                             f"pixel); expected black (or transparent) background pixels")


def load_target(path, resolution: int, *, crop: bool = True, mask_path=None, key: str = "auto",
                backdrop: Optional[float] = None) -> Target:
    """Read one image to invert (module doc). `backdrop` is `model_backdrop(G)`: +1 / 0, or None
    when the model has no fixed backdrop (then "auto" keys nothing and nothing is composited)."""
    path = os.fspath(path)
    resolution = _check_options(path, resolution, key, backdrop)
    image = _open_image(path, "an image")
    source_size = image.size
    box = _crop_box(source_size, crop)
    colour, has_alpha = _image_channels(image)
    pixels = _resized(colour, box, resolution)
    rgb = pixels[..., :3]
    mask, source = None, None
    if mask_path is not None:
        mask_path = os.fspath(mask_path)
        mask_image = _open_image(mask_path, "a mask image")
        if mask_image.size != source_size:
            raise InversionError(f"{mask_path}: the mask is {mask_image.size[0]}x{mask_image.size[1]} but the "
                                 f"image {path} is {source_size[0]}x{source_size[1]}; expected the same size")
        mask = _resized(_mask_channel(mask_image), box, resolution)[..., 0]
        _check_mask(mask, mask_path, need_background=True)
        source = "file"
    elif has_alpha:
        alpha = pixels[..., 3]
        _check_mask(alpha, path, need_background=False)
        if (alpha < OBJECT_LEVEL).any():       # else the transparent part was cropped away: no mask
            mask, source = alpha, "file"
    alpha_is_mask = has_alpha and mask_path is None and mask is not None
    if has_alpha and not (alpha_is_mask and backdrop is not None):
        # the colour under transparent pixels is arbitrary: show it on white, as datasets do (an
        # alpha mask over a known backdrop is composited over that backdrop below instead)
        rgb = rgb * pixels[..., 3:4] + (1 - pixels[..., 3:4])
    level = _key_level(key, backdrop)
    if mask is None and level is not None:
        keyed = key_mask(rgb, level)
        if (keyed < OBJECT_LEVEL).any():
            _check_mask(keyed, f"{path} (--key {key})", need_background=False)
            mask, source = keyed, "key"
        elif key != "auto":
            raise InversionError(f"{path}: --key {key} found no background (no {key} pixels connected to the "
                                 f"border within {KEY_SOFT * 255:.0f}/255); use --mask or --key off")
    if mask is not None and backdrop is not None:
        m = mask[..., None]
        rgb = rgb * m + (float(backdrop) + 1) / 2 * (1 - m)
    image_t = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float() * 2 - 1
    mask_t = None if mask is None else torch.from_numpy(np.ascontiguousarray(mask))[None].float()
    return Target(name=Path(path).stem, path=path, image=image_t.clamp(-1, 1), mask=mask_t,
                  mask_source=source, source_size=(int(source_size[0]), int(source_size[1])))


# --------------------------------------------------------------------------------------------------
# Cameras

def parse_camera_spec(text: str, G, class_index: Optional[int] = None) -> Pose:
    """`yaw=..,pitch=..[,fov=..,radius=..,look_at=0]` (trigan's convention, radians; pi allowed) on
    G's start view (`Pose.for_generator(G, class_index)`)."""
    try:
        values = parse_camera(text)
        return apply_camera_values(Pose.for_generator(G, class_index), values)
    except InversionError:
        raise
    except TriganError as exc:
        raise InversionError(str(exc)) from None


def _read_json(path: str) -> dict:
    data = _read_bytes(path, MAX_JSON_BYTES, "a dataset.json")
    try:
        meta = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise InversionError(f"{path}: not valid JSON (not UTF-8)") from None
    except json.JSONDecodeError as exc:
        raise InversionError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except (RecursionError, ValueError) as exc:
        raise InversionError(f"{path}: not a usable JSON file ({short_reason(exc)})") from None
    if not isinstance(meta, dict):
        raise InversionError(f"{path}: expected a JSON object with camera_angles, got {type(meta).__name__}")
    return meta


def _angle_entries(table, path: str) -> List[Tuple[str, object]]:
    """camera_angles as (key, value) pairs: {path: [yaw, pitch, roll]} or [[path, [...]], ...]."""
    if isinstance(table, dict):
        return [(str(k), v) for k, v in table.items()]
    if isinstance(table, list) and all(isinstance(e, (list, tuple)) and len(e) == 2 and isinstance(e[0], str)
                                       for e in table):
        return [(e[0], e[1]) for e in table]
    raise InversionError(f"{path}: camera_angles: expected {{path: [yaw, pitch, roll]}} or [[path, [...]], ...]")


def _find_entry(entries, image_name: str, prefix: str, path: str):
    """The entry of `image_name`: by its key (path inside the dataset without the extension), else
    by its file stem when exactly one entry has it."""
    wanted = match_key(image_name, prefix)
    by_key = {match_key(k, prefix): (k, v) for k, v in entries}
    if wanted in by_key:
        return by_key[wanted]
    stem = posixpath.basename(wanted)
    same_stem = [kv for key, kv in by_key.items() if posixpath.basename(key) == stem]
    if len(same_stem) == 1:
        return same_stem[0]
    if len(same_stem) > 1:
        names = ", ".join(k for k, _ in same_stem[:3])
        raise InversionError(f"{path}: camera_angles: {image_name} matches several entries ({names}); "
                             f"name the image by its path inside the dataset")
    raise InversionError(f"{path}: no camera_angles entry for {image_name} (keys are image paths "
                         f"without the extension)")


def _angles(value, key: str, path: str) -> Tuple[float, float]:
    """(yaw, pitch) of one entry, checked as the dataset reader checks them."""
    ok = isinstance(value, (list, tuple)) and len(value) == 3 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    if not ok:
        raise InversionError(f"{path}: camera_angles['{key}']: expected [yaw, pitch, roll] (radians)")
    yaw, pitch = float(value[0]), float(value[1])
    if abs(yaw) > math.pi + ANGLE_TOLERANCE:
        raise InversionError(f"{path}: camera_angles['{key}']: yaw {yaw:.4g} is outside [-pi, pi]")
    if not -ANGLE_TOLERANCE <= pitch <= math.pi + ANGLE_TOLERANCE:
        raise InversionError(f"{path}: camera_angles['{key}']: pitch {pitch:.4g} is outside [0, pi] "
                             f"(polar angle from +Y; pi/2 is the horizon)")
    return yaw, pitch


def pose_from_dataset(json_path, image_name, G, class_index: Optional[int] = None) -> Pose:
    """The camera of `image_name` (a path or file name) in a dataset.json's camera_angles, on G's
    start view (fov, radius, look-at kept). `json_path` may also be the dataset folder holding it.
    The angles are used as the dataset loader hands them to the model (module doc)."""
    path = os.fspath(json_path)
    if os.path.isdir(path):
        path = os.path.join(path, JSON_NAME)
    meta = _read_json(path)
    if meta.get("camera_angles") is None:
        raise InversionError(f"{path}: no camera_angles in it; expected {{path: [yaw, pitch, roll]}}")
    prefix = dataset_name(Path(path).resolve().parent)
    image_name = os.fspath(image_name).replace("\\", "/")
    key, value = _find_entry(_angle_entries(meta["camera_angles"], path), image_name, prefix, path)
    yaw, pitch = _angles(value, key, path)
    try:
        return Pose.for_generator(G, class_index).with_values(yaw=yaw, pitch=pitch)
    except TriganError as exc:
        raise InversionError(f"{path}: {exc}") from None
