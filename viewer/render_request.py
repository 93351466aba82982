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


class LatentKey(NamedTuple):
    """Everything the field (tri-planes) of a request depends on: the worker caches fields by it."""

    model_path: str
    seed: int
    class_index: Optional[int]
    psi: float
    noise_mode: str
    latent_file: Optional[str] = None     # an inverted latent (NAME.inversion.npz); then seed .. noise are unused


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

    @property
    def latent_key(self) -> LatentKey:
        if self.latent_file is not None:
            # the file's ws and noise are the latent: seed, class, psi and noise mode change nothing
            return LatentKey(self.model_path, 0, None, 1.0, "const", self.latent_file)
        return LatentKey(self.model_path, self.seed, self.class_index, self.psi, self.noise_mode)

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

    def request(self, model_path: str, pose: Optional[Pose] = None, quality: str = "exact") -> RenderRequest:
        """The request these values make with a camera (default: Pose()); raises TriganError (one
        line) for values no request takes."""
        return RenderRequest(model_path=model_path, seed=self.seed, class_index=self.class_index, psi=self.psi,
                             noise_mode=self.noise_mode, pose=Pose() if pose is None else pose, resolution=self.resolution, mode=self.mode,
                             quality=quality, sample_multiplier=self.sample_multiplier, background=self.background,
                             latent_file=self.latent_file)


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
