"""Feature statistics behind FID and KID: a feature network, running statistics, the two distances.

    extractor = FeatureExtractor.load("inception-2015-12-05.pt")           # TorchScript, never downloaded
    real = dataset_features(dataset, extractor, max_items=None, cache_dir=run_dir / "cache")
    fake = generator_features(G_ema, extractor, num=2048, conditioning=draw_labels_and_poses)
    fid = compute_fid(real, fake)

What is measured, and how it relates to upstream (EpiGRAF / 3DGP, built on StyleGAN2-ADA/3 metrics):

* Features: the 2048-d pool features of NVIDIA's TorchScript port of the TF Inception-v3
  (`inception-2015-12-05`), called as `net(images_uint8, return_features=True)`; the network resizes
  to 299 internally. Images are uint8 `[N, 3, H, W]`, fakes converted from `[-1, 1]` with
  `(x * 127.5 + 128).clamp(0, 255)`, as upstream. The file is given by the user (`--inception`):
  nothing is downloaded.
* Metric names follow upstream's registry. EpiGRAF trains with `fid2k_full`: 2048 fakes against
  *all* real images (no x-flip; pass a dataset with mirroring off to compare numbers), and reports
  `fid50k_full`. `kid2k_full` is ours (KID at the training budget); the others are upstream's.
  `fid2k` and `kid2k` are accepted as aliases of the `_full` variants.
* Fakes: z from a seeded torch.Generator, psi 1 (no truncation), labels and cameras from a
  `conditioning` callable (the trainer draws them from the dataset, as upstream does with
  dist=custom) or from the model's prior; a pose-conditioned mapping sees the drawn angles. A model
  with a learned camera generator (3DGP) renders each fake from the posterior of its drawn camera
  (`G.posterior_camera`), as 3DGP's metrics and training do; for other models that is the drawn camera.
  Unlike upstream (random synthesis noise) we use the constant noise buffers and the renderer's
  hashed jitter, so the same (G, seed) always gives the same number; the effect on FID is noise-level.
* Covariances are unbiased (divide by N-1, as numpy.cov and TTUR's FID); StyleGAN divides by N. The
  difference is a factor N/(N-1) on both covariances (5e-4 at 2k fakes), far below run-to-run noise.
* Statistics are accumulated in float64 with a chunked (Chan et al.) mean / centred-scatter update,
  which stays exact when features have a large common offset. `capture_all` (KID) keeps the raw
  features as float32 (50k x 2048 is 400 MB instead of 800 MB); KID itself is computed in float64.
* The matrix square root in FID uses eigendecompositions of symmetric PSD matrices (no scipy):
  tr sqrt(S1 S2) = sum sqrt(eig(sqrt(S1) S2 sqrt(S1))), robust when N < F makes them singular.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import warnings
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from trigan.core.atomic import atomic_path
from trigan.core.cameras import Camera, sample_camera_prior
from trigan.core.errors import TriganError
from trigan.core.rendering import field_renderer

Progress = Optional[Callable[[int, int], None]]
ArrayLike = Union[np.ndarray, torch.Tensor]


class MetricError(TriganError):
    """A metric input that cannot be used: a missing or foreign feature network, bad statistics, a bad name."""


INCEPTION_URL = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt"
INCEPTION_HELP = (
    "FID/KID need NVIDIA's TorchScript Inception-v3 detector inception-2015-12-05.pt, the network behind the "
    f"FIDs of StyleGAN2-ADA/3, EG3D and EpiGRAF (download it once from {INCEPTION_URL}; StyleGAN3's "
    "inception-2015-12-05.pkl holds the same network as a Python pickle, which trigan does not load) "
    "and pass it with --inception PATH")

_ZIP_MAGIC = b"PK\x03\x04"


# ---------------------------------------------------------------------------------------------------
# The feature network

class FeatureExtractor:
    """A TorchScript feature network: uint8 (or 0..255 float) images [N, 3, H, W] -> features [N, F].

    The standard Inception detector takes `return_features=True` to return its 2048-d pool features
    instead of logits; networks whose forward has no such argument are called as `net(x)`.
    """

    def __init__(self, net, path: Union[str, os.PathLike] = "", device=None, probe_resolution: int = 64):
        self.net = net
        self.path = str(path)
        if device is None:
            first = next(iter(net.parameters()), None) if hasattr(net, "parameters") else None
            device = first.device if first is not None else "cpu"
        self.device = torch.device(device)
        if hasattr(net, "eval"):
            net.eval()
        # Try net(x, return_features=True) when forward declares that argument or its schema cannot be
        # read; fall back to net(x) only in the second case.
        accepts = _accepts_argument(net, "return_features")
        conventions = [{"return_features": True}] if accepts else []
        if accepts is not True:
            conventions.append({})
        probe = torch.zeros(1, 3, probe_resolution, probe_resolution, dtype=torch.uint8)
        error = None
        for kwargs in conventions:
            self._kwargs = kwargs
            try:
                feats = self._forward(probe)
                break
            except (RuntimeError, TypeError) as e:
                error = e
        else:
            raise MetricError(f"{self.path or 'feature network'}: cannot run on uint8 images "
                              f"[1, 3, {probe_resolution}, {probe_resolution}] ({_first_line(error)})")
        self.feature_dim = int(feats.shape[1])

    @classmethod
    def load(cls, path: Union[str, os.PathLike], device=None) -> "FeatureExtractor":
        p = Path(path)
        if not p.exists():
            raise MetricError(f"{path}: no such file; " + INCEPTION_HELP)
        if p.is_dir():
            raise MetricError(f"{path}: is a folder, expected a TorchScript feature network file; " + INCEPTION_HELP)
        with open(p, "rb") as f:
            head = f.read(4)
        if head[:1] == b"\x80":
            raise MetricError(f"{path}: a Python pickle, not a TorchScript module (trigan never unpickles code "
                              "from files); " + INCEPTION_HELP)
        if head != _ZIP_MAGIC:
            raise MetricError(f"{path}: not a TorchScript module (expected a torch.jit.save archive); "
                              + INCEPTION_HELP)
        map_location = torch.device("cpu" if device is None else device)
        try:
            with warnings.catch_warnings():
                # torch 2.9+ flags TorchScript as deprecated; the detector file is TorchScript, and still loads.
                warnings.simplefilter("ignore", DeprecationWarning)
                net = torch.jit.load(str(p), map_location=map_location)
        except Exception as e:  # noqa: BLE001 - torch raises RuntimeError / ValueError for archives that are not TorchScript
            raise MetricError(f"{path}: not a TorchScript module, expected a torch.jit.save archive "
                              f"({_first_line(e)})") from None
        return cls(net, path=str(path), device=map_location)

    def _forward(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            out = self.net(images.to(self.device), **self._kwargs)
        if isinstance(out, (tuple, list)):
            out = out[0]
        if not isinstance(out, torch.Tensor) or out.shape[0] != images.shape[0]:
            raise MetricError(f"{self.path or 'feature network'}: returned "
                              f"{type(out).__name__} {tuple(getattr(out, 'shape', ()))}, expected [N, F] features "
                              f"for {images.shape[0]} images")
        return out.reshape(out.shape[0], -1)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] uint8 (or float in 0..255) -> [N, F] float64 on the CPU. Grey images are repeated to RGB."""
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"expected images [N, 3, H, W], got {tuple(images.shape)}")
        if images.shape[1] == 1:
            images = images.repeat(1, 3, 1, 1)
        return self._forward(images).detach().to("cpu", torch.float64)

    @property
    def uses_return_features(self) -> bool:
        return bool(self._kwargs)

    def __repr__(self) -> str:
        return f"FeatureExtractor({self.path!r}, feature_dim={self.feature_dim}, device={self.device})"


