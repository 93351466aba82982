"""Inversion: a picture into the model (a latent, a camera, and a generator tuned around them).

    target = load_target("photo.png", G.cfg.img_resolution, backdrop=model_backdrop(G))
    result = invert(G, target, InversionSettings())
    G_tuned = generator_with(G, result)            # a copy: the found noise maps and tuned weights
    field = G_tuned.field_from_ws(result.ws)       # orbit it, export it, like any latent

Three stages, each optional:

1. **Search** (only for what is unknown). Candidates are (class, yaw) pairs: every class of a
   conditional model without a given class, `pose_yaws` yaws around the model's mean pose without a
   given camera. All are scored from their class's mean latent at a low resolution without
   gradients; the best few are optimised briefly (latent and camera together, one batch), and the
   one that fits best goes on.
2. **Latent** (`steps`): Adam on w (one w for every layer, or W+ with `wplus`), the camera's yaw
   and pitch when they were not given, and the synthesis noise maps (`optimise_noise`). The w
   starts at the class or global mean and gets decaying noise early on, so the first steps explore
   instead of settling in the nearest basin. Regularisers: a pull toward the mean latent (in units
   of the mapping's spread), and for the noise maps a penalty on their autocorrelation at every
   scale (noise that stays noise cannot paint the picture in).
3. **Pivotal tuning** (`pti_steps`): the synthesis network (tri-plane decoder, decoder MLP,
   background network) of a copy of G is fine-tuned so that the found latent reproduces the picture,
   with two regularisers: *locality* (latents a fixed distance from the pivot toward random ones
   render as the original G renders them, so the rest of the latent space still works) and *views*
   (the pivot seen from other cameras stays as the latent-only fit shows it, so tuning a single view
   cannot flatten or smear the object's unseen sides), both in the fit's own units. The state kept
   is the one that scores best, without randomness, on the picture's fit plus `tune_hold` times
   the drift of the pivot's other sides; the untuned weights compete too, so tuning that buys less
   at the picture than it costs elsewhere is not taken (`metrics["tuning_kept_step"]` is then 0).

Memory is bounded at any resolution: a step renders the whole view at most at
`full_view_resolution` (the target resampled with the renderer's pixel grid) and, for models above
`patch_resolution`, one random full-resolution patch of that size, as EpiGRAF trains.

Losses are those of `image_loss(x, y, mask)` (training.perceptual.make_image_loss: LPIPS-style VGG
features plus pixels when a VGG file is given, else multi-scale pixels + SSIM), plus, when the
target knows the object's silhouette (a mask), the rendered opacity against it.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, fields, replace
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

from trigan.core.cameras import Camera, PatchParams, Pose
from trigan.core.generator import one_hot
from trigan.core.image_metrics import psnr, ssim
from trigan.core.limits import MAX_INVERSION_STEPS, MAX_TUNE_HOLD
from trigan.core.rendering import field_renderer
from trigan.core.views import options_at_distance
from trigan.training.inversion_inputs import InversionError, Target, model_backdrop
from trigan.training.patches import extract_patches

STAGES = ("search", "latent", "tuning")
MAX_CLASS_CANDIDATES = 64        # beyond this many classes, the class must be given
SEARCH_KEEP = 4                  # candidates optimised briefly after scoring
SEARCH_RESOLUTION = 32           # pixels of the search renders (at most the model's resolution)


@dataclass(frozen=True)
class InversionSettings:
    """What an inversion does; defaults fit a 64^2 model in about a minute on two CPU cores."""

    steps: int = 200                       # latent steps (stage 2)
    pti_steps: int = 80                    # pivotal tuning steps (stage 3); 0: no tuning
    wplus: bool = False                    # one w per layer instead of one w for all
    lr: float = 0.05                       # Adam, w (at the peak of the ramp)
    camera_lr: float = 0.02                # Adam, yaw and pitch in radians
    noise_lr: float = 0.05                 # Adam, the noise maps
    pti_lr: float = 3e-4                   # Adam, the synthesis weights
    search_steps: int = 40                 # brief optimisation of each kept search candidate
    pose_yaws: int = 8                     # starting yaws tried when the camera is unknown
    optimise_noise: bool = True
    w_noise: float = 0.05                  # initial noise added to w, in units of the mapping's spread
    mean_weight: float = 1e-3              # pull toward the mean latent
    noise_weight: float = 1e3              # noise-map autocorrelation penalty
    mask_weight: float = 1.0               # rendered opacity against the target's mask
    locality_weight: float = 1.0           # tuning: random nearby latents render as before
    locality_distance: float = 0.5         # ... this fraction of the way toward a random latent's w
    view_weight: float = 1.0               # tuning: the pivot's other views stay as the latent fit shows them
    tune_hold: float = 1.0                 # tuning: the other views' drift against the picture's gain when the
    #                                        kept state is chosen (0: the state that fits the picture best)
    tune_check_every: int = 5              # tuning: steps between scorings of the state (the best is kept)
    full_view_resolution: int = 64         # bound on the whole-view render per step
    patch_resolution: int = 64             # bound on the full-resolution patch per step
    preview_every: int = 5                 # steps between progress previews
    seed: int = 0

    def check(self) -> None:
        """One-line InversionError for a setting out of its range."""
        most = MAX_INVERSION_STEPS
        counts = {"steps": (1, most), "pti_steps": (0, most), "search_steps": (0, most),
                  "pose_yaws": (1, 360), "full_view_resolution": (8, 1024), "patch_resolution": (8, 1024),
                  "preview_every": (1, most), "tune_check_every": (1, most), "seed": (0, 2 ** 31 - 1)}
        for name, (lo, hi) in counts.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
                raise InversionError(f"inversion {name} {value!r}: expected an integer from {lo} to {hi}")
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not (math.isfinite(value) and value >= 0):
                raise InversionError(f"inversion {f.name} {value!r}: expected a finite number >= 0")
        for name in ("lr", "pti_lr", "camera_lr", "noise_lr"):
            if not getattr(self, name) > 0:
                raise InversionError(f"inversion {name} {getattr(self, name)!r}: expected a positive learning rate")
        if self.tune_hold > MAX_TUNE_HOLD:
            raise InversionError(f"inversion tune_hold {self.tune_hold!r}: expected a number from 0 to {MAX_TUNE_HOLD:g}")
        if not 0 < self.locality_distance <= 1:
            raise InversionError(f"inversion locality_distance {self.locality_distance!r}: expected 0 < d <= 1")

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class InversionProgress:
    stage: str                      # "search", "latent" or "tuning"
    step: int                       # 1-based within the stage
    total: int                      # steps of the stage
    fraction: float                 # of the whole inversion, 0..1
    loss: float
    psnr: float                     # of this step's render against the target (at its resolution)
    preview: Optional[torch.Tensor] = None    # [3, r, r] in [-1, 1] every `preview_every` steps


@dataclass
class InversionResult:
    target_name: str
    ws: torch.Tensor                          # [1, num_ws, w_dim], CPU
    class_index: Optional[int]
    pose: Pose
    pose_given: bool
    noise: Dict[str, torch.Tensor]            # buffer name -> [R, R] noise map found (CPU); {}: the model's own
    tuned_state: Optional[Dict[str, torch.Tensor]]    # G.state_dict() after tuning (CPU); None: not tuned
    reconstruction_latent: torch.Tensor       # [3, R, R] latent-only render at the pose
    reconstruction: torch.Tensor              # [3, R, R] final render (tuned if tuned)
    metrics: dict
    settings: InversionSettings
    opacity: Optional[torch.Tensor] = None    # [1, R, R] final render's opacity


ProgressFn = Optional[Callable[[InversionProgress], None]]
StopFn = Optional[Callable[[], bool]]


# --------------------------------------------------------------------------------------------------
# The model's noise maps

def noise_buffers(G) -> Dict[str, torch.Tensor]:
    """The synthesis network's constant noise maps by state-dict name (layers with noise only)."""
    return {name: buf for name, buf in G.named_buffers() if name.endswith(".noise_const")}


