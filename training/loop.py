"""The training loop: EpiGRAF's patch-wise GAN recipe, run by one process or many under torchrun.

One step (all schedules are functions of `cur_nimg`, the real images shown so far, so a resumed run
continues them exactly):

1. G phase: render fake patches for random latents, labels and poses; loss softplus(-D(fake)).
2. D phase: fresh fakes (no gradient into G) and real patches cut on the same patch grid; loss
   softplus(D(fake)) + softplus(-D(real)).
3. Every `r1_interval` steps, the lazy R1 phase: gamma/2 * |dD/dx|^2 on real patches, times the
   interval (D's Adam uses lr and betas scaled by interval / (interval + 1) to match).
4. EMA of G with a half-life of batch * ema_multiplier kimg, ramped up over the first images.

What flows through a step is typed (batches.py): `fake_inputs` draws a FakeBatch, `render_fakes`
turns it into RenderedFakes, `next_real` gives a RealBatch. A Session (session.py) drives the
Trainer through its state-change methods (record_metrics, note_divergence, roll_back, ...) and
only reads its state.

D's inputs are blurred with a sigma that fades out over the first `blur_fade_kimg`; the density
noise of the renderer anneals to zero over `nerf_noise_kimg_growth`; with generator pose
conditioning (GPC) a fraction of fakes is conditioned on another sample's pose (annealed).

3DGP's additions: with `discriminator.img_channels` 4, D sees depth beside RGB (real depth maps;
for fakes the rendered depth through the depth adaptor, depth_adaptor.py), its depth channel
blurred a second time while the blur fades; with `training.distill.weight` > 0, D's step also
teaches its feature head the precomputed features of the real images (distillation.py).

trigan's outline D (`training.outline.weight` > 0, outline.py): a second, small D that sees only the
opacity of the same fakes rendered whole at a low resolution, against the real objects' masks; its
loss joins G's, and it trains after the main D with the same losses.

Every random draw is a function of (seed, step, phase, global sample index), see randomness.py:
a run split over N processes equals the single-process run with the same global batch, and a
resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import math
import signal
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import torch

from trigan.core.cameras import PatchParams
from trigan.core.checkpoint import load_checkpoint, save_checkpoint
from trigan.core.compositing import depth_to_far_end, open_far_end
from trigan.core.errors import TriganError
from trigan.core.generator import Generator, one_hot
from trigan.training import distributed as ddp
from trigan.training.augment import ROLE_FAKE, ROLE_REAL, augment_d_input, check_augment_config
from trigan.training.batches import FakeBatch, RealBatch, RenderedFakes
from trigan.training.camera_losses import camera_regularizers, emd_multiplier
from trigan.training.conditioning import DatasetConditioning
from trigan.training.config import Config
from trigan.training.dataset import ImageDataset
from trigan.training.depth_adaptor import (
    DepthAdaptor,
    normalize_depth,
    real_depth_to_unit,
    sample_choices,
    selection_probabilities,
)
from trigan.training.discriminator import Discriminator
from trigan.training.distillation import distill_weight, distillation_distances
from trigan.training.feature_store import DatasetFeatures, FeatureStore
from trigan.training.losses import (
    auto_gamma,
    blur_depth_channel,
    blur_images,
    blur_sigma,
    discriminator_loss,
    generator_loss,
    opacity_binarity,
    r1_penalty,
)
from trigan.training.outline import OutlineDiscriminator, real_outlines, whole_image
from trigan.training.patches import extract_patches, min_patch_scale, patch_beta, sample_patches, uniform_min_scale
from trigan.training.randomness import (
    PHASE_CAMERA,
    PHASE_D,
    PHASE_G,
    PHASE_OUTLINE,
    PHASE_REG,
    SampleNoise,
    batch_generator,
    mix_seed,
    render_seed,
)
from trigan.training.run_dir import RunWriter
from trigan.training.warm_start import widen_image_inputs

LATEST, BEST = "latest.ckpt", "best.ckpt"
SNAPSHOTS = "snapshots"   # with training.keep_snapshots: snapshot_<images seen>.ckpt, one per snapshot


class TrainingDiverged(TriganError):
    """Non-finite losses or weights kept coming back after the allowed rollbacks."""


# -------------------------------------------------------------------------------------------------
# Schedules (functions of images seen)

def linear(start: float, end: float, kimg: float, over_kimg: float) -> float:
    t = 1.0 if over_kimg <= 0 else min(max(kimg / over_kimg, 0.0), 1.0)
    return start + (end - start) * t


def nerf_noise_std(cfg: Config, kimg: float) -> float:
    r = cfg.model.render
    return linear(r.nerf_noise_std_init, 0.0, kimg, r.nerf_noise_kimg_growth)


def gpc_spoof_p(cfg: Config, kimg: float) -> float:
    t = cfg.training
    return linear(t.gpc_spoof_p_start, t.gpc_spoof_p_end, kimg, t.gpc_spoof_kimg)


def opacity_reg_weight(cfg: Config, kimg: float) -> float:
    """The opacity regulariser's weight: 0 until opacity_reg_start_kimg, then rising linearly to
    opacity_reg over opacity_reg_ramp_kimg."""
    t = cfg.training
    if t.opacity_reg <= 0 or kimg < t.opacity_reg_start_kimg:
        return 0.0
    return linear(0.0, t.opacity_reg, kimg - t.opacity_reg_start_kimg, t.opacity_reg_ramp_kimg)


def ema_beta(cfg: Config, cur_nimg: int) -> float:
    """Per-step EMA decay: half-life batch * ema_multiplier kimg, at most ema_rampup * images seen."""
    t = cfg.training
    ema_nimg = t.batch_size * t.ema_multiplier * 1000
    if t.ema_rampup is not None:
        ema_nimg = min(ema_nimg, cur_nimg * t.ema_rampup)
    return 0.5 ** (t.batch_size / max(ema_nimg, 1e-8))


# -------------------------------------------------------------------------------------------------
# Data

class StepSampler(torch.utils.data.Sampler):
    """An endless, reproducible stream of dataset indices: epoch e is a permutation seeded by
    (seed, e); step t's global batch is positions [t B, (t+1) B) of the stream, and each process
    reads its slice. Starting at any step gives the same stream (resume)."""

    def __init__(self, size: int, batch: int, rank: int, world: int, seed: int, start_step: int = 0):
        self.size, self.batch, self.rank, self.world = size, batch, rank, world
        self.seed, self.start_step = seed, start_step
        self.per_rank = batch // world

    def _perm(self, epoch: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.size, generator=gen)

    def __iter__(self) -> Iterator[int]:
        step = self.start_step
        epoch, perm = -1, None
        while True:
            first = step * self.batch + self.rank * self.per_rank
            for pos in range(first, first + self.per_rank):
                e = pos // self.size
                if e != epoch:
                    epoch, perm = e, self._perm(e)
                yield int(perm[pos % self.size])
            step += 1


def _one_hot_labels(labels: torch.Tensor, c_dim: int, device) -> torch.Tensor:
    if c_dim == 0:
        return torch.zeros(labels.shape[0], 0, device=device)
    return one_hot(labels.tolist(), c_dim, device)


# -------------------------------------------------------------------------------------------------

def _ignore_stop_signals(_worker_id: int) -> None:
    """In data-loading workers: leave SIGTERM and SIGINT to the training process. Ctrl-C in a terminal
    and SLURM's scancel signal the whole process group; a worker that died of it would make the
    trainer fail with a DataLoader error instead of stopping cleanly with a checkpoint."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# -------------------------------------------------------------------------------------------------