def _accepts_argument(net, name: str) -> Optional[bool]:
    """Whether net's forward declares argument `name`: from the TorchScript schema, else the Python
    signature; None when neither can be read."""
    try:
        return any(a.name == name for a in net.forward.schema.arguments)
    except Exception:  # noqa: BLE001 - a plain nn.Module, or a TorchScript build without schemas
        pass
    try:
        return name in inspect.signature(net.forward).parameters
    except (TypeError, ValueError, AttributeError):
        return None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:200]


# ---------------------------------------------------------------------------------------------------
# Running statistics

class FeatureStats:
    """Running statistics of features: count, mean and centred scatter in float64, optionally all features.

    `max_items` caps the count: rows beyond it are dropped, so appending whole batches never overshoots.
    """

    _FORMAT = 1

    def __init__(self, capture_all: bool = False, max_items: Optional[int] = None):
        if max_items is not None and max_items < 0:
            raise ValueError(f"max_items must be >= 0 or None, got {max_items}")
        self.capture_all = bool(capture_all)
        self.max_items = None if max_items is None else int(max_items)
        self.num_items = 0
        self.feature_dim: Optional[int] = None
        self._mean: Optional[np.ndarray] = None      # [F]
        self._scatter: Optional[np.ndarray] = None   # [F, F] sum of (x - mean)(x - mean)^T
        self._all: List[np.ndarray] = []

    def is_full(self) -> bool:
        return self.max_items is not None and self.num_items >= self.max_items

    @property
    def remaining(self) -> Optional[int]:
        return None if self.max_items is None else max(self.max_items - self.num_items, 0)

    def append(self, feats: ArrayLike) -> None:
        x = feats.detach().cpu().numpy() if isinstance(feats, torch.Tensor) else np.asarray(feats)
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"expected features [N, F], got shape {x.shape}")
        if self.feature_dim is None:
            self.feature_dim = x.shape[1]
            self._mean = np.zeros(self.feature_dim)
            self._scatter = np.zeros((self.feature_dim, self.feature_dim))
        elif x.shape[1] != self.feature_dim:
            raise ValueError(f"features have {x.shape[1]} dimensions, these statistics {self.feature_dim}")
        if self.max_items is not None:
            x = x[:self.remaining]
        n_b = x.shape[0]
        if n_b == 0:
            return
        # Chan et al.'s pairwise update: merge the chunk's mean and centred scatter into the totals.
        mean_b = x.mean(axis=0)
        xc = x - mean_b
        n_a, n = self.num_items, self.num_items + n_b
        delta = mean_b - self._mean
        self._scatter += xc.T @ xc + np.outer(delta, delta) * (n_a * n_b / n)
        self._mean += delta * (n_b / n)
        self.num_items = n
        if self.capture_all:
            self._all.append(x.astype(np.float32))

    def mean_cov(self) -> Tuple[np.ndarray, np.ndarray]:
        """mu [F] and the unbiased covariance [F, F] (like numpy.cov(x, rowvar=False))."""
        if self.num_items < 2:
            raise MetricError(f"feature statistics of {self.num_items} item(s): a covariance needs at least 2")
        return self._mean.copy(), self._scatter / (self.num_items - 1)

    def all_features(self) -> np.ndarray:
        if not self.capture_all:
            raise MetricError("these feature statistics were gathered without capture_all: "
                              "KID needs every feature (capture_all=True)")
        if not self._all:
            return np.zeros((0, self.feature_dim or 0), dtype=np.float32)
        if len(self._all) > 1:
            self._all = [np.concatenate(self._all, axis=0)]
        return self._all[0]

    # -- files ----------------------------------------------------------------------------------------
    def save(self, path: Union[str, os.PathLike]) -> None:
        """Write an .npz atomically (a temporary file beside it, then os.replace)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        f_dim = self.feature_dim or 0
        arrays = dict(format=np.int64(self._FORMAT), num_items=np.int64(self.num_items),
                      feature_dim=np.int64(f_dim), capture_all=np.bool_(self.capture_all),
                      max_items=np.int64(-1 if self.max_items is None else self.max_items),
                      mean=self._mean if self._mean is not None else np.zeros(0),
                      scatter=self._scatter if self._scatter is not None else np.zeros((0, 0)))
        if self.capture_all:
            arrays["features"] = self.all_features() if self.feature_dim else np.zeros((0, 0), np.float32)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)

    @classmethod
    def load(cls, path: Union[str, os.PathLike]) -> "FeatureStats":
        path = Path(path)
        if not path.is_file():
            raise MetricError(f"{path}: no such file, expected feature statistics (.npz)")
        try:
            with np.load(path, allow_pickle=False) as data:
                if int(data["format"]) != cls._FORMAT:
                    raise MetricError(f"{path}: feature statistics format {int(data['format'])}, "
                                      f"this trigan reads format {cls._FORMAT}")
                max_items = int(data["max_items"])
                stats = cls(capture_all=bool(data["capture_all"]), max_items=None if max_items < 0 else max_items)
                stats.num_items = int(data["num_items"])
                f_dim = int(data["feature_dim"])
                if f_dim > 0:
                    stats.feature_dim = f_dim
                    stats._mean = np.array(data["mean"], dtype=np.float64)
                    stats._scatter = np.array(data["scatter"], dtype=np.float64)
                    if stats._mean.shape != (f_dim,) or stats._scatter.shape != (f_dim, f_dim):
                        raise ValueError("array shapes do not match feature_dim")
                    if stats.capture_all:
                        feats = np.array(data["features"], dtype=np.float32)
                        if feats.shape != (stats.num_items, f_dim):
                            raise ValueError("stored features do not match num_items")
                        stats._all = [feats]
        except MetricError:
            raise
        except Exception as e:  # noqa: BLE001 - zipfile.BadZipFile, KeyError, ValueError, OSError: all mean "not ours"
            raise MetricError(f"{path}: not a trigan feature-statistics file ({_first_line(e)})") from None
        return stats

    def __repr__(self) -> str:
        return (f"FeatureStats(num_items={self.num_items}, feature_dim={self.feature_dim}, "
                f"capture_all={self.capture_all}, max_items={self.max_items})")


# ---------------------------------------------------------------------------------------------------
# Distances

def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix; negative round-off eigenvalues become 0."""
    w, v = np.linalg.eigh((sigma + sigma.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike) -> float:
    """||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr(sqrt(S1 S2)) for Gaussians N(mu1, S1), N(mu2, S2).

    S1 S2 is similar to the symmetric PSD matrix sqrt(S1) S2 sqrt(S1), so the trace of its square root
    is the sum of square roots of that matrix's (clipped) eigenvalues: no complex arithmetic, and no
    blow-up when the covariances are singular (fewer samples than features).
    """
    mu1, mu2 = np.asarray(mu1, np.float64).ravel(), np.asarray(mu2, np.float64).ravel()
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    f = mu1.shape[0]
    if mu2.shape != (f,) or s1.shape != (f, f) or s2.shape != (f, f):
        raise MetricError(f"feature statistics do not match: means {mu1.shape} and {mu2.shape}, "
                          f"covariances {s1.shape} and {s2.shape}")
    root1 = _psd_sqrt(s1)
    m = root1 @ s2 @ root1
    eig = np.linalg.eigvalsh((m + m.T) / 2)
    tr_covmean = np.sqrt(np.clip(eig, 0, None)).sum()
    diff = mu1 - mu2
    value = diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr_covmean
    return float(max(value, 0.0))


def kernel_inception_distance(feats1: ArrayLike, feats2: ArrayLike, num_subsets: int = 100,
                              max_subset_size: int = 1000, seed: int = 0) -> float:
    """KID (Binkowski et al.): unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3, averaged over subsets.

    Each of `num_subsets` draws takes m = min(n1, n2, max_subset_size) rows of each set without
    replacement (StyleGAN2-ADA's scheme); the within-set sums skip the diagonal. Can be slightly
    negative when the two sets come from the same distribution.
    """
    x_all = np.asarray(feats1.detach().cpu() if isinstance(feats1, torch.Tensor) else feats1, np.float64)
    y_all = np.asarray(feats2.detach().cpu() if isinstance(feats2, torch.Tensor) else feats2, np.float64)
    if x_all.ndim != 2 or y_all.ndim != 2 or x_all.shape[1] != y_all.shape[1]:
        raise MetricError(f"KID needs two feature sets [N, F] of equal F, got {x_all.shape} and {y_all.shape}")
    d = x_all.shape[1]
    m = min(x_all.shape[0], y_all.shape[0], int(max_subset_size))
    if m < 2:
        raise MetricError(f"KID needs at least 2 items in each set, got {x_all.shape[0]} and {y_all.shape[0]}")
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(int(num_subsets)):
        x = x_all[rng.choice(x_all.shape[0], m, replace=False)]
        y = y_all[rng.choice(y_all.shape[0], m, replace=False)]
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        total += within - 2 * kxy.sum() / (m * m)
    return float(total / int(num_subsets))


def compute_fid(real: FeatureStats, fake: FeatureStats) -> float:
    mu1, s1 = real.mean_cov()
    mu2, s2 = fake.mean_cov()
    return frechet_distance(mu1, s1, mu2, s2)


def compute_kid(real: FeatureStats, fake: FeatureStats, num_subsets: int = 100, max_subset_size: int = 1000,
                seed: int = 0) -> float:
    for name, stats in (("real", real), ("fake", fake)):
        if not stats.capture_all:
            raise MetricError(f"KID needs every feature, but the {name} statistics were gathered without "
                              "capture_all=True")
    return kernel_inception_distance(real.all_features(), fake.all_features(), num_subsets, max_subset_size, seed)


# ---------------------------------------------------------------------------------------------------
# Registry

# kind, fakes to generate, reals to read (None: the whole dataset), KID subsets.
METRICS: Dict[str, dict] = {
    "fid2k_full": dict(kind="fid", num_fake=2048, max_real=None),      # EpiGRAF/3DGP training metric
    "fid50k_full": dict(kind="fid", num_fake=50000, max_real=None),    # reported numbers
    "fid50k": dict(kind="fid", num_fake=50000, max_real=50000),        # legacy StyleGAN
    "fid5k_5k": dict(kind="fid", num_fake=5000, max_real=5000),        # GRAM's protocol
    "kid2k_full": dict(kind="kid", num_fake=2048, max_real=None, num_subsets=100, max_subset_size=1000),
    "kid50k_full": dict(kind="kid", num_fake=50000, max_real=None, num_subsets=100, max_subset_size=1000),
    "kid50k": dict(kind="kid", num_fake=50000, max_real=50000, num_subsets=100, max_subset_size=1000),
}
METRIC_ALIASES: Dict[str, str] = {"fid2k": "fid2k_full", "kid2k": "kid2k_full"}


def parse_metric_names(names: Union[str, Iterable[str], None]) -> List[str]:
    """'fid2k_full,kid2k' (or a list) -> canonical registered names, in order, without duplicates."""
    if names is None:
        return []
    items = names.split(",") if isinstance(names, str) else list(names)
    out: List[str] = []
    for raw in items:
        name = str(raw).strip().lower()
        if not name or name in ("none", "null"):
            continue
        name = METRIC_ALIASES.get(name, name)
        if name not in METRICS:
            known = ", ".join(list(METRICS) + list(METRIC_ALIASES))
            raise MetricError(f"unknown metric {str(raw).strip()!r}; known metrics: {known}")
        if name not in out:
            out.append(name)
    return out


# ---------------------------------------------------------------------------------------------------
# Gathering features

def _stack_images(items: Sequence[dict]) -> torch.Tensor:
    try:
        return torch.stack([item["image"] for item in items])
    except (KeyError, TypeError, IndexError):
        raise TypeError("dataset items must be dicts with an 'image' uint8 tensor [3, H, W]") from None


def _extractor_identity(extractor) -> dict:
    path = str(getattr(extractor, "path", "") or "")
    ident = {"path": path}
    if path and os.path.isfile(path):
        st = os.stat(path)
        ident.update(path=str(Path(path).resolve()), size=st.st_size, mtime_ns=st.st_mtime_ns)
    return ident


def dataset_cache_path(cache_dir, cache_key: str, extractor, max_items: Optional[int], capture_all: bool,
                       dataset_len: int) -> Path:
    """cache_dir/<sha1 of (key, feature network file, max_items, capture_all, len(dataset))>.npz"""
    blob = json.dumps(dict(key=str(cache_key), extractor=_extractor_identity(extractor), max_items=max_items,
                           capture_all=bool(capture_all), len=int(dataset_len)), sort_keys=True)
    return Path(cache_dir) / (hashlib.sha1(blob.encode("utf-8")).hexdigest() + ".npz")


def dataset_features(dataset, extractor, max_items: Optional[int], batch_size: int = 64, cache_dir=None,
                     cache_key: str = "", progress: Progress = None, capture_all: bool = False,
                     num_workers: int = 0) -> FeatureStats:
    """Features of dataset items 0..min(len, max_items)-1 in order (items: dicts with an 'image' uint8 [3, H, W]).

    With `cache_dir`, the statistics are stored there, keyed by `cache_key` (say the dataset path and
    resolution), the feature network file (path, size, mtime), max_items, capture_all and len(dataset),
    and read back on the next call with the same key.
    """
    total = len(dataset) if max_items is None else min(len(dataset), int(max_items))
    cache_file = None
    if cache_dir is not None:
        cache_file = dataset_cache_path(cache_dir, cache_key, extractor, max_items, capture_all, len(dataset))
        if cache_file.is_file():
            try:
                cached = FeatureStats.load(cache_file)
            except MetricError:
                cached = None  # a corrupt cache is recomputed and overwritten
            if cached is not None and cached.num_items == total and cached.capture_all == bool(capture_all):
                if progress is not None:
                    progress(total, total)
                return cached
    stats = FeatureStats(capture_all=capture_all, max_items=total)
    if total > 0:
        loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, range(total)), batch_size=batch_size,
                                             shuffle=False, num_workers=num_workers, collate_fn=_stack_images)
        for images in loader:
            stats.append(extractor(images))
            if progress is not None:
                progress(stats.num_items, total)
    if cache_file is not None:
        stats.save(cache_file)
    return stats


