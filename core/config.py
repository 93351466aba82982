"""The model's configuration and the machinery every config layer shares.

`ModelConfig` (and its sections) describes a generator's architecture, cameras and rendering; the
training recipe (discriminator, schedules, losses) lives in `trigan.training.config`, whose `Config`
holds a ModelConfig. A config is saved inside every checkpoint (and a run's config.yaml) as a plain
dict {"model": ..., "discriminator": ..., "training": ...}. Core reads such a dict as a
`SavedConfig`: the model typed and validated, the recipe's sections kept as the plain (raw-checked)
mappings they were saved as, which training parses; so core never imports training and a
checkpoint written by either layer reads the same.

The shared machinery: `choice` fields (a fixed set of values, checked at load), number bounds,
the raw-data checks of anything read from a file or the command line, the OmegaConf merge with
one-line errors, the one `apply_overrides` (`section.key=value`) and the generator's memory check.

Units: angles in radians, fov in degrees (full angle), distances in world units (camera radius 1).
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from trigan.core.errors import ConfigError
from trigan.core.limits import MAX_CLASSES, MAX_IMAGE_SIDE, MAX_KIMG, MAX_RAY_STEPS

# The values of each choice field (the first-use checks in field.py, renderer.py, cameras.py and
# generator.py stay for values built in code rather than read from a config).
FAMILIES = ("epigraf", "3dgp")
COLOR_ACTIVATIONS = ("none", "sigmoid")
BACKGROUND_TYPES = (None, "sphere")
CAMERA_DISTS = ("custom", "uniform", "normal", "gaussian", "truncnorm", "spherical_uniform")
DENSITY_ACTIVATIONS = ("softplus", "relu")
IMPORTANCE_SPACINGS = ("world", "unit")


def choice(default, choices: Sequence) -> Any:
    """A dataclass field whose value must be one of `choices`. The field keeps its plain type (str,
    Optional[str]) so saved configs hold plain strings; `check_choices` refuses any other value at
    load (OmegaConf cannot check a Literal)."""
    if default not in choices:
        raise ValueError(f"default {default!r} is not one of {choices!r}")
    return field(default=default, metadata={"choices": tuple(choices)})


@dataclass
class MappingConfig:
    z_dim: int = 512
    w_dim: int = 512
    num_layers: int = 2
    lr_multiplier: float = 0.01
    w_avg_beta: float = 0.998
    # Generator pose conditioning (GPC, EpiGRAF 2.1): yaw and pitch are appended to the label.
    camera_cond: bool = False
    camera_cond_drop_p: float = 0.0
    camera_cond_noise_std: float = 0.0


@dataclass
class TriPlaneConfig:
    resolution: int = 512
    feat_dim: int = 32                  # channels per plane; the decoder outputs 3 * feat_dim
    channel_base: int = 32768           # decoder channels at resolution r: min(base // r, max)
    channel_max: int = 512
    use_noise: bool = True
    conv_clamp: Optional[float] = 256.0  # None: no clamping (3DGP's fp32-only generator)
    mlp_hidden: int = 64
    mlp_layers: int = 2                  # feat -> hidden (lrelu) -> ... -> 4 (rgb + raw density)
    # 'none': the colours are the MLP's raw outputs (EpiGRAF). 'sigmoid': squashed into [-1, 1] with
    # a 0.1% margin (EG3D). Unbounded colours let a model draw a dark object as a thin fog of colours
    # far below -1 over the white background, which matches every image and never turns solid.
    color_activation: str = choice("none", COLOR_ACTIVATIONS)


@dataclass
class BackgroundConfig:
    # None: no background model. 'sphere': NeRF++ inverted-sphere background INR (EpiGRAF 3.4).
    type: Optional[str] = choice(None, BACKGROUND_TYPES)
    num_steps: int = 8
    num_blocks: int = 2
    hidden_dim: int = 128
    fourier_multiplier: float = 64.0
    num_fourier_freqs: int = 6


@dataclass
class CameraConfig:
    fov: float = 12.0                   # default full field of view, degrees
    radius: float = 1.0
    ray_start: float = 0.88
    ray_end: float = 1.12
    cube_scale: float = 0.2             # scene box is [-cube_scale, cube_scale]^3
    # Density is zero farther than this from the origin (world units; None: the whole scene box). No
    # training camera may see the box's corners and faces: density left there, unconstrained, shows
    # as junk when the camera zooms out and as extra pieces in meshes.
    support_radius: Optional[float] = None
    # Where the model's own yaw 0 lies in trigan's convention: a model yaw y is the trigan yaw
    # y + yaw_offset. 0 for EpiGRAF and trigan's models; pi/2 for 3DGP's (its yaw 0 is on +Z).
    # Every angle in this config and every camera outside the model is in trigan's convention; the
    # offset is applied only where a model reads raw yaw numbers (pose conditioning of its mapping
    # or discriminator).
    yaw_offset: float = 0.0
    # Prior over training / random-view cameras: custom (dataset poses), uniform, normal, truncnorm
    # (normal cut to yaw_range / pitch_range), spherical_uniform (pitch = arccos(1 - 2v), v uniform
    # over pitch_range / pi: uniform directions). Means and spreads as EpiGRAF's h_mean/h_stddev
    # (yaw) and v_mean/v_stddev (pitch); uniform without ranges spans mean +/- std.
    dist: str = choice("custom", CAMERA_DISTS)
    yaw_mean: float = 0.0
    yaw_std: float = 0.0
    pitch_mean: float = math.pi / 2
    pitch_std: float = 0.0
    # [min, max] of yaw and pitch; None: mean +/- std (pitch of spherical_uniform: [0, pi]). 3DGP
    # keeps these apart from the means and spreads: they also bound its camera generator.
    yaw_range: Optional[List[float]] = None
    pitch_range: Optional[List[float]] = None
    mean_pose: List[float] = field(default_factory=lambda: [0.0, math.pi / 2, 0.0])
    # 3DGP's ball-in-sphere prior: fov range and a look-at point inside a ball around the pivot, its
    # radius uniform in [look_at_radius_min, look_at_radius_max] and its direction drawn like a
    # spherical_uniform camera over look_at_yaw_range (None: a whole turn, [-pi, pi] of the model's
    # own yaw) and look_at_pitch_range (None: [0, pi]).
    fov_min: Optional[float] = None
    fov_max: Optional[float] = None
    look_at_radius_min: float = 0.0
    look_at_radius_max: float = 0.0
    look_at_yaw_range: Optional[List[float]] = None
    look_at_pitch_range: Optional[List[float]] = None


@dataclass
class CameraGeneratorConfig:
    """3DGP's learned camera generator (3dgp.md 3.3): two small MLPs map a prior camera (plus z and
    the class) to a posterior camera inside the prior's ranges. Needs a prior with ranges
    (camera.dist uniform or spherical_uniform). The radius always stays at the prior's value."""

    enabled: bool = False
    hidden_dim: int = 256
    embed_dim: int = 16                 # size of the z and class embeddings
    lr_multiplier: float = 0.1          # equalized-lr multiplier: learns at 0.1x G's rate
    adjust_angles: bool = True          # yaw and pitch of the camera origin
    adjust_fov: bool = True
    adjust_look_at: bool = True
    # The radius is the origin MLP's raw output (no range bounds it) when adjusted; upstream never does.
    adjust_radius: bool = False
    # Add the normalised prior to the MLPs' outputs before mapping them back into the ranges.
    residual: bool = False
    # The lower end the look-at radius is mapped back to; None: model.camera.look_at_radius_min.
    # Upstream 3DGP uses its look-at *pitch* minimum there, a slip that changes nothing while both
    # are 0 (as in all of its configs); converted 3DGP models keep its formula.
    look_at_radius_floor: Optional[float] = None


