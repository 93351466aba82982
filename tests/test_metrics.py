"""Metrics: FID and KID against independent references (scipy, brute force, closed forms), feature
statistics against numpy, the feature-network loader, dataset caching and generator sampling."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from torch import nn

import trigan.core.metrics as metrics
from conftest import tiny_config
from trigan.core.cameras import Camera
from trigan.core.generator import Generator
from trigan.core.metrics import (
    INCEPTION_HELP,
    METRICS,
    FeatureExtractor,
    FeatureStats,
    MetricError,
    compute_fid,
    compute_kid,
    compute_metric,
    dataset_features,
    frechet_distance,
    generator_features,
    kernel_inception_distance,
    parse_metric_names,
)

# The stand-in detectors are TorchScript, which torch >= 2.9 flags as deprecated (it still works).
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*is deprecated:DeprecationWarning")


# ---------------------------------------------------------------------------------------------------
# Independent references

def scipy_frechet(mu1, s1, mu2, s2) -> float:
    root = scipy.linalg.sqrtm(s1 @ s2)
    root = root[0] if isinstance(root, tuple) else root
    return float(np.real(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(root)))


def brute_force_mmd2(x, y) -> float:
    """Unbiased MMD^2 with the cubic polynomial kernel, pair by pair."""
    d = x.shape[1]
    k = lambda a, b: (float(np.dot(a, b)) / d + 1) ** 3
    m, n = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kyy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kxy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return kxx + kyy - 2 * kxy


def gaussian_stats(rng, n, f, shift=0.0, scale=1.0):
    a = rng.normal(size=(n, f)) @ rng.normal(size=(f, f)) * scale + shift
    return a.mean(axis=0), np.cov(a, rowvar=False)


# ---------------------------------------------------------------------------------------------------
# Frechet distance

def test_frechet_matches_scipy_full_rank():
    rng = np.random.default_rng(1)
    mu1, s1 = gaussian_stats(rng, 400, 24)
    mu2, s2 = gaussian_stats(rng, 400, 24, shift=0.3, scale=1.4)
    ours = frechet_distance(mu1, s1, mu2, s2)
    assert ours == pytest.approx(scipy_frechet(mu1, s1, mu2, s2), rel=1e-6)
    assert isinstance(ours, float)


def test_frechet_zero_for_identical_stats():
    rng = np.random.default_rng(2)
    mu, s = gaussian_stats(rng, 300, 16)
    assert frechet_distance(mu, s, mu, s) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(mu, s, mu, s) >= 0.0


@pytest.mark.parametrize("m1,s1,m2,s2", [(0.0, 1.0, 2.0, 1.0), (1.5, 0.5, -0.5, 3.0), (0.0, 2.0, 0.0, 0.0)])
def test_frechet_one_dimensional_closed_form(m1, s1, m2, s2):
    expected = (m1 - m2) ** 2 + (s1 - s2) ** 2
    got = frechet_distance([m1], [[s1 ** 2]], [m2], [[s2 ** 2]])
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_frechet_singular_covariances_fewer_samples_than_features():
    rng = np.random.default_rng(3)
    f = 48
    a, b = rng.normal(size=(12, f)), rng.normal(size=(20, f)) * 1.5 + 0.1
    mu1, s1, mu2, s2 = a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)
    assert np.linalg.matrix_rank(s1) < f and np.linalg.matrix_rank(s2) < f
    ours = frechet_distance(mu1, s1, mu2, s2)
    assert math.isfinite(ours) and ours >= 0
    assert ours == pytest.approx(scipy_frechet(mu1, s1, mu2, s2), rel=1e-6)
    # A rank-one covariance against itself: exactly zero, never a tiny negative.
    v = rng.normal(size=(f, 1))
    assert frechet_distance(np.zeros(f), v @ v.T, np.zeros(f), v @ v.T) >= 0.0


def test_frechet_rejects_mismatched_shapes():
    with pytest.raises(MetricError, match="do not match"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


# ---------------------------------------------------------------------------------------------------
# FeatureStats

def test_feature_stats_match_numpy_in_chunks():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(157, 9)) * 3 + 50.0   # a large common offset: the update must stay exact
    stats = FeatureStats()
    for chunk in np.array_split(x, [1, 2, 40, 41, 100]):
        stats.append(torch.from_numpy(chunk) if len(chunk) % 2 else chunk)
    mu, cov = stats.mean_cov()
    assert stats.num_items == 157
    np.testing.assert_allclose(mu, x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(cov, np.cov(x, rowvar=False), rtol=1e-9, atol=1e-10)


def test_feature_stats_max_items_stops_exactly():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(50, 4))
    stats = FeatureStats(capture_all=True, max_items=23)
    for chunk in np.array_split(x, 5):   # 10 rows each: the third chunk crosses the cap
        stats.append(chunk)
    assert stats.num_items == 23 and stats.is_full()
    np.testing.assert_allclose(stats.mean_cov()[0], x[:23].mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats.all_features(), x[:23].astype(np.float32))
    assert not FeatureStats(max_items=24).is_full()


def test_feature_stats_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(6)
    stats = FeatureStats(capture_all=True, max_items=100)
    stats.append(rng.normal(size=(30, 5)))
    stats.append(rng.normal(size=(7, 5)))
    path = tmp_path / "sub" / "stats.npz"
    stats.save(path)
    assert [p.name for p in path.parent.iterdir()] == ["stats.npz"]   # no temporary left behind
    back = FeatureStats.load(path)
    assert (back.num_items, back.max_items, back.capture_all, back.feature_dim) == (37, 100, True, 5)
    for a, b in zip(stats.mean_cov(), back.mean_cov(), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(stats.all_features(), back.all_features())
    # Appending after a load continues the same statistics.
    more = rng.normal(size=(4, 5))
    stats.append(more)
    back.append(more)
    np.testing.assert_allclose(stats.mean_cov()[1], back.mean_cov()[1], rtol=1e-12)


def test_feature_stats_load_rejects_foreign_files(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"definitely not an npz")
    with pytest.raises(MetricError, match="bad.npz"):
        FeatureStats.load(bad)
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(MetricError, match="other.npz"):
        FeatureStats.load(tmp_path / "other.npz")


def test_feature_stats_errors():
    with pytest.raises(MetricError, match="at least 2"):
        FeatureStats().mean_cov()
    stats = FeatureStats()
    stats.append(np.zeros((3, 2)))
    with pytest.raises(MetricError, match="capture_all"):
        stats.all_features()


# ---------------------------------------------------------------------------------------------------
# KID

def test_kid_equals_brute_force_unbiased_mmd_on_one_full_subset():
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(25, 6)), rng.normal(size=(25, 6)) + 0.4
    kid = kernel_inception_distance(x, y, num_subsets=1, max_subset_size=1000)
    assert kid == pytest.approx(brute_force_mmd2(x, y), rel=1e-9)


def test_kid_near_zero_for_same_distribution_positive_for_shifted():
    rng = np.random.default_rng(8)
    f = 32
    a, b = rng.normal(size=(600, f)), rng.normal(size=(600, f))
    shifted = rng.normal(size=(600, f)) + 0.5
    same = kernel_inception_distance(a, b, num_subsets=20, max_subset_size=200)
    diff = kernel_inception_distance(a, shifted, num_subsets=20, max_subset_size=200)
    assert abs(same) < 0.01
    assert diff > 0.1 and diff > 20 * abs(same)


def test_kid_deterministic_for_a_seed_and_needs_captured_features():
    rng = np.random.default_rng(9)
    a, b = rng.normal(size=(80, 4)), rng.normal(size=(90, 4)) + 0.2
    k = lambda seed: kernel_inception_distance(a, b, num_subsets=5, max_subset_size=30, seed=seed)
    assert k(3) == k(3) and k(3) != k(4)
    real, fake = FeatureStats(capture_all=True), FeatureStats(capture_all=False)
    real.append(a)
    fake.append(b)
    with pytest.raises(MetricError, match="capture_all"):
        compute_kid(real, fake)
    fake_all = FeatureStats(capture_all=True)
    fake_all.append(b)
    assert compute_kid(real, fake_all, num_subsets=5, max_subset_size=30, seed=3) == pytest.approx(k(3), rel=1e-6)


# ---------------------------------------------------------------------------------------------------
# Feature networks (small TorchScript stand-ins for the Inception detector)

class WithFlag(nn.Module):
    """Takes uint8 images like the Inception detector; return_features picks features over logits."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.head = nn.Linear(12, 2)

    def forward(self, x, return_features: bool = False):
        x = F.interpolate(x.to(torch.float32) / 127.5 - 1, size=(8, 8), mode="area")
        y = torch.tanh(self.conv(x))
        feats = torch.cat([y.mean(dim=(2, 3)), y.amax(dim=(2, 3))], dim=1)
        if return_features:
            return feats
        return self.head(feats)


