"""Mapping network: latent z (+ one-hot class, + camera pose for GPC) -> intermediate latents ws.

Parameter names match EpiGRAF's mapping network (`embed`, `fc0`, `fc1`, `w_avg`,
`mean_camera_pose`) so official weights load by name.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from trigan.core.layers import FullyConnectedLayer, normalize_2nd_moment


def normalize_camera_angles(angles: torch.Tensor, yaw_offset: float = 0.0) -> torch.Tensor:
    """Wrap yaw and pitch to sign(a) * ((|a| mod 2 pi) / 2 pi), the networks' camera code.

    ``yaw_offset`` turns a trigan-convention yaw into the one the network was trained on
    (CameraConfig.yaw_offset) before wrapping.
    """
    yaw_pitch = angles[:, :2]
    if yaw_offset:
        yaw_pitch = torch.cat([yaw_pitch[:, :1] - yaw_offset, yaw_pitch[:, 1:]], dim=1)
    return yaw_pitch.sign() * (yaw_pitch.abs() % (2 * math.pi)) / (2 * math.pi)


class MappingNetwork(nn.Module):
    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: int, num_layers: int = 2,
                 lr_multiplier: float = 0.01, w_avg_beta: float = 0.998, camera_cond: bool = False,
                 camera_cond_drop_p: float = 0.0, camera_cond_noise_std: float = 0.0,
                 mean_camera_pose=(0.0, math.pi / 2, 0.0), yaw_offset: float = 0.0):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        # Poses come in trigan's convention; the network was trained on its own (CameraConfig.yaw_offset).
        self.yaw_offset = float(yaw_offset)
        self.w_avg_beta = w_avg_beta
        self.camera_cond = camera_cond
        self.camera_cond_drop_p = camera_cond_drop_p
        self.camera_cond_noise_std = camera_cond_noise_std
        cond_dim = c_dim + (2 if camera_cond else 0)
        self.embed = FullyConnectedLayer(cond_dim, w_dim) if cond_dim > 0 else None
        dims = [z_dim + (w_dim if cond_dim > 0 else 0)] + [w_dim] * num_layers
        for i in range(num_layers):
            setattr(self, f"fc{i}", FullyConnectedLayer(dims[i], dims[i + 1], activation="lrelu",
                                                        lr_multiplier=lr_multiplier))
        self.num_layers = num_layers
        self.register_buffer("w_avg", torch.zeros(w_dim))
        # The pose a GPC generator is conditioned on when no pose is given (the dataset mean).
        self.register_buffer("mean_camera_pose", torch.as_tensor(mean_camera_pose, dtype=torch.float32))

    def _camera_code(self, camera_angles: Optional[torch.Tensor], batch: int) -> torch.Tensor:
        if camera_angles is None:
            camera_angles = self.mean_camera_pose.unsqueeze(0).expand(batch, 3)
        code = normalize_camera_angles(camera_angles.to(self.w_avg.dtype), self.yaw_offset)
        if self.training and self.camera_cond_noise_std > 0:
            code = code + torch.randn_like(code) * self.camera_cond_noise_std * code.std(dim=0, keepdim=True)
        if self.training and self.camera_cond_drop_p > 0:
            code = nn.functional.dropout(code, p=self.camera_cond_drop_p)
        return code

    def forward(self, z: torch.Tensor, c: Optional[torch.Tensor] = None, psi: float = 1.0,
                camera_angles: Optional[torch.Tensor] = None, truncation_target: Optional[torch.Tensor] = None,
                update_emas: bool = False) -> torch.Tensor:
        """Map z (and the label / pose) to ws [B, num_ws, w_dim].

        psi < 1 moves every w toward `truncation_target` ([w_dim] or [B, w_dim]), by default the
        tracked average w_avg; class-wise truncation passes the class mean instead.
        """
        x = normalize_2nd_moment(z.to(self.w_avg.dtype))
        if self.embed is not None:
            cond = [] if self.c_dim == 0 else [c.to(x.dtype)]
            if self.camera_cond:
                cond.append(self._camera_code(camera_angles, z.shape[0]))
            x = torch.cat([x, normalize_2nd_moment(self.embed(torch.cat(cond, dim=1)))], dim=1)
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        if update_emas:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        ws = x.unsqueeze(1).repeat(1, self.num_ws, 1)
        if psi != 1:
            target = self.w_avg if truncation_target is None else truncation_target
            if target.ndim == 2:
                target = target.unsqueeze(1)
            ws = target.lerp(ws, psi)
        return ws
