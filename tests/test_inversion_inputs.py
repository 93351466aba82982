"""training/inversion_inputs.py: target images (crop, resize, masks, keying, hostile files) and
the camera helpers (--camera, --pose-from dataset.json)."""

from __future__ import annotations

import json
import math
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import tiny_config
from trigan.core.cameras import Pose
from trigan.core.generator import Generator
from trigan.training.dataset import MAX_IMAGE_PIXELS
from trigan.training.inversion_inputs import (
    InversionError,
    load_target,
    model_backdrop,
    parse_camera_spec,
    pose_from_dataset,
)

RED, GREEN, BLUE, YELLOW = (220, 30, 30), (30, 200, 40), (20, 40, 210), (230, 220, 20)


def _save(array: np.ndarray, path):
    Image.fromarray(array).save(path)
    return path


def _unit(rgb) -> torch.Tensor:
    """A uint8 colour on the [-1, 1] scale, [3, 1, 1]."""
    return torch.tensor(rgb, dtype=torch.float32).view(3, 1, 1) / 127.5 - 1


def _one_line_naming(info, path) -> str:
    message = str(info.value)
    assert "\n" not in message and str(path) in message, message
    return message


# --------------------------------------------------------------------------------------------------
# Geometry

def test_centre_crop_at_scale_one_is_exact(tmp_path):
    # 61 x 40: the centred square starts at column (61 - 40) // 2 = 10
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(40, 61, 3), dtype=np.uint8)
    path = _save(pixels, tmp_path / "photo.png")
    target = load_target(path, 40, key="off")
    expected = torch.from_numpy(pixels[:, 10:50].transpose(2, 0, 1).astype(np.float32)) / 127.5 - 1
    assert target.name == "photo" and target.source_size == (61, 40) and target.mask is None
    assert target.image.shape == (3, 40, 40)
    assert torch.allclose(target.image, expected, atol=1.01 / 127.5)   # one uint8 step of rounding


def test_exif_orientation_is_applied(tmp_path):
    # stored 30 wide x 20 high, left half red; EXIF orientation 6 says "rotate 90 degrees clockwise
    # to display", so the photo is 20 x 30 with red on top
    pixels = np.zeros((20, 30, 3), dtype=np.uint8)
    pixels[:, :15] = RED
    pixels[:, 15:] = BLUE
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    Image.fromarray(pixels).save(path, exif=exif, quality=95)
    target = load_target(path, 20, key="off")
    assert target.source_size == (20, 30)
    assert torch.allclose(target.image[:, 2, 10], _unit(RED)[:, 0, 0], atol=0.1)
    assert torch.allclose(target.image[:, 17, 10], _unit(BLUE)[:, 0, 0], atol=0.1)


def _nearest(image: torch.Tensor, colours) -> np.ndarray:
    """Index of the nearest of `colours` for every pixel of row 8."""
    refs = torch.stack([_unit(c)[:, 0, 0] for c in colours])              # [K, 3]
    row = image[:, 8, :].T                                                # [W, 3]
    return torch.cdist(row, refs).argmin(dim=1).numpy()


def test_crop_and_no_crop_resize_keep_the_pattern(tmp_path):
    # four vertical stripes of 20 columns: A B C D; the centred square is B C
    stripes = np.zeros((40, 80, 3), dtype=np.uint8)
    for k, colour in enumerate((RED, GREEN, BLUE, YELLOW)):
        stripes[:, 20 * k:20 * (k + 1)] = colour
    path = _save(stripes, tmp_path / "stripes.png")
    cropped = load_target(path, 16, key="off")
    assert list(_nearest(cropped.image, (RED, GREEN, BLUE, YELLOW))) == [1] * 8 + [2] * 8
    whole = load_target(path, 16, crop=False, key="off")     # squashed: each stripe 4 columns
    assert list(_nearest(whole.image, (RED, GREEN, BLUE, YELLOW))) == [0] * 4 + [1] * 4 + [2] * 4 + [3] * 4
    # an antialiased downsample keeps the mean colour (Lanczos weights sum to one)
    mean = whole.image.mean(dim=(1, 2))
    expected = torch.stack([_unit(c)[:, 0, 0] for c in (RED, GREEN, BLUE, YELLOW)]).mean(dim=0)
    assert torch.allclose(mean, expected, atol=0.02)


