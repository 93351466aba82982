"""The tri-plane generator: mapping -> synthesis (tri-planes) -> field -> volume rendering.

    ws = G.mapping(z, c, psi)                 # [B, num_ws, w_dim]
    planes = G.synthesis(ws)                  # [B, 3 * feat_dim, R, R]
    field = G.field(planes, ws)               # computed once per latent, queried by everything
    out = G.render(field, camera, 128)        # RenderOutput: rgb, depth, opacity (+ normals)

Module and parameter names follow EpiGRAF (`mapping.*`, `synthesis.tri_plane_decoder.*`,
`synthesis.tri_plane_mlp.*`, `synthesis.bg_model.*`) so official generators load one to one.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from trigan.core.background import BoundBackground, SphereBackground
from trigan.core.camera_generator import CameraGenerator, camera_to_params, params_to_camera
from trigan.core.cameras import Camera, PatchParams, Pose, sample_camera_prior
from trigan.core.config import ModelConfig
from trigan.core.errors import ConfigError
from trigan.core.field import TriPlaneField, TriPlaneMLP
from trigan.core.mapping import MappingNetwork
from trigan.core.renderer import RenderOptions, RenderOutput
from trigan.core.rendering import field_renderer
from trigan.core.synthesis import TriPlaneDecoder


def z_from_seed(seed: int, z_dim: int) -> torch.Tensor:
    """The latent of a seed: numpy RandomState(seed).randn(z_dim), as upstream, so seeds agree."""
    return torch.from_numpy(np.random.RandomState(int(seed)).randn(z_dim)).float()


def one_hot(classes: Sequence[int], c_dim: int, device=None) -> torch.Tensor:
    labels = torch.zeros(len(classes), c_dim, device=device)
    if c_dim > 0:
        labels[torch.arange(len(classes)), torch.as_tensor(list(classes), dtype=torch.long)] = 1
    return labels


class SynthesisNetwork(nn.Module):
    """Holds the tri-plane decoder, the decoder MLP and the optional background network."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        tp = cfg.triplane
        self.tri_plane_decoder = TriPlaneDecoder(cfg.mapping.w_dim, tp.resolution, 3 * tp.feat_dim,
                                                 tp.channel_base, tp.channel_max, tp.use_noise, tp.conv_clamp)
        self.tri_plane_mlp = TriPlaneMLP(tp.feat_dim, tp.mlp_hidden, tp.mlp_layers,
                                         color_activation=tp.color_activation)
        self.bg_model = None
        if cfg.background.type == "sphere":
            bg = cfg.background
            self.bg_model = SphereBackground(cfg.mapping.w_dim, bg.num_blocks, bg.hidden_dim,
                                             bg.fourier_multiplier, bg.num_fourier_freqs)
        elif cfg.background.type is not None:
            raise ValueError(f"unknown background model {cfg.background.type!r} (expected null or 'sphere')")
        self.num_ws = self.tri_plane_decoder.num_ws + (0 if self.bg_model is None else self.bg_model.num_ws)

    def forward(self, ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        return self.tri_plane_decoder(ws[:, :self.tri_plane_decoder.num_ws], noise_mode=noise_mode)


class Generator(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        radius = cfg.camera.support_radius
        if radius is not None and not (float(radius) > 0):
            raise ConfigError(f"model.camera.support_radius: expected a positive radius in world units or null, "
                              f"got {radius}")
        self.cfg = cfg
        self.synthesis = SynthesisNetwork(cfg)
        m = cfg.mapping
        self.mapping = MappingNetwork(m.z_dim, cfg.c_dim, m.w_dim, self.synthesis.num_ws, m.num_layers,
                                      m.lr_multiplier, m.w_avg_beta, m.camera_cond, m.camera_cond_drop_p,
                                      m.camera_cond_noise_std, cfg.camera.mean_pose, cfg.camera.yaw_offset)
        # 3DGP's learned camera distribution; None for EpiGRAF models (their weights are unchanged).
        self.camera_generator = (CameraGenerator(cfg.camera_generator, cfg.camera, m.z_dim, cfg.c_dim)
                                 if cfg.camera_generator.enabled else None)

    @property
    def z_dim(self) -> int:
        return self.cfg.mapping.z_dim

    @property
    def c_dim(self) -> int:
        return self.cfg.c_dim

    @property
    def device(self) -> torch.device:
        return self.mapping.w_avg.device

    # ---------------------------------------------------------------------------------------------
    def latents(self, seeds: Sequence[int]) -> torch.Tensor:
        return torch.stack([z_from_seed(s, self.z_dim) for s in seeds]).to(self.device)

    def labels(self, classes: Optional[Sequence[int]], batch: int) -> torch.Tensor:
        if self.c_dim == 0:
            return torch.zeros(batch, 0, device=self.device)
        if classes is None:
            raise ValueError(f"this model has {self.c_dim} classes: pass a class index")
        bad = [k for k in classes if not 0 <= int(k) < self.c_dim]
        if bad:
            raise ValueError(f"class {bad[0]} out of range: this model has classes 0..{self.c_dim - 1}")
        return one_hot(classes, self.c_dim, self.device)

    @torch.no_grad()
    def class_mean_w(self, c: torch.Tensor, num_samples: int = 256, seed: int = 0) -> torch.Tensor:
        """Mean w of each label row of c over `num_samples` random z (3DGP's class-wise truncation target)."""
        gen = torch.Generator(device="cpu").manual_seed(seed)
        z = torch.randn(num_samples, self.z_dim, generator=gen).to(self.device)
        means = [self.mapping(z, row.expand(num_samples, -1))[:, 0].mean(dim=0) for row in c]
        return torch.stack(means)

    def map_latents(self, z: torch.Tensor, c: Optional[torch.Tensor] = None, psi: float = 1.0,
                   camera_angles: Optional[torch.Tensor] = None, class_truncation: bool = False,
                   update_emas: bool = False) -> torch.Tensor:
        """ws for z and labels c; psi < 1 truncates toward w_avg, or toward each class's mean w."""
        if c is None:
            c = torch.zeros(z.shape[0], 0, device=z.device)
        target = self.class_mean_w(c) if (class_truncation and psi != 1 and self.c_dim > 0) else None
        return self.mapping(z, c, psi=psi, camera_angles=camera_angles, truncation_target=target,
                            update_emas=update_emas)

    def field(self, planes: torch.Tensor, ws: Optional[torch.Tensor] = None) -> TriPlaneField:
        background = None
        if self.synthesis.bg_model is not None:
            if ws is None:
                raise ValueError("this model has a background network: field() needs the ws too")
            background = BoundBackground(self.synthesis.bg_model, ws[:, self.synthesis.tri_plane_decoder.num_ws:])
        return TriPlaneField(planes, self.synthesis.tri_plane_mlp, self.cfg.camera.cube_scale, background,
                             self.cfg.camera.support_radius)

    def field_from_ws(self, ws: torch.Tensor, noise_mode: str = "const") -> TriPlaneField:
        return self.field(self.synthesis(ws, noise_mode=noise_mode), ws)

    def render_options(self, **overrides) -> RenderOptions:
        return RenderOptions.for_model(self.cfg, **overrides)

    def render(self, field: TriPlaneField, camera: Camera, resolution: Union[int, tuple, None] = None,
               patch: Optional[PatchParams] = None, options: Optional[RenderOptions] = None,
               **option_overrides) -> RenderOutput:
        """The training-time convenience: the plain path (core.rendering) with the model's render
        options; interactive code and exporters pick a path with core.rendering.field_renderer."""
        opts = options if options is not None else self.render_options()
        if option_overrides:
            opts = replace(opts, **option_overrides)
        resolution = self.cfg.img_resolution if resolution is None else resolution
        return field_renderer("plain", field, opts).render(camera.to(self.device), resolution, patch=patch)

    def default_camera(self, yaw=None, pitch=None, batch: Optional[int] = None) -> Camera:
        """The model's start view (`Pose.for_generator`: the mean pose with the configured fov and
        radius, or a 3DGP model's mean posterior camera) as a batch of cameras; yaw and pitch (absolute
        radians, a number or one per camera), where given, replace the start view's."""
        start = Pose.for_generator(self)
        return Camera.from_angles(start.yaw if yaw is None else yaw, start.pitch if pitch is None else pitch,
                                  radius=start.radius, fov=start.fov, look_at=start.look_at, pivot=start.pivot,
                                  batch=batch, device=self.device)

    def _random_labels(self, n: int, gen: torch.Generator) -> Optional[torch.Tensor]:
        """n one-hot labels of uniformly random classes (None for unconditional models), on the CPU."""
        if self.c_dim == 0:
            return None
        return one_hot(torch.randint(self.c_dim, (n,), generator=gen).tolist(), self.c_dim)

    def posterior_camera(self, z: torch.Tensor, c: Optional[torch.Tensor] = None, prior_camera: Optional[Camera] = None,
                         mean: bool = False, prior_seeds: Optional[Sequence[int]] = None,
                         num_mean_samples: int = 1024) -> Camera:
        """The cameras G renders sample b (latent z[b], label c[b]) from.

        mean=False: the camera generator applied to `prior_camera`, or, without one, to a prior camera
        drawn per sample from a generator seeded by prior_seeds[b] (default b), so a seed gives the
        same camera in any batch. mean=True: the start view (`Pose.for_generator`), per label: each
        label's mean posterior camera (`mean_camera`), or without a camera generator `default_camera`.
        Models without a camera generator return the prior camera itself.
        Differentiable (training calls it with gradients)."""
        batch = z.shape[0]
        if mean:
            if self.camera_generator is None:
                return self.default_camera(batch=batch)
            cams = self.mean_camera(c, num_mean_samples)
            return cams if len(cams) == batch else cams.repeat(batch)
        if prior_camera is None:
            seeds = range(batch) if prior_seeds is None else list(prior_seeds)
            if len(seeds) != batch:
                raise ValueError(f"{len(seeds)} prior seeds for {batch} latents")
            priors = [sample_camera_prior(self.cfg.camera, 1, torch.Generator().manual_seed(int(s))) for s in seeds]
            prior_camera = Camera(*[torch.cat([getattr(p, f) for p in priors]) for f in
                                    ("angles", "radius", "fov", "look_at", "pivot")])
        prior_camera = prior_camera.to(self.device)
        if self.camera_generator is None:
            return prior_camera
        return self.camera_generator.posterior(prior_camera, z.to(self.device),
                                               None if c is None else c.to(self.device))

    @torch.no_grad()
    def mean_camera(self, c: Optional[torch.Tensor] = None, num_samples: int = 1024, seed: int = 0) -> Camera:
        """Arithmetic mean of every camera parameter (look-at in spherical coordinates) over
        `num_samples` posterior cameras of random prior cameras and latents (3DGP's canonical view):
        one camera for random classes (c None), or one per row of the labels c."""
        if self.camera_generator is None:
            raise ValueError("this model has no camera generator: use default_camera()")
        rows = [None] if c is None or self.c_dim == 0 else list(c)
        means = []
        for row in rows:
            gen = torch.Generator().manual_seed(int(seed))
            prior = sample_camera_prior(self.cfg.camera, num_samples, gen)
            z = torch.randn(num_samples, self.z_dim, generator=gen)
            labels = (self._random_labels(num_samples, gen) if row is None
                      else row.detach().float().cpu().expand(num_samples, -1))
            dev = self.device
            post = self.camera_generator(camera_to_params(prior).to(dev), z.to(dev),
                                         None if labels is None else labels.to(dev))
            means.append(post.mean(dim=0))
        return params_to_camera(torch.stack(means))

    def forward(self, z: torch.Tensor, c: Optional[torch.Tensor], camera: Camera, psi: float = 1.0,
                patch: Optional[PatchParams] = None, resolution: Optional[int] = None,
                camera_angles: Optional[torch.Tensor] = None, noise_mode: str = "const",
                update_emas: bool = False, **option_overrides) -> RenderOutput:
        """Everything in one call (training and quick scripts); interactive code caches the field."""
        ws = self.map_latents(z, c, psi, camera_angles=camera_angles, update_emas=update_emas)
        return self.render(self.field_from_ws(ws, noise_mode), camera, resolution, patch, **option_overrides)


def parameter_counts(G: Generator) -> dict:
    count = lambda m: sum(p.numel() for p in m.parameters()) if m is not None else 0
    return {"mapping": count(G.mapping), "tri_plane_decoder": count(G.synthesis.tri_plane_decoder),
            "tri_plane_mlp": count(G.synthesis.tri_plane_mlp), "background": count(G.synthesis.bg_model),
            "camera_generator": count(G.camera_generator),
            "total": count(G)}
