"""inference.images (named apart from tests/serving/test_images.py, which pytest needs):
a Pillow image of any mode in, the same colour family out."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from conftest import lr_waves
from PIL import Image

from srgan_pipeline.imaging import imresize, to_rgb_array
from srgan_pipeline.inference import upscale, upscale_image
from srgan_pipeline.inference.images import upscale_any_mode
from srgan_pipeline.models import Generator

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def generator() -> Generator:
    torch.manual_seed(0)
    return Generator(scale=4, channels=8, num_blocks=2).eval()


def test_rgb_image(generator):
    lr = lr_waves(15, 20, seed=4)
    out = upscale_image(generator, Image.fromarray(lr), 4, tile=8)
    assert out.mode == "RGB" and out.size == (80, 60)
    assert np.array_equal(np.asarray(out), upscale(generator, lr, tile=8))


def test_rgba_keeps_a_bicubic_alpha_channel(generator):
    lr = lr_waves(15, 20, seed=5)
    alpha = np.random.default_rng(6).integers(0, 256, (15, 20), dtype=np.uint8)
    image = Image.fromarray(np.dstack([lr, alpha]), "RGBA")
    out = upscale_image(generator, image, 4)
    assert out.mode == "RGBA" and out.size == (80, 60)
    out = np.asarray(out)
    assert np.array_equal(out[..., 3], imresize(alpha, 4))
    # Colour is the straight (not white-composited) RGB through the generator.
    assert np.array_equal(out[..., :3], upscale(generator, lr))


def test_grey_in_grey_out(generator):
    grey = lr_waves(15, 20, seed=7)[..., 0]
    out = upscale_image(generator, Image.fromarray(grey, "L"), 4)
    assert out.mode == "L" and out.size == (80, 60)
    rgb = Image.fromarray(upscale(generator, np.repeat(grey[..., None], 3, axis=2)))
    assert np.array_equal(np.asarray(out), np.asarray(rgb.convert("L")))


def test_sixteen_bit_grey_is_reduced_like_to_rgb_array(generator):
    grey16 = (lr_waves(15, 20, seed=8)[..., 0].astype(np.uint16) * 257 + 100).astype(np.uint16)
    image = Image.fromarray(grey16)  # mode I;16
    assert image.mode.startswith("I;16")
    out = upscale_image(generator, image, 4)
    assert out.mode == "L" and out.size == (80, 60)
    expected = Image.fromarray(upscale(generator, to_rgb_array(image))).convert("L")
    assert np.array_equal(np.asarray(out), np.asarray(expected))


def test_grey_with_alpha_and_palette_transparency(generator):
    la = Image.fromarray(np.dstack([lr_waves(9, 11)[..., 0], np.full((9, 11), 200, np.uint8)]),
                         "LA")
    out = upscale_image(generator, la, 4)
    assert out.mode == "LA" and out.size == (44, 36)
    assert (np.asarray(out)[..., 1] == 200).all()

    palette = Image.fromarray(lr_waves(9, 11)).convert("P")
    palette.info["transparency"] = 0
    out = upscale_image(generator, palette, 4)
    assert out.mode == "RGBA" and out.size == (44, 36)


def test_exif_rotated_input_gives_rotated_output(generator):
    lr = lr_waves(10, 16, seed=9)  # stored 16 wide x 10 high, displayed rotated by 90 degrees
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.fromarray(lr).save(buffer, "JPEG", exif=exif.tobytes(), quality=95)
    image = Image.open(io.BytesIO(buffer.getvalue()))
    assert image.size == (16, 10)
    out = upscale_image(generator, image, 4)
    assert out.size == (40, 64)
    upright = Image.fromarray(to_rgb_array(Image.open(io.BytesIO(buffer.getvalue()))))
    assert upright.size == (10, 16)
    assert np.array_equal(np.asarray(out), np.asarray(upscale_image(generator, upright, 4)))


def test_scale_must_match_the_generator(generator):
    with pytest.raises(ValueError, match="x4"):
        upscale_image(generator, Image.fromarray(lr_waves(8, 8)), 2)


def test_any_rgb_function_serves_every_mode():
    """The mode handling needs no generator: nearest neighbour x3 keeps grey grey and alpha
    bicubic, with the scale read from the function's output."""
    def nearest(rgb):
        return rgb.repeat(3, 0).repeat(3, 1)

    grey = lr_waves(6, 5, seed=1)[..., 0]
    alpha = np.full((6, 5), 90, np.uint8)
    out = upscale_any_mode(nearest, Image.fromarray(np.dstack([grey, alpha]), "LA"))
    assert out.mode == "LA" and out.size == (15, 18)
    assert np.array_equal(np.asarray(out)[..., 0], grey.repeat(3, 0).repeat(3, 1))
    assert np.array_equal(np.asarray(out)[..., 1], imresize(alpha, 3))