def apply_noise(G, noise: Dict[str, torch.Tensor]) -> None:
    """Replace G's constant noise maps (in place: call it on a copy you own). Names and shapes must
    be G's own (training.inversion_outputs checks a file's before it gets here)."""
    own = noise_buffers(G)
    for name, value in noise.items():
        if name not in own or tuple(own[name].shape) != tuple(value.shape):
            raise InversionError(f"noise map {name} {tuple(value.shape)}: not a noise map of this model")
    with torch.no_grad():
        for name, value in noise.items():
            own[name].copy_(value.to(own[name]))


def generator_with(G, result, tuned: bool = True):
    """A copy of G (eval, no gradients) with an inversion's noise maps and, when it was tuned and
    `tuned`, its tuned weights. `result` is an InversionResult or anything with `noise` and
    `tuned_state` (training.inversion_outputs.InversionRecord)."""
    out = copy.deepcopy(G).eval().requires_grad_(False)
    state = getattr(result, "tuned_state", None)
    if tuned and state is not None:
        out.load_state_dict({k: v.to(G.device) for k, v in state.items()})
    apply_noise(out, getattr(result, "noise", None) or {})
    return out


def _set_noise_leaves(G) -> List[torch.Tensor]:
    """Make G's noise maps leaf tensors that gradients reach (G is the inversion's own copy)."""
    leaves = []
    for module in G.modules():
        buf = getattr(module, "noise_const", None)
        if isinstance(buf, torch.Tensor):
            leaf = buf.detach().clone().requires_grad_(True)
            module.noise_const = leaf       # still a buffer (nn.Module keeps the name registered as one)
            leaves.append(leaf)
    return leaves


