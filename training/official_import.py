"""`trigan convert` of official EpiGRAF and 3DGP snapshots. Core reads a snapshot's generator (its
model config and weights: core/epigraf_import.py, core/threedgp_import.py) for every command that
opens a .pkl; what only training uses is translated here: the discriminator's architecture and, for
3DGP, the run's recipe (learning rates, gamma, EMA, patches, depth adaptor, distillation, camera
regularisers), so that `trigan convert --all` writes the whole Config and a converted run goes on in
trigan (`trigan train --config CKPT --init CKPT`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, Optional

from trigan.core import threedgp_import
from trigan.core.checkpoint import check_generator_weights, save_checkpoint
from trigan.core.config import ModelConfig
from trigan.core.epigraf_import import (
    generator_snapshot,
    reading_upstream_config,
    snapshot_model_config,
    snapshot_progress,
    validated_snapshot_config,
)
from trigan.core.epigraf_pickle import EpigrafNetwork, EpigrafSnapshot, read_epigraf_pickle
from trigan.core.errors import CheckpointError
from trigan.core.threedgp_import import config_section
from trigan.training.config import (
    CameraRegularizerConfig,
    Config,
    DepthConfig,
    DiscriminatorConfig,
    DistillConfig,
    PatchConfig,
    TrainingConfig,
)

# ---------------------------------------------------------------------------------------------------
# EpiGRAF

def epigraf_discriminator_config(d: EpigrafNetwork, root_config: Dict[str, Any]) -> DiscriminatorConfig:
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


# ---------------------------------------------------------------------------------------------------
# 3DGP

def threedgp_discriminator_config(snap: EpigrafSnapshot) -> DiscriminatorConfig:
    """A 3DGP snapshot's discriminator architecture (its D's attributes and `model.discriminator`)."""
    d = snap.networks["D"]
    dcfg = config_section(snap.config, "model", "discriminator")
    patch = config_section(snap.config, "training", "patch") or config_section(dcfg, "patch")
    root = d.attributes.get("", {})
    k = int(dcfg.get("num_additional_start_blocks", 0))
    mbstd = d.attributes.get("b4.mbstd", {})
    epilogue = d.attributes.get("b4", {})
    feat = d.state_dict.get("b4.feat_out.1.weight")
    return DiscriminatorConfig(
        patch_resolution=int(root["img_resolution"]) // 2 ** k, num_additional_start_blocks=k,
        channel_base=int(float(dcfg["cbase"]) * float(dcfg.get("fmaps", 1.0))), channel_max=int(dcfg["cmax"]),
        mbstd_group_size=int(mbstd.get("group_size", dcfg.get("mbstd_group_size", 4))),
        mbstd_channels=int(mbstd.get("num_channels", 1)), mbstd_grouping="strided",
        hyper_mod=bool(dcfg.get("hyper_mod", False)), patch_cond=bool(patch.get("patch_params_cond", False)),
        camera_cond=bool(dcfg.get("camera_cond", False)),
        camera_cond_drop_p=float(dcfg.get("camera_cond_drop_p", 0.0)),
        cmap_dim=int(epilogue["cmap_dim"]) if epilogue.get("cmap_dim") else None,
        num_fp16_res=0 if dcfg.get("fp32_only", False) else 4,
        img_channels=int(root.get("img_channels", 3)),
        feat_predict_dim=0 if feat is None else int(feat.shape[0]))


def threedgp_training_config(snap: EpigrafSnapshot, model: ModelConfig) -> TrainingConfig:
    """3DGP's recipe in trigan's terms, so a converted run continues with the same settings."""
    c = snap.config
    t, loss = config_section(c, "training"), config_section(c, "model", "loss_kwargs")
    gcfg, dcfg = config_section(c, "model", "generator"), config_section(c, "model", "discriminator")
    g_opt, d_opt = config_section(gcfg, "optim", "kwargs"), config_section(dcfg, "optim", "kwargs")
    patch = config_section(t, "patch")
    batch = int(t.get("batch_size", 64))
    if patch.get("enabled", False):
        patch_cfg = PatchConfig(dist="beta" if patch.get("distribution", "beta") == "beta" else "uniform",
                                min_scale=float(patch.get("min_scale_trg", 0.25)),
                                max_scale=float(patch.get("max_scale", 1.0)),
                                beta_start=float(patch.get("beta_val_start", 0.001)),
                                beta_end=float(patch.get("beta_val_end", 0.8)),
                                anneal_kimg=float(patch.get("anneal_kimg", 10000)))
    else:
        patch_cfg = PatchConfig(dist="full")
    depth = config_section(gcfg, "depth_adaptor")
    kd = config_section(loss, "kd", "discr")
    adaptor = config_section(gcfg, "camera_adaptor")
    emd = config_section(adaptor, "emd")
    emd_on = bool(emd.get("enabled", False))
    ema_kimg = float(gcfg.get("ema_kimg", batch * 0.3125))
    return TrainingConfig(
        kimg=float(t.get("kimg", 25000)), batch_size=batch,
        gamma=None if loss.get("gamma") in (None, "auto") else float(loss["gamma"]),
        g_lr=float(g_opt.get("lr", 0.0025)), d_lr=float(d_opt.get("lr", 0.002)),
        betas=[float(b) for b in g_opt.get("betas", [0.0, 0.99])], eps=float(g_opt.get("eps", 1e-8)),
        grad_clip=None if config_section(gcfg, "optim").get("grad_clip") is None else float(gcfg["optim"]["grad_clip"]),
        ema_multiplier=ema_kimg / batch, ema_rampup=gcfg.get("ema_rampup", 0.05),
        blur_init_sigma=float(loss.get("blur_init_sigma", 10)), blur_fade_kimg=float(loss.get("blur_fade_kimg", 200)),
        mirror=bool(config_section(c, "dataset").get("mirror", True)), seed=int(t.get("seed", 0)),
        patch=patch_cfg,
        depth=DepthConfig(adaptor=bool(depth.get("enabled", False)), kernel_size=int(depth.get("kernel_size", 5)),
                          hidden_dim=int(depth.get("hid_dim", 64)),
                          num_hidden_layers=int(depth.get("num_hid_layers", 3)),
                          out_strategy=str(depth.get("out_strategy", "random")),
                          selection_start_p=float(depth.get("selection_start_p", 0.1)),
                          anneal_kimg=float(depth.get("anneal_kimg", 10000)),
                          near_plane_offset_max_fraction=float(depth.get("near_plane_offset_max_fraction", 0.25)),
                          near_plane_offset_bias=float(depth.get("near_plane_offset_bias", -3.0))),
        distill=DistillConfig(weight=float(kd.get("weight", 0.0)), anneal_kimg=float(kd.get("anneal_kimg", 100000))),
        camera_reg=CameraRegularizerConfig(
            emd_origin=float(emd.get("origin", 2.0)) if emd_on else 0.0,
            emd_fov=float(emd.get("fov", 1e-4)) if emd_on else 0.0,
            emd_look_at=float(emd.get("look_at", 1e-4)) if emd_on else 0.0,
            emd_num_samples=int(emd.get("num_samples", 64)), emd_anneal_kimg=float(emd.get("anneal_kimg", 10000)),
            force_mean_weight=float(adaptor.get("force_mean_weight", 10.0)) if model.camera_generator.enabled else 0.0))


# ---------------------------------------------------------------------------------------------------
# Converting


def recipe_config(snap: EpigrafSnapshot, model: ModelConfig) -> Config:
    """The whole Config of a snapshot whose generator `model` describes: its discriminator and (3DGP)
    its recipe; an EpiGRAF snapshot keeps trigan's default recipe (its config has no usable one)."""
    if threedgp_import.is_3dgp_snapshot(snap):
        return Config(model=model, discriminator=threedgp_discriminator_config(snap),
                      training=threedgp_training_config(snap, model))
    return Config(model=model, discriminator=epigraf_discriminator_config(snap.networks["D"], snap.config))