def test_modes_read_as_rgb(tmp_path):
    grey = np.full((12, 12), 200, dtype=np.uint8)
    Image.fromarray(grey, "L").save(tmp_path / "grey.png")
    sixteen = Image.fromarray(np.full((12, 12), 200 * 257, dtype=np.uint16))     # mode I;16
    sixteen.save(tmp_path / "sixteen.png")
    Image.fromarray(np.full((12, 12, 3), 200, dtype=np.uint8)).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=100)
    for name in ("grey.png", "sixteen.png", "cmyk.jpg"):
        target = load_target(tmp_path / name, 6, key="off")
        assert target.image.shape == (3, 6, 6)
        assert torch.allclose(target.image, torch.full((3, 6, 6), 200 / 127.5 - 1), atol=3 / 127.5), name


def test_every_listed_format_reads(tmp_path):
    # each format this Pillow can write reads back as the same picture (a format name Pillow lacks
    # must not stop the formats after it from being tried)
    rng = np.random.default_rng(0)
    pattern = np.kron(rng.integers(0, 256, (3, 3, 3), dtype=np.uint8), np.ones((4, 4, 1), dtype=np.uint8))
    written = 0
    for ext, options in ((".png", {}), (".bmp", {}), (".tif", {}), (".ppm", {}), (".tga", {}),
                         (".webp", {"lossless": True})):
        try:
            Image.fromarray(pattern).save(tmp_path / f"p{ext}", **options)
        except (KeyError, OSError):          # this Pillow cannot write it (e.g. no WebP codec)
            continue
        written += 1
        target = load_target(tmp_path / f"p{ext}", 12, key="off")
        expected = torch.from_numpy(pattern).permute(2, 0, 1).float() / 127.5 - 1
        assert torch.allclose(target.image, expected, atol=1e-6), ext
    assert written >= 4


# --------------------------------------------------------------------------------------------------
# Masks

def _rgba_square(tmp_path):
    rgba = np.zeros((32, 32, 4), dtype=np.uint8)
    rgba[..., :3] = GREEN                  # colour under transparent pixels: must not show
    rgba[8:24, 8:24, :3] = RED
    rgba[8:24, 8:24, 3] = 255
    return _save(rgba, tmp_path / "cutout.png"), rgba


def test_rgba_alpha_becomes_the_mask_and_is_composited(tmp_path):
    path, rgba = _rgba_square(tmp_path)
    inside = (slice(None), slice(8, 24), slice(8, 24))
    for backdrop, outside in ((1.0, 1.0), (0.0, 0.0), (None, 1.0)):   # None: on white, as datasets do
        target = load_target(path, 32, backdrop=backdrop)
        assert target.mask_source == "file"
        assert torch.equal(target.mask, torch.from_numpy(rgba[None, :, :, 3] / 255.0).float())
        assert torch.allclose(target.image[inside], _unit(RED).expand(3, 16, 16), atol=1e-6)
        background = target.image[:, :8, :]
        assert torch.allclose(background, torch.full_like(background, outside), atol=1e-6), backdrop
    # a fully opaque alpha is no mask: keying off leaves none
    opaque = rgba.copy()
    opaque[..., 3] = 255
    assert load_target(_save(opaque, tmp_path / "opaque.png"), 32, key="off").mask is None


def test_mask_file_is_cropped_with_the_image(tmp_path):
    pixels = np.full((20, 30, 3), 90, dtype=np.uint8)
    mask = np.zeros((20, 30), dtype=np.uint8)
    mask[5:15, 10:20] = 255
    mask[5:15, 20:25] = 128                 # soft weights stay soft
    path = _save(pixels, tmp_path / "img.jpg")
    mask_path = tmp_path / "img_mask.png"
    Image.fromarray(mask, "L").save(mask_path)
    target = load_target(path, 20, mask_path=mask_path, backdrop=1.0)
    assert target.mask_source == "file"
    assert torch.allclose(target.mask[0], torch.from_numpy(mask[:, 5:25] / 255.0).float(), atol=1e-6)
    # composited over the white backdrop by the mask: grey where 1, white where 0, between for 128
    assert torch.allclose(target.image[:, 0, 0], torch.ones(3), atol=1e-6)
    assert float(target.image[0, 10, 10]) == pytest.approx(90 / 127.5 - 1, abs=3 / 127.5)   # JPEG
    w = 128 / 255
    assert float(target.image[0, 10, 17]) == pytest.approx(w * (90 / 127.5 - 1) + (1 - w), abs=3 / 127.5)


