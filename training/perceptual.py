"""Image losses for inversion: an LPIPS-style perceptual loss on VGG16 features and a multi-scale
pixel + SSIM loss, both mask-weighted and differentiable in the reconstruction.

Every loss is a callable `(x, y, mask=None) -> scalar tensor`: x the reconstruction and y the
target, [3, H, W] or [B, 3, H, W] in [-1, 1]; mask [1, H, W] or [B, 1, H, W] weights in [0, 1]
(1 = the pixel counts). The target never needs a gradient.

* `PerceptualLoss`: ImageNet-normalised images through VGG16's convolutions; at relu1_2, relu2_2,
  relu3_3, relu4_3 and relu5_3 each feature vector is divided by its length over channels, and the
  squared distance between the two unit vectors (0..4) is averaged over positions (weighted by the
  mask, area-resized to the layer) and then over the five layers. This is LPIPS's distance with
  equal channel weights (the "baseline" without learned linear layers), so no file besides VGG16's
  own weights is needed. Images smaller than MIN_PERCEPTUAL_SIDE are upsampled by a power of two so
  that relu5_3 (after four 2x poolings) still has a 2x2 map; the demo model's 64^2 passes as is.
* `PixelSSIMLoss`: at scales 1, 1/2 and 1/4, L1 on the [-1, 1] images plus (1 - SSIM), averaged
  over the scales. With a mask everything is mask-normalised: the downsampled images are averages
  over the masked pixels only, and SSIM's local means and variances are Gaussian averages over the
  masked pixels only, so pixels outside the mask change nothing, not even near its edge.

VGG16's weights are torchvision's file `vgg16-397923af.pth`, named by the user and never downloaded
(`load_vgg16`); the network here is our own definition that reads that file's `features.N` keys.
"""

from __future__ import annotations

import math
import os
from typing import Callable, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from trigan.core.image_metrics import SSIM_K1, SSIM_K2, SSIM_SIGMA, SSIM_WINDOW, gaussian_window
from trigan.core.read_budget import NotRegularFile, open_without_blocking
from trigan.training.inversion_inputs import InversionError

VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
VGG16_FILE = "vgg16-397923af.pth"
# torchvision's full VGG16 file is 528 MB (features 59 MB + classifier); a file far larger is not it.
MAX_VGG_BYTES = 1 << 30

# VGG16's 13 convolutions (in, out) and the stages they belong to; a 2x max-pool follows each stage.
VGG16_STAGES: Tuple[Tuple[Tuple[int, int], ...], ...] = (
    ((3, 64), (64, 64)),
    ((64, 128), (128, 128)),
    ((128, 256), (256, 256), (256, 256)),
    ((256, 512), (512, 512), (512, 512)),
    ((512, 512), (512, 512), (512, 512)),
)
# ImageNet statistics of [0, 1] images, the normalisation VGG16 was trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# relu5_3 sees the image after four 2x poolings; below 32 pixels it would be under 2x2.
MIN_PERCEPTUAL_SIDE = 32
PIXEL_SCALES = 3            # 1, 1/2, 1/4
WEIGHT_EPS = 1e-8


def torchvision_conv_indices() -> List[int]:
    """Where torchvision's `vgg16().features` Sequential holds the 13 convolutions: each conv is
    followed by a ReLU, each stage by a max-pool, so the indices are 0, 2, 5, 7, 10, ..., 28."""
    indices, k = [], 0
    for stage in VGG16_STAGES:
        for _ in stage:
            indices.append(k)
            k += 2          # conv, relu
        k += 1              # max-pool
    return indices


class VGG16Features(nn.Module):
    """VGG16's convolutional part (13 3x3 convs with ReLU, 2x max-pools between the five stages),
    returning the last ReLU of every stage: relu1_2, relu2_2, relu3_3, relu4_3, relu5_3. The final
    max-pool and the classifier are not needed."""

    def __init__(self):
        super().__init__()
        self.stages = nn.ModuleList(
            nn.ModuleList(nn.Conv2d(cin, cout, 3, padding=1) for cin, cout in stage) for stage in VGG16_STAGES)

    def convs(self) -> List[nn.Conv2d]:
        return [conv for stage in self.stages for conv in stage]

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        taps = []
        for k, stage in enumerate(self.stages):
            if k > 0:
                x = F.max_pool2d(x, 2)
            for conv in stage:
                x = F.relu(conv(x), inplace=True)   # conv backward needs its input, not output
            taps.append(x)
        return taps


def _vgg_error(path: str, problem: str) -> InversionError:
    return InversionError(f"{path}: {problem}; expected torchvision's VGG16 weights {VGG16_FILE} "
                          f"(download {VGG16_URL} and pass its path with --vgg)")