# What can be refused before anything is built (`trigan train` checks it before making the run folder)

def _per_process_batch(cfg: Config, world_size: int) -> Tuple[int, int]:
    """(per-process batch, minibatch-std group size) for training.batch_size over world_size processes."""
    batch = cfg.training.batch_size
    if batch % world_size:
        raise TriganError(f"training.batch_size={batch} does not split over {world_size} processes")
    batch_gpu = batch // world_size
    group = min(cfg.discriminator.mbstd_group_size, batch_gpu)
    if batch_gpu % max(group, 1):
        raise TriganError(f"per-process batch {batch_gpu} is not a multiple of the minibatch-std group "
                          f"size {group} (discriminator.mbstd_group_size)")
    return batch_gpu, max(group, 1)


def _uses_depth(cfg: Config, dataset: ImageDataset) -> bool:
    """Whether D sees depth as a 4th channel (3DGP); refuses a setup without depth maps."""
    channels = cfg.discriminator.img_channels
    if channels not in (3, 4):
        raise TriganError(f"discriminator.img_channels={channels}: expected 3 (RGB) or 4 (RGB + depth)")
    if channels == 4 and not dataset.has_depth:
        raise TriganError(f"discriminator.img_channels=4 trains D on depth, but {dataset.path} has no depth "
                          "maps (<stem>_depth.png beside each image)")
    return channels == 4


def _check_outline(cfg: Config, dataset: ImageDataset) -> bool:
    """Whether the outline D is on; refuses a setup it cannot work with."""
    o = cfg.training.outline
    if o.weight <= 0:
        return False
    if not dataset.has_depth:
        raise TriganError(f"training.outline.weight={o.weight} compares outlines with the real objects' masks, "
                          f"which come from depth maps, but {dataset.path} has none (<stem>_depth.png beside "
                          "each image); set the weight to 0")
    if cfg.model.render.opaque_far_end:
        raise TriganError(f"training.outline.weight={o.weight} needs rays that can end in nothing, but "
                          "model.render.opaque_far_end is true (every ray ends solid, so there is no outline)")
    return True


def _open_features(cfg: Config, dataset: ImageDataset) -> Optional[DatasetFeatures]:
    """3DGP's distillation targets: precomputed features of the real images, or None."""
    d = cfg.training.distill
    if d.weight <= 0:
        return None
    if not d.features:
        raise TriganError(f"training.distill.weight={d.weight} needs training.distill.features=FILE.memmap, "
                          f"features of {dataset.path} from `trigan dataset features` (or set the weight to 0)")
    store = FeatureStore(d.features)
    want = cfg.discriminator.feat_predict_dim
    if want != store.dim:
        raise TriganError(f"{d.features}: {store.dim}-d features, but discriminator.feat_predict_dim={want}; "
                          f"set it to {store.dim}")
    return DatasetFeatures(store, dataset)


def _depth_adaptor(cfg: Config) -> DepthAdaptor:
    cam = cfg.model.camera
    try:
        return DepthAdaptor(cfg.training.depth, cam.ray_start, cam.ray_end)
    except ValueError as exc:
        raise TriganError(str(exc)) from None


def check_training_setup(cfg: Config, dataset: ImageDataset, world_size: int = 1) -> None:
    """Refuse, in one line, a config that cannot train on `dataset` with `world_size` processes:
    the checks the Trainer makes before it builds anything, without building anything."""
    _per_process_batch(cfg, world_size)
    check_augment_config(cfg.training.augment)
    use_depth = _uses_depth(cfg, dataset)
    _check_outline(cfg, dataset)
    _open_features(cfg, dataset)
    if use_depth and cfg.training.depth.adaptor:
        _depth_adaptor(cfg)


