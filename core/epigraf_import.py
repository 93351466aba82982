"""Turn an official EpiGRAF snapshot into a trigan model config + generator weights (3DGP snapshots,
which share the file format, are recognised here and mapped by `threedgp_import`). What only training
uses (the discriminator's config, 3DGP's recipe) and `trigan convert` are `training/official_import.py`'s.

The snapshot is read as data by `epigraf_pickle` (nothing from the file runs). The architecture is
taken from G_ema's constructor arguments and its resolved Hydra config (`model.generator`, whose
`dataset` node carries the camera and the scene box); weights map one to one by name because trigan's
modules use EpiGRAF's names. Runtime gains (equalized learning rate, lrelu gain) are recomputed by
trigan's layers from the same raw weights, so no tensor needs rescaling. Keys that older snapshots
lack get the upstream defaults documented in reference/epigraf.md 7.2.

`read_snapshot_meta` describes a snapshot for `trigan info` without torch: the same config, read
from the snapshot's tensors as records (epigraf_pickle's record route), and the weights' shapes;
torch and the generator are imported only by the functions that build it.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Dict, Iterator, Optional, Tuple

from trigan.core import threedgp_import
from trigan.core.checkpoint_meta import EXPONENT_MASKS, CheckpointMeta, any_non_finite, check_layout
from trigan.core.config import (
    BackgroundConfig,
    CameraConfig,
    MappingConfig,
    ModelConfig,
    RenderConfig,
    SavedConfig,
    TriPlaneConfig,
    available_memory_bytes,
    check_model_values,
)
from trigan.core.epigraf_pickle import ArrayTensor, EpigrafNetwork, EpigrafSnapshot, read_epigraf_pickle
from trigan.core.errors import CheckpointError, ConfigError

if TYPE_CHECKING:
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


def generator_config(g: EpigrafNetwork, path: str) -> ModelConfig:
    """The trigan model config of the snapshot's generator."""
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
    return model


@contextmanager
def reading_upstream_config(path) -> Iterator[None]:
    """Translating upstream's config: a key it lacks or a value of the wrong kind is a malformed
    file, answered in one line, not a traceback."""
    try:
        yield
    except KeyError as exc:
        raise CheckpointError(f"{path}: is malformed: its config has no {exc.args[0]!r}") from None
    except (AttributeError, TypeError, ValueError, OverflowError) as exc:  # int('x'), int(1e400), int(nan)
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise CheckpointError(f"{path}: is malformed: its config cannot be read ({detail[:200]})") from None


def validated_snapshot_config(config, path):
    """A config built from a snapshot (a SavedConfig, or training's whole Config), with every size
    checked against trigan's bounds before anything is allocated for it (an img_resolution of 1e9 is
    refused here, naming the pickle)."""
    try:
        return config.validate(what=f"{path}: its config")
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from None


def snapshot_model_config(snap: EpigrafSnapshot, path) -> ModelConfig:
    """The model config of an EpiGRAF or 3DGP snapshot's generator (not yet validated)."""
    if threedgp_import.is_3dgp_snapshot(snap):
        return threedgp_import.generator_config(snap, str(path))
    return generator_config(snap.networks["G_ema"], str(path))


def generator_snapshot(snap: EpigrafSnapshot, path) -> Tuple[ModelConfig, Dict[str, Any], str]:
    """(model config, G_ema's state dict under trigan's names, format name) of an EpiGRAF or 3DGP
    snapshot, after checking the config's bounds and that the weights fit it."""
    if "G_ema" not in snap.networks:
        raise CheckpointError(f"{path}: the snapshot has no G_ema generator")
    with reading_upstream_config(path):
        model = snapshot_model_config(snap, path)
        if threedgp_import.is_3dgp_snapshot(snap):
            state = threedgp_import.generator_state(snap.networks["G_ema"], model)
            kind = "3DGP pickle"
        else:
            state = snap.networks["G_ema"].state_dict
            kind = "EpiGRAF pickle"
    validated_snapshot_config(SavedConfig(model=model), path)
    from trigan.core.checkpoint import check_generator_weights  # noqa: PLC0415 (torch: see the docstring)

    check_generator_weights(model, state, source=str(path))
    return model, state, kind


def snapshot_progress(stats: Dict[str, Any]) -> Dict[str, Any]:
    """A snapshot's training progress (its stats) as a trigan checkpoint's progress."""
    progress = {}
    if "cur_nimg" in stats:
        progress["kimg"] = float(stats["cur_nimg"]) / 1000
    if "cur_tick" in stats:
        progress["tick"] = int(stats["cur_tick"])
    return progress


