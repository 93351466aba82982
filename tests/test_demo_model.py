"""The bundled demo model (assets/demo.ckpt) against the procedural dataset it was trained on.

Each class is rendered from four yaws around the object and compared with the synthetic objects of
that class seen from the same cameras (`training.synth`, rendered here, not read from files): the
object must cover about as much of the image as the real ones do from every side, must not be a flat
card that turns into a sliver from the side, and must look like its own class more than like any
other.

`DEMO_CKPT=path python -m pytest tests/test_demo_model.py -s` checks another checkpoint and prints
the figures (used to choose the snapshot that ships)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from trigan.core.cameras import Camera
from trigan.core.checkpoint import load_checkpoint
from trigan.core.model_io import open_model
from trigan.training import synth

DEMO = Path(os.environ.get("DEMO_CKPT") or Path(__file__).resolve().parents[1] / "assets" / "demo.ckpt")
YAWS = [0.0, math.pi / 2, math.pi, 3 * math.pi / 2]     # front, both sides, back
SEEDS = range(4)
INSTANCES = 12          # synthetic objects per class for the reference silhouettes
RES = 64                # the model's image resolution
PSI = 0.7               # the viewer's default truncation


@pytest.fixture(scope="module")
def generator():
    return open_model(DEMO, device="cpu").G


@pytest.fixture(scope="module")
def generated(generator):
    """opacity [class, yaw, seed, H, W] and rgb in [0, 1] [class, yaw, seed, H, W, 3] at psi 0.7."""
    G = generator
    classes = G.c_dim
    opacity = np.zeros((classes, len(YAWS), len(SEEDS), RES, RES), np.float32)
    rgb = np.zeros(opacity.shape + (3,), np.float32)
    z = G.latents(list(SEEDS))                                 # the same latents for every class
    with torch.no_grad():
        for c in range(classes):
            ws = G.map_latents(z, G.labels([c] * len(SEEDS), len(SEEDS)), psi=PSI)
            field = G.field_from_ws(ws)
            for i, yaw in enumerate(YAWS):
                out = G.render(field, G.default_camera(yaw=yaw, batch=len(SEEDS)), RES)
                opacity[c, i] = out.opacity[:, 0].numpy()
                rgb[c, i] = ((out.rgb.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()
    return opacity, rgb


@pytest.fixture(scope="module")
def reference(generator):
    """Coverage [class, yaw, instance, H, W] in [0, 1] of the synthetic objects, seen from the same
    cameras: the fraction of 4x4 sub-rays per pixel that hit the object."""
    cam = generator.cfg.camera
    pitch = float(cam.mean_pose[1])
    classes = generator.c_dim
    cover = np.zeros((classes, len(YAWS), INSTANCES, RES, RES), np.float32)
    for c in range(classes):
        prims = synth.make_objects(c, INSTANCES, np.random.default_rng([123, c]))
        for i, yaw in enumerate(YAWS):
            camera = Camera.from_angles(yaw, pitch, radius=cam.radius, fov=cam.fov, batch=INSTANCES)
            _, dist = synth.render(prims, camera, RES * 4, supersample=1)
            hit = np.isfinite(dist).reshape(INSTANCES, RES, 4, RES, 4)
            cover[c, i] = hit.mean(axis=(2, 4))
    return cover


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    """Soft intersection over union of two masks in [0, 1]."""
    return float(np.minimum(a, b).sum() / max(np.maximum(a, b).sum(), 1e-8))


def test_the_checkpoint_is_a_small_class_conditional_g_ema_that_loads_as_weights_only():
    if "DEMO_CKPT" not in os.environ:
        assert DEMO.stat().st_size <= 20 * 2 ** 20
    payload = torch.load(DEMO, map_location="cpu", weights_only=True)
    assert "G_ema" in payload and not {"G", "D", "G_opt", "D_opt"} & payload.keys()
    ckpt = load_checkpoint(DEMO)
    assert ckpt.config.model.c_dim == 4
    assert ckpt.config.model.class_names == ["mushroom", "table", "snowman", "rocket"]


def test_every_class_covers_as_much_of_the_image_as_the_real_objects_from_every_yaw(generated, reference):
    opacity, _ = generated
    ours = (opacity > 0.5).mean(axis=(3, 4))                    # [class, yaw, seed]
    real = reference.mean(axis=(3, 4))                          # [class, yaw, instance]
    ratio = ours.mean(axis=2) / real.mean(axis=2)               # [class, yaw]
    print("\ncoverage ratio generated / real (class x yaw):\n", np.round(ratio, 2))
    assert np.all(ratio > 0.5) and np.all(ratio < 2.0), ratio
    # every single sample shows an object, from every side
    assert ours.min() > 0.25 * real.mean(), ours.min()


def test_no_class_is_a_flat_card_seen_edge_on_from_the_side(generated, reference):
    """A tri-plane generator can draw an object as a flat card: right from the front, a sliver from
    the side. Per class, the covered area seen from the sides (yaw 90 and 270) over the area seen
    from front and back, relative to the same ratio of the real objects (1), must stay above 0.6.
    The asset before the current one was such a card: its mushrooms measured 0.41 here (its raw G
    0.28), and it would fail. The current one measures 0.81-1.33 (assets/demo.md)."""
    opacity, _ = generated
    ours = (opacity > 0.5).mean(axis=(2, 3, 4))                 # [class, yaw]
    real = reference.mean(axis=(2, 3, 4))
    def side_over_front(cover):
        return (cover[:, 1] + cover[:, 3]) / (cover[:, 0] + cover[:, 2])
    relative = side_over_front(ours) / side_over_front(real)
    print("\nside / front coverage relative to the real objects' (per class):", np.round(relative, 2))
    assert np.all(relative > 0.6), relative


def test_each_class_looks_like_its_own_class_and_classes_differ(generated, reference):
    opacity, rgb = generated
    classes = opacity.shape[0]
    ours = opacity.mean(axis=2)                                  # mean silhouette [class, yaw, H, W]
    real = reference.mean(axis=2)
    iou = np.array([[np.mean([_iou(ours[g, y], real[r, y]) for y in range(len(YAWS))])
                     for r in range(classes)] for g in range(classes)])
    print("\nsilhouette IoU, generated class (rows) x real class (columns):\n", np.round(iou, 2))
    assert list(iou.argmax(axis=1)) == list(range(classes)), iou
    # and the classes' images differ from one another, not only their outlines
    white = np.ones(3, np.float32)
    images = rgb * opacity[..., None] + white * (1 - opacity[..., None])
    means = images.mean(axis=2)                                  # [class, yaw, H, W, 3]
    for a in range(classes):
        for b in range(a + 1, classes):
            assert np.abs(means[a] - means[b]).mean() > 0.02, (a, b)
