"""The pre-flight check of a training run: known ways to waste GPU days, found before the first step.

`preflight(config, facts)` compares the config a person asked for (a preset plus overrides, before
`session.fit_config_to_dataset` adapts it to the data) with what the dataset holds, and returns one
`PreflightWarning` per problem: a single line that says what is wrong, why it matters and the fix.
`trigan train` prints them and logs them in the run (`--strict` refuses to start instead); the
viewer's Training tab shows them before it launches a run. The checks (docs/training.md):

* ``d_pose_cond``: posed, front-facing data (yaw spread below NARROW_YAW_STD) and
  discriminator.camera_cond off. D cannot see which view an image claims to be, so a flat,
  camera-facing card fools it (EpiGRAF issue #12: AFHQ Cats came out flat). Data seen from all
  around (the synthetic shapes, Megascans) is exempt: there a flat card fails from the side, which
  is why upstream's Megascans recipe trains without it.
* ``g_pose_cond``: the same narrow, FFHQ-like yaw spread and model.mapping.camera_cond off. In
  faces the pose correlates with the content (people turn to smile at the camera); without the pose
  as an input G has to bake that into the geometry (EG3D's generator pose conditioning).
* ``yaw_centre``: the yaws have a clear centre more than 10 degrees away from 0
  (pose_import.yaw_off_centre, the rule `trigan dataset check` warns by). Mirroring negates the yaw, so an off-centre dataset
  becomes two humps, and the camera prior sits beside the data (EpiGRAF's README: cameras must be
  zero-centred). The fix is `trigan dataset poses ... --center`.
* ``gamma_patch``: discriminator.patch_resolution other than 64 with training.gamma at its default
  (DEFAULT_GAMMA, tuned for 64^2 patches; EpiGRAF's README: re-tune gamma for other patch sizes).
* ``resolution``: images larger than the tri-plane (model.triplane.resolution): the planes cannot
  hold the detail D asks for.
* ``labels_unused``: the dataset has labels but training.use_labels is off (the model comes out
  unconditional and the labels are ignored); ``labels_missing``: the config's model is
  class-conditional (model.c_dim > 0) but the dataset has no labels (it is trained unconditional).

Yaw statistics are circular (angles wrap at +-pi): the centre is the mean direction (pose_import's
yaw_center, the one `trigan dataset poses --center` subtracts), the spread the circular standard
deviation sqrt(-2 ln R) of the mean resultant length R, over the images as they are (before
mirroring).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import numpy as np

from trigan.training.config import Config, TrainingConfig
from trigan.training.pose_import import yaw_center, yaw_concentration, yaw_off_centre

# A circular yaw spread below this (45 degrees) is front-facing data like FFHQ (about 20 degrees)
# or AFHQ; the synthetic shapes and Megascans, uniform over the circle, have a spread of ~infinity.
NARROW_YAW_STD = math.radians(45.0)
# The patch size the default gamma was tuned for, and that default (TrainingConfig.gamma).
GAMMA_PATCH = 64
DEFAULT_GAMMA = TrainingConfig().gamma


@dataclass(frozen=True)
class PreflightWarning:
    """One known way to waste a run: `code` names the check, `message` is one line with the fix."""

    code: str
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass
class DatasetFacts:
    """What the pre-flight check needs to know of a dataset (no image is decoded to learn it)."""

    path: str
    resolution: int
    num_images: int
    camera_angles: Optional[np.ndarray] = None   # [N, 3] yaw, pitch, roll (radians); None: unposed
    num_classes: int = 0                          # 0: no labels

    @property
    def has_labels(self) -> bool:
        return self.num_classes > 0


def dataset_facts(path) -> DatasetFacts:
    """The facts of the dataset at `path`: its index (dataset.json: angles and labels, whatever
    training.use_labels says) and the first image's size from its header. DatasetError (one line)
    on a dataset that cannot be opened."""
    # Loads torch (training.dataset); imported here so that the viewer panel stays light to import.
    from trigan.training.dataset import (  # noqa: PLC0415
        DatasetError,
        build_index,
        open_files,
        open_image_header,
        short_reason,
    )

    files = open_files(path)
    try:
        index = build_index(files)
        errors = [p for p in index.problems if p.severity == "error"]
        if errors:
            raise DatasetError(f"{path}: {errors[0]} (see `trigan dataset check {path}`)")
        first = index.images[0]
        try:
            with open_image_header(files.read(first)) as image:
                resolution = int(image.size[0])
        except Exception as exc:  # noqa: BLE001 - any decoder failure is the file's fault
            raise DatasetError(f"{path}/{first}: cannot read image ({short_reason(exc)})") from None
    finally:
        files.close()
    classes = int(index.labels.max()) + 1 if index.labels is not None else 0
    return DatasetFacts(str(path), resolution, len(index.images), index.angles, classes)


# ----------------------------------------------------------------------------------------------
# Yaw statistics

def yaw_spread(yaws: np.ndarray) -> float:
    """The circular standard deviation sqrt(-2 ln R) in radians (inf for yaws spread evenly)."""
    r = yaw_concentration(yaws)
    return math.sqrt(-2.0 * math.log(r)) if r > 0 else math.inf


# ----------------------------------------------------------------------------------------------
# The checks

def preflight(config: Config, facts: DatasetFacts) -> List[PreflightWarning]:
    """Every known way to waste this run, one line each with its fix; [] for a clean setup.
    `config` is the one asked for, before fit_config_to_dataset adapts it to the data."""
    out: List[PreflightWarning] = []
    out += _pose_warnings(config, facts)
    out += _gamma_warning(config)
    out += _resolution_warning(config, facts)
    out += _label_warnings(config, facts)
    return out


def _deg(radians: float) -> str:
    return f"{math.degrees(radians):.0f} deg"


def _pose_warnings(config: Config, facts: DatasetFacts) -> List[PreflightWarning]:
    if facts.camera_angles is None or len(facts.camera_angles) == 0:
        return []
    yaws = facts.camera_angles[:, 0]
    spread = yaw_spread(yaws)
    narrow = spread < NARROW_YAW_STD
    out = []
    if narrow and not config.discriminator.camera_cond:
        out.append(PreflightWarning(
            "d_pose_cond",
            f"posed front-facing data (yaw spread {_deg(spread)}) but D pose conditioning is off: the "
            f"geometry can come out flat (EpiGRAF #12); set discriminator.camera_cond=true"))
    if narrow and not config.model.mapping.camera_cond:
        out.append(PreflightWarning(
            "g_pose_cond",
            f"narrow FFHQ-like yaw spread ({_deg(spread)}) and no generator pose conditioning: pose-"
            f"dependent looks get baked into the geometry; set model.mapping.camera_cond=true"))
    centre = yaw_center(yaws)
    if yaw_off_centre(yaws):           # the rule trigan dataset check warns by too
        out.append(PreflightWarning(
            "yaw_centre",
            f"yaw is not zero-centred (mean {_deg(centre)}; mirroring then makes two humps): re-import the "
            f"poses with `trigan dataset poses SRC --center --out {facts.path}`"))
    return out


def _gamma_warning(config: Config) -> List[PreflightWarning]:
    patch, gamma = config.discriminator.patch_resolution, config.training.gamma
    if patch == GAMMA_PATCH or gamma is None or gamma != DEFAULT_GAMMA:
        return []
    return [PreflightWarning(
        "gamma_patch",
        f"patch size {patch} with the default gamma {gamma:g} (tuned for {GAMMA_PATCH}^2 patches): re-tune "
        f"training.gamma for this patch size, e.g. try training.gamma={gamma * (patch / GAMMA_PATCH) ** 2:g} "
        f"and neighbours")]


def _resolution_warning(config: Config, facts: DatasetFacts) -> List[PreflightWarning]:
    planes = config.model.triplane.resolution
    if facts.resolution <= planes:
        return []
    return [PreflightWarning(
        "resolution",
        f"the images are {facts.resolution}^2 but the tri-planes only {planes}^2: they cannot hold that "
        f"detail; set model.triplane.resolution={facts.resolution} or shrink the data with "
        f"`trigan dataset resize ... --resolution {planes}`")]


def _label_warnings(config: Config, facts: DatasetFacts) -> List[PreflightWarning]:
    name = Path(facts.path).name
    if facts.has_labels and not config.training.use_labels:
        return [PreflightWarning(
            "labels_unused",
            f"{name} has labels ({facts.num_classes} classes) but training.use_labels=false: they are ignored "
            f"and the model comes out unconditional; drop that override")]
    if not facts.has_labels and config.model.c_dim > 0:
        return [PreflightWarning(
            "labels_missing",
            f"the model is class-conditional (model.c_dim={config.model.c_dim}) but {name} has no labels: it "
            f"trains unconditional; add labels to dataset.json or set model.c_dim=0")]
    return []


def strict_error(warnings: List[PreflightWarning]) -> str:
    """The one-line summary `--strict` ends with (the warnings themselves are printed above it)."""
    codes = ", ".join(w.code for w in warnings)
    return (f"{len(warnings)} pre-flight warning(s) with --strict ({codes}): nothing started; fix them, "
            f"or drop --strict to train anyway")


__all__ = ["PreflightWarning", "DatasetFacts", "dataset_facts", "preflight", "yaw_spread", "strict_error", "NARROW_YAW_STD",
           "DEFAULT_GAMMA", "GAMMA_PATCH"]
