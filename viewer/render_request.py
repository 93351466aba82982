"""What the GUI asks the render worker for, and what it gets back.

`ViewValues` are the controls' values; with the model and the camera (a core.cameras.Pose, which the
viewer's OrbitController edits) they make a `RenderRequest`: an immutable, hashable value, everything
a frame depends on. A request names a latent either by seed, class and psi (through the model's
mapping network) or by an inverted latent file (`latent_file`: a NAME.inversion.npz that
`trigan invert` or the viewer's Invert tab wrote; its ws and noise maps are used as they are, and
seed, class, psi and noise mode do not matter). The worker renders it into a `Frame`; the same request always gives the same pixels (the renderer's random numbers are
hashes of the ray, not draws from a global generator), so a request can be a cache key too.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from typing import NamedTuple, Optional

import numpy as np

from trigan.core.cameras import Pose
from trigan.core.errors import TriganError
from trigan.core.limits import MAX_SEED

MODES = ("rgb", "depth", "normals", "opacity")
QUALITIES = ("preview", "exact")
BACKGROUNDS = ("model", "white", "black")
NOISE_MODES = ("const", "random", "none")
MIN_RESOLUTION, MAX_RESOLUTION = 64, 1024
MIN_SAMPLE_MULTIPLIER, MAX_SAMPLE_MULTIPLIER = 0.25, 8.0


def file_stamp(path: Optional[str]) -> Optional[tuple]:
    """(path, mtime, size) of a file, to notice that it was rewritten (a training run replacing
    latest.ckpt, an inversion rewriting its latent file); None for no file."""
    if path is None:
        return None
    try:
        st = os.stat(path)
        return (str(path), st.st_mtime_ns, st.st_size)
    except OSError:
        return (str(path), None, None)          # the reader of the file says what is wrong with it


class LatentKey(NamedTuple):
    """Everything the field (tri-planes) of a request depends on: the worker caches fields by it."""

    model_path: str
    seed: int
    class_index: Optional[int]
    psi: float
    noise_mode: str
    latent_file: Optional[str] = None     # an inverted latent (NAME.inversion.npz); then seed .. noise are unused
    mix: Optional["LatentMix"] = None     # an interpolation toward another latent (see LatentMix)


@dataclass(frozen=True)
class LatentMix:
    """The far end of an interpolation in w: the request's own latent (its seed, class and psi, or
    its latent_file) is t = 0, this one t = 1; the field is that of (1 - t) w0 + t w1
    (viewer/interpolation.py). The far end is a seed (with the request's class, psi and noise mode)
    or an inverted latent file."""

    t: float
    seed: int = 0
    latent_file: Optional[str] = None

    def __post_init__(self):
        try:
            object.__setattr__(self, "t", float(self.t))
            object.__setattr__(self, "seed", int(self.seed))
        except (TypeError, ValueError) as exc:
            raise TriganError(f"interpolation: {exc}") from None
        if not (math.isfinite(self.t) and 0.0 <= self.t <= 1.0):
            raise TriganError(f"interpolation t {self.t}: expected 0..1")
        if not 0 <= self.seed <= MAX_SEED:
            raise TriganError(f"interpolation seed {self.seed}: expected 0..{MAX_SEED}")
        if self.latent_file is not None:
            object.__setattr__(self, "latent_file", str(self.latent_file))
            if not self.latent_file.strip():
                raise TriganError("interpolation latent file: an empty path")


def _choice(value, options, what: str) -> str:
    if value not in options:
        raise TriganError(f"{what} {value!r}: expected one of {', '.join(options)}")
    return value


@dataclass(frozen=True)
class RenderRequest:
    """One frame to render. Invalid values raise TriganError (one line) when the request is made.

    noise_mode: "const" (the model's stored noise maps, the usual choice), "random" (noise drawn
    from the seed, so still reproducible), "none". background: "model" (as trained: the model's
    background network or its white/black flag), "white" or "black" (the foreground composited over
    that colour; a background network is left out). quality "preview" is a cheap approximation for
    a moving camera; "exact" the volume render. sample_multiplier scales the samples per ray of the
    exact path.
    """

    model_path: str
    seed: int = 0
    class_index: Optional[int] = None
    psi: float = 1.0
    noise_mode: str = "const"
    pose: Pose = field(default_factory=Pose)
    resolution: int = 256
    mode: str = "rgb"
    quality: str = "exact"
    sample_multiplier: float = 1.0
    background: str = "model"
    latent_file: Optional[str] = None
    mix: Optional[LatentMix] = None

    def __post_init__(self):
        def set_(name, value):
            object.__setattr__(self, name, value)

        set_("model_path", str(self.model_path))
        if self.latent_file is not None:
            set_("latent_file", str(self.latent_file))
            if not self.latent_file.strip():
                raise TriganError("latent file: an empty path (None shows seeds)")
        try:
            set_("seed", int(self.seed))
            set_("resolution", int(self.resolution))
            set_("psi", float(self.psi))
            set_("sample_multiplier", float(self.sample_multiplier))
            if self.class_index is not None:
                set_("class_index", int(self.class_index))
        except (TypeError, ValueError) as exc:
            raise TriganError(f"render request: {exc}") from None
        if not 0 <= self.seed <= MAX_SEED:
            raise TriganError(f"seed {self.seed}: expected 0..{MAX_SEED}")
        if self.class_index is not None and self.class_index < 0:
            raise TriganError(f"class {self.class_index}: expected 0 or more")
        if not math.isfinite(self.psi):
            raise TriganError(f"psi {self.psi}: expected a number (0.7 is usual, 1 = no truncation)")
        if not MIN_RESOLUTION <= self.resolution <= MAX_RESOLUTION:
            raise TriganError(f"resolution {self.resolution}: expected {MIN_RESOLUTION}..{MAX_RESOLUTION} pixels")
        if not MIN_SAMPLE_MULTIPLIER <= self.sample_multiplier <= MAX_SAMPLE_MULTIPLIER:
            raise TriganError(f"sample multiplier {self.sample_multiplier:g}: expected "
                              f"{MIN_SAMPLE_MULTIPLIER:g}..{MAX_SAMPLE_MULTIPLIER:g}")
        if not isinstance(self.pose, Pose):
            raise TriganError(f"render request: pose must be a core.cameras.Pose, got {type(self.pose).__name__}")
        _choice(self.mode, MODES, "render mode")
        _choice(self.quality, QUALITIES, "quality")
        _choice(self.background, BACKGROUNDS, "background")
        _choice(self.noise_mode, NOISE_MODES, "noise mode")
        if self.mix is not None and not isinstance(self.mix, LatentMix):
            raise TriganError(f"render request: mix must be a LatentMix, got {type(self.mix).__name__}")

    @property
    def latent_key(self) -> LatentKey:
        if self.latent_file is not None:
            if self.mix is not None and self.mix.latent_file is None:
                # toward a seed: that seed's class, psi and noise mode shape the mixed field
                return LatentKey(self.model_path, 0, self.class_index, self.psi, self.noise_mode, self.latent_file,
                                 self.mix)
            # the file's ws and noise are the latent: seed, class, psi and noise mode change nothing
            return LatentKey(self.model_path, 0, None, 1.0, "const", self.latent_file, self.mix)
        return LatentKey(self.model_path, self.seed, self.class_index, self.psi, self.noise_mode, None, self.mix)

    def with_values(self, **values) -> "RenderRequest":
        return replace(self, **values)


@dataclass(frozen=True)
class ViewValues:
    """The controls that, with the camera and the model, make a RenderRequest."""

    seed: int = 0
    class_index: Optional[int] = None
    psi: float = 0.7
    noise_mode: str = "const"
    resolution: int = 256
    mode: str = "rgb"
    quality: str = "exact"            # what a resting view refines to: "exact" or "preview" (moving: preview)
    sample_multiplier: float = 1.0
    background: str = "model"
    latent_file: Optional[str] = None  # an inverted latent shown instead of the seed (the Invert tab)
    mix: Optional[LatentMix] = None    # an interpolation toward another latent (the Interpolate tab)

    def request(self, model_path: str, pose: Optional[Pose] = None, quality: str = "exact") -> RenderRequest:
        """The request these values make with a camera (default: Pose()); raises TriganError (one
        line) for values no request takes."""
        return RenderRequest(model_path=model_path, seed=self.seed, class_index=self.class_index, psi=self.psi,
                             noise_mode=self.noise_mode, pose=Pose() if pose is None else pose, resolution=self.resolution, mode=self.mode,
                             quality=quality, sample_multiplier=self.sample_multiplier, background=self.background,
                             latent_file=self.latent_file, mix=self.mix)


@dataclass
class Frame:
    """A finished render. image: [H, W, 4] float32 RGBA in [0, 1] (alpha 1), ready for a raw
    texture. An error frame has `error` set (one line) and a transparent black image of the
    requested size, so code that only draws still works.

    A `partial` frame is an intermediate step of its request (a coarse first look while the
    latent's caches build, or an exact render part way through its refinement: the pixels done so
    far, the rest filled from a coarser lattice); the request's finished frame follows unless a
    newer request cancels it. A partial frame is never the exact frame of its request."""

    request: RenderRequest
    image: np.ndarray
    ms: float
    path_used: str
    error: Optional[str] = None
    stats: dict = field(default_factory=dict)   # e.g. {"setup_ms": ..., "render_ms": ...}
    partial: bool = False
    # The render's raw geometry, [H, W] float32 like `image` (None where a path does not give it):
    # depth is the expected distance along each pixel's ray (world units), opacity the accumulated
    # alpha. The view colours depth with a colormap and reads the 3-D point under the cursor from it.
    depth: Optional[np.ndarray] = None
    opacity: Optional[np.ndarray] = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def rgb_uint8(self) -> np.ndarray:
        """[H, W, 3] uint8 of the image (what a screenshot saves)."""
        return (np.clip(self.image[..., :3], 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)

    @classmethod
    def failed(cls, request: RenderRequest, error: str, ms: float = 0.0) -> "Frame":
        res = request.resolution
        return cls(request, np.zeros((res, res, 4), dtype=np.float32), ms, "error", error)