def noise_regulariser(maps: List[torch.Tensor]) -> torch.Tensor:
    """Sum over maps and scales of the squared mean correlation of each pixel with its right and lower
    neighbour: zero for white noise, large when a map holds structure (a picture painted into it)."""
    total = maps[0].new_zeros(()) if maps else torch.zeros(())
    for m in maps:
        x = m[None, None]
        while True:
            total = total + (x * torch.roll(x, 1, dims=3)).mean() ** 2 + (x * torch.roll(x, 1, dims=2)).mean() ** 2
            if x.shape[-1] <= 8:
                break
            x = F.avg_pool2d(x, 2)
    return total


@torch.no_grad()
def _normalise_noise(maps: List[torch.Tensor]) -> None:
    for m in maps:
        m.sub_(m.mean()).div_(m.square().mean().sqrt().clamp_min(1e-8))


# --------------------------------------------------------------------------------------------------
# Views of the target

def downsample_to_grid(image: torch.Tensor, resolution: int) -> torch.Tensor:
    """[B, C, R, R] -> [B, C, r, r] on the renderer's pixel grid (corner-aligned: NDC -1..1 at the
    outer pixel centres), low-passed first so that small renders are compared with what they can show."""
    size = image.shape[-1]
    if resolution == size:
        return image
    factor = size / resolution
    if factor > 1:
        k = max(3, int(2 * round(factor) + 1))
        sigma = 0.5 * factor
        xs = torch.arange(k, dtype=image.dtype, device=image.device) - (k - 1) / 2
        g = torch.exp(-xs.square() / (2 * sigma ** 2))
        g = g / g.sum()
        c = image.shape[1]
        pad = k // 2
        image = F.pad(image, (pad, pad, pad, pad), mode="replicate")
        image = F.conv2d(image, g.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)
        image = F.conv2d(image, g.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)
    whole = PatchParams(scale=torch.ones(image.shape[0], device=image.device),
                        offset=torch.zeros(image.shape[0], 2, device=image.device))
    return extract_patches(image, whole, resolution)


@dataclass
class TargetViews:
    """The target (and its mask) at the whole-view resolution, and full-resolution patches of it."""

    image: torch.Tensor                     # [1, 3, R, R]
    mask: Optional[torch.Tensor]            # [1, 1, R, R]
    low: torch.Tensor                       # [1, 3, r, r]
    low_mask: Optional[torch.Tensor]

    @classmethod
    def of(cls, target: Target, resolution: int, device) -> "TargetViews":
        image = target.image.to(device=device, dtype=torch.float32)[None]
        mask = None if target.mask is None else target.mask.to(device=device, dtype=torch.float32)[None]
        low = downsample_to_grid(image, resolution)
        low_mask = None if mask is None else downsample_to_grid(mask, resolution)
        return cls(image, mask, low, low_mask)

    @property
    def resolution(self) -> int:
        return self.image.shape[-1]

    def patch(self, size: int, gen: torch.Generator) -> Tuple[PatchParams, torch.Tensor, Optional[torch.Tensor]]:
        """A random pixel-aligned full-resolution patch: its params, image and mask."""
        full = self.resolution
        scale = (size - 1) / (full - 1)
        ox, oy = (int(v) for v in torch.randint(0, full - size + 1, (2,), generator=gen))
        dev = self.image.device
        params = PatchParams(scale=torch.tensor([scale], device=dev),
                             offset=torch.tensor([[ox / (full - 1), oy / (full - 1)]], device=dev))
        image = extract_patches(self.image, params, size)
        mask = None if self.mask is None else extract_patches(self.mask, params, size)
        return params, image, mask


# --------------------------------------------------------------------------------------------------
# Cameras as parameters

class _CameraParams:
    """Yaw and pitch of a batch of cameras as tensors (optimised when the pose is unknown); the
    rest of the pose (radius, fov, look-at, pivot) fixed."""

    def __init__(self, base: Pose, yaws: List[float], pitches: List[float], device, trainable: bool):
        self.base = base
        self.yaw = torch.tensor(yaws, dtype=torch.float32, device=device).requires_grad_(trainable)
        self.pitch = torch.tensor(pitches, dtype=torch.float32, device=device).requires_grad_(trainable)

    def camera(self) -> Camera:
        b = self.base
        n = self.yaw.shape[0]
        dev = self.yaw.device
        # keep the pitch off the poles, where the frame is undefined
        pitch = self.pitch.clamp(0.05, math.pi - 0.05)
        angles = torch.stack([self.yaw, pitch, torch.zeros_like(self.yaw)], dim=1)
        full = lambda v: torch.full((n,), float(v), device=dev)
        vec = lambda v: torch.tensor(v, dtype=torch.float32, device=dev).expand(n, 3)
        return Camera(angles, full(b.radius), full(b.fov), vec(b.look_at), vec(b.pivot))

    def pose(self, index: int = 0) -> Pose:
        yaw = float(self.yaw[index].detach())
        yaw = math.atan2(math.sin(yaw), math.cos(yaw))      # back into (-pi, pi]
        pitch = min(max(float(self.pitch[index].detach()), 0.05), math.pi - 0.05)
        return replace(self.base, yaw=yaw, pitch=pitch)

    def parameters(self) -> List[torch.Tensor]:
        return [t for t in (self.yaw, self.pitch) if t.requires_grad]