def snapshot_config(snap: EpigrafSnapshot, path: str, with_training: bool = False) -> Config:
    """The Config of an EpiGRAF or 3DGP snapshot (not yet validated): its model, and with
    `with_training` also its discriminator and recipe (else trigan's defaults)."""
    model = snapshot_model_config(snap, path)
    return recipe_config(snap, model) if with_training else Config(model=model)


def convert_snapshot(src, dst, keep_all: bool = False, log: Optional[Callable[[str], None]] = None) -> Path:
    """Write an EpiGRAF or 3DGP snapshot as a trigan checkpoint (G_ema; with keep_all also G, D,
    optimizers, 3DGP's depth adaptor, and the discriminator's config and recipe).

    The snapshot is read once; its tensors are written as they are (no copies, and the fit checks
    allocate nothing), so memory stays near the reader's peak of about twice the file size.
    """
    say = log or (lambda _msg: None)
    say(f"reading {src}")
    snap = read_epigraf_pickle(src)
    model, g_ema, kind = generator_snapshot(snap, src)
    is_3dgp = kind == "3DGP pickle"
    progress = {**snapshot_progress(snap.stats or {}), "source": f"{kind.split()[0]} snapshot {Path(src).name}"}
    config = Config(model=model)
    extra: Dict[str, Any] = {}
    if keep_all:
        for name in ("G", "D"):
            if name not in snap.networks:
                raise CheckpointError(f"{src}: --all needs {name}, but the snapshot has none")
        with reading_upstream_config(src):
            config = recipe_config(snap, model)
        validated_snapshot_config(config, src)
        if is_3dgp:
            g = threedgp_import.generator_state(snap.networks["G"], model)
            extra = {"G": g, "D": threedgp_import.discriminator_state(snap.networks["D"])}
            extra.update({name: threedgp_import.optimizer_state(opt) for name, opt in snap.optimizers.items()})
            adaptor = threedgp_import.depth_adaptor_state(snap.networks["G"])
            if adaptor is not None:
                extra["depth_adaptor"] = adaptor
        else:
            g = snap.networks["G"].state_dict
            extra = {"G": g, "D": snap.networks["D"].state_dict}
            extra.update({name: opt for name, opt in snap.optimizers.items()})
        check_generator_weights(model, g, source=f"{src} (G)")
        if "augment_pipe" in snap.networks:
            extra["augment_pipe"] = snap.networks["augment_pipe"].state_dict
    say(f"writing {dst}")
    return save_checkpoint(dst, config, g_ema, progress=progress, **extra)