def snapshot_metrics(stats: Dict[str, Any]) -> Dict[str, Any]:
    """A snapshot's best metric (its stats) as a trigan checkpoint's metrics."""
    best = stats.get("best_metric_value")
    return {"best": best} if isinstance(best, float) and math.isfinite(best) else {}


def snapshot_extra_keys(snap: EpigrafSnapshot):
    """What the snapshot holds besides G_ema: the other networks, then the optimisers."""
    return sorted(k for k in snap.networks if k != "G_ema") + sorted(snap.optimizers)


def load_epigraf_generator(path, device=None) -> Tuple[Generator, SavedConfig, Dict[str, Any]]:
    """(G_ema in eval mode, its config, extra info for LoadedModel) from an EpiGRAF or 3DGP .pkl."""
    from trigan.core.checkpoint import build_generator  # noqa: PLC0415 (torch: see the docstring)

    snap = read_epigraf_pickle(path)
    model, state, kind = generator_snapshot(snap, path)
    G = build_generator(model, state, source=str(path), device=device)
    stats = snap.stats or {}
    return G, SavedConfig(model=model), {"progress": snapshot_progress(stats), "metrics": snapshot_metrics(stats),
                                         "extra_keys": snapshot_extra_keys(snap), "format": kind}


# ---------------------------------------------------------------------------------------------------
# Describing a snapshot without torch (`trigan info`)

def read_snapshot_meta(path) -> Optional[Tuple[CheckpointMeta, str]]:
    """(the description load_epigraf_generator's answer gives `trigan info`, the format name) of an
    EpiGRAF or 3DGP .pkl, read without torch; None when this route does not vouch for the file, which
    is then loaded the full way (and any refusal is worded by the loader).

    It vouches as core.checkpoint_meta does for a .ckpt: the same config, built by the same code and
    passing the same value checks; G_ema's weights floating point and finite, holding the parts the
    config describes, and fitting the memory available with room to spare. What only the loader
    checks, because only the Generator (torch) knows it: each weight's name and shape."""
    try:
        snap = read_epigraf_pickle(path, tensors="records")
        if "G_ema" not in snap.networks:
            return None
        is_3dgp = threedgp_import.is_3dgp_snapshot(snap)
        model = snapshot_model_config(snap, path)
        weights = (threedgp_import.renamed_generator_weights(snap.networks["G_ema"]) if is_3dgp
                   else snap.networks["G_ema"].state_dict)
        config = SavedConfig(model=model)
        check_model_values(config, f"{path}: its config")
        stats = snap.stats or {}
        meta = CheckpointMeta(config=config, weights=dict(weights), progress=snapshot_progress(stats),
                              metrics=snapshot_metrics(stats), extra_keys=snapshot_extra_keys(snap))
        check_layout(meta)
        if not (_plain_finite_weights(weights) and _fits_memory_easily(model, weights)):
            return None
        return meta, "3DGP pickle" if is_3dgp else "EpiGRAF pickle"
    except Exception:  # noqa: BLE001 - whatever fails here, the full loader judges the file and words the error
        return None


def _plain_finite_weights(weights: Dict[str, Any]) -> bool:
    """Every weight a contiguous floating-point record with finite values (the loader refuses other
    dtypes and non-finite values; a view larger than its storage is left to its bounded scan)."""
    for record in weights.values():
        if not (isinstance(record, ArrayTensor) and record.dtype in EXPONENT_MASKS
                and record.values.flags.c_contiguous):
            return False
        if any_non_finite(record.values, record.dtype):
            return False
    return True


def _fits_memory_easily(model: ModelConfig, weights: Dict[str, Any]) -> bool:
    """The loader's memory check (core/config.py check_model_memory) would pass: the weights (the
    generator's parameters and saved buffers) plus one sample's tri-planes, with a 2x margin for
    what the estimate leaves out (unsaved buffers)."""
    tp = model.triplane
    top_channels = min(tp.channel_base // tp.resolution, tp.channel_max)
    activations = (3 * tp.feat_dim + 2 * top_channels) * tp.resolution ** 2
    needed = 4 * (sum(record.numel for record in weights.values()) + activations)
    available = available_memory_bytes()
    return available is None or 2 * needed <= available