# (n, generator) -> (one-hot labels [n, c_dim] or None, cameras for n images)
Conditioning = Callable[[int, torch.Generator], Tuple[Optional[torch.Tensor], Camera]]


def prior_conditioning(G) -> Conditioning:
    """Uniformly random classes (conditional models) and cameras from the model's camera prior."""
    def draw(n: int, generator: torch.Generator):
        c = None
        if G.c_dim > 0:
            classes = torch.randint(G.c_dim, (n,), generator=generator)
            c = torch.nn.functional.one_hot(classes, G.c_dim).float()
        return c, sample_camera_prior(G.cfg.camera, n, generator)
    return draw


def sample_renders(G, num: int, batch_size: int = 16, conditioning: Optional[Conditioning] = None, seed: int = 0,
                   resolution=None, psi: float = 1.0, progress: Progress = None, noise_mode: str = "const",
                   **render_options):
    """Render `num` random fakes of G batch by batch, yielding RenderOutputs: z from a torch.Generator
    seeded by `seed` (CPU), labels and cameras from `conditioning(n, generator)` (default:
    `prior_conditioning(G)`), drawn after each batch's z; with a camera generator (3DGP) each drawn
    camera is replaced by its posterior for the fake's z and label. Deterministic for (G, seed,
    batch_size). G is in eval mode during the call and restored afterwards."""
    draw = conditioning if conditioning is not None else prior_conditioning(G)
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    device = G.device
    was_training = G.training
    G.eval()
    try:
        with torch.no_grad():
            start = 0
            while start < num:
                n = min(int(batch_size), num - start)
                z = torch.randn(n, G.z_dim, generator=gen).to(device)
                c, camera = draw(n, gen)
                if c is not None:
                    c = c.to(device=device, dtype=torch.float32)
                camera = camera.to(device)
                ws = G.map_latents(z, c, psi, camera_angles=camera.angles)
                # The mapping sees the drawn angles, as in training; the render uses the learned
                # posterior of the drawn camera (the drawn camera itself without a camera generator).
                camera = G.posterior_camera(z, c, camera)
                field = G.field_from_ws(ws, noise_mode=noise_mode)
                # The renderer's jitter is a hash of (seed, ray): give every batch its own seed.
                render_seed = (int(seed) * 1000003 + start) & 0x7FFFFFFF
                opts = G.render_options(deterministic=True, seed=render_seed, **render_options)
                yield field_renderer("plain", field, opts).render(camera, resolution or G.cfg.img_resolution)
                start += n
                if progress is not None:
                    progress(start, num)
    finally:
        G.train(was_training)


