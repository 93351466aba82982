"""Instance selection (DeVries et al., "Instance Selection for GANs"; 3DGP's data filter, 3dgp.md 5).

Keep the images a density model of their embeddings finds most likely, and drop the rest: on a
large, diverse dataset (ImageNet) the outliers are the images a GAN learns worst from. 3DGP embeds
every image with NVIDIA's TorchScript Inception (2048-d pool features), fits one Gaussian with a
full covariance to the embeddings of each class folder (sklearn's GaussianMixture with one
component: maximum-likelihood mean and covariance, `reg_covar` added to the diagonal), and keeps
the top N by log-likelihood, N = int(count * keep_ratio); for ImageNet a third of every class,
with reg_covar 1e-5.

trigan does the same with a pluggable embedder:

* `tiny` (the default, needs no download): the image area-averaged to an 8x8 RGB thumbnail,
  values in [0, 1], flattened to 192 numbers (`tiny:N` for NxN). It scores how typical an
  image's layout and colours are, not what it shows; a real feature network is the better choice
  when there is one.
* a TorchScript feature network file (the Inception detector of `trigan metrics`, or any network
  taking uint8 images [N, 3, H, W] and returning features [N, F]), loaded as
  `core.metrics.FeatureExtractor`. With `inception-2015-12-05.pt` this is upstream's embedding.

    emb = embed_dataset(open_dataset("data.zip"), load_embedder("tiny"))
    kept, scores = select_indices(emb, keep_ratio=1/3, groups=labels)
    summary = select_dataset("data.zip", "data_selected.zip", keep_ratio=1/3, per="class")

The output is a dataset of the same format: the kept images and their depth maps, byte for byte
at the same relative paths, and dataset.json with the entries of the kept images only (keys
written as the images' relative paths, so they match whatever the output is called) and every
other top-level key unchanged. It is written atomically and never over an existing path without
`force`.
"""

from __future__ import annotations

import json
import math
import posixpath
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from trigan.core.errors import TriganError
from trigan.core.metrics import FeatureExtractor
from trigan.training.dataset import DatasetError, ImageDataset, build_index, dataset_name, match_key, open_files
from trigan.training.dataset_tools import OutputWriter, file_progress, same_or_inside

DEFAULT_REG_COVAR = 1e-5        # upstream's ImageNet value (its script's default 0 fails for N <= dim)
TINY_SIZE = 8
GROUPINGS = ("all", "class", "folder")


class SelectionError(TriganError):
    """Instance selection cannot run as asked (bad ratio, no labels, a singular covariance ...)."""


# ---------------------------------------------------------------------------------------------------
# Embedders: uint8 images [N, 3, H, W] -> float64 features [N, F] on the CPU

class TinyEmbedder:
    """The image area-averaged to a size x size RGB thumbnail in [0, 1], flattened (3 size^2 numbers)."""

    def __init__(self, size: int = TINY_SIZE):
        if size < 1:
            raise SelectionError(f"--embedder tiny:{size}: the thumbnail needs at least 1x1 pixels")
        self.size = int(size)
        self.name = f"tiny:{self.size}"
        self.feature_dim = 3 * self.size ** 2

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(torch.float64) / 255.0
        # adaptive_avg_pool2d averages exactly the pixels of each cell (the area filter).
        return F.adaptive_avg_pool2d(x, self.size).flatten(1)


class NetworkEmbedder:
    """A TorchScript feature network (see core.metrics.FeatureExtractor for the calling convention)."""

    def __init__(self, path, device=None):
        self.extractor = FeatureExtractor.load(path, device=device)
        self.name = str(path)
        self.feature_dim = self.extractor.feature_dim

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.extractor(images)


Embedder = Callable[[torch.Tensor], torch.Tensor]


def load_embedder(spec: str = "tiny", device=None):
    """`tiny`, `tiny:N`, or the path of a TorchScript feature network file."""
    spec = str(spec)
    if spec == "tiny" or spec.startswith("tiny:"):
        size = TINY_SIZE
        if spec != "tiny":
            try:
                size = int(spec[len("tiny:"):])
            except ValueError:
                raise SelectionError(f"--embedder {spec}: expected tiny, tiny:N (N pixels) or a TorchScript "
                                     "file") from None
        return TinyEmbedder(size)
    return NetworkEmbedder(spec, device=device)