class Plain(nn.Module):
    def forward(self, x):
        x = x.to(torch.float32)
        return torch.stack([x.mean(dim=(1, 2, 3)), x.std(dim=(1, 2, 3)), x[:, 0].mean(dim=(1, 2))], dim=1)


def save_script(module, path):
    torch.manual_seed(0)
    torch.jit.save(torch.jit.script(module), str(path))
    return path


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    torch.manual_seed(0)
    return FeatureExtractor.load(save_script(WithFlag(), tmp_path_factory.mktemp("nets") / "standin.pt"))


def test_extractor_loads_both_calling_conventions(tmp_path):
    flagged = FeatureExtractor.load(save_script(WithFlag(), tmp_path / "flag.pt"))
    plain = FeatureExtractor.load(save_script(Plain(), tmp_path / "plain.pt"))
    images = torch.randint(0, 256, (5, 3, 20, 20), dtype=torch.uint8)
    f1, f2 = flagged(images), plain(images)
    assert flagged.uses_return_features and not plain.uses_return_features
    assert f1.shape == (5, 12) and flagged.feature_dim == 12 and f1.dtype == torch.float64
    assert f2.shape == (5, 3) and plain.feature_dim == 3 and f2.device.type == "cpu"
    assert flagged.path == str(tmp_path / "flag.pt")
    # The features are the network's, not its logits.
    expected = flagged.net(images, return_features=True).double()
    torch.testing.assert_close(f1, expected)
    torch.testing.assert_close(f2[:, 0], images.double().mean(dim=(1, 2, 3)), rtol=1e-5, atol=1e-4)
    # float 0..255 input works too and gives the same features
    torch.testing.assert_close(flagged(images.float()), f1)


