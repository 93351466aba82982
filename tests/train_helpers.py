"""Small datasets and configs for the training tests (milliseconds per step on a CPU)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image

from trigan.training import distributed as ddp
from trigan.training.config import load_config
from trigan.training.dataset import open_dataset
from trigan.training.session import Session, fit_config_to_dataset, save_run_config

TINY_TRAIN = [
    "model.img_resolution=16", "model.triplane.resolution=16", "model.triplane.channel_base=256",
    "model.triplane.channel_max=16", "model.triplane.feat_dim=8", "model.triplane.mlp_hidden=16",
    "model.mapping.w_dim=16", "model.mapping.z_dim=32", "model.render.num_steps=6",
    "discriminator.patch_resolution=8", "discriminator.num_additional_start_blocks=1",
    "discriminator.channel_base=128", "discriminator.channel_max=16",
    "training.batch_size=8", "training.num_workers=0", "training.tick_kimg=0.008",
    "training.samples=4", "training.image_ticks=1000", "training.video_ticks=0", "training.snapshot_ticks=1000",
    "training.blur_fade_kimg=0.05", "training.r1_interval=2",
]


def write_tiny_dataset(folder: Path, num: int = 12, res: int = 16, classes: int = 3, seed: int = 0) -> Path:
    """A folder of coloured squares on white with poses and labels (dict form)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(seed)
    angles, labels = {}, {}
    for i in range(num):
        img = np.full((res, res, 3), 255, np.uint8)
        lo, hi = res // 4, res - res // 4 - (i % 3)
        img[lo:hi, lo:hi] = rng.randint(0, 255, 3)
        name = f"img{i:04d}.png"
        Image.fromarray(img).save(folder / name)
        angles[name] = [float(rng.uniform(-math.pi, math.pi)), float(rng.uniform(1.2, 1.8)), 0.0]
        labels[name] = i % classes
    (folder / "dataset.json").write_text(json.dumps({"camera_angles": angles, "labels": labels}))
    return folder


def tiny_train_config(*overrides):
    return load_config("demo", TINY_TRAIN + list(overrides))


def fitted_tiny_config(data, *overrides):
    """(cfg, dataset): tiny_train_config pointed at `data`, with the model fitted to the dataset."""
    cfg = tiny_train_config(*overrides)
    cfg.training.data = str(data)
    ds = open_dataset(data, mirror=cfg.training.mirror)
    fit_config_to_dataset(cfg, ds, lambda *_: None)
    return cfg, ds


def tiny_session(run_dir, cfg, resume=False):
    """A training Session on `run_dir` (made, with its config written), as `trigan train` sets it up."""
    run_dir = Path(run_dir)
    (run_dir / "samples").mkdir(parents=True, exist_ok=True)
    save_run_config(run_dir, cfg)
    return Session(cfg, run_dir, ddp.DistInfo(), resume=resume)
