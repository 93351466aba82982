"""The training recipe's configuration: the discriminator and every training section, and `Config`
(the model + the recipe), filled from YAML presets plus `key=value` overrides.

A preset is a YAML file in `configs/models/` (or any path) with `model:`, `discriminator:` and
`training:` sections. The resolved Config is saved inside every checkpoint (and a run's config.yaml)
as a plain dict; core reads such a dict as a `SavedConfig` (the model typed, these sections raw) and
`config_from_saved` turns that into a Config. The machinery (choice fields, bounds, raw checks, the
merge, `apply_overrides`) is core's (`trigan.core.config`); this module adds the recipe's schema,
bounds and cross-section checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence

from trigan.core.config import (
    ANY,
    CLAMP,
    KIMG,
    LR,
    MAX_CHANNEL_BASE,
    MAX_DEPTH,
    MAX_IMAGE,
    MODEL_RULES,
    NONNEG,
    POSITIVE,
    PROBABILITY,
    WIDTH,
    ModelConfig,
    Rules,
    SavedConfig,
    apply_overrides,
    check_channel_base,
    check_choices,
    check_model_memory,
    check_model_values,
    choice,
    config_from_data,
    config_to_dict,
    int_bound,
    read_config_file,
    real_bound,
)
from trigan.core.errors import ConfigError
from trigan.core.limits import MAX_KIMG, MAX_SEED

PRESETS_DIR = Path(__file__).resolve().parents[1] / "configs" / "models"

MBSTD_GROUPINGS = ("consecutive", "strided")
PATCH_DISTS = ("beta", "uniform", "full")
DEPTH_OUT_STRATEGIES = ("random", "last", "mean")


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
    mbstd_grouping: str = choice("consecutive", MBSTD_GROUPINGS)
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
    dist: str = choice("beta", PATCH_DISTS)
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
    out_strategy: str = choice("random", DEPTH_OUT_STRATEGIES)
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
    """A whole training config: the model (core's ModelConfig) and the recipe."""

    model: ModelConfig = field(default_factory=ModelConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)

    def validate(self, what: str = "config") -> "Config":
        return validate_config(self, what)


# ---------------------------------------------------------------------------------------------------
# Presets, saved configs

def list_presets() -> List[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def preset_path(name_or_path: str) -> Path:
    """The YAML file a preset name (configs/models/NAME.yaml) or a .yaml path names."""
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


def load_config(preset: str = "demo", overrides: Sequence[str] = ()) -> Config:
    """Build a Config from a preset name or YAML path plus `section.key=value` overrides."""
    path = preset_path(preset)
    return apply_overrides(Config, overrides, what=path.name, layers=[read_config_file(path)])


def config_from_dict(data: dict, what: str = "config") -> Config:
    """Rebuild a Config saved as a plain dict (e.g. inside a checkpoint); fields that newer versions
    added get their defaults."""
    return config_from_data(Config, data, what)


def config_from_saved(saved: SavedConfig, what: str = "config") -> Config:
    """The whole Config of a config core read (a checkpoint's, `load_checkpoint(path).config`): its
    recipe sections parsed and validated here."""
    return config_from_dict(config_to_dict(saved), what)


# ---------------------------------------------------------------------------------------------------
# Validation of the recipe (the model's checks are core's: check_model_values, check_model_memory).

_TICKS = int_bound(1, 10 ** 9)

RECIPE_RULES = Rules(
    bounds={
        "discriminator.patch_resolution": int_bound(8, MAX_IMAGE, power_of_two=True, unit="pixels"),
        "discriminator.num_additional_start_blocks": int_bound(0, 12),
        "discriminator.channel_base": int_bound(8, MAX_CHANNEL_BASE),
        "discriminator.channel_max": WIDTH,
        "discriminator.mbstd_group_size": int_bound(1, 65536),
        "discriminator.mbstd_channels": int_bound(0, 64),
        "discriminator.camera_cond_noise_std": NONNEG,
        "discriminator.camera_cond_drop_p": PROBABILITY,
        "discriminator.cmap_dim": WIDTH,
        "discriminator.conv_clamp": CLAMP,
        "discriminator.num_fp16_res": int_bound(0, 16),
        "discriminator.img_channels": int_bound(1, 4),
        "discriminator.feat_predict_dim": int_bound(0, 65536),
        "training.d_warmup_kimg": KIMG,
        "training.kimg": KIMG,
        "training.batch_size": int_bound(1, 65536, unit="images"),
        "training.gamma": NONNEG,
        "training.r1_interval": int_bound(0, 10 ** 9, unit="steps; 0 = no R1"),
        "training.g_lr": LR,
        "training.d_lr": LR,
        "training.betas": real_bound(0.0, 1.0, hi_open=True),
        "training.eps": real_bound(0.0, 1.0, lo_open=True),
        "training.grad_clip": POSITIVE,
        "training.opacity_reg": NONNEG,
        "training.opacity_reg_start_kimg": KIMG,
        "training.opacity_reg_ramp_kimg": KIMG,
        "training.ema_multiplier": NONNEG,
        "training.ema_rampup": NONNEG,
        "training.blur_init_sigma": real_bound(0.0, MAX_IMAGE, unit="pixels"),
        "training.blur_fade_kimg": KIMG,
        "training.gpc_spoof_p_start": PROBABILITY,
        "training.gpc_spoof_p_end": PROBABILITY,
        "training.gpc_spoof_kimg": KIMG,
        "training.patch.min_scale": real_bound(0.0, 1.0, lo_open=True),
        "training.patch.max_scale": real_bound(0.0, 1.0, lo_open=True),
        "training.patch.beta_start": POSITIVE,
        "training.patch.beta_end": POSITIVE,
        "training.patch.anneal_kimg": KIMG,
        "training.augment.flip_p": PROBABILITY,
        "training.augment.rotate_p": PROBABILITY,
        "training.augment.rotate_max": real_bound(0.0, 180.0, unit="degrees"),
        "training.augment.shift_p": PROBABILITY,
        "training.augment.shift_max": real_bound(0.0, 1.0, hi_open=True, unit="a fraction of the image size"),
        "training.augment.brightness_p": PROBABILITY,
        "training.augment.brightness_std": NONNEG,
        "training.camera_reg.emd_origin": NONNEG,
        "training.camera_reg.emd_fov": NONNEG,
        "training.camera_reg.emd_look_at": NONNEG,
        "training.camera_reg.emd_num_samples": int_bound(1, 1 << 20),
        "training.camera_reg.emd_anneal_kimg": KIMG,
        "training.camera_reg.force_mean_weight": NONNEG,
        "training.camera_reg.force_mean_num_samples": int_bound(1, 1 << 20),
        "training.camera_reg.jacobian_origin": NONNEG,
        "training.camera_reg.jacobian_fov": NONNEG,
        "training.camera_reg.jacobian_look_at": NONNEG,
        "training.camera_reg.jacobian_num_samples": int_bound(1, 1 << 20),
        "training.depth.kernel_size": int_bound(1, 63),
        "training.depth.hidden_dim": WIDTH,
        "training.depth.num_hidden_layers": int_bound(0, MAX_DEPTH),
        "training.depth.selection_start_p": PROBABILITY,
        "training.depth.anneal_kimg": KIMG,
        "training.depth.near_plane_offset_max_fraction": real_bound(0.0, 1.0),
        "training.depth.near_plane_offset_bias": ANY,
        "training.distill.weight": NONNEG,
        "training.distill.anneal_kimg": KIMG,
        "training.distill.scale_pow": ANY,
        "training.outline.weight": NONNEG,
        "training.outline.resolution": int_bound(4, 1024, unit="pixels"),
        "training.outline.channels": WIDTH,
        "training.outline.blur_sigma": real_bound(0.0, 1024.0, unit="pixels"),
        "training.outline.gamma": NONNEG,
        "training.outline.lr": LR,
        "training.seed": int_bound(0, MAX_SEED),
        "training.num_workers": int_bound(0, 256, unit="processes"),
        "training.tick_kimg": real_bound(0.0, MAX_KIMG, lo_open=True, unit="thousands of images"),
        "training.snapshot_ticks": _TICKS,
        "training.snapshot_minutes": real_bound(0.0, 1e9, lo_open=True),
        "training.image_ticks": _TICKS,
        "training.video_ticks": int_bound(0, 10 ** 9, unit="ticks; 0 = never"),
        "training.metric_ticks": _TICKS,
        "training.max_rollbacks": int_bound(0, 10 ** 6),
        "training.samples": int_bound(1, 1024, unit="images"),
    },
    list_lengths={"training.betas": 2},
    unordered_lists=("training.betas",),
    ordered=(("training.patch.min_scale", "training.patch.max_scale", "<="),))

# Every bound of the whole Config, by dotted key (a test walks the dataclasses and fails on a
# numeric field missing here).
BOUNDS = {**MODEL_RULES.bounds, **RECIPE_RULES.bounds}


def validate_config(cfg: Config, what: str = "config") -> Config:
    """`cfg` itself when every number in it lies in its bound, every choice field holds one of its
    values, ranges are ordered, and the generator it describes fits in the memory available; else
    ConfigError (one line, naming the key, its value and what is allowed)."""
    check_model_values(cfg, what)
    RECIPE_RULES.check(cfg, what)
    check_choices(cfg.discriminator, "discriminator.", what)
    check_choices(cfg.training, "training.", what)
    d = cfg.discriminator
    check_channel_base("discriminator.channel_base", d.channel_base, d.patch_resolution * 2 ** d.num_additional_start_blocks,
                       "discriminator.patch_resolution * 2^num_additional_start_blocks", what)
    if len(cfg.training.metrics) > 64:
        raise ConfigError(f"{what}: training.metrics lists {len(cfg.training.metrics)} metrics: expected at most 64")
    check_model_memory(cfg.model, what)
    return cfg