# --------------------------------------------------------------------------------------------------
# Choosing the tuned state

CHECK_YAW_OFFSETS_DEG = (40.0, 100.0, 160.0, 220.0, 280.0)    # around the pivot's camera


@dataclass(frozen=True)
class TuningChoice:
    """Which tuned state was kept: `step` (0: the untuned weights), and the scores of the untuned
    and the kept state (lower is better)."""

    step: int
    score_start: float
    score_kept: float


class _TuningCheck:
    """Scores a tuned state without randomness, with the renderer the results are made with (the
    exact path, deterministic): the fit of the picture's view at the whole-view resolution, plus
    `tune_hold` times the mean drift of the pivot from its latent-only renders at fixed cameras
    around the picture's, at the same resolution. Both are in the fit's own units, so a hold of 1
    reads: the picture must gain more than the other sides lose."""

    def __init__(self, run: "_Inversion", frozen, ws: torch.Tensor, pose: Pose):
        self.run, self.ws, self.pose = run, ws, pose
        # every view is at the picture's distance, so one set of options (and one occupancy grid
        # per scored state: the field's set-up is most of an exact render's cost) serves them all
        self.views = [replace(pose, yaw=pose.yaw + math.radians(d)) for d in CHECK_YAW_OFFSETS_DEG]
        self.refs = self._renders(frozen)[1:] if run.settings.tune_hold > 0 else []

    @torch.no_grad()
    def _renders(self, G) -> list:
        """The picture's view, then the other views (all of them only when they are held)."""
        run = self.run
        exact = field_renderer("accelerated", G.field_from_ws(self.ws), run.options(self.pose, deterministic=True))
        poses = [self.pose] + (self.views if run.settings.tune_hold > 0 else [])
        return [exact.render(pose.to_camera().to(run.device), run.low_res) for pose in poses]

    @torch.no_grad()
    def score(self, G) -> float:
        run = self.run
        picture, *others = self._renders(G)
        total = float(run.fit_loss(picture, run.views.low, run.views.low_mask))
        if self.refs:
            drift = [run.drift(out, ref) for out, ref in zip(others, self.refs, strict=True)]
            total += run.settings.tune_hold * float(torch.stack(drift).mean())
        return total


# --------------------------------------------------------------------------------------------------
# The inversion

