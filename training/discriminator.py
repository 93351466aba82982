"""EpiGRAF's patch discriminator: a StyleGAN2 ResNet D that knows which patch it is looking at.

Layout (reference: epigraf.md 4 and 5.1):

* The input is a P x P patch. Blocks are named by a *nominal* resolution, from P * 2**k down to 8,
  where k = `num_additional_start_blocks`; the first k blocks keep the spatial size (no
  down-sampling) so that D is as deep as a full-resolution StyleGAN2 D. Channels at nominal
  resolution r are min(channel_base // r, channel_max); block b{r} maps ch(r) -> ch(r / 2).
* Each block: fromrgb (1x1, only the first block uses it, but all carry it so that official weights
  load by name), conv0 (3x3), conv1 (3x3, down), a bias-free 1x1 skip (down), and the output
  skip * sqrt(.5) + conv * sqrt(.5).
* Hyper-modulation: the patch (scale, offset_x, offset_y) is encoded into an 828-dim code, mapped
  to h in R^512, and every block's conv1 input is multiplied per channel by 1 + tanh(affine(h)).
* Epilogue b4: minibatch std, conv 3x3, fc, out; with a projection head the logit is
  <out(x), cmap> / sqrt(cmap_dim), cmap computed from [labels, patch code, camera code].
* 3DGP additions: `img_channels` 4 for RGB + depth, and with `feat_predict_dim` > 0 a second
  epilogue head (b4.feat_head) that predicts a frozen network's features of the whole image from
  the same flattened 4x4 features (knowledge distillation, training/distillation.py). The patch code
  reaches the head whenever `patch_cond` is on, with or without hyper-modulation (3DGP; EpiGRAF's
  importer turns `patch_cond` off for its discriminators without hyper-modulation, as EpiGRAF did).
* Camera conditioning reads yaw in the model's own convention: `yaw_offset` (the model's
  CameraConfig.yaw_offset) is subtracted from the trigan yaws it is given.

Parameter and buffer names follow the upstream state dict so official checkpoints load with
`load_state_dict(strict=True)`.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from trigan.core.cameras import PatchParams
from trigan.core.encoders import ScalarEncoder1d
from trigan.core.layers import Conv2dLayer, FullyConnectedLayer, make_resample_filter, normalize_2nd_moment
from trigan.core.mapping import normalize_camera_angles
from trigan.training.config import DiscriminatorConfig
from trigan.training.distillation import FeaturePredictionHead

PATCH_MULTIPLIER = 1000.0    # patch parameters in [0, 1] are read at a resolution of 1/1000
PATCH_NUM_FREQS = 10
PATCH_CONST_DIM = 256
CAMERA_MULTIPLIER = 64.0
CAMERA_NUM_FREQS = 6
HYPER_DIM = 512


class ConditionMapping(nn.Module):
    """StyleGAN2's mapping network without a latent: embed -> 2nd-moment normalise -> lrelu FCs."""

    def __init__(self, in_dim: int, out_dim: int, num_layers: int = 2, lr_multiplier: float = 0.01,
                 camera_scalar_enc: Optional[nn.Module] = None):
        super().__init__()
        self.camera_scalar_enc = camera_scalar_enc  # lives here only so its buffer gets upstream's name
        self.embed = FullyConnectedLayer(in_dim, out_dim)
        self.num_layers = num_layers
        for i in range(num_layers):
            setattr(self, f"fc{i}", FullyConnectedLayer(out_dim, out_dim, activation="lrelu",
                                                        lr_multiplier=lr_multiplier))

    def forward(self, cond: torch.Tensor) -> torch.Tensor:
        x = normalize_2nd_moment(self.embed(cond))
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        return x


class DiscriminatorBlock(nn.Module):
    def __init__(self, tmp_channels: int, out_channels: int, img_channels: int, down: int,
                 conv_clamp: Optional[float], hyper_mod: bool):
        super().__init__()
        self.register_buffer("resample_filter", make_resample_filter())
        self.fromrgb = Conv2dLayer(img_channels, tmp_channels, 1, activation="lrelu", conv_clamp=conv_clamp)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, 3, activation="lrelu", conv_clamp=conv_clamp)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, 3, activation="lrelu", down=down, conv_clamp=conv_clamp)
        if hyper_mod:
            # Zero bias: the multipliers start around 1 + tanh(small) ~ 1, i.e. no modulation.
            self.conv1.affine = FullyConnectedLayer(HYPER_DIM, tmp_channels, bias_init=0.0)
        self.skip = Conv2dLayer(tmp_channels, out_channels, 1, bias=False, down=down)

    def forward(self, x: Optional[torch.Tensor], img: torch.Tensor, h: Optional[torch.Tensor]) -> torch.Tensor:
        if x is None:
            x = self.fromrgb(img)
        y = self.skip(x, gain=math.sqrt(0.5))
        x = self.conv0(x)
        if h is not None:
            x = x * (1.0 + torch.tanh(self.conv1.affine(h))).to(x.dtype)[:, :, None, None]
        x = self.conv1(x, gain=math.sqrt(0.5))
        return y + x