def generator_features(G, extractor, num: int, batch_size: int = 16, conditioning: Optional[Conditioning] = None,
                       seed: int = 0, resolution=None, psi: float = 1.0, progress: Progress = None,
                       capture_all: bool = False, noise_mode: str = "const") -> FeatureStats:
    """Features of `num` images of G rendered by `sample_renders` (same arguments)."""
    stats = FeatureStats(capture_all=capture_all, max_items=num)
    for out in sample_renders(G, num, batch_size, conditioning, seed, resolution, psi, progress, noise_mode):
        stats.append(extractor((out.rgb * 127.5 + 128).clamp(0, 255).to(torch.uint8)))
    return stats


def compute_metric(name: str, G, dataset, extractor, conditioning: Optional[Conditioning] = None,
                   resolution=None, cache_dir=None, cache_key: str = "", batch_size: int = 16,
                   real_batch_size: int = 64, seed: int = 0, progress: Progress = None) -> float:
    """One registered metric of G against `dataset` (real statistics cached when cache_dir is given).

    progress(done, total) counts real images read, then fakes generated."""
    names = parse_metric_names([name])
    if len(names) != 1:
        raise MetricError(f"expected one metric name, got {name!r}")
    spec = METRICS[names[0]]
    capture_all = spec["kind"] == "kid"
    n_real = len(dataset) if spec["max_real"] is None else min(len(dataset), spec["max_real"])
    total = n_real + spec["num_fake"]
    real_progress = None if progress is None else (lambda done, _: progress(done, total))
    fake_progress = None if progress is None else (lambda done, _: progress(n_real + done, total))
    real = dataset_features(dataset, extractor, spec["max_real"], batch_size=real_batch_size, cache_dir=cache_dir,
                            cache_key=cache_key, progress=real_progress, capture_all=capture_all)
    fake = generator_features(G, extractor, spec["num_fake"], batch_size=batch_size, conditioning=conditioning,
                              seed=seed, resolution=resolution, progress=fake_progress, capture_all=capture_all)
    if spec["kind"] == "fid":
        return compute_fid(real, fake)
    return compute_kid(real, fake, num_subsets=spec["num_subsets"], max_subset_size=spec["max_subset_size"], seed=seed)
