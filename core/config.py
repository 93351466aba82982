"""Model configuration: typed dataclasses filled from YAML presets plus `key=value` overrides.

A preset is a YAML file in `configs/models/` (or any path) with a top-level `model:` section. The
resolved config is saved inside every checkpoint as a plain dict, so a checkpoint describes its own
architecture; `config_from_dict` reads it back and fills fields that newer versions added with
their defaults.

Units: angles in radians, fov in degrees (full angle), distances in world units (camera radius 1).
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, List, Optional, Sequence

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from trigan.core.errors import ConfigError
from trigan.core.limits import MAX_CLASSES, MAX_IMAGE_SIDE, MAX_KIMG, MAX_RAY_STEPS, MAX_SEED

PRESETS_DIR = Path(__file__).resolve().parents[1] / "configs" / "models"


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
    color_activation: str = "none"


@dataclass
class BackgroundConfig:
    # None: no background model. 'sphere': NeRF++ inverted-sphere background INR (EpiGRAF 3.4).
    type: Optional[str] = None
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
    dist: str = "custom"
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
    density_activation: str = "softplus"
    white_background: bool = False
    # 3DGP's marcher (EG3D's): the weight a ray leaves over (1 - sum w) goes to its last sample, so
    # every ray is opaque and ends on the colour and depth found at ray_end.
    last_back: bool = False
    # What the coarse pass's compositing weights (which place the fine samples) measure sample
    # spacing in: "world" units along the ray (EpiGRAF), or "unit", the ray's [ray_start, ray_end]
    # rescaled to [0, 1] (3DGP, EG3D). The final image composites in world units either way.
    importance_spacing: str = "world"
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
    family: str = "epigraf"             # epigraf | 3dgp
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
class DiscriminatorConfig:
    """The patch discriminator's architecture (EpiGRAF 4-5.1). Saved with checkpoints that keep D."""

    patch_resolution: int = 64          # D input size (the patch is rendered at this resolution)
    # Extra blocks at the input that keep the patch size (no down-sampling), so D is as deep as a
    # full-resolution StyleGAN2 D: log2(dataset resolution / patch resolution).
    num_additional_start_blocks: int = 0
    channel_base: int = 16384           # channels at nominal resolution r: min(base // r, max)
    channel_max: int = 512
    mbstd_group_size: int = 4
    mbstd_channels: int = 1
    # How minibatch-std forms its groups. "consecutive" (samples 0-3, 4-7, ...) lines the groups up
    # with the patch groups and with each rank's share of a distributed batch, so a run gives the
    # same result on any number of processes; "strided" (sample i in group i mod B/G) is StyleGAN2's
    # and upstream EpiGRAF's (epigraf.md 13), kept for their discriminators.
    mbstd_grouping: str = "consecutive"
    hyper_mod: bool = True              # modulate each block's conv1 input by the patch code
    patch_cond: bool = True             # feed the patch code to the projection head
    camera_cond: bool = False           # feed yaw/pitch to the projection head
    camera_cond_raw: bool = False       # raw angles (2 values) instead of Fourier features (24)
    camera_cond_noise_std: float = 0.0
    camera_cond_drop_p: float = 0.0
    cmap_dim: Optional[int] = None      # projection size; None = the channels at 4x4
    conv_clamp: Optional[float] = 256.0
    num_fp16_res: int = 4               # top resolutions run in fp16 on CUDA
    img_channels: int = 3               # 4 with a depth channel (3DGP; needs depth maps in the data)
    # 3DGP's knowledge distillation: a second epilogue head that predicts this many features of the
    # whole real image (2048 for ResNet-50) from a patch; 0 = no head. Used by training.distill.
    feat_predict_dim: int = 0


@dataclass
class PatchConfig:
    """Patch-wise training (EpiGRAF 4): D sees patch_resolution^2 crops at a random scale."""

    # beta: scale = min + (max - min) * Beta(1, beta), beta annealed beta_start -> beta_end;
    # uniform: scale ~ U(min_scale(t), max), min_scale(t) annealed 1 -> min_scale; full: whole images.
    dist: str = "beta"
    min_scale: Optional[float] = None   # None: patch_resolution / img_resolution
    max_scale: float = 1.0
    beta_start: float = 0.001
    beta_end: float = 0.8
    anneal_kimg: float = 10000.0