def minibatch_std(x: torch.Tensor, group_size: int, num_channels: int, grouping: str = "strided") -> torch.Tensor:
    """Append `num_channels` maps holding the across-group std of the features (StyleGAN2).

    With n = B / G groups, "strided" puts sample i in group i mod n (StyleGAN2, upstream EpiGRAF);
    "consecutive" puts it in group i // G. Each of the num_channels maps averages the per-feature std
    over its C / num_channels channels and all pixels.
    """
    b, c, hh, ww = x.shape
    g = min(group_size, b)
    if b % g != 0:
        raise ValueError(f"batch {b} is not a multiple of the minibatch-std group size {g}")
    if grouping == "strided":
        y = x.reshape(g, -1, num_channels, c // num_channels, hh, ww)
    elif grouping == "consecutive":
        y = x.reshape(-1, g, num_channels, c // num_channels, hh, ww).transpose(0, 1)
    else:
        raise ValueError(f"unknown minibatch-std grouping {grouping!r} (expected strided or consecutive)")
    y = (y - y.mean(dim=0)).square().mean(dim=0)
    y = (y + 1e-8).sqrt().mean(dim=[2, 3, 4])               # [n, F]
    y = y.reshape(-1, num_channels, 1, 1)
    y = y.repeat(g, 1, hh, ww) if grouping == "strided" else y.repeat_interleave(g, dim=0).repeat(1, 1, hh, ww)
    return torch.cat([x, y], dim=1)


class DiscriminatorEpilogue(nn.Module):
    def __init__(self, channels: int, out_dim: int, mbstd_group_size: int, mbstd_channels: int,
                 conv_clamp: Optional[float], mbstd_grouping: str = "strided", feat_predict_dim: int = 0):
        super().__init__()
        self.mbstd_group_size, self.mbstd_channels = mbstd_group_size, mbstd_channels
        self.mbstd_grouping = mbstd_grouping
        self.conv = Conv2dLayer(channels + mbstd_channels, channels, 3, activation="lrelu", conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(channels * 16, channels, activation="lrelu")
        self.out = FullyConnectedLayer(channels, out_dim)
        self.feat_head = FeaturePredictionHead(channels, feat_predict_dim) if feat_predict_dim > 0 else None

    def forward(self, x: torch.Tensor, cmap: Optional[torch.Tensor], predict_features: bool = False):
        if self.mbstd_channels > 0:
            x = minibatch_std(x, self.mbstd_group_size, self.mbstd_channels, self.mbstd_grouping)
        flat = self.conv(x).flatten(1)
        x = self.out(self.fc(flat))
        logits = x[:, 0] if cmap is None else (x * cmap).sum(dim=1) / math.sqrt(cmap.shape[1])
        if not predict_features:
            return logits
        if self.feat_head is None:
            raise ValueError("this discriminator has no feature head (discriminator.feat_predict_dim is 0)")
        return logits, self.feat_head(flat)


class Discriminator(nn.Module):
    """Patch-aware StyleGAN2 ResNet discriminator. `forward` returns logits of shape [B]."""

    def __init__(self, cfg: DiscriminatorConfig, c_dim: int, yaw_offset: float = 0.0):
        super().__init__()
        self.cfg, self.c_dim = cfg, c_dim
        self.yaw_offset = float(yaw_offset)
        p, k = cfg.patch_resolution, cfg.num_additional_start_blocks
        if p < 8 or p & (p - 1):
            raise ValueError(f"patch_resolution must be a power of two >= 8, got {p}")
        top = p * 2 ** k
        channels = lambda r: min(cfg.channel_base // r, cfg.channel_max)
        self.block_resolutions = [top >> i for i in range(int(math.log2(top)) - 2)]  # top .. 8
        # fp16 for the num_fp16_res highest nominal resolutions, never below 8 (StyleGAN2's rule).
        self.fp16_resolution = max(2 ** (int(math.log2(top)) + 1 - cfg.num_fp16_res), 8)

        uses_patch = cfg.hyper_mod or cfg.patch_cond
        self.patch_dim = 3 * (2 * PATCH_NUM_FREQS + PATCH_CONST_DIM) if uses_patch else 0
        if uses_patch:
            self.scalar_enc = ScalarEncoder1d(PATCH_MULTIPLIER, PATCH_NUM_FREQS, PATCH_CONST_DIM)
        if cfg.hyper_mod:
            self.hyper_mod_mapping = ConditionMapping(self.patch_dim, HYPER_DIM)
        for i, res in enumerate(self.block_resolutions):
            block = DiscriminatorBlock(channels(res), channels(res // 2), cfg.img_channels, down=1 if i < k else 2,
                                       conv_clamp=cfg.conv_clamp, hyper_mod=cfg.hyper_mod)
            setattr(self, f"b{res}", block)

        # The projection head's condition: labels, then the patch code, then the camera code.
        self.use_patch_code = cfg.patch_cond
        self.camera_dim = 0
        if cfg.camera_cond:
            self.camera_dim = 2 if cfg.camera_cond_raw else 2 * 2 * CAMERA_NUM_FREQS
        cond_dim = c_dim + (self.patch_dim if self.use_patch_code else 0) + self.camera_dim
        self.cmap_dim = 0
        if cond_dim > 0:
            self.cmap_dim = channels(4) if cfg.cmap_dim is None else cfg.cmap_dim
            camera_enc = (ScalarEncoder1d(CAMERA_MULTIPLIER, CAMERA_NUM_FREQS)
                          if cfg.camera_cond and not cfg.camera_cond_raw else None)
            self.head_mapping = ConditionMapping(cond_dim, self.cmap_dim, camera_scalar_enc=camera_enc)
        self.b4 = DiscriminatorEpilogue(channels(4), self.cmap_dim or 1, cfg.mbstd_group_size,
                                        cfg.mbstd_channels, cfg.conv_clamp, cfg.mbstd_grouping, cfg.feat_predict_dim)

    def _camera_code(self, camera_angles: torch.Tensor) -> torch.Tensor:
        code = normalize_camera_angles(camera_angles, self.yaw_offset)  # [B, 2] yaw, pitch
        # Regularisers against D leaning on the pose alone (training only); as in the generator's
        # mapping they act on the normalised angles, the noise scaled by the batch's own spread.
        if self.training and self.cfg.camera_cond_noise_std > 0:
            code = code + torch.randn_like(code) * self.cfg.camera_cond_noise_std * code.std(dim=0, keepdim=True)
        if self.training and self.cfg.camera_cond_drop_p > 0:
            code = nn.functional.dropout(code, p=self.cfg.camera_cond_drop_p)
        enc = self.head_mapping.camera_scalar_enc
        return code if enc is None else enc(code)

    def forward(self, img: torch.Tensor, c: Optional[torch.Tensor] = None, patch: Optional[PatchParams] = None,
                camera_angles: Optional[torch.Tensor] = None, use_fp16: bool = False,
                predict_features: bool = False):
        """img [B, C, P, P] in [-1, 1]; c [B, c_dim] one-hot; patch: where each input lies in its
        image (None = the whole image, scale 1 and offset 0); camera_angles [B, 3] (yaw, pitch, roll).
        Returns logits [B], or (logits, predicted features [B, feat_predict_dim]) with
        predict_features."""
        batch = img.shape[0]
        dtype = self.b4.fc.weight.dtype
        h = patch_code = None
        if self.patch_dim:
            if patch is None:
                patch = PatchParams(scale=img.new_ones(batch, dtype=dtype), offset=img.new_zeros(batch, 2, dtype=dtype))
            patch_code = self.scalar_enc(patch.as_vector().to(device=img.device, dtype=dtype))
            if self.cfg.hyper_mod:
                h = self.hyper_mod_mapping(patch_code)

        half = use_fp16 and img.device.type == "cuda"
        x = None
        for res in self.block_resolutions:
            block_dtype = torch.float16 if half and res >= self.fp16_resolution else dtype
            x = getattr(self, f"b{res}")(None if x is None else x.to(block_dtype), img.to(block_dtype), h)

        cmap = None
        if self.cmap_dim > 0:
            cond = []
            if self.c_dim > 0:
                if c is None:
                    raise ValueError(f"this discriminator is conditioned on {self.c_dim} classes; pass c")
                cond.append(c.to(dtype))
            if self.use_patch_code:
                cond.append(patch_code)
            if self.camera_dim > 0:
                if camera_angles is None:
                    raise ValueError("this discriminator is camera-conditioned; pass camera_angles")
                cond.append(self._camera_code(camera_angles.to(device=img.device, dtype=dtype)))
            cmap = self.head_mapping(torch.cat(cond, dim=1))
        return self.b4(x.to(dtype), cmap, predict_features)
