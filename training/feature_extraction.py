"""Features of every dataset image for knowledge distillation (3dgp.md 4), written as a feature store.

3DGP distils timm's ResNet-50 (`num_classes=0`: the 2048-d average-pooled features, no
normalisation) applied with timm's own evaluation transform for that model (resize, centre crop,
ImageNet normalisation). trigan downloads nothing: the weights come from a local file the user
names (a timm/torchvision ResNet-50 state dict, .pth/.bin or .safetensors), and timm itself is an
optional install.

The extraction itself takes any extractor: a callable (or nn.Module) mapping a batch of transformed
images [N, 3, H, W] to features [N, C], and a transform from a Pillow RGB image to one tensor
[3, H, W] (default: the image as float in [0, 1]). Rows follow the dataset's image order and are
keyed by each image's relative path; mirroring is not applied (a mirrored training item uses its
source image's row).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable, Optional, Tuple, Union

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm import tqdm

from trigan.core.checkpoint import read_torch_file
from trigan.core.errors import CheckpointError, TriganError
from trigan.training.dataset import DatasetError, ImageDataset, dataset_name, open_dataset
from trigan.training.feature_store import FeatureStoreWriter, desc_path

Extractor = Callable[[torch.Tensor], torch.Tensor]
Transform = Callable[[object], torch.Tensor]

TIMM_MODEL = "resnet50"


class FeatureExtractionError(TriganError):
    """Feature extraction cannot run (missing timm, a bad weights file, a bad extractor)."""


def to_unit_tensor(image) -> torch.Tensor:
    """The default transform: a Pillow RGB image -> float [3, H, W] in [0, 1]."""
    arr = np.asarray(image, dtype=np.uint8)
    return torch.from_numpy(arr.transpose(2, 0, 1).copy()).float() / 255.0


# -------------------------------------------------------------------------------------------------
# timm's ResNet-50 from a local weights file

def read_state_dict(path: Union[str, Path]) -> dict:
    """Tensors of a weights file (.safetensors, or a torch.save'd state dict read with
    weights_only=True); unwraps {"state_dict": ...} / {"model": ...} and DataParallel's "module."."""
    path = Path(path)
    if not path.exists():   # anything else that is not a regular file is named by the reader
        raise FeatureExtractionError(f"--weights {path}: no such file (a local ResNet-50 weights file; "
                                     "trigan downloads nothing)")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file  # noqa: PLC0415 (optional: only for .safetensors files)
            state = load_file(str(path))
        else:   # within the checkpoint reader's budgets: a weights file is handed to us like a checkpoint
            state = read_torch_file(path, f"--weights {path}")
    except CheckpointError as exc:
        raise FeatureExtractionError(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - any reader failure is the file's fault
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise FeatureExtractionError(f"--weights {path}: cannot read weights ({first})") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise FeatureExtractionError(f"--weights {path}: expected a state dict of tensors")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


def load_timm_resnet50(weights: Union[str, Path], device="cpu") -> Tuple[nn.Module, Transform]:
    """timm's resnet50 without its classifier, weights from `weights`, in eval mode on `device`,
    and timm's evaluation transform for it."""
    state = read_state_dict(weights)
    try:
        # Optional (not a dependency of trigan): only `trigan dataset features` needs it.
        import timm  # noqa: PLC0415
        from timm.data import create_transform, resolve_data_config  # noqa: PLC0415
    except ImportError as exc:
        raise FeatureExtractionError(f"cannot import timm ({exc.msg}); feature extraction uses timm's "
                                     "ResNet-50: pip install timm") from None
    model = timm.create_model(TIMM_MODEL, pretrained=False, num_classes=0)
    # The classifier is not used (num_classes=0); a full ImageNet checkpoint carries one.
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise FeatureExtractionError(f"--weights {weights}: not a ResNet-50 state dict "
                                     f"({' '.join(str(exc).split())[:200]})") from None
    model.eval().requires_grad_(False).to(device)
    transform = create_transform(**resolve_data_config({}, model=model))
    return model, transform


# -------------------------------------------------------------------------------------------------
# Extraction

class _TransformedImages(torch.utils.data.Dataset):
    """Dataset image i (unmirrored) through the transform; a read error travels back as a value so
    that the message stays one line when a loader worker hits it."""

    def __init__(self, dataset: ImageDataset, transform: Transform):
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return len(self.dataset.names)

    def __getitem__(self, i: int):
        try:
            return self.transform(Image.fromarray(self.dataset.load_image(i))), None
        except DatasetError as exc:
            return None, str(exc)


def _collate(items):
    errors = [e for _, e in items if e is not None]
    if errors:
        return None, errors[0]
    return torch.stack([x for x, _ in items]), None


@torch.no_grad()
def extract_dataset_features(data: Union[str, Path, ImageDataset], out: Union[str, Path], extractor: Extractor,
                             transform: Optional[Transform] = None, batch_size: int = 32, device="cpu",
                             num_workers: int = 0, force: bool = False, progress: bool = False) -> dict:
    """Run `extractor` over every image of the dataset `data` and write OUT (+ OUT's _desc.json).

    Returns {"path", "images", "dim", "seconds"}. Nothing is written when anything fails, and an
    existing OUT is only replaced with force=True."""
    out = Path(out)
    if out.exists() and not force:
        raise FeatureExtractionError(f"{out}: exists (pass --force to overwrite)")
    if out.is_dir():
        raise FeatureExtractionError(f"{out}: is a folder, expected a file name such as features.memmap")
    if batch_size < 1:
        raise FeatureExtractionError(f"--batch-size {batch_size}: expected at least 1")
    if num_workers < 0:
        raise FeatureExtractionError(f"--workers {num_workers}: expected 0 or more")
    dataset = data if isinstance(data, ImageDataset) else open_dataset(data, mirror=False, use_labels=False,
                                                                      load_depth=False)
    device = torch.device(device)
    loader = torch.utils.data.DataLoader(_TransformedImages(dataset, transform or to_unit_tensor),
                                         batch_size=batch_size, shuffle=False, num_workers=num_workers,
                                         collate_fn=_collate)
    start, writer, row = time.time(), None, 0
    bar = tqdm(total=len(dataset.names), desc="features", unit="img", file=sys.stderr, disable=not progress,
               leave=False)
    try:
        for images, error in loader:
            if error is not None:
                raise DatasetError(error)
            feats = extractor(images.to(device))
            if not isinstance(feats, torch.Tensor) or feats.ndim != 2 or feats.shape[0] != images.shape[0]:
                shape = list(feats.shape) if isinstance(feats, torch.Tensor) else type(feats).__name__
                raise FeatureExtractionError(f"the feature extractor returned {shape} for {images.shape[0]} images; "
                                             "expected features [N, C]")
            if writer is None:
                writer = FeatureStoreWriter(out, dataset.names, feats.shape[1], dataset_name(dataset.path))
            writer.write(row, feats.float().cpu().numpy())
            row += images.shape[0]
            bar.update(images.shape[0])
        path = writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        bar.close()
    return {"path": str(path), "index": str(desc_path(path)), "images": len(dataset.names),
            "dim": writer.dim, "seconds": time.time() - start}
