"""training/perceptual.py: reading torchvision's VGG16 file, the perceptual and pixel/SSIM losses."""

from __future__ import annotations

import pytest
import torch

from trigan.training.inversion_inputs import InversionError
from trigan.training.perceptual import (
    VGG16_URL,
    PerceptualLoss,
    PixelSSIMLoss,
    load_vgg16,
    make_image_loss,
)

# torchvision's vgg16().features: conv layers at these indices (ReLUs and max-pools between them)
TORCHVISION_CONVS = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
CHANNELS = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
            (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]


def _torchvision_layout(seed: int = 0) -> dict:
    """A state dict shaped like vgg16-397923af.pth (features + a token classifier), seeded weights
    scaled like He initialisation so activations neither vanish nor explode through 13 layers."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for idx, (cin, cout) in zip(TORCHVISION_CONVS, CHANNELS, strict=True):
        state[f"features.{idx}.weight"] = torch.randn(cout, cin, 3, 3, generator=gen) * (2 / (9 * cin)) ** 0.5
        state[f"features.{idx}.bias"] = torch.randn(cout, generator=gen) * 0.01
    state["classifier.6.weight"] = torch.randn(10, 4, generator=gen)
    return state


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("vgg") / "vgg16-397923af.pth"
    torch.save(_torchvision_layout(), path)
    return path


@pytest.fixture(scope="module")
def vgg(vgg_file):
    return load_vgg16(vgg_file)


def _image(seed: int, shape=(1, 3, 32, 32)) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_load_vgg16_reads_torchvision_keys(vgg, vgg_file, tmp_path):
    state = _torchvision_layout()
    convs = vgg.convs()
    for conv, idx in zip(convs, TORCHVISION_CONVS, strict=True):
        assert torch.equal(conv.weight, state[f"features.{idx}.weight"])
        assert torch.equal(conv.bias, state[f"features.{idx}.bias"])
    assert not any(p.requires_grad for p in vgg.parameters())
    # the features Sequential's own state dict (no "features." prefix) reads the same
    bare = tmp_path / "bare.pth"
    torch.save({k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}, bare)
    assert torch.equal(load_vgg16(bare).convs()[12].weight, state["features.28.weight"])


def test_perceptual_loss_zero_for_equal_positive_for_different(vgg):
    loss = PerceptualLoss(vgg)
    y = _image(1)
    assert float(loss(y.clone(), y)) == pytest.approx(0.0, abs=1e-6)
    x = _image(2).requires_grad_(True)
    value = loss(x, y)
    assert 0 < float(value.detach()) <= 4   # squared distances of unit vectors
    value.backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all()) and float(x.grad.abs().sum()) > 0


def test_perceptual_loss_on_small_images_and_masks(vgg):
    loss = PerceptualLoss(vgg)
    assert [loss.upsample_factor(s, s) for s in (64, 32, 16, 9)] == [1, 1, 2, 4]
    x, y = _image(3, (3, 16, 16)), _image(4, (3, 16, 16))      # unbatched, upsampled to 32
    ones = torch.ones(1, 16, 16)
    assert float(loss(x, y, ones)) == pytest.approx(float(loss(x, y)), rel=1e-6)
    assert float(loss(x, y)) > 0


def test_vgg_file_errors_are_one_line_naming_the_file(vgg_file, tmp_path):
    cases = {}
    cases["missing"] = tmp_path / "nope.pth"
    state = _torchvision_layout()
    del state["features.28.weight"]
    cases["features.28.weight"] = tmp_path / "missing_key.pth"
    torch.save(state, cases["features.28.weight"])
    state = _torchvision_layout()
    state["features.5.weight"] = torch.zeros(128, 64, 5, 5)
    cases["shape"] = tmp_path / "wrong_shape.pth"
    torch.save(state, cases["shape"])
    cases["readable"] = tmp_path / "garbage.pth"
    cases["readable"].write_bytes(b"not a torch file at all")
    for expected, path in cases.items():
        with pytest.raises(InversionError) as info:
            load_vgg16(path)
        message = str(info.value)
        assert "\n" not in message and str(path) in message and VGG16_URL in message
        assert (expected in message) if expected != "missing" else ("no such file" in message)


def test_pixel_ssim_loss_zero_for_equal_and_masked_differences():
    loss = PixelSSIMLoss()
    x = _image(5, (1, 3, 16, 16))
    # zero in exact arithmetic; 1e-6 leaves room for a backend that sums channels in another order
    assert float(loss(x, x.clone())) == pytest.approx(0.0, abs=1e-6)
    y = x.clone()
    y[..., :, :5] = _image(6, (1, 3, 16, 5))          # differs only in the first 5 columns
    mask = torch.ones(1, 1, 16, 16)
    mask[..., :, :6] = 0                               # ... which the mask leaves out (and one more)
    assert float(loss(x, y, mask)) == pytest.approx(0.0, abs=1e-6)
    assert float(loss(x, y)) > 0
    assert float(loss(x, y, torch.ones(1, 16, 16))) == pytest.approx(float(loss(x, y)), rel=1e-6)
    xg = x.clone().requires_grad_(True)
    loss(xg, y).backward()
    assert bool(torch.isfinite(xg.grad).all()) and float(xg.grad.abs().sum()) > 0


def test_pixel_ssim_loss_of_constant_images():
    # constants stay constant at every scale: L1 |a - b| and SSIM's luminance term alone
    a, b = -0.5, 0.5
    la, lb = (a + 1) / 2, (b + 1) / 2
    expected = abs(a - b) + 1 - (2 * la * lb + 1e-4) / (la ** 2 + lb ** 2 + 1e-4)
    value = PixelSSIMLoss()(torch.full((3, 16, 16), a), torch.full((3, 16, 16), b))
    assert float(value) == pytest.approx(expected, abs=1e-5)     # float32 sums of 256 pixels


def test_make_image_loss(vgg_file):
    assert isinstance(make_image_loss(None, "cpu"), PixelSSIMLoss)
    combined = make_image_loss(str(vgg_file), "cpu")
    x, y = _image(7), _image(8)
    expected = float(PerceptualLoss(load_vgg16(vgg_file))(x, y)) + float(PixelSSIMLoss()(x, y))
    assert float(combined(x, y)) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(InversionError):
        make_image_loss(str(vgg_file) + ".missing", "cpu")