@dataclass
class CameraRegularizerConfig:
    """Regularisers of the learned camera generator in G's loss (3dgp.md 3.4); weights per group.

    emd: per-parameter 1-D Wasserstein-2 (squared) between posterior and prior samples, in the
    parameters' own units (fov in degrees, hence its small weight), ramped 0 -> 1 over
    emd_anneal_kimg. force_mean: distance of the posterior's mean yaw/pitch from the prior's.
    jacobian: mean of |g| + 1/|g| over the diagonal Jacobian entries d posterior / d prior (keeps
    the mapping from collapsing or exploding; off upstream, all weights 0)."""

    emd_origin: float = 2.0
    emd_fov: float = 1e-4
    emd_look_at: float = 1e-4
    emd_num_samples: int = 64
    emd_anneal_kimg: float = 10000.0
    force_mean_weight: float = 10.0
    force_mean_num_samples: int = 256
    jacobian_origin: float = 0.0
    jacobian_fov: float = 0.0
    jacobian_look_at: float = 0.0
    jacobian_num_samples: int = 256


@dataclass
class AugmentConfig:
    """ADA-style augmentation of D's inputs, real and fake alike (training/augment.py). Each
    operation is applied to a sample with its probability; all 0 (the default, 3DGP's noaug) = off."""

    flip_p: float = 0.0                 # mirror left-right
    rotate_p: float = 0.0               # rotate about the centre by U(-rotate_max, rotate_max) degrees
    rotate_max: float = 180.0
    shift_p: float = 0.0                # move by whole pixels, U(-shift_max, shift_max) x size per axis
    shift_max: float = 0.125
    brightness_p: float = 0.0           # add N(0, brightness_std) to the colour channels (not depth)
    brightness_std: float = 0.2


@dataclass
class DepthConfig:
    """3DGP's depth supervision (3dgp.md 2), on when discriminator.img_channels is 4: D sees real
    depth maps (16-bit scale mapped to [-1, 1]) beside real RGB, and rendered depth after the depth
    adaptor beside fake RGB. Defaults are upstream's."""

    # The adaptor: normalise rendered depth with a learnable near plane, then 3 convolutions with one
    # shared 1x1 head after each; D sees one of the 4 candidates (the normalised depth or a head
    # output). False: D always sees the normalised rendered depth (the "no adaptor" ablation).
    adaptor: bool = True
    kernel_size: int = 5
    hidden_dim: int = 64
    num_hidden_layers: int = 3
    # random: each fake picks candidate i with probability start_p + i * slope (the p sum to 1),
    # start_p annealed from 1/N to selection_start_p over anneal_kimg (uniform -> [.1 .2 .3 .4]);
    # last: always the deepest head; mean: the mean of the candidates.
    out_strategy: str = "random"
    selection_start_p: float = 0.1
    anneal_kimg: float = 10000.0
    # near = ray_start + sigmoid(offset) * max_fraction * (ray_end - ray_start); offset starts at bias.
    near_plane_offset_max_fraction: float = 0.25
    near_plane_offset_bias: float = -3.0
    # While D's blur fades, the depth channel is blurred again with a near-box kernel of the same
    # radius (weights 2^-(x/30)^2), real and fake alike.
    extra_blur: bool = True


@dataclass
class DistillConfig:
    """3DGP's knowledge distillation (3dgp.md 4): D's feature head learns to predict precomputed
    features (ResNet-50, `trigan dataset features`) of the whole real image from a real patch. The
    loss is the L2 distance (not squared), weighted per sample by scale^scale_pow / its batch mean,
    times a weight that falls linearly from `weight` to 0 over anneal_kimg. Needs
    discriminator.feat_predict_dim equal to the features' width."""

    weight: float = 0.0                 # 0 = off; 3DGP uses 1.0
    anneal_kimg: float = 100000.0       # 3DGP: ~0.75 of the weight is left at its 25000-kimg end
    features: Optional[str] = None      # FILE.memmap (with FILE_desc.json beside it)
    scale_pow: float = 1.0