class _Inversion:
    def __init__(self, G, target: Target, settings: InversionSettings, image_loss, progress: ProgressFn,
                 should_stop: StopFn):
        self.G0 = G
        self.settings = settings
        self.image_loss = image_loss
        self.progress_fn = progress
        self.should_stop = should_stop
        self.device = G.device
        self.gen = torch.Generator().manual_seed(settings.seed)
        self.R = int(G.cfg.img_resolution)
        if tuple(target.image.shape) != (3, self.R, self.R):
            raise InversionError(f"{target.name}: the target is {tuple(target.image.shape)}, expected (3, {self.R}, "
                                 f"{self.R}) for this model (load_target with the model's resolution)")
        self.low_res = min(self.R, settings.full_view_resolution)
        self.patch_res = settings.patch_resolution if self.R > settings.patch_resolution else None
        self.views = TargetViews.of(target, self.low_res, self.device)
        self.backdrop = model_backdrop(G)
        self.interrupted = False
        # G's own copy: its noise maps become leaves; tuning trains this copy's synthesis weights
        self.G = copy.deepcopy(G).eval().requires_grad_(False)
        self.noise = _set_noise_leaves(self.G) if settings.optimise_noise else []
        self.noise_names = [n for n in noise_buffers(self.G)] if settings.optimise_noise else []
        w_samples = self._w_samples(1000)
        self.w_std = float(w_samples.var(dim=0).sum().sqrt().clamp_min(1e-8))
        self.done_steps = 0
        self.total_steps = 1

    # -- helpers ---------------------------------------------------------------------------------
    @torch.no_grad()
    def _w_samples(self, n: int) -> torch.Tensor:
        G = self.G0
        z = torch.randn(n, G.z_dim, generator=self.gen).to(self.device)
        c = None
        if G.c_dim:
            c = one_hot(torch.randint(G.c_dim, (n,), generator=self.gen).tolist(), G.c_dim, self.device)
        return G.map_latents(z, c)[:, 0]

    @torch.no_grad()
    def mean_w(self, class_index: Optional[int]) -> torch.Tensor:
        G = self.G0
        if class_index is None or G.c_dim == 0:
            return G.mapping.w_avg.detach().clone()
        return G.class_mean_w(one_hot([class_index], G.c_dim, self.device))[0]

    def num_ws(self) -> int:
        return self.G0.synthesis.num_ws

    def options(self, pose: Pose, deterministic: bool = False):
        G = self.G0
        opts = G.render_options(deterministic=deterministic, density_noise_std=0.0,
                                generator=None if deterministic else self.render_gen)
        return options_at_distance(opts, pose.radius, float(G.cfg.camera.radius))

    def render(self, G, ws: torch.Tensor, camera: Camera, resolution: int, pose: Pose,
               patch: Optional[PatchParams] = None):
        field_ = G.field_from_ws(ws)
        return field_renderer("plain", field_, self.options(pose)).render(camera, resolution, patch=patch)

    def fit_loss(self, out, target: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        # a model with a fixed backdrop renders the whole composited target (the mask is in it); one
        # that paints its own background (a background network, opaque ray ends) fits the object only
        loss = self.image_loss(out.rgb, target, mask if self.backdrop is None else None)
        if mask is not None and self.backdrop is not None and self.settings.mask_weight > 0:
            loss = loss + self.settings.mask_weight * F.mse_loss(out.opacity.clamp(0, 1), mask)
        return loss

    def view_losses(self, G, ws, cams: _CameraParams, pose: Pose) -> Tuple[torch.Tensor, object]:
        """The fit of one latent (batch 1): the whole view at low resolution, plus a full-resolution
        patch for large models. Returns the loss and the whole view's render."""
        camera = cams.camera()
        out = self.render(G, ws, camera, self.low_res, pose)
        loss = self.fit_loss(out, self.views.low, self.views.low_mask)
        if self.patch_res is not None:
            params, image, mask = self.views.patch(self.patch_res, self.gen)
            pout = self.render(G, ws, camera, self.patch_res, pose, patch=params)
            loss = loss + self.fit_loss(pout, image, mask)
        return loss, out

    def report(self, stage: str, step: int, total: int, loss: float, out) -> None:
        self.done_steps += 1
        if self.progress_fn is None:
            return
        rgb = out.rgb[0].detach()
        quality = psnr(rgb.clamp(-1, 1), self.views.low[0]) if rgb.shape[-1] == self.low_res else float("nan")
        preview = None
        if step == 1 or step % self.settings.preview_every == 0 or step == total:
            preview = rgb.clamp(-1, 1).cpu()
        self.progress_fn(InversionProgress(stage, step, total, min(1.0, self.done_steps / self.total_steps),
                                           float(loss), float(quality), preview))

    def stopping(self) -> bool:
        if self.should_stop is not None and self.should_stop():
            self.interrupted = True
        return self.interrupted

    def ws_of(self, w: torch.Tensor) -> torch.Tensor:
        """[B, w_dim] or [B, num_ws, w_dim] -> ws [B, num_ws, w_dim]."""
        return w if w.ndim == 3 else w[:, None].expand(-1, self.num_ws(), -1)

    # -- stage 1: search -------------------------------------------------------------------------
    def search(self, base: Pose, classes: List[Optional[int]], yaws: List[float], pose_known: bool
               ) -> Tuple[torch.Tensor, Optional[int], Pose]:
        """The best (latent, class, pose) start over classes x yaws."""
        s = self.settings
        r = min(self.R, SEARCH_RESOLUTION)
        target = downsample_to_grid(self.views.image, r)
        mask = None if self.views.mask is None else downsample_to_grid(self.views.mask, r)
        means = {k: self.mean_w(k) for k in classes}
        scored = []
        with torch.no_grad():
            for k in classes:
                # one synthesis per class, its field seen from every yaw in one batch
                ws = self.ws_of(means[k][None])
                planes = self.G.synthesis(ws).expand(len(yaws), -1, -1, -1)
                field_ = self.G.field(planes, ws.expand(len(yaws), -1, -1))
                cams = _CameraParams(base, list(yaws), [base.pitch] * len(yaws), self.device, False)
                out = field_renderer("plain", field_, self.options(base)).render(cams.camera(), r)
                for i, yaw in enumerate(yaws):
                    scored.append((float(self.fit_loss(_index_out(out, i), target, mask)), k, yaw))
        scored.sort(key=lambda t: t[0])
        kept = scored[:SEARCH_KEEP]
        if s.search_steps == 0 or len(kept) == 1:
            _, k, yaw = kept[0]
            return means[k][None].clone(), k, replace(base, yaw=yaw)
        # brief joint optimisation of the kept candidates, one batch
        w = torch.stack([means[k] for _, k, _ in kept]).clone().requires_grad_(True)
        cams = _CameraParams(base, [y for _, _, y in kept], [base.pitch] * len(kept), self.device, not pose_known)
        opt = torch.optim.Adam([{"params": [w], "lr": s.lr}, {"params": cams.parameters(), "lr": s.camera_lr}]
                               if cams.parameters() else [w], lr=s.lr)
        n = len(kept)
        losses = torch.zeros(n)
        for step in range(1, s.search_steps + 1):
            if self.stopping():
                break
            out = self.render(self.G, self.ws_of(w), cams.camera(), r, base)
            per = torch.stack([self.fit_loss(_index_out(out, i), target, mask) for i in range(n)])
            reg = s.mean_weight * (w - torch.stack([means[k] for _, k, _ in kept])).square().sum(dim=1) / self.w_std ** 2
            opt.zero_grad(set_to_none=True)
            (per + reg).sum().backward()
            opt.step()
            losses = per.detach().cpu()
            self.report("search", step, s.search_steps, float(per.detach().min()), _index_out(out, int(per.detach().argmin())))
        best = int(losses.argmin())
        return w[best:best + 1].detach().clone(), kept[best][1], cams.pose(best)

    # -- stage 2: latent -------------------------------------------------------------------------
    def fit_latent(self, w0: torch.Tensor, class_index: Optional[int], pose: Pose, pose_known: bool):
        s = self.settings
        w_mean = self.mean_w(class_index)[None]
        w = (self.ws_of(w0) if s.wplus else w0).detach().clone().requires_grad_(True)
        cams = _CameraParams(pose, [pose.yaw], [pose.pitch], self.device, not pose_known)
        groups = [{"params": [w], "lr": s.lr}]
        if cams.parameters():
            groups.append({"params": cams.parameters(), "lr": s.camera_lr})
        if self.noise:
            groups.append({"params": self.noise, "lr": s.noise_lr})
        opt = torch.optim.Adam(groups, betas=(0.9, 0.999))
        base_lrs = [g["lr"] for g in groups]
        best = (math.inf, None)
        for step in range(1, s.steps + 1):
            if self.stopping():
                break
            t = (step - 1) / max(1, s.steps - 1)
            # the learning rate ramps up over the first 5% and down (cosine) over the last 25%
            down = 0.5 - 0.5 * math.cos(math.pi * min(1.0, (1 - t) / 0.25))
            up = min(1.0, (t + 1e-3) / 0.05)
            for g, lr in zip(opt.param_groups, base_lrs, strict=True):
                g["lr"] = lr * max(down * up, 0.02)
            noise_scale = self.w_std * s.w_noise * max(0.0, 1 - t / 0.75) ** 2
            w_in = w + torch.randn(w.shape, generator=self.gen).to(w) * noise_scale / math.sqrt(w.shape[-1])
            loss, out = self.view_losses(self.G, self.ws_of(w_in), cams, pose)
            reg = s.mean_weight * (w - (w_mean[:, None] if w.ndim == 3 else w_mean)).square().sum(dim=-1).mean() \
                / self.w_std ** 2
            if self.noise:
                reg = reg + s.noise_weight * noise_regulariser(self.noise)
            opt.zero_grad(set_to_none=True)
            (loss + reg).backward()
            opt.step()
            _normalise_noise(self.noise)
            value = float(loss.detach())
            if value < best[0] and t >= 0.5:     # once the exploring noise has mostly faded
                best = (value, (w.detach().clone(), cams.pose(), [m.detach().clone() for m in self.noise]))
            self.report("latent", step, s.steps, value, out)
        if best[1] is None:          # stopped early: the current state is the best there is
            best = (math.inf, (w.detach().clone(), cams.pose(), [m.detach().clone() for m in self.noise]))
        w_best, pose_best, noise_best = best[1]
        with torch.no_grad():
            for leaf, value in zip(self.noise, noise_best, strict=True):
                leaf.copy_(value)
        return self.ws_of(w_best).detach(), pose_best

    # -- stage 3: pivotal tuning ----------------------------------------------------------------
    def tune(self, ws: torch.Tensor, pose: Pose) -> Tuple[Optional[Dict[str, torch.Tensor]], TuningChoice]:
        """Fine-tune the synthesis weights around `ws`. Returns the kept state dict (None: stopped
        before any state was scored better than the untuned one) and which state that is.

        Fitting one view can always be bought by changing the sides the picture does not show, and
        a tri-plane changes them together (the front and the back of an object share the planes'
        features). Training holds the other views with the regularisers, but the last state is
        still not the one to keep: Adam moves by about the learning rate whatever the gradient, so
        the state wanders once the picture is fitted (the rate decays, cosine, to narrow that).
        Every `tune_check_every` steps the state is scored (_TuningCheck), and the best scoring one
        is kept, the untuned weights included: tuning is only taken where it fits the picture
        better by more than it moves the object's other sides."""
        s = self.settings
        # the frozen reference: G with the found noise maps, as the latent-only result renders
        frozen = copy.deepcopy(self.G).eval().requires_grad_(False)
        for leaf in self.noise:
            leaf.requires_grad_(False)
        tuned = self.G
        params = [p for name, p in tuned.synthesis.named_parameters()]
        for p in params:
            p.requires_grad_(True)
        opt = torch.optim.Adam(params, lr=s.pti_lr)
        cams = _CameraParams(pose, [pose.yaw], [pose.pitch], self.device, False)
        r_reg = min(self.low_res, SEARCH_RESOLUTION)      # both regularisers look at 32^2 renders
        check = _TuningCheck(self, frozen, ws, pose)
        start_score = check.score(tuned)
        best_score, best_step, best_state = start_score, 0, None
        for step in range(1, s.pti_steps + 1):
            if self.stopping():
                break
            for group in opt.param_groups:
                group["lr"] = s.pti_lr * 0.5 * (1 + math.cos(math.pi * (step - 1) / s.pti_steps))
            loss, out = self.view_losses(tuned, ws, cams, pose)
            total = loss
            if s.locality_weight > 0:
                total = total + s.locality_weight * self.locality(tuned, frozen, ws, pose, r_reg)
            if s.view_weight > 0:
                total = total + s.view_weight * self.other_views(tuned, frozen, ws, pose, r_reg)
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            if step % s.tune_check_every == 0 or step == s.pti_steps:
                score = check.score(tuned)
                if score < best_score:
                    best_score, best_step = score, step
                    best_state = {k: v.detach().clone() for k, v in tuned.state_dict().items()}
            self.report("tuning", step, s.pti_steps, float(loss.detach()), out)
        for p in params:
            p.requires_grad_(False)
        choice = TuningChoice(best_step, start_score, best_score)
        if best_state is None:
            if self.interrupted:
                return None, choice
            best_state = frozen.state_dict()          # nothing beat the untuned weights: keep them
        tuned.load_state_dict(best_state)
        return {k: v.detach().cpu().clone() for k, v in tuned.state_dict().items()}, choice

    def _random_pose(self, pose: Pose, min_offset: float) -> Pose:
        """A pose a random yaw offset of at least `min_offset` from `pose`, pitch within the model's range."""
        u = float(torch.rand((), generator=self.gen))
        offset = min_offset + (math.pi - min_offset) * u
        sign = 1 if float(torch.rand((), generator=self.gen)) < 0.5 else -1
        return replace(pose, yaw=pose.yaw + sign * offset)

    def drift(self, out, ref) -> torch.Tensor:
        """How far a render is from its reference, in the fit's own units (the image loss on rgb, L1
        on opacity), so that the regularisers and the check weigh it against the fit directly."""
        return self.image_loss(out.rgb, ref.rgb, None) + F.l1_loss(out.opacity, ref.opacity)

    def locality(self, tuned, frozen, ws, pose, r) -> torch.Tensor:
        """Latents part of the way from the pivot toward random ones render as the original G does."""
        w_rand = self._w_samples(1)
        w_near = ws + self.settings.locality_distance * (w_rand[:, None] - ws)
        view = self._random_pose(pose, 0.0)
        cams = _CameraParams(view, [view.yaw], [view.pitch], self.device, False)
        with torch.no_grad():
            ref = self.render(frozen, w_near, cams.camera(), r, view)
        out = self.render(tuned, w_near, cams.camera(), r, view)
        return self.drift(out, ref)

    def other_views(self, tuned, frozen, ws, pose, r) -> torch.Tensor:
        """The pivot from a camera at least 45 degrees away renders as the latent-only fit does."""
        view = self._random_pose(pose, math.pi / 4)
        cams = _CameraParams(view, [view.yaw], [view.pitch], self.device, False)
        with torch.no_grad():
            ref = self.render(frozen, ws, cams.camera(), r, view)
        out = self.render(tuned, ws, cams.camera(), r, view)
        return self.drift(out, ref)

    # -- final renders --------------------------------------------------------------------------
    @torch.no_grad()
    def final_render(self, G, ws: torch.Tensor, pose: Pose):
        opts = options_at_distance(G.render_options(deterministic=True, density_noise_std=0.0),
                                   pose.radius, float(G.cfg.camera.radius))
        out = field_renderer("accelerated", G.field_from_ws(ws), opts).render(pose.to_camera().to(self.device), self.R)
        return out.rgb[0].clamp(-1, 1).cpu(), out.opacity[0].clamp(0, 1).cpu()


def tuning_note(metrics: dict) -> str:
    """"tuning not kept" when tuning ran and the untuned weights scored best (the result is then the
    latent alone), else "": for the one line a person reads about each picture."""
    return "tuning not kept" if metrics.get("tuned") and metrics.get("tuning_kept_step") == 0 else ""


def _index_out(out, i: int):
    """Sample i of a RenderOutput as a batch of one."""
    return type(out)(**{f.name: (None if getattr(out, f.name) is None else getattr(out, f.name)[i:i + 1])
                        for f in fields(out)})


def search_yaws(base: Pose, count: int) -> List[float]:
    """`count` yaws evenly around the circle, starting at the base pose's."""
    return [base.yaw + 2 * math.pi * k / count for k in range(count)]


def check_class(G, class_index: Optional[int]) -> List[Optional[int]]:
    """The classes to try: the given one, every class of a conditional model, or [None]."""
    if G.c_dim == 0:
        if class_index not in (None, 0):
            raise InversionError(f"class {class_index}: this model is unconditional (it has no classes)")
        return [None]
    if class_index is not None:
        if not 0 <= int(class_index) < G.c_dim:
            raise InversionError(f"class {class_index} out of range: this model has classes 0..{G.c_dim - 1}")
        return [int(class_index)]
    if G.c_dim > MAX_CLASS_CANDIDATES:
        raise InversionError(f"this model has {G.c_dim} classes, too many to try each: give the class "
                             f"(--class 0..{G.c_dim - 1})")
    return list(range(G.c_dim))


def invert(G, target: Target, settings: InversionSettings = InversionSettings(), *, pose: Optional[Pose] = None,
           class_index: Optional[int] = None, image_loss=None, progress: ProgressFn = None,
           should_stop: StopFn = None) -> InversionResult:
    """Invert one target (see the module docstring). G is not modified. `pose`: the camera, when known
    (else estimated); `class_index`: the class, when known (else every class is tried)."""
    settings.check()
    classes = check_class(G, class_index)
    if image_loss is None:
        from trigan.training.perceptual import PixelSSIMLoss  # noqa: PLC0415 (only without a caller's loss)
        image_loss = PixelSSIMLoss()
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        run = _Inversion(G, target, settings, image_loss, progress, should_stop)
        run.render_gen = torch.Generator(device=G.device).manual_seed(settings.seed + 1)
        base = pose if pose is not None else Pose.for_generator(G, classes[0] if len(classes) == 1 else None)
        yaws = [base.yaw] if pose is not None else search_yaws(base, settings.pose_yaws)
        needs_search = len(classes) > 1 or len(yaws) > 1
        run.total_steps = (settings.search_steps if needs_search else 0) + settings.steps + settings.pti_steps
        if needs_search:
            w0, cls, start_pose = run.search(base, classes, yaws, pose is not None)
        else:
            cls, start_pose = classes[0], base
            w0 = run.mean_w(cls)[None]
        ws, found_pose = run.fit_latent(w0, cls, start_pose, pose is not None)
        if pose is not None:
            found_pose = pose
        latent_rgb, latent_opacity = run.final_render(run.G, ws, found_pose)
        tuned_state, choice = None, None
        if settings.pti_steps > 0 and not run.interrupted:
            tuned_state, choice = run.tune(ws, found_pose)
        final_rgb, final_opacity = ((latent_rgb, latent_opacity) if tuned_state is None
                                    else run.final_render(run.G, ws, found_pose))
    target_image = target.image.float().cpu()
    noise = {name: leaf.detach().cpu().clone() for name, leaf in zip(run.noise_names, run.noise, strict=True)}
    metrics = {"psnr_latent": psnr(latent_rgb, target_image), "ssim_latent": ssim(latent_rgb, target_image),
               "psnr": psnr(final_rgb, target_image), "ssim": ssim(final_rgb, target_image),
               "seconds": time.perf_counter() - start, "steps_done": run.done_steps,
               "interrupted": bool(run.interrupted), "tuned": tuned_state is not None}
    if choice is not None:
        metrics.update(tuning_kept_step=choice.step, tuning_score_start=choice.score_start,
                       tuning_score_kept=choice.score_kept)
    return InversionResult(target_name=target.name, ws=ws.detach().cpu(), class_index=cls, pose=found_pose,
                           pose_given=pose is not None, noise=noise, tuned_state=tuned_state,
                           reconstruction_latent=latent_rgb, reconstruction=final_rgb, metrics=metrics,
                           settings=settings, opacity=final_opacity)


__all__ = ["InversionSettings", "InversionProgress", "InversionResult", "TuningChoice", "tuning_note", "invert", "generator_with", "apply_noise",
           "noise_buffers", "noise_regulariser", "search_yaws", "check_class", "STAGES", "TargetViews",
           "downsample_to_grid"]