@dataclass
class RenderConfig:
    num_steps: int = 48                 # stratified coarse samples per ray
    num_fine_steps: Optional[int] = None  # importance samples; None = as many as num_steps
    density_shift: float = 0.0          # added to the raw density before the activation
    density_activation: str = choice("softplus", DENSITY_ACTIVATIONS)
    white_background: bool = False
    # 3DGP's marcher (EG3D's): the weight a ray leaves over (1 - sum w) goes to its last sample, so
    # every ray is opaque and ends on the colour and depth found at ray_end.
    last_back: bool = False
    # What the coarse pass's compositing weights (which place the fine samples) measure sample
    # spacing in: "world" units along the ray (EpiGRAF), or "unit", the ray's [ray_start, ray_end]
    # rescaled to [0, 1] (3DGP, EG3D). The final image composites in world units either way.
    importance_spacing: str = choice("world", IMPORTANCE_SPACINGS)
    # EpiGRAF's rule (True): without a background network the last sample's interval is 1e10 long, so
    # the field's colour at ray_end is every ray's backdrop and the opacity is ~1 everywhere; a model
    # must paint its own backdrop there. False: the far end is open (its interval 1e-3, as with a
    # background network) and white_background shows through empty space, so a model of objects on
    # white can learn empty space instead of a white wall and haze.
    opaque_far_end: bool = True
    # Training-time density noise, annealed linearly to 0 over nerf_noise_kimg_growth.
    nerf_noise_std_init: float = 1.0
    nerf_noise_kimg_growth: float = 5000.0