def adam_settings(cfg: Config, lr: float, lazy_r1: bool) -> Dict[str, object]:
    """The Adam hyper-parameters the config gives an optimiser (what lives in its param_groups).
    lazy_r1: a discriminator's, whose R1 runs every k = r1_interval steps with k times the weight;
    its lr and betas are rescaled by c = k / (k + 1) so that the effective step matches an
    every-step regulariser (StyleGAN2)."""
    t = cfg.training
    if lazy_r1 and t.r1_interval > 0:
        c = t.r1_interval / (t.r1_interval + 1)
        lr, betas = lr * c, (t.betas[0] ** c, t.betas[1] ** c)
    else:
        betas = tuple(t.betas)
    return {"lr": lr, "betas": betas, "eps": t.eps, "weight_decay": 0.0}


def _differs(old, new) -> bool:
    if isinstance(new, tuple):
        return not isinstance(old, (tuple, list)) or len(old) != len(new) or any(
            _differs(a, b) for a, b in zip(old, new, strict=True))
    try:
        return float(old) != float(new)
    except (TypeError, ValueError):
        return True


def _shown(value) -> str:
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(_shown(v) for v in value) + ")"
    try:
        return f"{float(value):.6g}"
    except (TypeError, ValueError):
        return repr(value)


def set_hyperparameters(name: str, opt: torch.optim.Optimizer, settings: Dict[str, object]) -> List[str]:
    """Give every param group of `opt` the values of `settings`; one line per value that changed
    ("G lr 0.0025 -> 0.001")."""
    changes = []
    for key, value in settings.items():
        old = [group.get(key) for group in opt.param_groups]
        if any(_differs(v, value) for v in old):
            changes.append(f"{name} {key} {_shown(old[0])} -> {_shown(value)}")
        for group in opt.param_groups:
            group[key] = value
    return changes


@contextmanager
def _weights_of(path: Path):
    """Loading checkpoint `path`'s weights: a mismatch with the run's networks is one line naming it."""
    try:
        yield
    except RuntimeError as exc:
        raise TriganError(f"{path}: weights do not fit the run's config "
                          f"({str(exc).splitlines()[0][:200]})") from None


