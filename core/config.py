"""Model configuration: typed dataclasses filled from YAML presets plus `key=value` overrides.

A preset is a YAML file in `configs/models/` (or any path) with a top-level `model:` section. The
resolved config is saved inside every checkpoint as a plain dict, so a checkpoint describes its own
architecture; `config_from_dict` reads it back and fills fields that newer versions added with
their defaults.

Units: angles in radians, fov in degrees (full angle), distances in world units (camera radius 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from trigan.core.errors import ConfigError

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


def _merge(base, *others, what: str):
    try:
        merged = OmegaConf.merge(base, *others)
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        # OmegaConf messages span several lines (key, value, type); keep the first, which names them.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{what}: {first}") from None


def load_config(preset: str = "demo", overrides: Sequence[str] = ()) -> Config:
    """Build a Config from a preset name or YAML path plus `section.key=value` overrides."""
    path = _preset_path(preset)
    schema = OmegaConf.structured(Config)
    try:
        preset_cfg = OmegaConf.load(path)
    except Exception as exc:  # noqa: BLE001 - YAML syntax errors carry line numbers; keep one line
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value, e.g. model.c_dim=10")
    cli = OmegaConf.from_dotlist(list(overrides))
    return _merge(schema, preset_cfg, cli, what=f"{path.name} {' '.join(overrides)}".strip())


def apply_overrides(cfg: Config, overrides: Sequence[str], what: str = "config") -> Config:
    """`cfg` with `section.key=value` overrides (as on the command line) merged in."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value, e.g. model.camera.support_radius=0.3")
    return _merge(OmegaConf.structured(cfg), OmegaConf.from_dotlist(list(overrides)),
                  what=f"{what} {' '.join(overrides)}".strip())


def config_from_dict(data: dict, what: str = "config") -> Config:
    """Rebuild a Config saved as a plain dict (e.g. inside a checkpoint)."""
    return _merge(OmegaConf.structured(Config), OmegaConf.create(data), what=what)


def config_to_dict(cfg: Config) -> dict:
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