@dataclass
class ModelConfig:
    name: str = "custom"
    family: str = choice("epigraf", FAMILIES)
    img_resolution: int = 256
    img_channels: int = 3
    c_dim: int = 0                      # number of classes (one-hot labels); 0 = unconditional
    class_names: List[str] = field(default_factory=list)
    mapping: MappingConfig = field(default_factory=MappingConfig)
    triplane: TriPlaneConfig = field(default_factory=TriPlaneConfig)
    background: BackgroundConfig = field(default_factory=BackgroundConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    camera_generator: CameraGeneratorConfig = field(default_factory=CameraGeneratorConfig)
    render: RenderConfig = field(default_factory=RenderConfig)


@dataclass
class SavedConfig:
    """A saved config as core reads it: the model, typed and validated; the training recipe's
    sections as the plain mappings they were saved as (raw-checked only: bounds and choices of the
    recipe are `trigan.training.config`'s, which turns this into its Config with
    `config_from_saved`). Saving it writes the model whole (fields newer than the file at their
    defaults) and the recipe's sections as they were read."""

    model: ModelConfig = field(default_factory=ModelConfig)
    discriminator: Dict[str, Any] = field(default_factory=dict)
    training: Dict[str, Any] = field(default_factory=dict)

    def validate(self, what: str = "config") -> "SavedConfig":
        return validate_model_config(self, what)


# ---------------------------------------------------------------------------------------------------
# Validation. Every config reaches the code through `apply_overrides` (or `saved_config_from_dict`),
# which ends in its class's `validate`: a value that no model can use (a NaN fov, a zero step count,
# a 1e9-pixel image, an unknown camera distribution) is refused there in one line naming the key,
# instead of crashing (or allocating gigabytes) deep inside rendering or training.

# Bounds are generous: several times the largest value any published EpiGRAF / 3DGP / EG3D model uses,
# yet small enough that one value alone cannot ask for more memory than a workstation has.
MAX_IMAGE = MAX_IMAGE_SIDE  # pixels per side of an image, a tri-plane, a patch
MAX_WIDTH = 8192            # channels, hidden units, latent sizes
MAX_CHANNEL_BASE = 1 << 22  # channel_base / resolution gives the channels; 3DGP's widest is 65536
MAX_DEPTH = 64              # layers or blocks of one network
MAX_STEPS = MAX_RAY_STEPS   # samples per ray
MAX_LIST_ITEMS = MAX_CLASSES + 16   # class names are the longest list a config holds
MAX_STRING = 4096
MAX_NODES = 200_000         # containers plus values in one config as read from a file
MAX_NESTING = 16            # the schema is 4 levels deep
MAX_YAML_BYTES = 1 << 20    # a preset is a few kB; a bigger .yaml is not a trigan config


@dataclass(frozen=True)
class Bound:
    """An allowed interval for a number (integer or real); NaN and infinities never pass."""

    lo: float
    hi: float
    integer: bool = False
    lo_open: bool = False
    hi_open: bool = False
    power_of_two: bool = False
    unit: str = ""

    def admits(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.integer and not isinstance(value, int):
            return False
        if isinstance(value, float) and not math.isfinite(value):
            return False
        above = value > self.lo if self.lo_open else value >= self.lo
        below = value < self.hi if self.hi_open else value <= self.hi
        return above and below and not (self.power_of_two and (value < 1 or int(value) & (int(value) - 1)))

    def describe(self) -> str:
        fmt = lambda x: f"{int(x)}" if self.integer or float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"
        left, right = "(" if self.lo_open else "[", ")" if self.hi_open else "]"
        kind = "a power of two" if self.power_of_two else "an integer" if self.integer else "a finite number"
        text = f"{kind} in {left}{fmt(self.lo)}, {fmt(self.hi)}{right}"
        return f"{text} ({self.unit})" if self.unit else text


def int_bound(lo: int, hi: int, **kw) -> Bound:
    return Bound(lo, hi, integer=True, **kw)


def real_bound(lo: float, hi: float, **kw) -> Bound:
    return Bound(lo, hi, **kw)


# Bounds that several fields of either layer share.
PROBABILITY = real_bound(0.0, 1.0, unit="a probability")
NONNEG = real_bound(0.0, 1e12)
POSITIVE = real_bound(0.0, 1e12, lo_open=True)
ANY = real_bound(-1e12, 1e12)
KIMG = real_bound(0.0, MAX_KIMG, unit="thousands of images")
WIDTH = int_bound(1, MAX_WIDTH)
LR = real_bound(0.0, 100.0, lo_open=True, unit="a learning rate")
LR_MULTIPLIER = real_bound(0.0, 1e4, lo_open=True)
CLAMP = real_bound(0.0, 1e12, lo_open=True)
_ANGLE = real_bound(-1e4, 1e4, unit="radians")
_DEGREES = real_bound(0.0, 180.0, lo_open=True, hi_open=True, unit="degrees, full angle")
_DISTANCE = real_bound(0.0, 1e6, lo_open=True, unit="world units")


@dataclass(frozen=True)
class Rules:
    """The checks of one layer's numbers, by dotted key from the root of a saved config: the bound
    of every int and float field (a None of an Optional field is always allowed), lists of numbers
    with a fixed length ([min, max] ranges are also ordered), and pairs (low key, high key,
    relation) that must be ordered (a None on either side is not checked)."""

    bounds: Dict[str, Bound]
    list_lengths: Dict[str, int] = field(default_factory=dict)
    unordered_lists: tuple = ()          # keys of two-number lists that are not [min, max] ranges
    ordered: tuple = ()

    def check(self, cfg, what: str) -> None:
        for key, bound in self.bounds.items():
            self._check_value(key, config_value(cfg, key), bound, what)
        for low_key, high_key, relation in self.ordered:
            low, high = config_value(cfg, low_key), config_value(cfg, high_key)
            if low is not None and high is not None and not (low < high if relation == "<" else low <= high):
                raise ConfigError(f"{what}: {low_key}={low} and {high_key}={high}: expected {low_key} {relation} "
                                  f"{high_key}")

    def _check_value(self, key: str, value, bound: Bound, what: str) -> None:
        if value is None:
            return   # the schema (OmegaConf) already refused None where the field is not Optional
        if key in self.list_lengths:
            length = self.list_lengths[key]
            if not isinstance(value, (list, tuple)) or len(value) != length:
                raise ConfigError(f"{what}: {key}={show_value(value)}: expected a list of {length} numbers")
            for item in value:
                if not bound.admits(item):
                    raise ConfigError(f"{what}: {key}={show_value(value)}: expected each entry to be "
                                      f"{bound.describe()}")
            if len(value) == 2 and key not in self.unordered_lists and not value[0] <= value[1]:
                raise ConfigError(f"{what}: {key}={show_value(value)}: expected [min, max] with min <= max")
            return
        if not bound.admits(value):
            raise ConfigError(f"{what}: {key}={show_value(value)}: expected {bound.describe()}")


MODEL_RULES = Rules(
    bounds={
        "model.img_resolution": int_bound(4, MAX_IMAGE, unit="pixels"),
        "model.img_channels": int_bound(1, 4),
        "model.c_dim": int_bound(0, MAX_CLASSES, unit="classes"),
        "model.mapping.z_dim": WIDTH,
        "model.mapping.w_dim": WIDTH,
        "model.mapping.num_layers": int_bound(1, MAX_DEPTH),
        "model.mapping.lr_multiplier": LR_MULTIPLIER,
        "model.mapping.w_avg_beta": real_bound(0.0, 1.0),
        "model.mapping.camera_cond_drop_p": PROBABILITY,
        "model.mapping.camera_cond_noise_std": NONNEG,
        "model.triplane.resolution": int_bound(4, MAX_IMAGE, power_of_two=True, unit="pixels"),
        "model.triplane.feat_dim": int_bound(1, 1024),
        "model.triplane.channel_base": int_bound(4, MAX_CHANNEL_BASE),
        "model.triplane.channel_max": WIDTH,
        "model.triplane.conv_clamp": CLAMP,
        "model.triplane.mlp_hidden": WIDTH,
        "model.triplane.mlp_layers": int_bound(1, MAX_DEPTH),
        "model.background.num_steps": int_bound(1, MAX_STEPS),
        "model.background.num_blocks": int_bound(1, MAX_DEPTH),
        "model.background.hidden_dim": WIDTH,
        "model.background.fourier_multiplier": ANY,
        "model.background.num_fourier_freqs": int_bound(0, 64),
        "model.camera.fov": _DEGREES,
        "model.camera.radius": _DISTANCE,
        "model.camera.ray_start": real_bound(0.0, 1e6, unit="world units"),
        "model.camera.ray_end": _DISTANCE,
        "model.camera.cube_scale": _DISTANCE,
        "model.camera.support_radius": _DISTANCE,
        "model.camera.yaw_offset": _ANGLE,
        "model.camera.yaw_mean": _ANGLE,
        "model.camera.yaw_std": real_bound(0.0, 1e4, unit="radians"),
        "model.camera.pitch_mean": _ANGLE,
        "model.camera.pitch_std": real_bound(0.0, 1e4, unit="radians"),
        "model.camera.yaw_range": _ANGLE,
        "model.camera.pitch_range": _ANGLE,
        "model.camera.mean_pose": _ANGLE,
        "model.camera.fov_min": _DEGREES,
        "model.camera.fov_max": _DEGREES,
        "model.camera.look_at_radius_min": real_bound(0.0, 1e6, unit="world units"),
        "model.camera.look_at_radius_max": real_bound(0.0, 1e6, unit="world units"),
        "model.camera.look_at_yaw_range": _ANGLE,
        "model.camera.look_at_pitch_range": _ANGLE,
        "model.camera_generator.hidden_dim": WIDTH,
        "model.camera_generator.embed_dim": WIDTH,
        "model.camera_generator.lr_multiplier": LR_MULTIPLIER,
        "model.camera_generator.look_at_radius_floor": real_bound(0.0, 1e6, unit="world units"),
        "model.render.num_steps": int_bound(1, MAX_STEPS, unit="samples per ray"),
        "model.render.num_fine_steps": int_bound(0, MAX_STEPS, unit="samples per ray"),
        "model.render.density_shift": ANY,
        "model.render.nerf_noise_std_init": NONNEG,
        "model.render.nerf_noise_kimg_growth": KIMG,
    },
    list_lengths={"model.camera.yaw_range": 2, "model.camera.pitch_range": 2, "model.camera.mean_pose": 3,
                  "model.camera.look_at_yaw_range": 2, "model.camera.look_at_pitch_range": 2},
    ordered=(("model.camera.ray_start", "model.camera.ray_end", "<"),
             ("model.camera.fov_min", "model.camera.fov_max", "<="),
             ("model.camera.look_at_radius_min", "model.camera.look_at_radius_max", "<=")))


def config_value(cfg, key: str):
    """The value at dotted `key` ("model.camera.fov") of a config."""
    value = cfg
    for part in key.split("."):
        value = getattr(value, part)
    return value


def show_value(value) -> str:
    """A config value as it reads in an error: strings quoted, None as YAML's null."""
    return "null" if value is None else repr(value) if isinstance(value, str) else str(value)


def check_choices(node, prefix: str, what: str) -> None:
    """ConfigError (one line: key, value, the allowed values) for the first `choice` field of the
    dataclass `node` (and the dataclasses inside it) that holds a value outside its choices.
    `prefix` is node's dotted key ("model.")."""
    for f in fields(node):
        value = getattr(node, f.name)
        allowed = f.metadata.get("choices")
        if allowed is not None and value not in allowed:
            raise ConfigError(f"{what}: {prefix}{f.name}={show_value(value)}: expected one of "
                              f"{', '.join(show_value(a) for a in allowed)}")
        if is_dataclass(value):
            check_choices(value, f"{prefix}{f.name}.", what)


def check_channel_base(key: str, base: int, top: int, top_what: str, what: str) -> None:
    """A network's channels at its top resolution are channel_base // resolution: a base below the
    resolution leaves a layer with no channels (a ZeroDivisionError deep in the weight init)."""
    if base // top < 1:
        raise ConfigError(f"{what}: {key}={base} gives no channels at {top_what}={top}: expected "
                          f"{key} >= {top} (channels = min(channel_base // resolution, channel_max))")


def check_model_values(cfg, what: str) -> None:
    """Every check of `cfg.model` (cfg a SavedConfig or training's Config) but the memory one:
    bounds, choices, ordered ranges, widths, class names."""
    MODEL_RULES.check(cfg, what)
    check_choices(cfg.model, "model.", what)
    tp = cfg.model.triplane
    check_channel_base("model.triplane.channel_base", tp.channel_base, tp.resolution, "model.triplane.resolution",
                       what)
    names = cfg.model.class_names
    if len(names) > MAX_CLASSES:
        raise ConfigError(f"{what}: model.class_names has {len(names)} names: expected at most {MAX_CLASSES}")
    if cfg.model.c_dim > 0 and len(names) > cfg.model.c_dim:
        raise ConfigError(f"{what}: model.class_names has {len(names)} names for model.c_dim={cfg.model.c_dim} "
                          "classes: expected at most one per class")


def validate_model_config(cfg, what: str = "config"):
    """`cfg` itself (a SavedConfig, or anything with a `.model`) when its model passes every check
    and the generator it describes fits in the memory available; else ConfigError (one line)."""
    check_model_values(cfg, what)
    check_model_memory(cfg.model, what)
    return cfg


# ---------------------------------------------------------------------------------------------------
# Memory. Each value may lie within its bound while their product does not (a 4096-wide decoder at
# 4096^2 holds hundreds of GB of weights), so the generator's size is measured before anything is
# allocated: its weights by building it on PyTorch's meta device (shapes only, no storage), plus one
# sample's tri-planes and the decoder's largest activation, against the memory free right now.

_FLOAT_BYTES = 4
# Which model keys size each part of the generator, to name the culprit when it is too big.
_PART_KEYS = {
    "mapping network": ("mapping.z_dim", "mapping.w_dim", "mapping.num_layers", "c_dim"),
    "tri-plane decoder": ("triplane.resolution", "triplane.feat_dim", "triplane.channel_base",
                          "triplane.channel_max", "mapping.w_dim"),
    "tri-plane MLP": ("triplane.feat_dim", "triplane.mlp_hidden", "triplane.mlp_layers"),
    "background network": ("background.hidden_dim", "background.num_blocks"),
    "camera generator": ("camera_generator.hidden_dim", "camera_generator.embed_dim", "c_dim"),
    "tri-planes of one sample": ("triplane.resolution", "triplane.feat_dim"),
}


def available_memory_bytes() -> Optional[int]:
    """Memory the system can give this process now without swapping (MemAvailable), or None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def generator_memory_parts(model: ModelConfig) -> Optional[dict]:
    """Bytes of each part of the generator `model` describes (weights and buffers, in float32) and of
    one sample's tri-planes plus the decoder's widest activation; None when the config does not
    build (the loader reports that with the weights' names).

    The element counts are closed forms of the modules' layers (core/mapping.py, synthesis.py,
    field.py, background.py, camera_generator.py), not a generator built on torch's meta device:
    the first meta operation loads torch's meta kernels, up to 1.7 s on every config load.
    tests/test_config_bounds.py checks them against the meta-device generator on every preset and
    official fixture."""
    if not _builds(model):
        return None
    tp = model.triplane
    top_channels = min(tp.channel_base // tp.resolution, tp.channel_max)
    activations = (3 * tp.feat_dim + 2 * top_channels) * tp.resolution ** 2 * _FLOAT_BYTES
    counts = {"mapping network": _mapping_elements(model), "tri-plane decoder": _decoder_elements(model),
              "tri-plane MLP": _mlp_elements(model), "background network": _background_elements(model),
              "camera generator": _camera_generator_elements(model)}
    if counts["camera generator"] is None:
        return None
    parts = {name: count * _FLOAT_BYTES for name, count in counts.items()}
    parts["tri-planes of one sample"] = activations
    return parts


_RESAMPLE_FILTER = 16   # core.layers.make_resample_filter: a 4x4 kernel, a buffer of every layer that resamples


def _builds(model: ModelConfig) -> bool:
    """What Generator(model) checks before it allocates (its ValueErrors and ConfigErrors), short of
    the camera prior's ranges (_camera_generator_elements)."""
    tp, radius = model.triplane, model.camera.support_radius
    try:
        return ((radius is None or float(radius) > 0) and tp.resolution >= 4 and not tp.resolution & (tp.resolution - 1)
                and tp.channel_base // tp.resolution >= 1 and tp.mlp_layers >= 1
                and tp.color_activation in COLOR_ACTIVATIONS and model.background.type in (None, "sphere"))
    except TypeError:
        return False


def _linear(in_features: int, out_features: int) -> int:
    """core.layers.FullyConnectedLayer with its bias."""
    return in_features * out_features + out_features


def _mapping_elements(model: ModelConfig) -> int:
    """core.mapping.MappingNetwork: the condition embedding, the fc layers, w_avg, mean_camera_pose."""
    m = model.mapping
    cond_dim = model.c_dim + (2 if m.camera_cond else 0)
    dims = [m.z_dim + (m.w_dim if cond_dim > 0 else 0)] + [m.w_dim] * m.num_layers
    embed = _linear(cond_dim, m.w_dim) if cond_dim > 0 else 0
    layers = sum(_linear(dims[i], dims[i + 1]) for i in range(m.num_layers))
    return embed + layers + m.w_dim + len(model.camera.mean_pose)


def _synthesis_layer(in_channels: int, out_channels: int, w_dim: int, resolution: int, use_noise: bool,
                     kernel: int = 3) -> int:
    """core.synthesis.SynthesisLayer: filter, affine, weight, noise map and strength, bias."""
    noise = resolution * resolution + 1 if use_noise else 0
    return _RESAMPLE_FILTER + _linear(w_dim, in_channels) + out_channels * in_channels * kernel * kernel \
        + noise + out_channels


def _decoder_elements(model: ModelConfig) -> int:
    """core.synthesis.TriPlaneDecoder: blocks b4 ... bR of (const | conv0), conv1 and toRGB."""
    tp, w_dim = model.triplane, model.mapping.w_dim
    channels = lambda res: min(tp.channel_base // res, tp.channel_max)
    total, res = 0, 4
    while res <= tp.resolution:
        out = channels(res)
        first = out * res * res if res == 4 else _synthesis_layer(channels(res // 2), out, w_dim, res, tp.use_noise)
        to_rgb = _linear(w_dim, out) + 3 * tp.feat_dim * out + 3 * tp.feat_dim
        total += _RESAMPLE_FILTER + first + _synthesis_layer(out, out, w_dim, res, tp.use_noise) + to_rgb
        res *= 2
    return total


def _mlp_elements(model: ModelConfig) -> int:
    """core.field.TriPlaneMLP: feat -> hidden ... -> 4."""
    tp = model.triplane
    dims = [tp.feat_dim] + [tp.mlp_hidden] * (tp.mlp_layers - 1) + [4]
    return sum(_linear(dims[i], dims[i + 1]) for i in range(tp.mlp_layers))


def _background_elements(model: ModelConfig) -> int:
    """core.background.SphereBackground (0 without one): Fourier coefficients, then per block
    modulated linear layers (conv0 but in the first block, conv1, to_out)."""
    bg, w_dim = model.background, model.mapping.w_dim
    if bg.type != "sphere":
        return 0
    modulated = lambda i, o: _linear(w_dim, i) + o * i + o
    in_features = 4 * bg.num_fourier_freqs * 2     # coord_dim 4, a sine and a cosine per frequency
    first = bg.num_fourier_freqs + modulated(in_features, bg.hidden_dim) + modulated(bg.hidden_dim, 4)
    others = 2 * modulated(bg.hidden_dim, bg.hidden_dim) + modulated(bg.hidden_dim, 4)
    return first + (bg.num_blocks - 1) * others if bg.num_blocks > 0 else 0


def _camera_generator_elements(model: ModelConfig) -> Optional[int]:
    """core.camera_generator.CameraGenerator (0 when disabled): its ranges / adjusted / adapted
    buffers and two adaptors; None when the camera prior has no ranges (it does not build)."""
    cg, z_dim, c_dim = model.camera_generator, model.mapping.z_dim, model.c_dim
    if not cg.enabled:
        return 0
    # Its layout constants and its prior check live with it (a torch module, imported only for a
    # config with a camera generator: 3DGP's, whose loading imports torch anyway).
    from trigan.core.camera_generator import (  # noqa: PLC0415 (circular: it imports this module)
        LOOK_AT,
        LOOK_AT_INPUTS,
        NUM_PARAMS,
        ORIGIN_INPUTS,
        prior_ranges,
    )

    try:
        prior_ranges(model.camera)
    except (ValueError, TypeError, ConfigError):
        return None

    def adaptor(in_dim: int, out_dim: int, z: int) -> int:
        embeds = (z > 0) + (c_dim > 0)
        joint = cg.hidden_dim + cg.embed_dim * embeds
        return (_linear(in_dim, cg.hidden_dim) + (_linear(z, cg.embed_dim) if z > 0 else 0)
                + (_linear(c_dim, cg.embed_dim) if c_dim > 0 else 0)
                + _linear(joint, cg.hidden_dim) + _linear(cg.hidden_dim, out_dim))

    buffers = NUM_PARAMS * 2 + NUM_PARAMS + NUM_PARAMS
    return buffers + adaptor(ORIGIN_INPUTS, ORIGIN_INPUTS, 0) + adaptor(LOOK_AT_INPUTS, 1 + len(LOOK_AT), z_dim)


def check_model_memory(model: ModelConfig, what: str = "config", available: Optional[int] = None) -> None:
    """ConfigError when the generator (weights plus one sample's tri-planes) needs more memory than
    is available, naming its largest part and the config values that size it."""
    parts = generator_memory_parts(model)
    available = available_memory_bytes() if available is None else available
    if parts is None or available is None:
        return
    total = sum(parts.values())
    if total <= available:
        return
    largest = max(parts, key=parts.get)
    values = ", ".join(f"model.{key}={config_value(model, key)}" for key in _PART_KEYS[largest])
    raise ConfigError(f"{what}: the generator needs about {total / 2 ** 30:.1f} GiB, mostly its {largest} "
                      f"({parts[largest] / 2 ** 30:.1f} GiB: {values}), but {available / 2 ** 30:.1f} GiB of "
                      "memory is available: make those values smaller")


# ---------------------------------------------------------------------------------------------------
# Raw config data (from a YAML file, a checkpoint, the command line) before OmegaConf sees it.

def check_raw(data, what: str) -> None:
    """Refuse `${...}` interpolations (OmegaConf would resolve them: a self-referencing chain is a
    hang, `${oc.env:...}` reads the environment) and data too deep or too large to be a config. The
    walk visits each container once per reference and stops at MAX_NODES, so a file of shared
    references (a "billion laughs") is refused after MAX_NODES steps instead of being expanded."""
    stack = [(data, "", 0)]
    visited = 0
    while stack:
        value, key, depth = stack.pop()
        visited += 1
        if visited > MAX_NODES:
            raise ConfigError(f"{what}: more than {MAX_NODES} values: not a trigan config")
        if depth > MAX_NESTING:
            raise ConfigError(f"{what}: {key or 'the config'} is nested more than {MAX_NESTING} levels deep: "
                              "not a trigan config")
        if isinstance(value, dict):
            for k, v in value.items():
                if not isinstance(k, str) or len(k) > 256:
                    raise ConfigError(f"{what}: a key of {key or 'the config'} is not a short string: "
                                      "not a trigan config")
                stack.append((v, f"{key}.{k}" if key else k, depth + 1))
        elif isinstance(value, (list, tuple)):
            if len(value) > MAX_LIST_ITEMS:
                raise ConfigError(f"{what}: {key} has {len(value)} entries: expected at most {MAX_LIST_ITEMS}")
            stack.extend((v, f"{key}[{i}]", depth + 1) for i, v in enumerate(value))
        elif isinstance(value, str):
            if len(value) > MAX_STRING:
                raise ConfigError(f"{what}: {key} is a string of {len(value)} characters: expected at most "
                                  f"{MAX_STRING}")
            if "${" in value:
                raise ConfigError(f"{what}: {key}={value[:60]!r}: interpolations (${{...}}) are not allowed "
                                  "in trigan configs; write the value itself")
        elif value is not None and not isinstance(value, (bool, int, float)):
            raise ConfigError(f"{what}: {key} is a {type(value).__name__}: expected numbers, strings, "
                              "lists and mappings only")


# ---------------------------------------------------------------------------------------------------
# Reading and merging: the same path for every layer and every source.

@contextmanager
def omegaconf_errors(what: str) -> Iterator[None]:
    """OmegaConf's errors as one ConfigError line: its messages span several lines (key, value,
    type); the first names them."""
    try:
        yield
    except OmegaConfBaseException as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{what}: {first}") from None


def read_config_file(path: Path) -> DictConfig:
    """A YAML config file (a preset, a run's config.yaml) as OmegaConf data, size-checked and raw-checked
    (check_raw) but not yet merged onto a schema."""
    size = path.stat().st_size
    if size > MAX_YAML_BYTES:
        raise ConfigError(f"{path}: {size} bytes: a config file is at most {MAX_YAML_BYTES} bytes")
    try:
        data = OmegaConf.load(path)   # refuses YAML alias bombs itself (a budget of expanded nodes)
    except Exception as exc:  # noqa: BLE001 - YAML syntax errors carry line numbers; keep one line
        raise ConfigError(f"{path}: not valid YAML ({(str(exc).strip().splitlines() or [type(exc).__name__])[0]})") from None
    check_raw(OmegaConf.to_container(data, resolve=False), str(path))
    return data


def apply_overrides(base, overrides: Sequence[str] = (), what: str = "config", layers: Sequence = ()):
    """`base` (a config: a SavedConfig, training's Config; or such a class, for its defaults) with
    `layers` (config data already read and raw-checked: a preset file) and then the `section.key=value`
    overrides (as on the command line) merged in, as a validated config of base's class (its
    `validate`: bounds, choices, memory). Errors are one line that starts with `what` and the
    overrides."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value, e.g. model.render.num_steps=32")
    what = f"{what} {' '.join(overrides)}".strip()
    with omegaconf_errors(what):
        cli = OmegaConf.from_dotlist(list(overrides))
    check_raw(OmegaConf.to_container(cli, resolve=False), what)
    with omegaconf_errors(what):
        cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(base), *layers, cli))
    return cfg.validate(what)


def config_from_data(schema: type, data, what: str = "config"):
    """A config of class `schema` from its plain dict (as saved in a checkpoint), fields that newer
    versions added filled with their defaults; raw-checked, merged and validated like a file."""
    if not isinstance(data, dict):
        raise ConfigError(f"{what}: a {type(data).__name__}, expected a mapping of config sections")
    check_raw(data, what)
    with omegaconf_errors(what):
        raw = OmegaConf.create(data)
    return apply_overrides(schema, (), what, layers=[raw])


def saved_config_from_dict(data, what: str = "config") -> SavedConfig:
    """Core's reading of a saved config dict (e.g. inside a checkpoint): SavedConfig."""
    return config_from_data(SavedConfig, data, what)


def config_to_dict(cfg) -> dict:
    """Any config (SavedConfig, training's Config) as the plain dict that is saved."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