def test_bad_masks_are_one_line_errors_naming_the_file(tmp_path):
    path = _save(np.full((20, 30, 3), 90, dtype=np.uint8), tmp_path / "img.png")
    wrong = tmp_path / "wrong_size.png"
    Image.fromarray(np.full((20, 20), 255, dtype=np.uint8), "L").save(wrong)
    with pytest.raises(InversionError) as info:
        load_target(path, 16, mask_path=wrong)
    assert "20x20" in _one_line_naming(info, wrong) and "30x20" in str(info.value)
    empty = tmp_path / "empty.png"
    Image.fromarray(np.zeros((20, 30), dtype=np.uint8), "L").save(empty)
    with pytest.raises(InversionError) as info:
        load_target(path, 16, mask_path=empty)
    assert "empty" in _one_line_naming(info, empty)
    # white only where the crop cuts it away: empty after cropping
    edge = np.zeros((20, 30), dtype=np.uint8)
    edge[:, :3] = 255
    Image.fromarray(edge, "L").save(tmp_path / "edge.png")
    with pytest.raises(InversionError) as info:
        load_target(path, 16, mask_path=tmp_path / "edge.png")
    _one_line_naming(info, tmp_path / "edge.png")
    full = tmp_path / "full.png"
    Image.fromarray(np.full((20, 30), 255, dtype=np.uint8), "L").save(full)
    with pytest.raises(InversionError) as info:
        load_target(path, 16, mask_path=full)
    assert "whole image" in _one_line_naming(info, full)
    with pytest.raises(InversionError) as info:
        load_target(path, 16, mask_path=tmp_path / "absent.png")
    _one_line_naming(info, tmp_path / "absent.png")


# --------------------------------------------------------------------------------------------------
# Keying

def _ring_on(background) -> np.ndarray:
    """A red ring (outer 8..24, inner 12..20) around a hole of the background colour."""
    pixels = np.zeros((32, 32, 3), dtype=np.uint8)
    pixels[:] = background
    pixels[8:24, 8:24] = RED
    pixels[12:20, 12:20] = background
    return pixels


@pytest.mark.parametrize("key, colour, backdrop", [("white", (255, 255, 255), 1.0),
                                                   ("auto", (252, 253, 255), 1.0),    # near white
                                                   ("black", (0, 0, 0), 1.0)])
def test_keying_removes_the_border_connected_background_only(tmp_path, key, colour, backdrop):
    path = _save(_ring_on(colour), tmp_path / "ring.png")
    target = load_target(path, 32, key=key, backdrop=backdrop)
    expected = torch.zeros(32, 32)
    expected[8:24, 8:24] = 1                 # the hole is not connected to the border: it stays
    assert target.mask_source == "key"
    assert torch.equal(target.mask[0], expected)
    # the keyed background is replaced by the backdrop itself
    assert torch.allclose(target.image[:, :8], torch.full((3, 8, 32), backdrop), atol=1e-6)


def test_keying_without_a_backdrop_or_a_background(tmp_path):
    ring = _save(_ring_on((255, 255, 255)), tmp_path / "ring.png")
    assert load_target(ring, 32, key="auto", backdrop=None).mask is None     # no fixed backdrop
    green = _save(np.full((16, 16, 3), GREEN, dtype=np.uint8), tmp_path / "green.png")
    assert load_target(green, 16, key="auto", backdrop=1.0).mask is None     # nothing white: no mask
    with pytest.raises(InversionError) as info:
        load_target(green, 16, key="white", backdrop=1.0)
    _one_line_naming(info, green)
    white = _save(np.full((16, 16, 3), 255, dtype=np.uint8), tmp_path / "white.png")
    with pytest.raises(InversionError) as info:
        load_target(white, 16, key="white", backdrop=1.0)
    _one_line_naming(info, white)
    with pytest.raises(InversionError):
        load_target(ring, 16, key="purple")


# --------------------------------------------------------------------------------------------------
# Hostile image files