class Trainer:
    """Owns G, D, G_ema, their optimisers and the training state of one run."""

    def __init__(self, cfg: Config, run_dir: Path, dataset: ImageDataset, info: ddp.DistInfo,
                 writer: Optional[RunWriter] = None, log_every_step: bool = False):
        self.cfg, self.run_dir, self.dataset, self.info = cfg, Path(run_dir), dataset, info
        self.writer = writer or RunWriter(self.run_dir, enabled=info.is_main, tensorboard=False)
        self.device = info.device
        t = cfg.training
        self.batch = t.batch_size
        self.batch_gpu, self.group = _per_process_batch(cfg, info.world_size)
        self.patch_res = cfg.discriminator.patch_resolution
        self.min_scale = min_patch_scale(t.patch, self.patch_res, cfg.model.img_resolution)
        self.gamma = t.gamma if t.gamma is not None else auto_gamma(cfg.model.img_resolution, t.batch_size)
        self.use_fp16 = self.device.type == "cuda" and not t.fp32
        self.c_dim = cfg.model.c_dim if t.use_labels else 0
        self.log_every_step = log_every_step
        check_augment_config(t.augment)
        # 3DGP: D sees depth as a 4th channel; distillation reads precomputed features of the real
        # images. Both are checked before the networks are built, so a bad setup fails at once.
        self.use_depth = _uses_depth(cfg, dataset)
        self.features = _open_features(cfg, dataset)

        torch.manual_seed(t.seed)
        self.G = Generator(cfg.model).to(self.device).train()
        self.D = Discriminator(cfg.discriminator, cfg.model.c_dim, cfg.model.camera.yaw_offset).to(self.device).train()
        self.G_ema = Generator(cfg.model).to(self.device).eval()
        self.G_ema.load_state_dict(self.G.state_dict())
        self.G_ema.requires_grad_(False)
        self.D_outline = self._make_outline_d(dataset)
        self._broadcast_networks()
        # The depth adaptor is on G's side: G's optimiser trains it.
        self.depth_adaptor = self._make_depth_adaptor()
        settings = self.optimizer_settings()
        self.opt_G = torch.optim.Adam(self._g_parameters(), **settings["G"])
        self.opt_D = torch.optim.Adam(self.D.parameters(), **settings["D"])
        self.opt_D_outline = (None if self.D_outline is None
                              else torch.optim.Adam(self.D_outline.parameters(), **settings["outline D"]))
        self.optimizer_changes: List[str] = []   # what a resume changed in the loaded optimisers

        # Progress state (everything a resume restores).
        self.cur_nimg = 0
        self.step = 0
        self.tick = 0
        self.rollbacks = 0            # total, logged
        self.widened_inputs = None    # (old, new) D input channels when a resume widened them
        self.fresh_outline_d = False  # a resume turned the outline D on: it starts untrained
        self.failures_since_good = 0  # consecutive rollbacks without a new good checkpoint
        self.seed_offset = 0          # bumped by a rollback so the replay takes another path
        self.best_metric: Optional[float] = None
        self.last_metric: Dict[str, float] = {}
        self.train_seconds = 0.0
        self.stop_requested = False
        self._data_iter = None
        self.conditioning = DatasetConditioning(dataset)

    # ---------------------------------------------------------------------------------------------
    # 3DGP's depth channel and distillation targets

    def optimizer_settings(self) -> Dict[str, Dict[str, object]]:
        """Each optimiser's Adam hyper-parameters as the current config gives them: G's, D's and
        the outline D's (both discriminators with the lazy-R1 rescaling)."""
        t = self.cfg.training
        return {"G": adam_settings(self.cfg, t.g_lr, lazy_r1=False),
                "D": adam_settings(self.cfg, t.d_lr, lazy_r1=True),
                "outline D": adam_settings(self.cfg, t.outline.lr, lazy_r1=True)}

    def _apply_optimizer_settings(self) -> List[str]:
        """After loading optimiser states: the config's hyper-parameters win over the saved ones
        (a resume with training.g_lr=... must train with it), the moments stay. Returns the changes."""
        settings = self.optimizer_settings()
        changes = []
        for name, opt in (("G", self.opt_G), ("D", self.opt_D), ("outline D", self.opt_D_outline)):
            if opt is not None:
                changes += set_hyperparameters(name, opt, settings[name])
        return changes

    def _make_outline_d(self, dataset: ImageDataset) -> Optional[OutlineDiscriminator]:
        if not _check_outline(self.cfg, dataset):
            return None
        o = self.cfg.training.outline
        return OutlineDiscriminator(self.c_dim, o.resolution, o.channels, o.blur_sigma).to(self.device).train()

    def _make_depth_adaptor(self) -> Optional[DepthAdaptor]:
        if not (self.use_depth and self.cfg.training.depth.adaptor):
            return None
        adaptor = _depth_adaptor(self.cfg).to(self.device).train()
        ddp.broadcast_module(self.info, adaptor)
        return adaptor

    def _g_parameters(self) -> list:
        return [p for _, p in self._g_named_parameters()]

    def _g_named_parameters(self) -> list:
        """G's optimiser's parameters in its order, with the names an upstream snapshot gives them
        (after `trigan convert --all`: the depth adaptor's under depth_adaptor.*)."""
        extra = ([(f"depth_adaptor.{n}", p) for n, p in self.depth_adaptor.named_parameters()]
                 if self.depth_adaptor is not None else [])
        return list(self.G.named_parameters()) + extra

    @staticmethod
    def adam_state_by_name(opt: torch.optim.Adam, named: list, saved) -> int:
        """Load Adam moments saved by parameter name (an upstream optimiser converted by `trigan
        convert --all`: {'state': {name: {'step', 'exp_avg', 'exp_avg_sq'}}, ...}) into `opt`, whose
        parameters are `named` in order; the learning rates and betas stay this run's. Returns how
        many parameters got moments (0 when `saved` is not in that form)."""
        by_name = saved.get("state") if isinstance(saved, dict) else None
        if not isinstance(by_name, dict) or not all(isinstance(k, str) for k in by_name):
            return 0
        state = opt.state_dict()
        moments = {}
        for i, (name, param) in enumerate(named):
            entry = by_name.get(name)
            if not isinstance(entry, dict) or not {"exp_avg", "exp_avg_sq"} <= set(entry):
                continue
            for key in ("exp_avg", "exp_avg_sq"):
                moment = entry[key]
                if not isinstance(moment, torch.Tensor) or tuple(moment.shape) != tuple(param.shape):
                    got = f"shape {tuple(moment.shape)}" if isinstance(moment, torch.Tensor) else "not a tensor"
                    raise TriganError(f"optimiser state of {name}: {key} is {got}, the weight is {tuple(param.shape)}")
            moments[i] = {"step": torch.tensor(float(entry.get("step", 0))),
                          "exp_avg": entry["exp_avg"].to(param), "exp_avg_sq": entry["exp_avg_sq"].to(param)}
        state["state"] = moments
        opt.load_state_dict(state)
        return len(moments)

    def fake_depth(self, depth: torch.Tensor, choices: Optional[torch.Tensor]) -> torch.Tensor:
        """Rendered depth [B, 1, P, P] (world units) -> the depth channel D sees."""
        if self.depth_adaptor is not None:
            return self.depth_adaptor(depth, choices)
        cam = self.cfg.model.camera
        return normalize_depth(depth, cam.ray_start, cam.ray_end)

    def depth_probabilities(self, kimg: float):
        """Probabilities of the adaptor's candidates at kimg ('random' strategy), else None."""
        if self.depth_adaptor is None or self.cfg.training.depth.out_strategy != "random":
            return None
        return selection_probabilities(self.cfg.training.depth, self.depth_adaptor.num_candidates, kimg)

    # ---------------------------------------------------------------------------------------------
    # State

    def state(self) -> dict:
        return {"cur_nimg": self.cur_nimg, "kimg": self.cur_nimg / 1000, "step": self.step, "tick": self.tick,
                "rollbacks": self.rollbacks, "seed_offset": self.seed_offset, "best_metric": self.best_metric,
                "train_seconds": self.train_seconds, "world_size": self.info.world_size,
                "torch_rng": torch.get_rng_state()}

    # The state changes a Session makes as it drives the run (it reads the state, never writes it).

    def add_train_time(self, seconds: float) -> None:
        """Count `seconds` of training (a step's wall time) in train_seconds."""
        self.train_seconds += seconds

    def end_tick(self) -> int:
        """A tick is complete: returns its number (1 for the run's first)."""
        self.tick += 1
        return self.tick

    def record_metrics(self, metrics: Dict[str, float]) -> bool:
        """The metrics of an evaluation ({} when none ran: the last ones stay). Returns whether the
        first of training.metrics (lower is better) is a finite new best."""
        if not metrics:
            return False
        self.last_metric = dict(metrics)
        value = metrics.get(self.cfg.training.metrics[0])
        if value is None or not math.isfinite(value) or (self.best_metric is not None and value >= self.best_metric):
            return False
        self.best_metric = value
        return True

    def note_good_checkpoint(self) -> None:
        """A checkpoint of healthy weights was written: a later divergence starts a new run of failures."""
        self.failures_since_good = 0

    def note_divergence(self) -> int:
        """The step or tick went non-finite: one more rollback in all and in a row. Returns how many
        in a row since the last good checkpoint."""
        self.rollbacks += 1
        self.failures_since_good += 1
        return self.failures_since_good

    def roll_back(self, path: Path) -> None:
        """After note_divergence: restore checkpoint `path`, keeping the rollback counts (the
        checkpoint's are older), and move the seed by the failures in a row so that the replay takes
        another random path than the one that diverged."""
        rollbacks, failures = self.rollbacks, self.failures_since_good
        self.load(path)
        self.rollbacks, self.failures_since_good = rollbacks, failures
        self.seed_offset += failures

    def save(self, path: Path, metrics: Optional[dict] = None) -> None:
        """Every process calls this (it synchronises); only the main one writes."""
        if self.info.is_main:
            save_checkpoint(path, self.cfg, self.G_ema, progress=self.state(),
                            metrics=metrics if metrics is not None else self.last_metric,
                            G=self.G, D=self.D, G_opt=self.opt_G.state_dict(), D_opt=self.opt_D.state_dict(),
                            depth_adaptor=self.depth_adaptor, D_outline=self.D_outline,
                            D_outline_opt=None if self.opt_D_outline is None else self.opt_D_outline.state_dict())
        ddp.barrier(self.info)

    def load(self, path: Path) -> None:
        ckpt = load_checkpoint(path)
        missing = [k for k in ("G", "D", "G_opt", "D_opt") if k not in ckpt.extra]
        if missing:
            raise TriganError(f"{path}: holds no training state ({', '.join(missing)} missing); "
                              "start a new run from it instead of resuming")
        if ckpt.migrated_camera_generator:
            raise TriganError(f"{path}: its camera generator has trigan's first layout, whose optimiser state "
                              "cannot be carried over; start a new run from its weights with "
                              f"--init {path}")
        # A run that trained D on RGB may go on with depth as a 4th channel (warm_start.py).
        self.widened_inputs = widen_image_inputs(self.D, ckpt.extra["D"], ckpt.extra["D_opt"])
        with _weights_of(path):
            self.G.load_state_dict(ckpt.extra["G"])
            self.D.load_state_dict(ckpt.extra["D"])
            self.G_ema.load_state_dict(ckpt.G_ema)
            if self.depth_adaptor is not None:
                if "depth_adaptor" not in ckpt.extra:
                    raise RuntimeError("no depth adaptor weights (training.depth.adaptor is on)")
                self.depth_adaptor.load_state_dict(ckpt.extra["depth_adaptor"])
            # A run may turn the outline D on when it resumes: it then starts untrained.
            self.fresh_outline_d = self.D_outline is not None and "D_outline" not in ckpt.extra
            if self.D_outline is not None and not self.fresh_outline_d:
                self.D_outline.load_state_dict(ckpt.extra["D_outline"])
        self.opt_G.load_state_dict(ckpt.extra["G_opt"])
        self.opt_D.load_state_dict(ckpt.extra["D_opt"])
        if self.D_outline is not None and not self.fresh_outline_d:
            self.opt_D_outline.load_state_dict(ckpt.extra["D_outline_opt"])
        self.optimizer_changes = self._apply_optimizer_settings()
        p = ckpt.progress
        self.cur_nimg, self.step, self.tick = int(p["cur_nimg"]), int(p["step"]), int(p.get("tick", 0))
        self.rollbacks = int(p.get("rollbacks", 0))
        self.seed_offset = int(p.get("seed_offset", 0))
        self.best_metric = p.get("best_metric")
        self.train_seconds = float(p.get("train_seconds", 0.0))
        if "torch_rng" in p:
            torch.set_rng_state(p["torch_rng"])
        self.last_metric = dict(ckpt.metrics or {})
        self._data_iter = None  # the sampler restarts at the restored step

    def _broadcast_networks(self) -> None:
        """Every process starts from rank 0's G, D, G_ema (and outline D)."""
        for net in (self.G, self.D, self.G_ema, self.D_outline):
            if net is not None:
                ddp.broadcast_module(self.info, net)

    def init_from(self, path: Path) -> str:
        """Start this fresh run from the weights of checkpoint `path` (training.init, fine-tuning).
        G and G_ema take its G_ema (its G when it holds one); D takes its D when it holds one, else
        stays freshly initialised. Adam moments saved by parameter name (an upstream run converted
        with `trigan convert --all`) are taken too; trigan's own optimiser states are not. Progress
        is left at zero: the run's schedules begin again. Returns a one-line account of what was taken."""
        ckpt = load_checkpoint(path)
        taken = []
        with _weights_of(path):
            self.G_ema.load_state_dict(ckpt.G_ema)
            self.G.load_state_dict(ckpt.extra.get("G", ckpt.G_ema))
            taken.append("G" if "G" in ckpt.extra else "G (from its G_ema)")
            taken.append("G_ema")
            if "D" in ckpt.extra:
                widen_image_inputs(self.D, ckpt.extra["D"], None)
                self.D.load_state_dict(ckpt.extra["D"])
                taken.append("D")
            if self.depth_adaptor is not None and "depth_adaptor" in ckpt.extra:
                self.depth_adaptor.load_state_dict(ckpt.extra["depth_adaptor"])
                taken.append("depth adaptor")
            if self.D_outline is not None and "D_outline" in ckpt.extra:
                self.D_outline.load_state_dict(ckpt.extra["D_outline"])
                taken.append("outline D")
            # An upstream run converted with --all keeps its Adam moments by parameter name: they go
            # on with it (trigan's own optimiser states belong to their run and start afresh here).
            got = (self.adam_state_by_name(self.opt_G, self._g_named_parameters(), ckpt.extra.get("G_opt")),
                   self.adam_state_by_name(self.opt_D, list(self.D.named_parameters()), ckpt.extra.get("D_opt")))
            if any(got):
                taken.append(f"Adam moments of {got[0]} G and {got[1]} D parameters")
        self._broadcast_networks()
        fresh = "" if "D" in ckpt.extra else "; D starts fresh"
        seen = ckpt.progress.get("kimg")
        seen = f", after {float(seen):g} kimg there" if seen is not None else ""
        return f"weights from {path}: {', '.join(taken)}{fresh}{seen}"

    # ---------------------------------------------------------------------------------------------
    # Inputs

    @property
    def seed(self) -> int:
        """The run's seed, moved by each rollback so that the replay takes another random path."""
        return self.cfg.training.seed + 7919 * self.seed_offset

    @property
    def local(self) -> slice:
        """This process's share of a global batch."""
        return slice(self.info.rank * self.batch_gpu, (self.info.rank + 1) * self.batch_gpu)

    def local_patch(self, patch: PatchParams) -> PatchParams:
        """This process's share of a global batch's patches, on the training device."""
        return PatchParams(patch.scale[self.local].to(self.device), patch.offset[self.local].to(self.device))

    def _real_batches(self) -> Iterator[dict]:
        t = self.cfg.training
        sampler = StepSampler(len(self.dataset), self.batch, self.info.rank, self.info.world_size,
                              t.seed, self.step)
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_size=self.batch_gpu, sampler=sampler, num_workers=t.num_workers,
            pin_memory=self.device.type == "cuda", persistent_workers=False,
            prefetch_factor=2 if t.num_workers > 0 else None,
            worker_init_fn=_ignore_stop_signals if t.num_workers > 0 else None)
        return iter(loader)

    def close_data(self) -> None:
        """Stop the data-loading workers now. They ignore SIGTERM (`_ignore_stop_signals`), so the
        terminate() that multiprocessing sends its children at interpreter exit cannot end them, and a
        run that failed while its iterator was still referenced (by the traceback) would wait on them
        forever instead of exiting."""
        it, self._data_iter = self._data_iter, None
        shutdown = getattr(it, "_shutdown_workers", None)   # torch's own orderly shutdown (idempotent)
        if shutdown is not None:
            shutdown()

    def next_real(self) -> RealBatch:
        """This process's share of the next real batch (the data loader's dict, made what D consumes)."""
        if self._data_iter is None:
            self._data_iter = self._real_batches()
        batch = next(self._data_iter)
        dev = self.device
        img = batch["image"].to(dev, non_blocking=True).float() / 127.5 - 1
        if self.use_depth:
            img = torch.cat([img, real_depth_to_unit(batch["depth"].to(dev).float())], dim=1)
        real = RealBatch(images=img, labels=_one_hot_labels(batch["label"].clamp(min=0), self.c_dim, dev),
                         angles=batch["camera_angles"].to(dev).float())
        if self.features is not None:
            real.features = torch.from_numpy(self.features(batch["index"].numpy())).to(dev)
        if self.D_outline is not None:
            real.outline_masks = real_outlines(batch["depth"].to(dev).float(), self.D_outline.resolution)
        return real

    def fake_inputs(self, gen: torch.Generator) -> FakeBatch:
        """Latents, labels, cameras, GPC angles and patches for the whole global batch, drawn in a
        fixed order from `gen`, then cut to this process's slice."""
        B, cfg = self.batch, self.cfg
        kimg = self.cur_nimg / 1000
        z = torch.randn(B, cfg.model.mapping.z_dim, generator=gen)
        idx = torch.randint(len(self.dataset), (B,), generator=gen)
        labels, angles = self.conditioning.lookup(idx)
        camera = self.conditioning.cameras(cfg.model.camera, angles, gen)
        gpc = camera.angles.clone()
        if cfg.model.mapping.camera_cond:
            spoof = (torch.rand(B, generator=gen) < gpc_spoof_p(cfg, kimg)).nonzero()[:, 0]
            if len(spoof) > 1:
                gpc[spoof] = camera.angles[spoof.roll(1)]
        patch = sample_patches(cfg.training.patch, B, kimg, self.min_scale, self.group, generator=gen)
        sl = self.local
        dev = self.device
        fakes = FakeBatch(latents=z[sl].to(dev), labels=_one_hot_labels(labels[sl], self.c_dim, dev),
                          cameras=camera[sl].to(dev), gpc_angles=gpc[sl].to(dev), patches=self.local_patch(patch),
                          sample_indices=list(range(sl.start, sl.stop)),
                          # Distillation weighs samples by patch scale relative to the global batch's mean.
                          global_patch_scale=patch.scale)
        if self.G.camera_generator is not None:
            # 3DGP: G renders from its learned posterior of each prior camera (a deterministic function
            # of the draws above; differentiable in the G phase, where G requires gradients).
            fakes.prior_cameras = fakes.cameras
            fakes.cameras = self.G.camera_generator.posterior(fakes.prior_cameras, fakes.latents, fakes.labels)
        probs = self.depth_probabilities(kimg)
        if probs is not None:
            # Which adaptor candidate each fake shows D, drawn after everything above.
            fakes.depth_choices = sample_choices(probs, B, gen)[sl]
        return fakes

    # ---------------------------------------------------------------------------------------------
    # Networks

    def render_fakes(self, fakes: FakeBatch, phase: int, update_w_avg: bool = False,
                     outline: bool = False) -> RenderedFakes:
        """What D sees of the fakes and their per-pixel opacity; with `outline`, also the opacity of
        the same fakes seen whole at the outline D's resolution (from the same tri-planes: the
        synthesis network, not the rays, is what costs)."""
        G, cfg, seed = self.G, self.cfg, self.seed
        ws = G.mapping(fakes.latents, fakes.labels if cfg.model.c_dim else None, camera_angles=fakes.gpc_angles)
        if update_w_avg:
            mean_w = ddp.all_reduce_mean(self.info, ws[:, 0].detach().mean(dim=0).clone())
            G.mapping.w_avg.copy_(mean_w.lerp(G.mapping.w_avg, G.mapping.w_avg_beta))
        noise = SampleNoise(mix_seed(seed, self.step, phase, 0x4E), fakes.sample_indices)
        field = G.field_from_ws(ws, noise_mode=noise)
        opts = G.render_options(density_noise_std=nerf_noise_std(cfg, self.cur_nimg / 1000), deterministic=True,
                                seed=render_seed(seed, self.step, phase),
                                sample_offset=fakes.sample_indices[0], max_points_per_chunk=1 << 40)
        out = G.render(field, fakes.cameras, self.patch_res, patch=fakes.patches, options=opts)
        img = out.rgb
        if self.use_depth:
            depth = out.depth
            if open_far_end(field, opts):
                # Real depth maps put the background at the far bound; rays that end in nothing go there too.
                depth = depth_to_far_end(depth, out.opacity, opts.ray_end)
            img = torch.cat([out.rgb, self.fake_depth(depth, fakes.depth_choices)], dim=1)
        rendered = RenderedFakes(images=img, opacity=out.opacity)
        if outline:
            whole = self.local_patch(whole_image(self.batch))
            # Its own stream of sample jitter: the patch's rays have the same ids.
            opts = replace(opts, seed=render_seed(seed, self.step, PHASE_OUTLINE + phase))
            seen_whole = G.render(field, fakes.cameras, self.D_outline.resolution, patch=whole, options=opts)
            rendered.whole_opacity = seen_whole.opacity
        return rendered

    def run_D(self, img: torch.Tensor, c: torch.Tensor, patch: PatchParams, angles: torch.Tensor,
              augment: Optional[tuple] = None, predict_features: bool = False):
        """`augment`: (phase, ROLE_FAKE | ROLE_REAL) names the random stream of the D-input augmentation
        (training.augment), applied after the blur; None: no augmentation. With predict_features,
        returns (logits, D's predicted distillation features)."""
        sigma = blur_sigma(self.cur_nimg, self.cfg.training.blur_init_sigma, self.cfg.training.blur_fade_kimg)
        img = blur_images(img, sigma)
        if img.shape[1] == 4 and self.cfg.training.depth.extra_blur:
            img = blur_depth_channel(img, sigma)
        if augment is not None:
            img = augment_d_input(self.cfg.training.augment, img, self.seed, self.step, *augment, self.local.start)
        return self.D(img, c if self.cfg.model.c_dim else None, patch, angles, use_fp16=self.use_fp16,
                      predict_features=predict_features)

    def step_optimizer(self, opt: torch.optim.Optimizer) -> None:
        # The optimiser's own parameters: G's also holds the depth adaptor's.
        params = [p for group in opt.param_groups for p in group["params"] if p.grad is not None]
        ddp.average_gradients(self.info, params)
        if self.cfg.training.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, self.cfg.training.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)

    # ---------------------------------------------------------------------------------------------
    # One step

    def train_step(self) -> Dict[str, float]:
        cfg, seed = self.cfg, self.seed
        real = self.next_real()
        losses: Dict[str, float] = {}

        # No G phase while D warms up: a fine-tune's fresh D first learns to judge G's images.
        if self.cur_nimg >= cfg.training.d_warmup_kimg * 1000:
            losses.update(self._g_phase(seed))
        losses.update(self._d_phases(real, seed))
        self.D.requires_grad_(False)

        # EMA of G (parameters averaged, buffers such as w_avg copied)
        self.cur_nimg += self.batch
        self.step += 1
        beta = ema_beta(cfg, self.cur_nimg)
        with torch.no_grad():
            for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters(), strict=True):
                p_ema.copy_(p.detach().lerp(p_ema, beta))
            for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers(), strict=True):
                b_ema.copy_(b)
        return losses

    def _g_phase(self, seed: int) -> Dict[str, float]:
        cfg = self.cfg
        losses: Dict[str, float] = {}
        self.G.requires_grad_(True)
        self.D.requires_grad_(False)
        fakes = self.fake_inputs(batch_generator(seed, self.step, PHASE_G))
        rendered = self.render_fakes(fakes, PHASE_G, outline=self.D_outline is not None)
        loss_G = generator_loss(self.run_D(rendered.images, fakes.labels, fakes.patches, fakes.cameras.angles,
                                           augment=(PHASE_G, ROLE_FAKE)))
        total_G = loss_G
        if rendered.whole_opacity is not None:
            self.D_outline.requires_grad_(False)
            loss_outline = generator_loss(self.D_outline(rendered.whole_opacity, fakes.labels))
            total_G = total_G + loss_outline * cfg.training.outline.weight
            losses["loss_G_outline"] = loss_outline.item()
        opacity_weight = opacity_reg_weight(cfg, self.cur_nimg / 1000)
        if opacity_weight > 0:
            binarity = opacity_binarity(rendered.opacity)
            total_G = total_G + binarity * opacity_weight
            losses["opacity_binarity"] = binarity.item()
        if self.G.camera_generator is not None:
            # 3DGP's camera regularisers on a fresh batch of their own (training.camera_reg).
            reg, reg_stats = camera_regularizers(self.G, cfg.training.camera_reg, self.cur_nimg / 1000,
                                                 batch_generator(seed, self.step, PHASE_CAMERA),
                                                 use_labels=self.c_dim > 0)
            total_G = total_G + reg
            losses.update(reg_stats)
        total_G.backward()
        self.step_optimizer(self.opt_G)
        losses["loss_G"] = loss_G.item()
        return losses

    def _d_phases(self, real: RealBatch, seed: int) -> Dict[str, float]:
        """D's loss on fakes and reals, then (every r1_interval steps) R1 on real patches; then the
        outline D's, on the same fakes seen whole."""
        cfg = self.cfg
        losses: Dict[str, float] = {}
        self.G.requires_grad_(False)
        self.D.requires_grad_(True)
        fakes = self.fake_inputs(batch_generator(seed, self.step, PHASE_D))
        with torch.no_grad():
            rendered = self.render_fakes(fakes, PHASE_D, update_w_avg=True, outline=self.D_outline is not None)
        real_patches = extract_patches(real.images, fakes.patches, self.patch_res)
        logits_fake = self.run_D(rendered.images, fakes.labels, fakes.patches, fakes.cameras.angles,
                                 augment=(PHASE_D, ROLE_FAKE))
        distill = self.features is not None
        logits_real = self.run_D(real_patches, real.labels, fakes.patches, real.angles,
                                 augment=(PHASE_D, ROLE_REAL), predict_features=distill)
        if distill:
            logits_real, predicted = logits_real
        loss_D = discriminator_loss(logits_real, logits_fake)
        if distill:
            # 3DGP's knowledge distillation: D predicts the real image's features from its patch.
            dist = distillation_distances(predicted, real.features, fakes.patches.scale,
                                          cfg.training.distill.scale_pow, fakes.global_patch_scale)
            loss_D = loss_D + dist.mean() * distill_weight(cfg.training.distill, self.cur_nimg / 1000)
            losses["distill_l2"] = dist.mean().item()
        loss_D.backward()
        self.step_optimizer(self.opt_D)
        losses.update(loss_D=loss_D.item(), D_real=logits_real.mean().item(), D_fake=logits_fake.mean().item())

        # Lazy R1 on real patches
        interval = cfg.training.r1_interval
        if interval > 0 and self.gamma > 0 and self.step % interval == 0:
            gen = batch_generator(seed, self.step, PHASE_REG)
            reg_patch = sample_patches(cfg.training.patch, self.batch, self.cur_nimg / 1000, self.min_scale,
                                       self.group, generator=gen)
            reg_patch = self.local_patch(reg_patch)
            real_in = extract_patches(real.images, reg_patch, self.patch_res).detach().requires_grad_(True)
            logits = self.run_D(real_in, real.labels, reg_patch, real.angles, augment=(PHASE_REG, ROLE_REAL))
            penalty = r1_penalty(logits, real_in)
            loss_r1 = (penalty.mean() * (self.gamma / 2) + logits.mean() * 0) * interval
            loss_r1.backward()
            self.step_optimizer(self.opt_D)
            losses["r1_penalty"] = penalty.mean().item()
        if rendered.whole_opacity is not None:
            losses.update(self._outline_d_phases(real, rendered.whole_opacity, fakes.labels))
        return losses

    def _outline_d_phases(self, real: RealBatch, fake: torch.Tensor, c_fake: torch.Tensor) -> Dict[str, float]:
        """The outline D's loss on whole fakes' opacity `fake` [b, 1, R, R] and the real masks, then
        (every r1_interval steps) R1 on the real masks."""
        cfg, D = self.cfg, self.D_outline
        D.requires_grad_(True)
        logits_fake, logits_real = D(fake, c_fake), D(real.outline_masks, real.labels)
        loss = discriminator_loss(logits_real, logits_fake)
        loss.backward()
        self.step_optimizer(self.opt_D_outline)
        out = {"loss_D_outline": loss.item(), "D_outline_real": logits_real.mean().item(),
               "D_outline_fake": logits_fake.mean().item()}
        interval, gamma = cfg.training.r1_interval, cfg.training.outline.gamma
        if interval > 0 and gamma > 0 and self.step % interval == 0:
            masks = real.outline_masks.detach().requires_grad_(True)
            penalty = r1_penalty(D(masks, real.labels), masks)
            (penalty.mean() * (gamma / 2) * interval).backward()
            self.step_optimizer(self.opt_D_outline)
            out["outline_r1_penalty"] = penalty.mean().item()
        D.requires_grad_(False)
        return out

    def weights_finite(self) -> bool:
        modules = [m for m in (self.G, self.D, self.G_ema, self.depth_adaptor, self.D_outline) if m is not None]
        return all(bool(torch.isfinite(p).all()) for m in modules for p in m.parameters())

    def schedules(self) -> Dict[str, float]:
        cfg, kimg = self.cfg, self.cur_nimg / 1000
        out = {"blur_sigma": blur_sigma(self.cur_nimg, cfg.training.blur_init_sigma, cfg.training.blur_fade_kimg),
               "nerf_noise_std": nerf_noise_std(cfg, kimg), "ema_beta": ema_beta(cfg, max(self.cur_nimg, 1))}
        if cfg.training.opacity_reg > 0:
            out["opacity_reg_weight"] = opacity_reg_weight(cfg, kimg)
        if cfg.training.patch.dist == "beta":
            out["patch_beta"] = patch_beta(cfg.training.patch, kimg)
        elif cfg.training.patch.dist == "uniform":
            out["patch_min_scale"] = uniform_min_scale(cfg.training.patch, kimg, self.min_scale)
        if cfg.model.mapping.camera_cond:
            out["gpc_spoof_p"] = gpc_spoof_p(cfg, kimg)
        if self.G.camera_generator is not None:
            out["camera_emd_multiplier"] = emd_multiplier(cfg.training.camera_reg, kimg)
        probs = self.depth_probabilities(kimg)
        if probs is not None:
            out["depth_raw_p"] = float(probs[0])   # chance D sees the unadapted depth
        if self.features is not None:
            out["distill_weight"] = distill_weight(cfg.training.distill, kimg)
        return out