def embed_dataset(dataset: ImageDataset, embedder: Embedder, batch_size: int = 64,
                  progress: bool = False) -> np.ndarray:
    """Embeddings [N, F] (float64) of the dataset's images in index order (no mirrored copies)."""
    n = len(dataset.names)
    rows: List[np.ndarray] = []
    with tqdm(total=n, desc="embed", unit="img", file=sys.stderr, disable=not progress, leave=False) as bar:
        for start in range(0, n, batch_size):
            batch = [dataset.load_image(i) for i in range(start, min(start + batch_size, n))]
            images = torch.from_numpy(np.stack(batch).transpose(0, 3, 1, 2).copy())
            feats = embedder(images)
            rows.append(feats.detach().to("cpu", torch.float64).reshape(len(batch), -1).numpy())
            bar.update(len(batch))
    emb = np.concatenate(rows)
    if not np.isfinite(emb).all():
        raise SelectionError("the embedder returned non-finite features")
    return emb


# ---------------------------------------------------------------------------------------------------
# The density model and the selection

@dataclass
class Gaussian:
    """A multivariate normal with mean [F] and the lower Cholesky factor [F, F] of its covariance."""

    mean: torch.Tensor
    chol: torch.Tensor

    def log_density(self, x) -> np.ndarray:
        x = torch.as_tensor(np.asarray(x), dtype=torch.float64)
        diff = (x - self.mean).T                                                        # [F, N]
        white = torch.linalg.solve_triangular(self.chol, diff, upper=False)             # L^-1 (x - mu)
        maha = white.square().sum(dim=0)
        logdet = 2 * torch.log(torch.diagonal(self.chol)).sum()
        dim = self.mean.numel()
        return (-0.5 * (dim * math.log(2 * math.pi) + logdet + maha)).numpy()


def fit_gaussian(embeddings, reg_covar: float = DEFAULT_REG_COVAR) -> Gaussian:
    """Maximum-likelihood Gaussian (covariance divided by N, as sklearn's GaussianMixture with one
    component) with `reg_covar` added to the covariance's diagonal."""
    x = torch.as_tensor(np.asarray(embeddings), dtype=torch.float64)
    if x.ndim != 2 or x.shape[0] < 1:
        raise SelectionError(f"expected embeddings [N, F] with N >= 1, got shape {tuple(x.shape)}")
    if reg_covar < 0:
        raise SelectionError(f"--reg-covar {reg_covar}: expected a value >= 0")
    mean = x.mean(dim=0)
    centred = x - mean
    cov = centred.T @ centred / x.shape[0] + reg_covar * torch.eye(x.shape[1], dtype=torch.float64)
    chol, info = torch.linalg.cholesky_ex(cov)
    if int(info) != 0:
        raise SelectionError(f"the covariance of {x.shape[0]} embeddings of dimension {x.shape[1]} is singular; "
                             f"raise --reg-covar (now {reg_covar:g}; upstream used 1e-5 on ImageNet)")
    return Gaussian(mean, chol)


def gaussian_log_density(embeddings, reg_covar: float = DEFAULT_REG_COVAR) -> np.ndarray:
    """Log-likelihood of every embedding under the Gaussian fitted to all of them."""
    return fit_gaussian(embeddings, reg_covar).log_density(embeddings)


def keep_count(total: int, keep_ratio: Optional[float] = None, num: Optional[int] = None) -> int:
    """How many of `total` to keep: int(total * keep_ratio) (upstream's rounding) or min(num, total);
    at least 1, so no group (class) disappears."""
    if (keep_ratio is None) == (num is None):
        raise SelectionError("give exactly one of --keep-ratio and --num")
    if keep_ratio is not None:
        if not 0 < keep_ratio <= 1:
            raise SelectionError(f"--keep-ratio {keep_ratio}: expected a fraction in (0, 1]")
        count = int(total * keep_ratio)
    else:
        if num < 1:
            raise SelectionError(f"--num {num}: expected at least 1 image to keep")
        count = min(int(num), total)
    return max(1, min(count, total)) if total > 0 else 0


def select_indices(embeddings, keep_ratio: Optional[float] = None, num: Optional[int] = None,
                   groups: Optional[Sequence] = None, reg_covar: float = DEFAULT_REG_COVAR
                   ) -> Tuple[np.ndarray, np.ndarray]:
    """(kept indices in ascending order, log-likelihood of every embedding).

    Each group (all embeddings when `groups` is None; else one per distinct value of `groups`, e.g.
    class labels) gets its own Gaussian and keeps its own most likely keep_count(size) members;
    `num` is then per group. Ties keep the earlier index."""
    emb = np.asarray(embeddings, dtype=np.float64)
    n = emb.shape[0]
    keys = np.zeros(n, dtype=np.int64) if groups is None else np.unique(np.asarray(groups), return_inverse=True)[1]
    if len(keys) != n:
        raise SelectionError(f"{len(keys)} group entries for {n} embeddings")
    scores = np.empty(n, dtype=np.float64)
    kept: List[np.ndarray] = []
    for g in np.unique(keys):
        members = np.flatnonzero(keys == g)
        scores[members] = gaussian_log_density(emb[members], reg_covar)
        order = np.argsort(-scores[members], kind="stable")
        kept.append(members[order[:keep_count(len(members), keep_ratio, num)]])
    return np.sort(np.concatenate(kept)), scores