@dataclass
class OutlineConfig:
    """trigan's outline discriminator (training/outline.py; not upstream): a second, small D that sees
    only the opacity of whole fake images against the masks of real ones, class-conditional, so that
    a flat card seen edge-on or a fog is rejected for its outline alone. Needs depth maps in the data
    (the real masks). Its optimiser uses training.betas and r1_interval."""

    weight: float = 0.0                 # weight of its loss in G's; 0 = off
    resolution: int = 16                # fakes are rendered whole at R x R for it (R^2 rays each)
    channels: int = 32                  # first layer's width, doubling per halving (to 4x)
    blur_sigma: float = 0.5             # pixels at that resolution, real and fake alike
    gamma: float = 1.0                  # its R1 weight
    lr: float = 0.002


@dataclass
class TrainingConfig:
    """The training recipe (EpiGRAF 4-5, 10). Every schedule is a function of images seen."""

    data: Optional[str] = None          # dataset zip or folder (set by `trigan train --data`)
    # A checkpoint whose weights start this run (fine-tuning; set by `trigan train --init`): G and
    # G_ema from it (G_ema stands in for G in a G_ema-only file), D too when it holds one. The
    # optimisers, the images seen and every schedule start from zero.
    init: Optional[str] = None
    # For the first this-many kimg only D trains (G and G_ema stay as they are): a fine-tune's fresh
    # D learns to judge G's images before G follows it. A fresh D steering G from its first step
    # let the demo model's objects drift off their class's shapes for 5 kimg while its logits were
    # still near 0.
    d_warmup_kimg: float = 0.0
    kimg: float = 25000.0               # total thousands of real images shown to D
    batch_size: int = 64                # global batch, split over the processes
    gamma: Optional[float] = 0.05       # R1 weight; null = auto, 0.0002 * resolution^2 / batch
    r1_interval: int = 16               # lazy R1 every this many steps (0 = no R1)
    g_lr: float = 0.0025
    d_lr: float = 0.002
    betas: List[float] = field(default_factory=lambda: [0.0, 0.99])
    eps: float = 1e-8
    grad_clip: Optional[float] = None   # max gradient norm per network; null = no clipping
    # A trigan addition, not upstream's: G's loss gains this weight times the mean o (1 - o) of the
    # fakes' per-pixel opacity, so that rays end empty or solid instead of half-transparent (0 = off).
    # It is 0 before opacity_reg_start_kimg and rises linearly to the full weight over
    # opacity_reg_ramp_kimg: on at kimg 0 it drives a fresh model's faint fog to empty space, and D
    # wins against a G that draws nothing.
    opacity_reg: float = 0.0
    opacity_reg_start_kimg: float = 0.0
    opacity_reg_ramp_kimg: float = 0.0
    ema_multiplier: float = 0.3125      # EMA half-life in kimg = batch_size * ema_multiplier
    ema_rampup: Optional[float] = 0.05  # half-life at most this fraction of the images seen so far
    blur_init_sigma: float = 10.0       # blur of D's inputs, faded linearly to 0 ...
    blur_fade_kimg: float = 200.0       # ... over this many kimg
    gpc_spoof_p_start: float = 1.0      # GPC: chance a fake's conditioning pose is another's,
    gpc_spoof_p_end: float = 0.5        # annealed linearly
    gpc_spoof_kimg: float = 1000.0
    mirror: bool = True                 # x-flip doubles the dataset (yaw negated)
    use_labels: bool = True             # class-conditional training when the model has classes
    fp32: bool = False                  # True: no fp16 in D even on CUDA
    patch: PatchConfig = field(default_factory=PatchConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    camera_reg: CameraRegularizerConfig = field(default_factory=CameraRegularizerConfig)
    depth: DepthConfig = field(default_factory=DepthConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    outline: OutlineConfig = field(default_factory=OutlineConfig)
    seed: int = 0
    num_workers: int = 2                # data-loading processes per training process
    # Bookkeeping: a tick is a progress report; snapshots, images and metrics happen every N ticks.
    tick_kimg: float = 4.0
    snapshot_ticks: int = 10            # checkpoint latest.ckpt (and best.ckpt)
    snapshot_minutes: float = 30.0      # ... and at least this often in wall time
    keep_snapshots: bool = False        # also keep a copy of every snapshot in snapshots/ (GANs drift:
                                        # the best moment of a run is often not its last)
    image_ticks: int = 10               # sample grid
    video_ticks: int = 50               # short orbit video (0 = never)
    metrics: List[str] = field(default_factory=list)   # e.g. [fid2k]; the first picks best.ckpt
    metric_ticks: int = 10
    inception: Optional[str] = None     # TorchScript Inception file for FID/KID
    max_rollbacks: int = 3              # non-finite values: roll back this many times, then stop
    samples: int = 32                   # images in the progress grid


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)


def list_presets() -> List[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def _preset_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        return path
    candidate = PRESETS_DIR / f"{name_or_path}.yaml"
    if not candidate.is_file():
        raise ConfigError(f"{name_or_path!r}: no such preset (known: {', '.join(list_presets())}) "
                          "and not a .yaml file")
    return candidate


MAX_YAML_BYTES = 1 << 20     # a preset is a few kB; a bigger .yaml is not a trigan config


@contextmanager
def _omegaconf_errors(what: str) -> Iterator[None]:
    """OmegaConf's errors as one ConfigError line: its messages span several lines (key, value,
    type); the first names them."""
    try:
        yield
    except OmegaConfBaseException as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{what}: {first}") from None


def _merge(base, *others, what: str) -> Config:
    """The schema `base` with `others` merged in, as a validated Config (validate_config)."""
    with _omegaconf_errors(what):
        cfg = OmegaConf.to_object(OmegaConf.merge(base, *others))
    return validate_config(cfg, what)


def _dotlist(overrides: Sequence[str], what: str):
    """The `key=value` overrides as an OmegaConf container, after _check_raw."""
    with _omegaconf_errors(what):
        cli = OmegaConf.from_dotlist(list(overrides))
    _check_raw(OmegaConf.to_container(cli, resolve=False), what)
    return cli


def load_config(preset: str = "demo", overrides: Sequence[str] = ()) -> Config:
    """Build a Config from a preset name or YAML path plus `section.key=value` overrides."""
    path = _preset_path(preset)
    schema = OmegaConf.structured(Config)
    if path.stat().st_size > MAX_YAML_BYTES:
        raise ConfigError(f"{path}: {path.stat().st_size} bytes: a config file is at most {MAX_YAML_BYTES} bytes")
    try:
        preset_cfg = OmegaConf.load(path)   # refuses YAML alias bombs itself (a budget of expanded nodes)
    except Exception as exc:  # noqa: BLE001 - YAML syntax errors carry line numbers; keep one line
        raise ConfigError(f"{path}: not valid YAML ({(str(exc).strip().splitlines() or [type(exc).__name__])[0]})") from None
    _check_raw(OmegaConf.to_container(preset_cfg, resolve=False), str(path))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value, e.g. model.c_dim=10")
    what = f"{path.name} {' '.join(overrides)}".strip()
    return _merge(schema, preset_cfg, _dotlist(overrides, what), what=what)


def apply_overrides(cfg: Config, overrides: Sequence[str], what: str = "config") -> Config:
    """`cfg` with `section.key=value` overrides (as on the command line) merged in."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value, e.g. model.camera.support_radius=0.3")
    what = f"{what} {' '.join(overrides)}".strip()
    return _merge(OmegaConf.structured(cfg), _dotlist(overrides, what), what=what)


def config_from_dict(data: dict, what: str = "config") -> Config:
    """Rebuild a Config saved as a plain dict (e.g. inside a checkpoint)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{what}: a {type(data).__name__}, expected a mapping of config sections")
    _check_raw(data, what)
    with _omegaconf_errors(what):
        raw = OmegaConf.create(data)
    return _merge(OmegaConf.structured(Config), raw, what=what)


def config_to_dict(cfg: Config) -> dict:
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)


# ---------------------------------------------------------------------------------------------------
# Validation. Every config reaches the code through `_merge`, which calls `validate_config`: a value
# that no model can use (a NaN fov, a zero step count, a 1e9-pixel image) is refused there in one
# line naming the key, instead of crashing (or allocating gigabytes) deep inside rendering or training.

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


def _int(lo: int, hi: int, **kw) -> Bound:
    return Bound(lo, hi, integer=True, **kw)


def _real(lo: float, hi: float, **kw) -> Bound:
    return Bound(lo, hi, **kw)


_PROBABILITY = _real(0.0, 1.0, unit="a probability")
_NONNEG = _real(0.0, 1e12)
_POSITIVE = _real(0.0, 1e12, lo_open=True)
_ANY = _real(-1e12, 1e12)
_KIMG = _real(0.0, MAX_KIMG, unit="thousands of images")
_ANGLE = _real(-1e4, 1e4, unit="radians")
_DEGREES = _real(0.0, 180.0, lo_open=True, hi_open=True, unit="degrees, full angle")
_DISTANCE = _real(0.0, 1e6, lo_open=True, unit="world units")
_WIDTH = _int(1, MAX_WIDTH)
_LR = _real(0.0, 100.0, lo_open=True, unit="a learning rate")
_LR_MULTIPLIER = _real(0.0, 1e4, lo_open=True)
_CLAMP = _real(0.0, 1e12, lo_open=True)
_TICKS = _int(1, 10 ** 9)

# Every int and float field of the schema (a None of an Optional field is always allowed). A test
# walks the dataclasses and fails on a numeric field missing here.
BOUNDS = {
    "model.img_resolution": _int(4, MAX_IMAGE, unit="pixels"),
    "model.img_channels": _int(1, 4),
    "model.c_dim": _int(0, MAX_CLASSES, unit="classes"),
    "model.mapping.z_dim": _WIDTH,
    "model.mapping.w_dim": _WIDTH,
    "model.mapping.num_layers": _int(1, MAX_DEPTH),
    "model.mapping.lr_multiplier": _LR_MULTIPLIER,
    "model.mapping.w_avg_beta": _real(0.0, 1.0),
    "model.mapping.camera_cond_drop_p": _PROBABILITY,
    "model.mapping.camera_cond_noise_std": _NONNEG,
    "model.triplane.resolution": _int(4, MAX_IMAGE, power_of_two=True, unit="pixels"),
    "model.triplane.feat_dim": _int(1, 1024),
    "model.triplane.channel_base": _int(4, MAX_CHANNEL_BASE),
    "model.triplane.channel_max": _WIDTH,
    "model.triplane.conv_clamp": _CLAMP,
    "model.triplane.mlp_hidden": _WIDTH,
    "model.triplane.mlp_layers": _int(1, MAX_DEPTH),
    "model.background.num_steps": _int(1, MAX_STEPS),
    "model.background.num_blocks": _int(1, MAX_DEPTH),
    "model.background.hidden_dim": _WIDTH,
    "model.background.fourier_multiplier": _ANY,
    "model.background.num_fourier_freqs": _int(0, 64),
    "model.camera.fov": _DEGREES,
    "model.camera.radius": _DISTANCE,
    "model.camera.ray_start": _real(0.0, 1e6, unit="world units"),
    "model.camera.ray_end": _DISTANCE,
    "model.camera.cube_scale": _DISTANCE,
    "model.camera.support_radius": _DISTANCE,
    "model.camera.yaw_offset": _ANGLE,
    "model.camera.yaw_mean": _ANGLE,
    "model.camera.yaw_std": _real(0.0, 1e4, unit="radians"),
    "model.camera.pitch_mean": _ANGLE,
    "model.camera.pitch_std": _real(0.0, 1e4, unit="radians"),
    "model.camera.yaw_range": _ANGLE,
    "model.camera.pitch_range": _ANGLE,
    "model.camera.mean_pose": _ANGLE,
    "model.camera.fov_min": _DEGREES,
    "model.camera.fov_max": _DEGREES,
    "model.camera.look_at_radius_min": _real(0.0, 1e6, unit="world units"),
    "model.camera.look_at_radius_max": _real(0.0, 1e6, unit="world units"),
    "model.camera.look_at_yaw_range": _ANGLE,
    "model.camera.look_at_pitch_range": _ANGLE,
    "model.camera_generator.hidden_dim": _WIDTH,
    "model.camera_generator.embed_dim": _WIDTH,
    "model.camera_generator.lr_multiplier": _LR_MULTIPLIER,
    "model.camera_generator.look_at_radius_floor": _real(0.0, 1e6, unit="world units"),
    "model.render.num_steps": _int(1, MAX_STEPS, unit="samples per ray"),
    "model.render.num_fine_steps": _int(0, MAX_STEPS, unit="samples per ray"),
    "model.render.density_shift": _ANY,
    "model.render.nerf_noise_std_init": _NONNEG,
    "model.render.nerf_noise_kimg_growth": _KIMG,
    "discriminator.patch_resolution": _int(8, MAX_IMAGE, power_of_two=True, unit="pixels"),
    "discriminator.num_additional_start_blocks": _int(0, 12),
    "discriminator.channel_base": _int(8, MAX_CHANNEL_BASE),
    "discriminator.channel_max": _WIDTH,
    "discriminator.mbstd_group_size": _int(1, 65536),
    "discriminator.mbstd_channels": _int(0, 64),
    "discriminator.camera_cond_noise_std": _NONNEG,
    "discriminator.camera_cond_drop_p": _PROBABILITY,
    "discriminator.cmap_dim": _WIDTH,
    "discriminator.conv_clamp": _CLAMP,
    "discriminator.num_fp16_res": _int(0, 16),
    "discriminator.img_channels": _int(1, 4),
    "discriminator.feat_predict_dim": _int(0, 65536),
    "training.d_warmup_kimg": _KIMG,
    "training.kimg": _KIMG,
    "training.batch_size": _int(1, 65536, unit="images"),
    "training.gamma": _NONNEG,
    "training.r1_interval": _int(0, 10 ** 9, unit="steps; 0 = no R1"),
    "training.g_lr": _LR,
    "training.d_lr": _LR,
    "training.betas": _real(0.0, 1.0, hi_open=True),
    "training.eps": _real(0.0, 1.0, lo_open=True),
    "training.grad_clip": _POSITIVE,
    "training.opacity_reg": _NONNEG,
    "training.opacity_reg_start_kimg": _KIMG,
    "training.opacity_reg_ramp_kimg": _KIMG,
    "training.ema_multiplier": _NONNEG,
    "training.ema_rampup": _NONNEG,
    "training.blur_init_sigma": _real(0.0, MAX_IMAGE, unit="pixels"),
    "training.blur_fade_kimg": _KIMG,
    "training.gpc_spoof_p_start": _PROBABILITY,
    "training.gpc_spoof_p_end": _PROBABILITY,
    "training.gpc_spoof_kimg": _KIMG,
    "training.patch.min_scale": _real(0.0, 1.0, lo_open=True),
    "training.patch.max_scale": _real(0.0, 1.0, lo_open=True),
    "training.patch.beta_start": _POSITIVE,
    "training.patch.beta_end": _POSITIVE,
    "training.patch.anneal_kimg": _KIMG,
    "training.augment.flip_p": _PROBABILITY,
    "training.augment.rotate_p": _PROBABILITY,
    "training.augment.rotate_max": _real(0.0, 180.0, unit="degrees"),
    "training.augment.shift_p": _PROBABILITY,
    "training.augment.shift_max": _real(0.0, 1.0, hi_open=True, unit="a fraction of the image size"),
    "training.augment.brightness_p": _PROBABILITY,
    "training.augment.brightness_std": _NONNEG,
    "training.camera_reg.emd_origin": _NONNEG,
    "training.camera_reg.emd_fov": _NONNEG,
    "training.camera_reg.emd_look_at": _NONNEG,
    "training.camera_reg.emd_num_samples": _int(1, 1 << 20),
    "training.camera_reg.emd_anneal_kimg": _KIMG,
    "training.camera_reg.force_mean_weight": _NONNEG,
    "training.camera_reg.force_mean_num_samples": _int(1, 1 << 20),
    "training.camera_reg.jacobian_origin": _NONNEG,
    "training.camera_reg.jacobian_fov": _NONNEG,
    "training.camera_reg.jacobian_look_at": _NONNEG,
    "training.camera_reg.jacobian_num_samples": _int(1, 1 << 20),
    "training.depth.kernel_size": _int(1, 63),
    "training.depth.hidden_dim": _WIDTH,
    "training.depth.num_hidden_layers": _int(0, MAX_DEPTH),
    "training.depth.selection_start_p": _PROBABILITY,
    "training.depth.anneal_kimg": _KIMG,
    "training.depth.near_plane_offset_max_fraction": _real(0.0, 1.0),
    "training.depth.near_plane_offset_bias": _ANY,
    "training.distill.weight": _NONNEG,
    "training.distill.anneal_kimg": _KIMG,
    "training.distill.scale_pow": _ANY,
    "training.outline.weight": _NONNEG,
    "training.outline.resolution": _int(4, 1024, unit="pixels"),
    "training.outline.channels": _WIDTH,
    "training.outline.blur_sigma": _real(0.0, 1024.0, unit="pixels"),
    "training.outline.gamma": _NONNEG,
    "training.outline.lr": _LR,
    "training.seed": _int(0, MAX_SEED),
    "training.num_workers": _int(0, 256, unit="processes"),
    "training.tick_kimg": _real(0.0, MAX_KIMG, lo_open=True, unit="thousands of images"),
    "training.snapshot_ticks": _TICKS,
    "training.snapshot_minutes": _real(0.0, 1e9, lo_open=True),
    "training.image_ticks": _TICKS,
    "training.video_ticks": _int(0, 10 ** 9, unit="ticks; 0 = never"),
    "training.metric_ticks": _TICKS,
    "training.max_rollbacks": _int(0, 10 ** 6),
    "training.samples": _int(1, 1024, unit="images"),
}

# Lists of numbers with a fixed length: [min, max] ranges and the mean pose.
_LIST_LENGTHS = {"model.camera.yaw_range": 2, "model.camera.pitch_range": 2, "model.camera.mean_pose": 3,
                 "model.camera.look_at_yaw_range": 2, "model.camera.look_at_pitch_range": 2,
                 "training.betas": 2}
# Pairs (low key, high key) that must be ordered; a None on either side is not checked.
_ORDERED = (("model.camera.ray_start", "model.camera.ray_end", "<"),
            ("model.camera.fov_min", "model.camera.fov_max", "<="),
            ("model.camera.look_at_radius_min", "model.camera.look_at_radius_max", "<="),
            ("training.patch.min_scale", "training.patch.max_scale", "<="))


def _get(cfg: Config, key: str):
    value = cfg
    for part in key.split("."):
        value = getattr(value, part)
    return value


def _show(value) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _check_value(key: str, value, bound: Bound, what: str) -> None:
    if value is None:
        return   # the schema (OmegaConf) already refused None where the field is not Optional
    if key in _LIST_LENGTHS:
        if not isinstance(value, (list, tuple)) or len(value) != _LIST_LENGTHS[key]:
            raise ConfigError(f"{what}: {key}={_show(value)}: expected a list of {_LIST_LENGTHS[key]} numbers")
        for item in value:
            if not bound.admits(item):
                raise ConfigError(f"{what}: {key}={_show(value)}: expected each entry to be {bound.describe()}")
        if len(value) == 2 and key != "training.betas" and not value[0] <= value[1]:
            raise ConfigError(f"{what}: {key}={_show(value)}: expected [min, max] with min <= max")
        return
    if not bound.admits(value):
        raise ConfigError(f"{what}: {key}={_show(value)}: expected {bound.describe()}")


def _check_strings(cfg: Config, what: str) -> None:
    names = cfg.model.class_names
    if len(names) > MAX_CLASSES:
        raise ConfigError(f"{what}: model.class_names has {len(names)} names: expected at most {MAX_CLASSES}")
    if len(cfg.training.metrics) > 64:
        raise ConfigError(f"{what}: training.metrics lists {len(cfg.training.metrics)} metrics: expected at most 64")
    if cfg.model.c_dim > 0 and len(names) > cfg.model.c_dim:
        raise ConfigError(f"{what}: model.class_names has {len(names)} names for model.c_dim={cfg.model.c_dim} "
                          "classes: expected at most one per class")


def validate_config(cfg: Config, what: str = "config") -> Config:
    """`cfg` itself when every number in it lies in its bound (BOUNDS), ranges are ordered, and the
    generator it describes fits in the memory available; else ConfigError (one line, naming the
    key, its value and what is allowed)."""
    for key, bound in BOUNDS.items():
        _check_value(key, _get(cfg, key), bound, what)
    for low_key, high_key, relation in _ORDERED:
        low, high = _get(cfg, low_key), _get(cfg, high_key)
        if low is not None and high is not None and not (low < high if relation == "<" else low <= high):
            raise ConfigError(f"{what}: {low_key}={low} and {high_key}={high}: expected {low_key} {relation} "
                              f"{high_key}")
    _check_widths(cfg, what)
    _check_strings(cfg, what)
    check_model_memory(cfg, what)
    return cfg


def _check_widths(cfg: Config, what: str) -> None:
    """A network's channels at its top resolution are channel_base // resolution: a base below the
    resolution leaves a layer with no channels (a ZeroDivisionError deep in the weight init)."""
    tp, d = cfg.model.triplane, cfg.discriminator
    d_top = d.patch_resolution * 2 ** d.num_additional_start_blocks
    for key, base, top, top_what in (
            ("model.triplane.channel_base", tp.channel_base, tp.resolution, "model.triplane.resolution"),
            ("discriminator.channel_base", d.channel_base, d_top,
             "discriminator.patch_resolution * 2^num_additional_start_blocks")):
        if base // top < 1:
            raise ConfigError(f"{what}: {key}={base} gives no channels at {top_what}={top}: expected "
                              f"{key} >= {top} (channels = min(channel_base // resolution, channel_max))")


# ---------------------------------------------------------------------------------------------------
# Memory. Each value may lie within its bound while their product does not (a 4096-wide decoder at
# 4096^2 holds hundreds of GB of weights), so the generator's size is measured before anything is
# allocated: its weights by building it on PyTorch's meta device (shapes only, no storage), plus one
# sample's tri-planes and the decoder's largest activation, against the memory free right now.

_FLOAT_BYTES = 4
# Which config keys size each part of the generator, to name the culprit when it is too big.
_PART_KEYS = {
    "mapping network": ("model.mapping.z_dim", "model.mapping.w_dim", "model.mapping.num_layers", "model.c_dim"),
    "tri-plane decoder": ("model.triplane.resolution", "model.triplane.feat_dim", "model.triplane.channel_base",
                          "model.triplane.channel_max", "model.mapping.w_dim"),
    "tri-plane MLP": ("model.triplane.feat_dim", "model.triplane.mlp_hidden", "model.triplane.mlp_layers"),
    "background network": ("model.background.hidden_dim", "model.background.num_blocks"),
    "camera generator": ("model.camera_generator.hidden_dim", "model.camera_generator.embed_dim", "model.c_dim"),
    "tri-planes of one sample": ("model.triplane.resolution", "model.triplane.feat_dim"),
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
    build (the loader reports that with the weights' names)."""
    import torch  # noqa: PLC0415 (torch is heavy; a config alone does not need it)

    from trigan.core.generator import Generator  # noqa: PLC0415 (circular: generator imports config)

    try:
        with torch.device("meta"):
            G = Generator(model)
    except (ValueError, TypeError, ConfigError):
        return None
    size = lambda m: 0 if m is None else sum(t.numel() for t in [*m.parameters(), *m.buffers()]) * _FLOAT_BYTES
    tp = model.triplane
    top_channels = min(tp.channel_base // tp.resolution, tp.channel_max)
    activations = (3 * tp.feat_dim + 2 * top_channels) * tp.resolution ** 2 * _FLOAT_BYTES
    return {"mapping network": size(G.mapping), "tri-plane decoder": size(G.synthesis.tri_plane_decoder),
            "tri-plane MLP": size(G.synthesis.tri_plane_mlp), "background network": size(G.synthesis.bg_model),
            "camera generator": size(G.camera_generator), "tri-planes of one sample": activations}


def check_model_memory(cfg: Config, what: str = "config", available: Optional[int] = None) -> None:
    """ConfigError when the generator (weights plus one sample's tri-planes) needs more memory than
    is available, naming its largest part and the config values that size it."""
    parts = generator_memory_parts(cfg.model)
    available = available_memory_bytes() if available is None else available
    if parts is None or available is None:
        return
    total = sum(parts.values())
    if total <= available:
        return
    largest = max(parts, key=parts.get)
    values = ", ".join(f"{key}={_get(cfg, key)}" for key in _PART_KEYS[largest])
    raise ConfigError(f"{what}: the generator needs about {total / 2 ** 30:.1f} GiB, mostly its {largest} "
                      f"({parts[largest] / 2 ** 30:.1f} GiB: {values}), but {available / 2 ** 30:.1f} GiB of "
                      "memory is available: make those values smaller")


# ---------------------------------------------------------------------------------------------------
# Raw config data (from a YAML file, a checkpoint, the command line) before OmegaConf sees it.

def _check_raw(data, what: str) -> None:
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