def test_extractor_missing_file_points_to_inception(tmp_path):
    with pytest.raises(MetricError) as e:
        FeatureExtractor.load(tmp_path / "nope.pt")
    assert "--inception" in str(e.value) and "nope.pt" in str(e.value) and "\n" not in str(e.value)
    assert "--inception" in INCEPTION_HELP and "inception-2015-12-05" in INCEPTION_HELP


def test_extractor_rejects_non_torchscript_files(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    pickled = tmp_path / "net.pkl"
    pickled.write_bytes(pickle.dumps({"a": 1}))
    state = tmp_path / "state.pt"
    torch.save({"w": torch.zeros(2)}, state)
    for path in (text, pickled, state):
        with pytest.raises(MetricError) as e:
            FeatureExtractor.load(path)
        assert str(path) in str(e.value) and "TorchScript" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(MetricError, match="folder"):
        FeatureExtractor.load(tmp_path)


# ---------------------------------------------------------------------------------------------------
# Dataset features and the cache

class ListDataset(torch.utils.data.Dataset):
    def __init__(self, images, labels=None):
        self.images = images
        self.labels = labels

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        item = {"image": self.images[i]}
        if self.labels is not None:
            item["label"] = self.labels[i]
        return item


class Counting:
    """Wraps an extractor and counts the images it is asked to embed."""

    def __init__(self, inner):
        self.inner, self.path, self.calls = inner, inner.path, 0

    def __call__(self, images):
        self.calls += len(images)
        return self.inner(images)


def test_dataset_features_match_by_hand_and_cache(tmp_path, stand_in):
    gen = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, (3, 12, 12), generator=gen, dtype=torch.uint8) for _ in range(23)]
    data = ListDataset(images, labels=list(range(23)))
    feats = stand_in(torch.stack(images[:17])).numpy()

    seen = []
    stats = dataset_features(data, stand_in, max_items=17, batch_size=5, progress=lambda d, t: seen.append((d, t)))
    assert stats.num_items == 17 and seen[-1] == (17, 17) and [d for d, _ in seen] == [5, 10, 15, 17]
    np.testing.assert_allclose(stats.mean_cov()[0], feats.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(stats.mean_cov()[1], np.cov(feats, rowvar=False), rtol=1e-8, atol=1e-12)

    counting = Counting(stand_in)
    cache = tmp_path / "cache"
    first = dataset_features(data, counting, max_items=17, batch_size=8, cache_dir=cache, cache_key="toy")
    assert counting.calls == 17 and len(list(cache.glob("*.npz"))) == 1
    again = dataset_features(data, counting, max_items=17, batch_size=8, cache_dir=cache, cache_key="toy")
    assert counting.calls == 17   # served from the cache
    np.testing.assert_array_equal(again.mean_cov()[1], first.mean_cov()[1])
    dataset_features(data, counting, max_items=None, batch_size=8, cache_dir=cache, cache_key="toy")
    assert counting.calls == 17 + 23 and len(list(cache.glob("*.npz"))) == 2   # max_items is part of the key
    dataset_features(data, counting, max_items=17, batch_size=8, cache_dir=cache, cache_key="other")
    assert counting.calls == 17 + 23 + 17   # and so is the key


def test_dataset_cache_invalidated_by_a_new_feature_network_file(tmp_path, stand_in):
    gen = torch.Generator().manual_seed(1)
    data = ListDataset([torch.randint(0, 256, (3, 8, 8), generator=gen, dtype=torch.uint8) for _ in range(6)])
    net_path = save_script(Plain(), tmp_path / "net.pt")
    counting = Counting(FeatureExtractor.load(net_path))
    dataset_features(data, counting, None, cache_dir=tmp_path / "c")
    save_script(WithFlag(), net_path)   # same path, other file
    counting2 = Counting(FeatureExtractor.load(net_path))
    stats = dataset_features(data, counting2, None, cache_dir=tmp_path / "c")
    assert counting2.calls == 6 and stats.feature_dim == 12


# ---------------------------------------------------------------------------------------------------
# Generator features

@pytest.fixture(scope="module")
def tiny_G():
    torch.manual_seed(0)
    return Generator(tiny_config().model)


def test_generator_features_deterministic_and_seeded(tiny_G, stand_in):
    G = tiny_G
    assert G.c_dim == 4
    G.train()
    a = generator_features(G, stand_in, num=10, batch_size=4, seed=0, capture_all=True)
    assert G.training   # mode restored
    b = generator_features(G, stand_in, num=10, batch_size=4, seed=0, capture_all=True)
    c = generator_features(G, stand_in, num=10, batch_size=4, seed=1, capture_all=True)
    assert a.num_items == 10 and a.all_features().shape == (10, stand_in.feature_dim)
    np.testing.assert_array_equal(a.all_features(), b.all_features())
    assert not np.allclose(a.all_features(), c.all_features())
    assert generator_features(G, stand_in, num=7, batch_size=3).num_items == 7


def test_generator_features_custom_conditioning(tiny_G, stand_in):
    G = tiny_G
    calls = []
    seen_images = []

    def conditioning(n, generator):
        calls.append(n)
        assert isinstance(generator, torch.Generator)
        c = torch.zeros(n, G.c_dim)
        c[:, 2] = 1
        yaw = torch.rand(n, generator=generator) * 2 * math.pi
        return c, Camera.from_angles(yaw, math.pi / 2, radius=G.cfg.camera.radius, fov=G.cfg.camera.fov)

    class Spy:
        path = stand_in.path

        def __call__(self, images):
            seen_images.append(images)
            return stand_in(images)

    stats = generator_features(G, Spy(), num=6, batch_size=4, conditioning=conditioning, resolution=12)
    assert calls == [4, 2] and stats.num_items == 6
    # The callable draws from the torch.Generator seeded by `seed` (right after the batch's z).
    def first_draw(seed):
        drawn = []

        def record(n, generator):
            drawn.append(generator.initial_seed())
            return conditioning(n, generator)
        generator_features(G, stand_in, num=2, batch_size=2, conditioning=record, seed=seed, resolution=4)
        return drawn
    assert first_draw(0) == [0] and first_draw(3) == [3]
    assert seen_images[0].dtype == torch.uint8 and seen_images[0].shape == (4, 3, 12, 12)
    # The images are exactly what G renders for that seed's z, labels and cameras.
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(4, G.z_dim, generator=gen)
    c, cam = conditioning(4, gen)
    with torch.no_grad():
        rgb = G.render(G.field_from_ws(G.map_latents(z, c, camera_angles=cam.angles)), cam, 12,
                       deterministic=True, seed=0).rgb
    torch.testing.assert_close(seen_images[0], (rgb * 127.5 + 128).clamp(0, 255).to(torch.uint8))


def test_fid_sanity_generator_vs_itself_and_vs_white(tiny_G, stand_in):
    G = tiny_G
    res = 16
    fake_a = generator_features(G, stand_in, num=48, batch_size=16, seed=0, resolution=res)
    fake_b = generator_features(G, stand_in, num=48, batch_size=16, seed=1, resolution=res)
    white = ListDataset([torch.full((3, res, res), 255, dtype=torch.uint8)] * 48)
    real_white = dataset_features(white, stand_in, None, batch_size=16)
    self_fid, white_fid = compute_fid(fake_b, fake_a), compute_fid(real_white, fake_a)
    assert 0 <= self_fid < white_fid


def test_compute_metric_end_to_end(tiny_G, stand_in, tmp_path, monkeypatch):
    monkeypatch.setitem(metrics.METRICS, "fid2k_full", dict(METRICS["fid2k_full"], num_fake=12))
    gen = torch.Generator().manual_seed(2)
    data = ListDataset([torch.randint(0, 256, (3, 16, 16), generator=gen, dtype=torch.uint8) for _ in range(10)])
    progress = []
    value = compute_metric("fid2k", tiny_G, data, stand_in, cache_dir=tmp_path, batch_size=6,
                           progress=lambda d, t: progress.append((d, t)))
    real = dataset_features(data, stand_in, None)
    fake = generator_features(tiny_G, stand_in, 12, batch_size=6)
    assert value == pytest.approx(compute_fid(real, fake), rel=1e-9)
    assert progress[-1] == (22, 22) and len(list(tmp_path.glob("*.npz"))) == 1


# ---------------------------------------------------------------------------------------------------
# Names

def test_parse_metric_names():
    assert parse_metric_names("fid2k_full, kid2k") == ["fid2k_full", "kid2k_full"]
    assert parse_metric_names(["FID50K_full", "fid50k_full"]) == ["fid50k_full"]
    assert parse_metric_names("fid2k") == ["fid2k_full"]
    assert parse_metric_names("") == [] and parse_metric_names(None) == []
    with pytest.raises(MetricError) as e:
        parse_metric_names("fid2k,fid3k")
    assert "fid3k" in str(e.value) and "fid50k_full" in str(e.value)
    assert METRICS["fid2k_full"] == dict(kind="fid", num_fake=2048, max_real=None)
    assert METRICS["fid50k_full"]["num_fake"] == 50000 and METRICS["fid50k_full"]["max_real"] is None