# ---------------------------------------------------------------------------------------------------
# Writing the selected dataset

def _filtered_table(table, kept_by_key: Dict[str, str], prefix: str):
    """A labels / camera_angles table with only the kept images' entries, keyed by their paths, in
    the table's own form (dict or [[path, value], ...])."""
    if isinstance(table, dict):
        entries = list(table.items())
    else:
        entries = [(item[0], item[1]) for item in table]
    out = [(kept_by_key[match_key(str(k), prefix)], v) for k, v in entries if match_key(str(k), prefix) in kept_by_key]
    return dict(out) if isinstance(table, dict) else [[k, v] for k, v in out]


def selected_json(meta_text: bytes, kept_images: Sequence[str], src_prefix: str, record: Optional[dict]) -> bytes:
    """dataset.json of the selection: kept entries only, other keys as they were, plus `record`."""
    meta = json.loads(meta_text.decode("utf-8"))
    kept_by_key = {match_key(rel, src_prefix): rel for rel in kept_images}
    for name in ("camera_angles", "labels"):
        if meta.get(name) is not None:
            meta[name] = _filtered_table(meta[name], kept_by_key, src_prefix)
    if record is not None:
        meta["instance_selection"] = record
    return (json.dumps(meta, indent=1) + "\n").encode("utf-8")


def select_dataset(src, dst, keep_ratio: Optional[float] = None, num: Optional[int] = None, per: str = "all",
                   embedder="tiny", reg_covar: float = DEFAULT_REG_COVAR, batch_size: int = 64, device=None,
                   force: bool = False, progress: bool = True) -> dict:
    """Instance selection of the dataset SRC into DST (a folder, or a .zip).

    per: "all" (one Gaussian for the whole dataset), "class" (one per dataset.json label) or
    "folder" (one per folder the images are in: upstream's per-class-folder mode for ImageNet).
    embedder: a spec for load_embedder or an embedder object."""
    if per not in GROUPINGS:
        raise SelectionError(f"per={per!r}: expected one of {', '.join(GROUPINGS)}")
    keep_count(1, keep_ratio, num)                 # the ratio / number, checked before any work
    if batch_size < 1:
        raise SelectionError(f"--batch {batch_size}: expected a positive number")
    src, dst = Path(src), Path(dst)
    files = open_files(src)
    try:
        if same_or_inside(dst, src) or (dst.exists() and same_or_inside(src, dst)):
            raise DatasetError(f"{dst}: the output would overwrite or lie inside the input {src}")
        if dst.exists() and not force:
            raise DatasetError(f"{dst}: already exists (use --force to overwrite)")
        with ImageDataset(src, mirror=False, use_labels=True, load_depth=True) as dataset:
            if per == "class" and not dataset.has_labels:
                raise SelectionError(f"{src}: per-class selection needs labels in dataset.json")
            index = build_index(files)
            embed = load_embedder(embedder, device) if isinstance(embedder, str) else embedder
            emb = embed_dataset(dataset, embed, batch_size, progress)
            groups = {"all": None, "class": dataset.labels,
                      "folder": [posixpath.dirname(rel) for rel in dataset.names]}[per]
            kept, scores = select_indices(emb, keep_ratio, num, groups, reg_covar)
            kept_images = [dataset.names[i] for i in kept]
        record = {"source": src.name, "embedder": getattr(embed, "name", type(embed).__name__),
                  "per": per, "keep_ratio": keep_ratio, "num": num, "reg_covar": reg_covar,
                  "kept": len(kept_images), "of": len(scores)}
        names = []
        for rel in kept_images:
            names.append(rel)
            if rel in index.depth:
                names.append(index.depth[rel])
        with OutputWriter(dst, force) as out:
            for rel in file_progress(names, "write", progress):
                out.write(rel, files.read(rel))
            if index.json_path is not None:
                out.write(index.json_path, selected_json(files.read(index.json_path), kept_images,
                                                         dataset_name(src), record))
    finally:
        files.close()
    groups_kept = None
    if per != "all":
        labels = np.asarray(groups)
        groups_kept = {str(g): (int((labels[kept] == g).sum()), int((labels == g).sum())) for g in np.unique(labels)}
    return {"path": str(dst), "kept": len(kept_images), "of": len(scores), "depth": len(names) - len(kept_images),
            "embedder": record["embedder"], "per": per, "groups": groups_kept,
            "kept_images": kept_images, "scores": scores}