def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height 8-bit RGB pixels, with a tiny (wrong) body."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_bad_image_files_are_one_line_errors_naming_the_file(tmp_path):
    files = {}
    files["garbage.png"] = b"this is not an image"
    good = tmp_path / "good.png"
    _save(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8), good)
    files["truncated.png"] = good.read_bytes()[: len(good.read_bytes()) // 2]
    files["bomb.png"] = _png_claiming(100_000, 100_000)        # Pillow itself refuses this one
    side = int(math.isqrt(MAX_IMAGE_PIXELS)) + 16                # over our limit, under Pillow's
    files["large.png"] = _png_claiming(side, side)
    files["empty.png"] = b""
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(InversionError) as info:
            load_target(tmp_path / name, 16)
        message = _one_line_naming(info, tmp_path / name)
        if name in ("bomb.png", "large.png"):
            assert "limit" in message
    with pytest.raises(InversionError) as info:
        load_target(tmp_path, 16)                                  # a folder
    _one_line_naming(info, tmp_path)
    with pytest.raises(InversionError):
        load_target(good, 0)


# --------------------------------------------------------------------------------------------------
# Model backdrop and cameras

def test_model_backdrop():
    assert model_backdrop(Generator(tiny_config().model)) == 1.0          # demo: white, open far end
    assert model_backdrop(Generator(tiny_config(**{"model.render.white_background": False}).model)) == 0.0
    assert model_backdrop(Generator(tiny_config(**{"model.render.opaque_far_end": True}).model)) is None
    assert model_backdrop(Generator(tiny_config(**{"model.background.type": "sphere"}).model)) is None


def _write_dataset_json(folder, angles) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "dataset.json"
    path.write_text(json.dumps({"camera_angles": angles, "labels": {k: 0 for k in angles}}))
    return path


def test_pose_from_dataset(tmp_path):
    G = Generator(tiny_config().model)
    start = Pose.for_generator(G)
    path = _write_dataset_json(tmp_path / "cars", {"cars/img0.png": [0.5, 1.2, 0.0],
                                                  "sub/img1.png": [-2.0, 1.6, 0.1]})
    pose = pose_from_dataset(path, "img0.png", G)
    assert (pose.yaw, pose.pitch) == (0.5, 1.2)
    assert (pose.radius, pose.fov, pose.look_at) == (start.radius, start.fov, start.look_at)
    # by its path inside the dataset, by a path elsewhere with the same stem, from the folder
    assert pose_from_dataset(path, "sub/img1.jpg", G).yaw == -2.0
    assert pose_from_dataset(tmp_path / "cars", "/photos/elsewhere/img1.png", G).pitch == 1.6
    # dataset angles are trigan's convention for every model (docs/datasets.md): a 3DGP model's
    # yaw_offset is applied inside its networks, not to the camera
    G3 = Generator(tiny_config(**{"model.camera.yaw_offset": math.pi / 2}).model)
    assert pose_from_dataset(path, "img0", G3).yaw == 0.5


def test_pose_from_dataset_errors_name_the_file(tmp_path):
    G = Generator(tiny_config().model)
    cases = {
        "not_json": "{camera_angles: oops",
        "a_list": "[1, 2, 3]",
        "no_angles": json.dumps({"labels": {"a.png": 0}}),
        "bad_value": json.dumps({"camera_angles": {"a.png": [0.1, "up", 0]}}),
        "pitch_range": json.dumps({"camera_angles": {"a.png": [0.1, 4.0, 0]}}),
        "missing": json.dumps({"camera_angles": {"b.png": [0.1, 1.0, 0]}}),
        "ambiguous": json.dumps({"camera_angles": {"x/a.png": [0.1, 1.0, 0], "y/a.png": [0.2, 1.0, 0]}}),
    }
    for name, text in cases.items():
        path = tmp_path / name / "dataset.json"
        path.parent.mkdir()
        path.write_text(text)
        with pytest.raises(InversionError) as info:
            pose_from_dataset(path, "a.png", G)
        _one_line_naming(info, path)
    with pytest.raises(InversionError) as info:
        pose_from_dataset(tmp_path / "absent.json", "a.png", G)
    _one_line_naming(info, tmp_path / "absent.json")


def test_parse_camera_spec():
    G = Generator(tiny_config().model)
    start = Pose.for_generator(G)
    pose = parse_camera_spec("yaw=pi/4,pitch=1.2,fov=20", G)
    assert pose.yaw == pytest.approx(math.pi / 4) and pose.pitch == 1.2 and pose.fov == 20
    assert pose.radius == start.radius
    for bad in ("yaw=abc", "roll=1", "fov=200", ""):
        with pytest.raises(InversionError) as info:
            parse_camera_spec(bad, G)
        assert "\n" not in str(info.value)
