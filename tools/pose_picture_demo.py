"""The two pictures of `trigan dataset check --picture` shown in docs/datasets.md, rebuilt from scratch.

1. The procedural dataset: `trigan dataset synth` (yaw uniform round the circle).
2. An EG3D-style dataset: snowmen (their faces look toward +X, trigan's yaw 0) rendered from
   FFHQ-like cameras (yaw ~ N(0, 20 deg), pitch ~ N(90, 8 deg), plus a few profile views that the
   check reports as outliers), their cameras written as EG3D's dataset.json labels (OpenCV
   cam2world, EG3D's world with the front on +Z, FFHQ's intrinsics), converted back with
   `trigan dataset poses --format eg3d` and then checked.

Usage (repository root): .venv/bin/python tools/pose_picture_demo.py OUT_FOLDER [--num 400]
Writes OUT_FOLDER/synth.png and OUT_FOLDER/eg3d.png (and the datasets beside them). Seeded: the
same arguments give the same pictures.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from trigan.core.cameras import Camera
from trigan.training.synth import make_objects, render

SNOWMAN = 2                     # training/synth.py CLASSES order
EG3D_FOCAL = 4.2647             # EG3D's FFHQ intrinsics: fx = fy in image widths, centre 0.5
EG3D_RADIUS = 2.7               # EG3D's FFHQ camera distance
RENDER_RADIUS, RENDER_FOV = 1.0, 30.0


def trigan(*argv: str) -> None:
    print("$ trigan " + " ".join(argv), flush=True)
    subprocess.run([sys.executable, "-m", "trigan.cli.main", *argv], check=True)


def ffhq_like_poses(num: int, rng: np.random.Generator) -> np.ndarray:
    """[num, 2] yaw, pitch in radians: mostly frontal, a few profiles (the outliers)."""
    yaw = np.radians(np.clip(rng.normal(0.0, 20.0, num), -70, 70))
    pitch = np.radians(np.clip(rng.normal(90.0, 8.0, num), 60, 120))
    profiles = rng.choice(num, max(1, num // 100), replace=False)
    yaw[profiles] = np.radians(rng.choice([-1.0, 1.0], len(profiles)) * rng.uniform(85, 95, len(profiles)))
    return np.stack([yaw, pitch], axis=1)


def eg3d_label(yaw: float, pitch: float) -> list:
    """EG3D's 25 numbers for a camera at trigan's (yaw, pitch) looking at the origin: EG3D's front is
    +Z, so its azimuth (from +X toward +Z) is yaw + 90 degrees; OpenCV axes (right, down, forward)."""
    azimuth = yaw + math.pi / 2
    t = EG3D_RADIUS * np.array([math.sin(pitch) * math.cos(azimuth), math.cos(pitch),
                                math.sin(pitch) * math.sin(azimuth)])
    forward = -t / np.linalg.norm(t)
    right = np.cross(forward, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, down, forward, t
    intrinsics = [EG3D_FOCAL, 0, 0.5, 0, EG3D_FOCAL, 0.5, 0, 0, 1]
    return [float(v) for v in c2w.reshape(-1)] + [float(v) for v in intrinsics]


def write_eg3d_dataset(folder: Path, num: int, seed: int) -> Path:
    """Images in `folder`, their EG3D labels in `folder`.eg3d.json (the pose file to convert)."""
    rng = np.random.default_rng(seed)
    poses = ffhq_like_poses(num, rng)
    objects = make_objects(SNOWMAN, num, np.random.default_rng([seed, SNOWMAN]))
    camera = Camera.from_angles(poses[:, 0], poses[:, 1], RENDER_RADIUS, RENDER_FOV, batch=num)
    images, _ = render(objects, camera, 64)
    folder.mkdir(parents=True)
    labels = []
    for i, (image, (yaw, pitch)) in enumerate(zip(images, poses, strict=True)):
        name = f"img{i:05d}.png"
        Image.fromarray(image).save(folder / name)
        labels.append([name, eg3d_label(float(yaw), float(pitch))])
    source = folder.with_suffix(".eg3d.json")
    source.write_text(json.dumps({"labels": labels}))
    return source


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--num", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    synth = args.out / "synth.zip"
    trigan("dataset", "synth", str(synth), "--num", str(args.num), "--seed", str(args.seed), "--force")
    trigan("dataset", "check", str(synth), "--picture", str(args.out / "synth.png"), "--force")
    folder = args.out / "eg3d_like"
    if folder.exists():
        raise SystemExit(f"{folder} exists: pick an empty OUT_FOLDER")
    source = write_eg3d_dataset(folder, args.num, args.seed)
    trigan("dataset", "poses", str(source), "--format", "eg3d", "--out", str(folder))
    trigan("dataset", "check", str(folder), "--picture", str(args.out / "eg3d.png"), "--force")
    return 0


if __name__ == "__main__":
    sys.exit(main())
