"""Shared test set-up: deterministic seeds, small model configs, the fixture folder."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from trigan.training.config import load_config

REPO = Path(__file__).resolve().parents[1]


# Official EpiGRAF and 3DGP snapshots and upstream's outputs for them (tests/fixtures/README.md).
EPIGRAF_FIXTURES = REPO / "tests" / "fixtures" / "epigraf"
THREEDGP_FIXTURES = REPO / "tests" / "fixtures" / "3dgp"


def pytest_configure(config):
    config.addinivalue_line("markers", "gui: needs a display (CI runs these under Xvfb)")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
    # The portability runs (tests/portability/run.py) split torch's work over more threads than this
    # machine has cores; OMP_NUM_THREADS alone cannot ask for that.
    threads = os.environ.get("TRIGAN_TEST_THREADS")
    if threads:
        torch.set_num_threads(int(threads))


@pytest.fixture(autouse=True)
def _seed_everything():
    """Every test starts from the same random state whatever ran before it: torch's, numpy's and
    Python's global generators are seeded here, and tests that need streams of their own make
    seeded generators (torch.Generator, np.random.default_rng(seed))."""
    torch.manual_seed(0)
    np.random.seed(0)  # noqa: NPY002 - seeding the legacy global state is the point
    random.seed(0)
    yield


def tiny_config(**overrides):
    """The demo preset shrunk further so networks build and run in milliseconds."""
    base = ["model.img_resolution=16", "model.triplane.resolution=16", "model.triplane.channel_base=256",
            "model.triplane.channel_max=16", "model.triplane.feat_dim=8", "model.triplane.mlp_hidden=16",
            "model.mapping.w_dim=16", "model.mapping.z_dim=32", "model.render.num_steps=8"]
    return load_config("demo", base + [f"{k}={v}" for k, v in overrides.items()])


@pytest.fixture
def tiny_cfg():
    return tiny_config()