def _read_state_dict(path: str) -> dict:
    """The file's tensors via torch.load(weights_only=True): a regular file, bounded in size."""
    try:
        handle = open_without_blocking(path)
    except FileNotFoundError:
        raise _vgg_error(path, "no such file") from None
    except NotRegularFile:
        raise _vgg_error(path, "not a regular file") from None
    except OSError as exc:
        raise _vgg_error(path, f"cannot be read ({exc.strerror or exc})") from None
    with handle:
        size = os.fstat(handle.fileno()).st_size
        if size > MAX_VGG_BYTES:
            raise _vgg_error(path, f"{size} bytes, more than the {MAX_VGG_BYTES} a VGG16 file can be")
        try:
            data = torch.load(handle, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is the file's fault
            reason = " ".join(str(exc).split())[:160] or type(exc).__name__
            raise _vgg_error(path, f"not a readable weights file ({reason})") from None
    if not isinstance(data, dict):
        raise _vgg_error(path, f"holds a {type(data).__name__}, not a state dict")
    return data


def _find_tensor(state: dict, index: int, kind: str):
    """`features.N.kind`, or `N.kind` (a state dict of the features Sequential alone)."""
    for key in (f"features.{index}.{kind}", f"{index}.{kind}"):
        if key in state:
            return key, state[key]
    return f"features.{index}.{kind}", None


def load_vgg16(path, device=None) -> VGG16Features:
    """VGG16Features with torchvision's weights from `path`, frozen, in eval mode, on `device`.

    Missing file, not a weights file, missing keys (e.g. vgg16_bn's layout), wrong shapes or
    non-finite values: a one-line InversionError naming the file and where the right one is."""
    path = os.fspath(path)
    state = _read_state_dict(path)
    if any(str(k).endswith("running_mean") for k in state):
        raise _vgg_error(path, "has batch-norm layers (vgg16_bn?); the plain VGG16 is needed")
    net = VGG16Features()
    for conv, index in zip(net.convs(), torchvision_conv_indices(), strict=True):
        for kind, param in (("weight", conv.weight), ("bias", conv.bias)):
            key, value = _find_tensor(state, index, kind)
            if value is None:
                raise _vgg_error(path, f"has no {key}")
            if not isinstance(value, torch.Tensor) or not value.is_floating_point():
                raise _vgg_error(path, f"{key} is not a float tensor")
            if tuple(value.shape) != tuple(param.shape):
                raise _vgg_error(path, f"{key} has shape {tuple(value.shape)}, expected {tuple(param.shape)}")
            if not bool(torch.isfinite(value).all()):
                raise _vgg_error(path, f"{key} has non-finite values")
            with torch.no_grad():
                param.copy_(value.to(param.dtype))
    net.requires_grad_(False).eval()
    return net.to(device) if device is not None else net


# --------------------------------------------------------------------------------------------------
# Shared helpers

def _batch(x: torch.Tensor) -> torch.Tensor:
    return x[None] if x.ndim == 3 else x


def _mask_for(mask: Optional[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The mask as [B, 1, H, W] weights on x's device and dtype (all ones when None)."""
    if mask is None:
        return torch.ones(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype)
    m = _batch(mask).to(device=x.device, dtype=x.dtype).clamp(0, 1)
    if m.shape[1] != 1 or m.shape[2:] != x.shape[2:]:
        raise ValueError(f"mask shape {tuple(mask.shape)} does not fit images {tuple(x.shape)}")
    return m.expand(x.shape[0], -1, -1, -1)


def _weighted_mean(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """sum(w v) / sum(w) over everything (values [B, C, h, w], weight [B, 1, h, w])."""
    total = (weight.sum() * values.shape[1]).clamp_min(WEIGHT_EPS)
    return (values * weight).sum() / total


# --------------------------------------------------------------------------------------------------
# Perceptual

class PerceptualLoss:
    """LPIPS-style distance on frozen VGG16 features (module doc); `(x, y, mask=None) -> scalar`.

    The target's features are remembered for the last target tensor seen (same object, unchanged),
    so an optimiser fitting one full image pays for one VGG pass per step, not two."""

    def __init__(self, vgg: VGG16Features):
        self.vgg = vgg.requires_grad_(False).eval()
        param = next(vgg.parameters())
        self._mean = torch.tensor(IMAGENET_MEAN, device=param.device, dtype=param.dtype).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD, device=param.device, dtype=param.dtype).view(1, 3, 1, 1)
        self._target_key = None
        self._target_tensor: Optional[torch.Tensor] = None
        self._target_features: Optional[List[torch.Tensor]] = None

    @staticmethod
    def upsample_factor(height: int, width: int) -> int:
        """The power of two that brings the shorter side to MIN_PERCEPTUAL_SIDE (1 if it is there)."""
        side = max(1, min(int(height), int(width)))
        return 1 if side >= MIN_PERCEPTUAL_SIDE else 2 ** math.ceil(math.log2(MIN_PERCEPTUAL_SIDE / side))

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = _batch(x).to(self._mean.device, self._mean.dtype)
        factor = self.upsample_factor(x.shape[2], x.shape[3])
        if factor > 1:
            x = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
        return ((x + 1) / 2 - self._mean) / self._std

    def features(self, x: torch.Tensor) -> List[torch.Tensor]:
        """The five taps, each divided by its length over channels."""
        return [f / (f.pow(2).sum(dim=1, keepdim=True) + 1e-10).sqrt() for f in self.vgg(self._prepare(x))]

    def _target(self, y: torch.Tensor) -> List[torch.Tensor]:
        key = (id(y), y._version, tuple(y.shape), y.device)
        if self._target_key != key or self._target_features is None:
            with torch.no_grad():
                self._target_features = self.features(y.detach())
            self._target_key = key
            self._target_tensor = y          # keeps id(y) from being reused while it is remembered
        return self._target_features

    def __call__(self, x: torch.Tensor, y: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        fx = self.features(x)
        fy = self._target(y)
        if fy[0].shape[0] != fx[0].shape[0]:
            fy = [f.expand(fx[0].shape[0], -1, -1, -1) for f in fy]
        m = _mask_for(mask, _batch(x).to(self._mean.dtype))
        layers = []
        for a, b in zip(fx, fy, strict=True):
            dist = (a - b).pow(2).sum(dim=1, keepdim=True)          # [B, 1, h, w], 0..4
            weight = F.adaptive_avg_pool2d(m.to(dist.device), dist.shape[2:])
            layers.append(_weighted_mean(dist, weight))
        return torch.stack(layers).mean()


# --------------------------------------------------------------------------------------------------
# Pixels + SSIM

def _blur_same(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter with zero padding (same size out): with the mask-normalised sums
    below, padding counts as pixels of weight 0."""
    c, r = x.shape[1], (g.numel() - 1) // 2
    x = F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), padding=(0, r), groups=c)
    return F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), padding=(r, 0), groups=c)


def masked_ssim_map(x: torch.Tensor, y: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """SSIM at every pixel of [0, 1] images [B, C, H, W] whose local statistics are Gaussian
    averages over the pixels weighted by m [B, 1, H, W] (normalised convolution)."""
    size = min(SSIM_WINDOW, x.shape[2], x.shape[3])
    size = size if size % 2 == 1 else size - 1
    g = gaussian_window(size, SSIM_SIGMA, dtype=x.dtype).to(x.device)
    c = x.shape[1]
    # one blur of all six weighted maps (one op instead of six: the loss runs hundreds of times)
    sums = _blur_same(torch.cat([m, m * x, m * y, m * x * x, m * y * y, m * x * y], dim=1), g)
    norm = sums[:, :1].clamp_min(WEIGHT_EPS)
    mu_x, mu_y, ex2, ey2, exy = (sums[:, 1 + k * c:1 + (k + 1) * c] / norm for k in range(5))
    var_x = ex2 - mu_x * mu_x
    var_y = ey2 - mu_y * mu_y
    cov = exy - mu_x * mu_y
    c1, c2 = SSIM_K1 ** 2, SSIM_K2 ** 2
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2))


def _masked_half(x: torch.Tensor, m: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Halve the resolution: each coarse pixel is the mask-weighted mean of its 2x2 block, and its
    weight the block's mean weight (a block outside the mask keeps weight 0 and any value)."""
    wsum = F.avg_pool2d(m, 2)
    return F.avg_pool2d(x * m, 2) / wsum.clamp_min(WEIGHT_EPS), wsum


class PixelSSIMLoss:
    """Multi-scale (1, 1/2, 1/4) L1 + (1 - SSIM), mask-weighted (module doc); `(x, y, mask=None)`.
    Scales that would fall below 4 pixels are skipped."""

    def __init__(self, scales: int = PIXEL_SCALES):
        self.scales = int(scales)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = _batch(x)
        y = _batch(y).to(device=x.device, dtype=x.dtype).detach().expand_as(x)
        m = _mask_for(mask, x)
        terms = []
        for k in range(self.scales):
            if k > 0:
                if min(x.shape[2], x.shape[3]) < 8:
                    break
                x, _ = _masked_half(x, m)
                y, m = _masked_half(y, m)
            l1 = _weighted_mean((x - y).abs(), m)
            ssim_map = masked_ssim_map((x + 1) / 2, (y + 1) / 2, m)
            terms.append(l1 + (1 - _weighted_mean(ssim_map, m)))
        return torch.stack(terms).mean()


class CombinedLoss:
    """Sum of weighted losses with the same call signature."""

    def __init__(self, parts: Sequence[Tuple[float, Callable]]):
        self.parts = list(parts)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        return sum(w * loss(x, y, mask) for w, loss in self.parts)


def make_image_loss(vgg_path: Optional[str], device=None, *, perceptual_weight: float = 1.0,
                    pixel_weight: float = 1.0) -> Callable:
    """The inversion's image loss: perceptual + pixel/SSIM when a VGG16 file is named, else the
    pixel/SSIM loss alone. A bad file raises InversionError before any work."""
    pixel = PixelSSIMLoss()
    if vgg_path is None:
        return pixel
    perceptual = PerceptualLoss(load_vgg16(vgg_path, device))
    return CombinedLoss([(perceptual_weight, perceptual), (pixel_weight, pixel)])
