"""Turn an official EpiGRAF snapshot into a trigan config + generator weights (3DGP snapshots, which
share the file format, are recognised here and mapped by `threedgp_import`).

The snapshot is read as data by `epigraf_pickle` (nothing from the file runs). The architecture is
taken from G_ema's constructor arguments and its resolved Hydra config (`model.generator`, whose
`dataset` node carries the camera and the scene box); weights map one to one by name because trigan's
modules use EpiGRAF's names. Runtime gains (equalized learning rate, lrelu gain) are recomputed by
trigan's layers from the same raw weights, so no tensor needs rescaling. Keys that older snapshots
lack get the upstream defaults documented in reference/epigraf.md 7.2.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

from trigan.core import threedgp_import
from trigan.core.checkpoint import build_generator, check_generator_weights, save_checkpoint
from trigan.core.config import (
    BackgroundConfig,
    CameraConfig,
    Config,
    DiscriminatorConfig,
    MappingConfig,
    ModelConfig,
    RenderConfig,
    TriPlaneConfig,
    validate_config,
)
from trigan.core.epigraf_pickle import EpigrafNetwork, EpigrafSnapshot, read_epigraf_pickle
from trigan.core.errors import CheckpointError, ConfigError
from trigan.core.generator import Generator

# Upstream defaults for keys that older snapshots do not have (reference 7.2).
_LEGACY_DEFAULTS = {"density_shift": 0.0, "clamp_mode": "softplus", "use_noise": True,
                    "nerf_noise_std_init": 1.0, "nerf_noise_kimg_growth": 5000}
_LEGACY_BG_DEFAULTS = {"type": None, "num_steps": 16}


def _camera_config(dataset: Dict[str, Any], mean_pose) -> CameraConfig:
    cam = dataset.get("camera", {})
    dist = cam.get("dist", "custom")
    yaw_std = float(cam.get("horizontal_stddev", 0.0) or 0.0)
    pitch_std = float(cam.get("vertical_stddev", 0.0) or 0.0)
    return CameraConfig(fov=float(cam.get("fov", 12.0)), radius=float(cam.get("radius", 1.0)),
                        ray_start=float(cam.get("ray_start", 0.88)), ray_end=float(cam.get("ray_end", 1.12)),
                        cube_scale=float(dataset.get("cube_scale", 0.2)), dist=str(dist),
                        yaw_mean=float(cam.get("horizontal_mean", 0.0) or 0.0), yaw_std=yaw_std,
                        pitch_mean=float(cam.get("vertical_mean", math.pi / 2) or math.pi / 2), pitch_std=pitch_std,
                        mean_pose=[float(v) for v in mean_pose])


def generator_config(g: EpigrafNetwork, path: str) -> Config:
    """A trigan Config describing the snapshot's generator."""
    kw = g.init_kwargs
    cfg = {**_LEGACY_DEFAULTS, **(kw.get("cfg") or {})}
    tri = cfg.get("tri_plane") or {}
    if cfg.get("backbone", "stylegan2") != "stylegan2":
        raise CheckpointError.unsupported(path, f"the {cfg['backbone']!r} tri-plane backbone")
    if tri.get("has_view_cond"):
        raise CheckpointError.unsupported(path, "a view-direction-conditioned MLP (tri_plane.has_view_cond)")
    if tri.get("posenc_period_len", 0):
        raise CheckpointError.unsupported(path, "positional encoding in the tri-plane MLP (tri_plane.posenc_period_len)")
    bg = {**_LEGACY_BG_DEFAULTS, **(cfg.get("bg_model") or {})}
    if bg["type"] not in (None, "sphere"):
        raise CheckpointError.unsupported(path, f"the {bg['type']!r} background model")
    mapping_kw = kw.get("mapping_kwargs") or {}
    mean_pose = mapping_kw.get("mean_camera_pose")
    mean_pose = [0.0, math.pi / 2, 0.0] if mean_pose is None else mean_pose.tolist()
    dataset = cfg.get("dataset") or {}
    conv_clamp = g.attributes.get("synthesis.tri_plane_decoder.b4.conv1", {}).get("conv_clamp")
    background = BackgroundConfig()
    if bg["type"] == "sphere":
        cbase, cmax = int(bg.get("cbase", 32768)), int(bg.get("cmax", 128))
        widths = {min(cbase // 2 ** (i + 2), cmax) for i in range(int(bg.get("num_blocks", 2)))}
        if len(widths) != 1:
            raise CheckpointError.unsupported(path, f"a background network with varying widths {sorted(widths)}")
        background = BackgroundConfig(type="sphere", num_steps=int(bg["num_steps"]),
                                      num_blocks=int(bg.get("num_blocks", 2)), hidden_dim=widths.pop(),
                                      fourier_multiplier=float(bg.get("posenc_period_len", 64.0)))
    model = ModelConfig(
        name=str(dataset.get("name", "epigraf")), family="epigraf",
        img_resolution=int(kw["img_resolution"]), img_channels=int(kw.get("img_channels", 3)),
        c_dim=int(kw.get("c_dim", 0)),
        mapping=MappingConfig(z_dim=int(kw.get("z_dim", 512)), w_dim=int(kw["w_dim"]),
                              num_layers=int(mapping_kw.get("num_layers", cfg.get("map_depth", 2))),
                              camera_cond=bool(mapping_kw.get("camera_cond", cfg.get("camera_cond", False))),
                              camera_cond_drop_p=float(mapping_kw.get("camera_cond_drop_p", 0.0)),
                              camera_cond_noise_std=float(mapping_kw.get("camera_cond_noise_std", 0.0))),
        triplane=TriPlaneConfig(resolution=int(tri["res"]), feat_dim=int(tri["feat_dim"]),
                                channel_base=int(kw["channel_base"]), channel_max=int(kw["channel_max"]),
                                use_noise=bool(cfg["use_noise"]),
                                conv_clamp=None if conv_clamp is None else float(conv_clamp),
                                mlp_hidden=int(tri.get("mlp", {}).get("hid_dim", 64)),
                                mlp_layers=int(tri.get("mlp", {}).get("n_layers", 2))),
        background=background,
        camera=_camera_config(dataset, mean_pose),
        render=RenderConfig(num_steps=int(cfg.get("num_ray_steps", 48)), density_shift=float(cfg["density_shift"]),
                            density_activation=str(cfg["clamp_mode"]),
                            white_background=bool(dataset.get("white_back", False)),
                            nerf_noise_std_init=float(cfg["nerf_noise_std_init"]),
                            nerf_noise_kimg_growth=float(cfg["nerf_noise_kimg_growth"])))
    if model.triplane.mlp_layers < 1:
        raise CheckpointError.unsupported(path, "an identity tri-plane MLP (tri_plane.mlp.n_layers 0)")
    return Config(model=model)


def discriminator_config(d: EpigrafNetwork, root_config: Dict[str, Any]) -> DiscriminatorConfig:
    """The snapshot's discriminator architecture (EpiGRAF 5.1; settings from D's constructor arguments,
    module attributes and the experiment config's `model.discriminator` node)."""
    kw = d.init_kwargs
    dcfg = (root_config.get("model") or {}).get("discriminator") or {}
    patch = dcfg.get("patch") or {}
    mbstd = d.attributes.get("b4.mbstd", {})
    epilogue = d.attributes.get("b4", {})
    return DiscriminatorConfig(
        patch_resolution=int(kw["img_resolution"]),
        num_additional_start_blocks=int(dcfg.get("num_additional_start_blocks", 0)),
        channel_base=int(kw["channel_base"]), channel_max=int(kw["channel_max"]),
        mbstd_group_size=int(mbstd.get("group_size", dcfg.get("mbstd_group_size", 4))),
        mbstd_channels=int(mbstd.get("num_channels", 1)),
        mbstd_grouping="strided",
        hyper_mod=bool(dcfg.get("hyper_mod", False)),
        patch_cond=bool(patch.get("patch_params_cond", False)) and bool(dcfg.get("hyper_mod", False)),
        camera_cond=bool(dcfg.get("camera_cond", False)), camera_cond_raw=bool(dcfg.get("camera_cond_raw", False)),
        camera_cond_noise_std=float(dcfg.get("camera_cond_noise_std", 0.0)),
        camera_cond_drop_p=float(dcfg.get("camera_cond_drop_p", 0.0)),
        cmap_dim=int(epilogue["cmap_dim"]) if epilogue.get("cmap_dim") else None,
        img_channels=int(kw.get("img_channels", 3)))


@contextmanager
def _reading_upstream_config(path) -> Iterator[None]:
    """Translating upstream's config: a key it lacks or a value of the wrong kind is a malformed
    file, answered in one line, not a traceback."""
    try:
        yield
    except KeyError as exc:
        raise CheckpointError(f"{path}: is malformed: its config has no {exc.args[0]!r}") from None
    except (AttributeError, TypeError, ValueError, OverflowError) as exc:  # int('x'), int(1e400), int(nan)
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise CheckpointError(f"{path}: is malformed: its config cannot be read ({detail[:200]})") from None


def _validated(config: Config, path) -> Config:
    """The config built from a snapshot, with every size checked against trigan's bounds before
    anything is allocated for it (an img_resolution of 1e9 is refused here, naming the pickle)."""
    try:
        return validate_config(config, what=f"{path}: its config")
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from None


def _generator_snapshot(snap: EpigrafSnapshot, path, with_training: bool = False
                        ) -> Tuple[Config, Dict[str, Any], str]:
    """(Config, G_ema's state dict under trigan's names, format name) of an EpiGRAF or 3DGP
    snapshot, after checking that the weights fit the config."""
    if "G_ema" not in snap.networks:
        raise CheckpointError(f"{path}: the snapshot has no G_ema generator")
    with _reading_upstream_config(path):
        if threedgp_import.is_3dgp_snapshot(snap):
            config = threedgp_import.snapshot_config(snap, str(path), with_training)
            state = threedgp_import.generator_state(snap.networks["G_ema"], config.model)
            kind = "3DGP pickle"
        else:
            config = generator_config(snap.networks["G_ema"], str(path))
            state = snap.networks["G_ema"].state_dict
            kind = "EpiGRAF pickle"
    _validated(config, path)
    check_generator_weights(config, state, source=str(path))
    return config, state, kind


def _progress(stats: Dict[str, Any]) -> Dict[str, Any]:
    progress = {}
    if "cur_nimg" in stats:
        progress["kimg"] = float(stats["cur_nimg"]) / 1000
    if "cur_tick" in stats:
        progress["tick"] = int(stats["cur_tick"])
    return progress


def load_epigraf_generator(path, device=None) -> Tuple[Generator, Config, Dict[str, Any]]:
    """(G_ema in eval mode, its Config, extra info for LoadedModel) from an EpiGRAF or 3DGP .pkl."""
    snap = read_epigraf_pickle(path)
    config, state, kind = _generator_snapshot(snap, path)
    G = build_generator(config, state, source=str(path), device=device)
    stats = snap.stats or {}
    metrics = {}
    best = stats.get("best_metric_value")
    if isinstance(best, float) and math.isfinite(best):
        metrics["best"] = best
    extra = sorted(k for k in snap.networks if k != "G_ema") + sorted(snap.optimizers)
    return G, config, {"progress": _progress(stats), "metrics": metrics, "extra_keys": extra, "format": kind}


def convert_epigraf(src, dst, keep_all: bool = False, log: Optional[Callable[[str], None]] = None) -> Path:
    """Write an EpiGRAF snapshot as a trigan checkpoint (G_ema; with keep_all also G, D, optimizers).

    The snapshot is read once; its tensors are written as they are (no copies, and the fit checks
    allocate nothing), so memory stays near the reader's peak of about twice the file size.
    """
    say = log or (lambda _msg: None)
    say(f"reading {src}")
    snap = read_epigraf_pickle(src)
    config, g_ema, kind = _generator_snapshot(snap, src, with_training=keep_all)
    is_3dgp = kind == "3DGP pickle"
    progress = {**_progress(snap.stats or {}), "source": f"{kind.split()[0]} snapshot {Path(src).name}"}
    extra = {}
    if keep_all:
        for name in ("G", "D"):
            if name not in snap.networks:
                raise CheckpointError(f"{src}: --all needs {name}, but the snapshot has none")
        if is_3dgp:
            g = threedgp_import.generator_state(snap.networks["G"], config.model)
            extra = {"G": g, "D": threedgp_import.discriminator_state(snap.networks["D"])}
            extra.update({name: threedgp_import.optimizer_state(opt) for name, opt in snap.optimizers.items()})
            adaptor = threedgp_import.depth_adaptor_state(snap.networks["G"])
            if adaptor is not None:
                extra["depth_adaptor"] = adaptor
        else:
            g = snap.networks["G"].state_dict
            with _reading_upstream_config(src):
                config.discriminator = discriminator_config(snap.networks["D"], snap.config)
            _validated(config, src)
            extra = {"G": g, "D": snap.networks["D"].state_dict}
            extra.update({name: opt for name, opt in snap.optimizers.items()})
        check_generator_weights(config, g, source=f"{src} (G)")
        if "augment_pipe" in snap.networks:
            extra["augment_pipe"] = snap.networks["augment_pipe"].state_dict
    say(f"writing {dst}")
    return save_checkpoint(dst, config, g_ema, progress=progress, **extra)
