"""What a dataset's poses look like: the statistics and the picture of `trigan dataset check`.

Angles are trigan's (docs/datasets.md): yaw in radians, 0 = camera on +X (the frontal view of a
zero-centred dataset), pitch the polar angle from +Y (pi/2 = horizon). The statistics:

* **Yaw centre**: the circular mean atan2(mean sin yaw, mean cos yaw), so that yaws of +179 and
  -179 degrees average to 180, not 0. Its mean resultant length R = |mean of (cos, sin)| says how
  concentrated yaw is: R < YAW_NO_CENTRE_R means yaw is spread round the whole circle (360-degree
  data such as `trigan dataset synth`), which has no centre and is never "off centre".
* **Spread**: yaw deviations d = wrap(yaw - centre) into [-pi, pi) (centre 0 when there is none);
  yaw std = population std of d, yaw 5-95 % range = centre + the 5th and 95th percentiles of d
  (wrapped back to [-pi, pi), so a range across the seam reads 170..-170). Pitch: plain mean, std
  and percentiles.
* **Outliers** (Iglewicz and Hoaglin's modified z-score): a yaw deviation or a pitch is an outlier
  when |x - median| > OUTLIER_Z * 1.4826 * MAD, MAD the median absolute deviation (1.4826 MAD is
  the std of normal data), floored at MAD_FLOOR radians so a column of identical values does not
  make every rounding difference an outlier.
* **Coverage**: the fraction of COVERAGE_BINS equal yaw bins of [-pi, pi) that hold at least one
  image; mirrored coverage counts every yaw and its mirror -yaw (the x-flip `mirror=True` adds).
* **Zero-centred**: yaw is off centre when R >= YAW_CENTRED_MIN_R (0.5) and |centre| > YAW_CENTRE_TOLERANCE
  (10 degrees): pose_import.yaw_off_centre, the rule the training pre-flight warns by too.
  Mirroring pairs a flipped image with yaw -> -yaw, which is only right when the frontal view is at
  yaw 0; and the camera priors are centred on the data's mean.

The picture (`draw_report`) is drawn with numpy and Pillow only: a contact sheet of sampled images
(seeded) and a yaw/pitch scatter (density-shaded, mirrored copies in a second colour) with a yaw
histogram below and a pitch histogram beside it, all on degree axes.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from trigan.core.atomic import atomic_write_bytes
from trigan.core.errors import TriganError
from trigan.training.dataset import build_index, open_files, read_image, to_rgb
from trigan.training.pose_import import wrap_angle, yaw_center, yaw_concentration, yaw_off_centre

YAW_NO_CENTRE_R = 0.2                   # R below this: yaw round the whole circle, no centre (uniform 360 data: R ~ 1/sqrt(N))
OUTLIER_Z = 3.5                         # Iglewicz and Hoaglin's cut-off for the modified z-score
MAD_TO_STD = 1.4826                     # MAD * this = std, for normal data
MAD_FLOOR = 1e-3                        # radians: the dataset's own angle tolerance (training/dataset.py)
COVERAGE_BINS = 72                      # 5-degree yaw bins
SHOWN_NAMES = 5                         # outlier names printed before "and N more"
SHEET_SAMPLES = 32                      # images on the contact sheet
SHEET_SEED = 0


def circular_mean(yaw) -> Tuple[float, float]:
    """(circular mean in [-pi, pi), mean resultant length R in [0, 1]) of angles in radians: the
    same numbers `trigan dataset poses --center` subtracts and the pre-flight check reads."""
    yaw = np.asarray(yaw, dtype=np.float64)
    return float(yaw_center(yaw)), float(yaw_concentration(yaw))


def robust_outliers(values) -> np.ndarray:
    """Indices of the values whose modified z-score exceeds OUTLIER_Z (see the module doc)."""
    values = np.asarray(values, dtype=np.float64)
    median = np.median(values)
    mad = max(float(np.median(np.abs(values - median))), MAD_FLOOR)
    return np.flatnonzero(np.abs(values - median) > OUTLIER_Z * MAD_TO_STD * mad)


def yaw_coverage(yaw, mirrored: bool = False, bins: int = COVERAGE_BINS) -> float:
    """Fraction of `bins` equal bins of [-pi, pi) holding at least one yaw (and its mirror -yaw)."""
    yaw = wrap_angle(np.asarray(yaw, dtype=np.float64))
    if mirrored:
        yaw = np.concatenate([yaw, wrap_angle(-yaw)])
    index = np.clip(np.floor((yaw + math.pi) / (2 * math.pi) * bins).astype(np.int64), 0, bins - 1)
    return len(np.unique(index)) / bins


@dataclass
class PoseStats:
    """The pose distribution of a dataset; angles in radians (see the module doc for each rule)."""

    count: int
    yaw_centre: Optional[float]            # circular mean; None when yaw has no centre (R < YAW_NO_CENTRE_R)
    yaw_resultant: float                   # R
    yaw_std: float
    yaw_range: Tuple[float, float]         # 5th and 95th percentile, wrapped into [-pi, pi)
    pitch_mean: float
    pitch_std: float
    pitch_range: Tuple[float, float]
    coverage: float
    mirrored_coverage: float
    off_centre: bool                       # pose_import.yaw_off_centre: a clear centre that is not 0
    yaw_outliers: List[str] = field(default_factory=list)
    pitch_outliers: List[str] = field(default_factory=list)


def pose_stats(angles, names: Sequence[str]) -> PoseStats:
    """Statistics of `angles` ([N, >=2] yaw, pitch in radians), `names` the N image paths."""
    angles = np.asarray(angles, dtype=np.float64)
    if angles.ndim != 2 or angles.shape[1] < 2 or len(angles) == 0 or len(angles) != len(names):
        raise ValueError(f"expected [N, 2+] angles for {len(names)} names, got shape {angles.shape}")
    yaw, pitch = angles[:, 0], angles[:, 1]
    mean, resultant = circular_mean(yaw)
    centre = mean if resultant >= YAW_NO_CENTRE_R else None
    deviation = wrap_angle(yaw - (centre or 0.0))
    lo, hi = np.percentile(deviation, [5, 95])
    return PoseStats(
        count=len(yaw), yaw_centre=centre, yaw_resultant=resultant, yaw_std=float(deviation.std()),
        yaw_range=(float(wrap_angle(lo + (centre or 0.0))), float(wrap_angle(hi + (centre or 0.0)))),
        pitch_mean=float(pitch.mean()), pitch_std=float(pitch.std()),
        pitch_range=tuple(float(v) for v in np.percentile(pitch, [5, 95])),
        coverage=yaw_coverage(yaw), mirrored_coverage=yaw_coverage(yaw, mirrored=True),
        off_centre=yaw_off_centre(yaw),
        yaw_outliers=[names[i] for i in robust_outliers(deviation)],
        pitch_outliers=[names[i] for i in robust_outliers(pitch)])


# ----------------------------------------------------------------------------------------------
# The lines of `trigan dataset check`

def _deg(a: float) -> str:
    return f"{math.degrees(a):.1f}\N{DEGREE SIGN}"


def _names(names: List[str]) -> str:
    more = f" and {len(names) - SHOWN_NAMES} more" if len(names) > SHOWN_NAMES else ""
    return ", ".join(names[:SHOWN_NAMES]) + more


GENERIC_CENTER_FIX = "trigan dataset poses SRC --format eg3d|gram|angles --out DATA --center"


def center_command(data, json_path: Optional[str]) -> str:
    """The command that re-centres the yaws of dataset `data`: for a folder, its own dataset.json
    read back as plain angles; for a zip (whose json cannot be named as a file), the generic one."""
    data = Path(data)
    if json_path is not None and data.is_dir():
        return f"trigan dataset poses {data / json_path} --format angles --out {data} --center --force"
    return GENERIC_CENTER_FIX


def format_pose_report(s: PoseStats, fix: str = GENERIC_CENTER_FIX) -> List[str]:
    """The pose lines of `trigan dataset check`, one fact each; the off-centre warning, naming
    the command `fix` that centres the yaws, last."""
    if s.yaw_centre is None:
        yaw = (f"yaw spread round the whole circle (no centre: mean resultant length {s.yaw_resultant:.2f}), "
               f"std {_deg(s.yaw_std)}")
    else:
        yaw = (f"yaw centre {_deg(s.yaw_centre)} (circular mean), std {_deg(s.yaw_std)}, "
               f"5-95% {_deg(s.yaw_range[0])}..{_deg(s.yaw_range[1])}")
    lines = [f"poses: {s.count} images; {yaw}",
             f"poses: pitch mean {_deg(s.pitch_mean)} (90\N{DEGREE SIGN} = horizon), std {_deg(s.pitch_std)}, "
             f"5-95% {_deg(s.pitch_range[0])}..{_deg(s.pitch_range[1])}",
             f"poses: yaw coverage {s.coverage:.0%} of 360\N{DEGREE SIGN} ({360 // COVERAGE_BINS}\N{DEGREE SIGN} "
             f"bins holding an image), {s.mirrored_coverage:.0%} with mirroring (x-flip: yaw and -yaw)"]
    for what, names in (("yaw", s.yaw_outliers), ("pitch", s.pitch_outliers)):
        if names:
            lines.append(f"poses: {len(names)} {what} outlier{'s' if len(names) != 1 else ''} (more than "
                         f"{OUTLIER_Z} robust std from the median): {_names(names)}")
    if not (s.yaw_outliers or s.pitch_outliers):
        lines.append(f"poses: no outliers (none more than {OUTLIER_Z} robust std from the median)")
    if s.off_centre:
        lines.append(f"poses: warning: yaw is not zero-centred (centre {_deg(s.yaw_centre)}; the frontal view "
                     f"belongs at yaw 0, and mirroring pairs yaw with -yaw); fix: {fix}")
    return lines


# ----------------------------------------------------------------------------------------------
# Reading a dataset's poses and sample images

@dataclass
class DatasetPoses:
    names: List[str]
    angles: Optional[np.ndarray]    # [N, 3] radians; None without usable camera_angles
    json_path: Optional[str] = None  # dataset.json's path inside the dataset


def read_poses(path) -> DatasetPoses:
    """The image names and camera angles of a dataset (no image decoded); angles None when the
    dataset.json has none or they have errors (which `check` lists)."""
    files = open_files(path)
    try:
        index = build_index(files)
    finally:
        files.close()
    return DatasetPoses(list(index.images), index.angles, index.json_path)


def sample_indices(count: int, samples: int = SHEET_SAMPLES, seed: int = SHEET_SEED) -> np.ndarray:
    """The images on the contact sheet: `samples` of `count` without replacement, seeded, in path order."""
    if count <= samples:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, samples, replace=False))


def load_thumbnails(path, names: Sequence[str], size: int) -> List[Optional[Image.Image]]:
    """The named images as RGB thumbnails of size x size (None for one that cannot be read: check lists why)."""
    out: List[Optional[Image.Image]] = []
    files = open_files(path)
    try:
        for rel in names:
            try:
                image = to_rgb(read_image(files.read(rel)))
                out.append(image.resize((size, size), Image.Resampling.LANCZOS))
            except Exception:  # noqa: BLE001 - a bad file is drawn as a crossed box; check reports it
                out.append(None)
    finally:
        files.close()
    return out


# ----------------------------------------------------------------------------------------------
# The picture

BACKGROUND = (255, 255, 255)
INK = (30, 30, 30)
GRID = (225, 225, 225)
AXIS_ZERO = (150, 150, 150)
POINT = (31, 90, 180)          # the dataset's poses
MIRROR = (240, 150, 60)        # their mirrored copies (yaw -> -yaw)
BAR = (31, 90, 180)
WARNING = (190, 20, 20)

THUMB = 104
SHEET_LEFT = 20
SHEET_COLUMNS = 8
GAP = 8
CAPTION = 18
MARGIN = 70                    # room for the y-axis labels
PX_PER_DEGREE = 2              # scatter: 720 x 360 pixels for 360 x 180 degrees
SCATTER_W, SCATTER_H = 360 * PX_PER_DEGREE, 180 * PX_PER_DEGREE
HIST_SIZE = 110                # height of the yaw histogram, width of the pitch histogram
HIST_BIN_DEGREES = 5
TEXT_LINE = 20                 # pixels per line of statistics


def _font(size: int):
    # Pillow's built-in scalable font (needs FreeType, which Pillow's wheels include): no system font needed.
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


@dataclass(frozen=True)
class PlotLayout:
    """Where the scatter lies on the canvas; `xy` maps a pose to its pixel."""

    left: int
    top: int

    def xy(self, yaw, pitch) -> Tuple[np.ndarray, np.ndarray]:
        """Pixel (column, row) of poses: yaw -180..180 degrees left to right, pitch 0..180 top to bottom."""
        x = self.left + (np.degrees(wrap_angle(np.asarray(yaw, dtype=np.float64))) + 180) * PX_PER_DEGREE
        y = self.top + np.degrees(np.asarray(pitch, dtype=np.float64)) * PX_PER_DEGREE
        # + 1e-6: a pose on a pixel's edge (45 degrees after a radians round trip is 44.99999...) stays on it
        return (np.clip(np.floor(x + 1e-6), self.left, self.left + SCATTER_W - 1).astype(np.int64),
                np.clip(np.floor(y + 1e-6), self.top, self.top + SCATTER_H - 1).astype(np.int64))


def _sheet_height(count: int) -> int:
    rows = max(1, math.ceil(count / SHEET_COLUMNS))
    return rows * (THUMB + CAPTION + GAP)


def picture_layout(samples: int, text_lines: int = 6) -> Tuple[Tuple[int, int], PlotLayout]:
    """(canvas size, scatter layout) of a picture with `samples` images on its contact sheet and
    `text_lines` lines of statistics under the plots."""
    width = MARGIN + SCATTER_W + GAP + HIST_SIZE + 40
    top = 44 + _sheet_height(samples) + 40
    height = top + SCATTER_H + 34 + HIST_SIZE + 40 + max(text_lines, 1) * TEXT_LINE + 20
    return (width, height), PlotLayout(MARGIN, top)


def _draw_sheet(canvas: Image.Image, draw: ImageDraw.ImageDraw, thumbs, captions: Sequence[str], top: int) -> None:
    font = _font(12)
    for k, (thumb, caption) in enumerate(zip(thumbs, captions, strict=True)):
        x = SHEET_LEFT + (k % SHEET_COLUMNS) * (THUMB + GAP)
        y = top + (k // SHEET_COLUMNS) * (THUMB + CAPTION + GAP)
        if thumb is None:
            draw.rectangle([x, y, x + THUMB - 1, y + THUMB - 1], outline=(200, 0, 0), width=2)
            draw.line([x, y, x + THUMB - 1, y + THUMB - 1], fill=(200, 0, 0), width=2)
            draw.line([x, y + THUMB - 1, x + THUMB - 1, y], fill=(200, 0, 0), width=2)
        else:
            canvas.paste(thumb, (x, y))
            draw.rectangle([x - 1, y - 1, x + THUMB, y + THUMB], outline=GRID)
        draw.text((x, y + THUMB + 2), caption, fill=INK, font=font)


def _density(layout: PlotLayout, yaw, pitch) -> np.ndarray:
    """Points per pixel of the scatter ([SCATTER_H, SCATTER_W]), each point a 3x3 dot."""
    grid = np.zeros((SCATTER_H, SCATTER_W), dtype=np.float64)
    x, y = layout.xy(yaw, pitch)
    x, y = x - layout.left, y - layout.top
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            np.add.at(grid, (np.clip(y + dy, 0, SCATTER_H - 1), np.clip(x + dx, 0, SCATTER_W - 1)), 1.0)
    return grid


def _shade(region: np.ndarray, density: np.ndarray, colour: Tuple[int, int, int]) -> None:
    """Paint `colour` over `region` where density > 0: one point pale, many points full (log scale),
    so 70,000 FFHQ poses still show where they crowd."""
    if not density.any():
        return
    strength = np.log1p(density) / np.log1p(density.max())
    alpha = np.where(density > 0, 0.45 + 0.55 * strength, 0.0)[..., None]
    region[:] = (region * (1 - alpha) + np.asarray(colour, dtype=np.float64) * alpha)


def _draw_axes(draw: ImageDraw.ImageDraw, layout: PlotLayout) -> None:
    font = _font(13)
    left, top, right, bottom = layout.left, layout.top, layout.left + SCATTER_W, layout.top + SCATTER_H
    for deg in range(-180, 181, 45):
        x = left + (deg + 180) * PX_PER_DEGREE
        draw.line([x, top, x, bottom], fill=AXIS_ZERO if deg == 0 else GRID)
        draw.text((x, bottom + 4), f"{deg}", fill=INK, font=font, anchor="mt")
    for deg in range(0, 181, 30):
        y = top + deg * PX_PER_DEGREE
        draw.line([left, y, right, y], fill=AXIS_ZERO if deg == 90 else GRID)
        draw.text((left - 6, y), f"{deg}", fill=INK, font=font, anchor="rm")
    draw.rectangle([left, top, right, bottom], outline=INK)
    draw.text(((left + right) // 2, bottom + 20), "yaw (degrees; 0 = frontal, camera on +X)", fill=INK,
              font=font, anchor="mt")
    draw.text((left - 50, top - 8), "pitch (degrees from +Y; 90 = horizon)", fill=INK, font=font, anchor="ls")


def _draw_histograms(draw: ImageDraw.ImageDraw, layout: PlotLayout, yaw, pitch) -> None:
    font = _font(12)
    edges_yaw = np.radians(np.arange(-180, 181, HIST_BIN_DEGREES))
    counts_yaw, _ = np.histogram(wrap_angle(np.asarray(yaw, dtype=np.float64)), bins=edges_yaw)
    edges_pitch = np.radians(np.arange(0, 181, HIST_BIN_DEGREES))
    counts_pitch, _ = np.histogram(np.clip(pitch, 0, math.pi), bins=edges_pitch)
    peak = max(int(counts_yaw.max()), 1)
    base = layout.top + SCATTER_H + 40 + HIST_SIZE    # yaw histogram: bars grow up from here
    bar = HIST_BIN_DEGREES * PX_PER_DEGREE
    for k, n in enumerate(counts_yaw):
        if n:
            x = layout.left + k * bar
            draw.rectangle([x, base - max(1, round(n / peak * HIST_SIZE)), x + bar - 2, base], fill=BAR)
    draw.line([layout.left, base, layout.left + SCATTER_W, base], fill=INK)
    draw.text((layout.left + SCATTER_W + 6, base - HIST_SIZE), f"yaw histogram\n{HIST_BIN_DEGREES}\N{DEGREE SIGN} bins\n"
              f"peak {peak}", fill=INK, font=font)
    peak = max(int(counts_pitch.max()), 1)
    left = layout.left + SCATTER_W + GAP       # pitch histogram: bars grow right from here
    for k, n in enumerate(counts_pitch):
        if n:
            y = layout.top + k * bar
            draw.rectangle([left, y, left + max(1, round(n / peak * HIST_SIZE)), y + bar - 2], fill=BAR)
    draw.line([left, layout.top, left, layout.top + SCATTER_H], fill=INK)
    draw.text((left, layout.top - 40), f"pitch histogram\n{HIST_BIN_DEGREES}\N{DEGREE SIGN} bins, peak {peak}",
              fill=INK, font=font)


def _wrap(lines: Sequence[str], font, width: int) -> List[str]:
    """`lines` broken at spaces so that each fits in `width` pixels (the fix command is long)."""
    out: List[str] = []
    for line in lines:
        current = ""
        for word in line.split(" "):
            candidate = f"{current} {word}" if current else word
            if current and font.getlength(candidate) > width:
                out.append(current)
                current = "    " + word
            else:
                current = candidate
        out.append(current)
    return out


def draw_report(title: str, thumbs: Sequence[Optional[Image.Image]], captions: Sequence[str],
                angles: Optional[np.ndarray], stats_lines: Sequence[str]) -> Image.Image:
    """The picture: title, contact sheet (`thumbs`, THUMB pixels square, with `captions`), the
    yaw/pitch scatter (mirrored copies in orange) with histograms, and `stats_lines` below."""
    width = picture_layout(len(thumbs))[0][0]
    text = _wrap(stats_lines, _font(13), width - 2 * SHEET_LEFT)
    (width, height), layout = picture_layout(len(thumbs), len(text))
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    draw.text((SHEET_LEFT, 12), title, fill=INK, font=_font(18))
    _draw_sheet(canvas, draw, thumbs, captions, 44)
    if angles is None:
        draw.text((layout.left, layout.top), "no camera_angles in dataset.json: no pose plot", fill=INK, font=_font(16))
        return canvas
    yaw, pitch = angles[:, 0].astype(np.float64), angles[:, 1].astype(np.float64)
    _draw_axes(draw, layout)     # first: the points are painted over the grid, not hidden by it
    pixels = np.asarray(canvas, dtype=np.float64).copy()
    region = pixels[layout.top:layout.top + SCATTER_H, layout.left:layout.left + SCATTER_W]
    _shade(region, _density(layout, -yaw, pitch), MIRROR)    # under the real poses
    _shade(region, _density(layout, yaw, pitch), POINT)
    canvas = Image.fromarray(np.round(pixels).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    legend_y = layout.top - 26
    font = _font(13)
    for k, (colour, label) in enumerate(((POINT, "image poses"), (MIRROR, "mirrored copies (x-flip: yaw -> -yaw)"))):
        x = layout.left + 280 + k * 120
        draw.rectangle([x, legend_y, x + 10, legend_y + 10], fill=colour)
        draw.text((x + 16, legend_y - 2), label, fill=INK, font=font)
    _draw_histograms(draw, layout, yaw, pitch)
    y = layout.top + SCATTER_H + 40 + HIST_SIZE + 20
    warning = False
    for line in text:
        warning = line.startswith("warning") or (warning and line.startswith("    "))   # a wrapped warning stays red
        draw.text((SHEET_LEFT, y), line, fill=WARNING if warning else INK, font=font)
        y += TEXT_LINE
    return canvas


def _caption(angles: Optional[np.ndarray], i: int) -> str:
    if angles is None:
        return ""
    return f"yaw {math.degrees(angles[i, 0]):.0f}  pitch {math.degrees(angles[i, 1]):.0f}"


def check_picture_path(out, force: bool = False) -> Path:
    """`out` as a Path when a picture may be written there; TriganError, one line, otherwise."""
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise TriganError(f"--picture {out}: expected a file name ending in .png")
    if out.is_dir() or (out.exists() and not force):
        raise TriganError(f"--picture {out}: already exists (add --force to overwrite it)" if not out.is_dir()
                          else f"--picture {out}: is a folder; expected a .png file name")
    if not out.parent.is_dir():
        raise TriganError(f"--picture {out}: folder {out.parent} does not exist")
    return out


def write_picture(path, out, poses: Optional[DatasetPoses] = None, stats_lines: Sequence[str] = (),
                  samples: int = SHEET_SAMPLES, seed: int = SHEET_SEED, force: bool = False) -> Path:
    """Draw the picture of dataset `path` to the PNG `out` (written under a temporary name and
    renamed). TriganError, one line, for an output that is not a .png, exists without `force`, or
    cannot be written."""
    out = check_picture_path(out, force)
    poses = poses or read_poses(path)
    chosen = sample_indices(len(poses.names), samples, seed)
    thumbs = load_thumbnails(path, [poses.names[i] for i in chosen], THUMB)
    captions = [_caption(poses.angles, int(i)) for i in chosen]
    title = f"{path}: {len(poses.names)} images ({len(chosen)} shown, seed {seed})"
    image = draw_report(title, thumbs, captions, poses.angles, [line.removeprefix("poses: ") for line in stats_lines])
    _save_atomically(image, out)
    return out


def _save_atomically(image: Image.Image, out: Path) -> None:
    """PNG-encode in memory, then core/atomic's replace (the group's usual permissions, no half
    file; a place that cannot take it is one `cannot write PATH: REASON` line)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    atomic_write_bytes(out, buffer.getvalue())
