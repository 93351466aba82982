"""Labels and poses borrowed from dataset entries, for fakes: in training (so G learns the dataset's
pose and class distribution) and when measuring it (so metrics see the same distribution)."""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch

from trigan.core.cameras import Camera, sample_camera_prior
from trigan.core.config import CameraConfig


class DatasetConditioning:
    """Index -> (class, pose) of a dataset, mirror copies included (their yaw negated)."""

    def __init__(self, dataset):
        self.size = len(dataset)
        self.mirror = bool(getattr(dataset, "mirror", False))
        self.angles = torch.as_tensor(np.asarray(dataset.camera_angles), dtype=torch.float32)  # [N, 3] unmirrored
        self.labels: Optional[torch.Tensor] = (torch.as_tensor(np.asarray(dataset.labels), dtype=torch.long)
                                               if dataset.has_labels else None)

    def lookup(self, idx: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(classes [n] long, angles [n, 3]) of dataset indices (unlabelled datasets give class 0)."""
        n = self.angles.shape[0]
        base = idx % n
        angles = self.angles[base].clone()
        if self.mirror:
            angles[:, 0] = torch.where(idx >= n, -angles[:, 0], angles[:, 0])
        classes = self.labels[base].clamp(min=0) if self.labels is not None else torch.zeros(len(idx), dtype=torch.long)
        return classes, angles

    @staticmethod
    def cameras(cam: CameraConfig, angles: torch.Tensor, generator: Optional[torch.Generator]) -> Camera:
        """Cameras at the borrowed poses ("custom", EpiGRAF's dataset poses), else from the model's prior."""
        if cam.dist == "custom":
            return Camera.from_angles(angles[:, 0], angles[:, 1], radius=cam.radius, fov=cam.fov, roll=angles[:, 2])
        return sample_camera_prior(cam, angles.shape[0], generator=generator)
