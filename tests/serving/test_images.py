"""Request bytes -> checked image: every bad input gets its own clear error, before decoding."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from srgan_pipeline.serving.images import (
    ImageRequestError,
    ImageTooLargeError,
    NotAnImageError,
    open_request_image,
)


def _encoded(size=(20, 10), mode="RGB", fmt="PNG") -> bytes:
    buffer = io.BytesIO()
    array = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(array).convert(mode).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_a_good_image_decodes_fully(fmt):
    image = open_request_image(_encoded(fmt=fmt))
    assert image.size == (20, 10)
    assert image.mode == "RGB"


def test_exif_rotation_is_applied():
    image = Image.new("RGB", (20, 10))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif)
    assert open_request_image(buffer.getvalue()).size == (10, 20)


@pytest.mark.parametrize("data, error, words", [
    (b"", ImageRequestError, "empty body"),
    (b"hello, not an image", NotAnImageError, "not an image"),
    (_encoded((64, 64))[:300], ImageRequestError, "truncated"),
    (_encoded(fmt="GIF"), NotAnImageError, "GIF images are not accepted"),
])
def test_bad_bytes_get_a_clear_error(data, error, words):
    with pytest.raises(error, match=words):
        open_request_image(data)


def test_an_image_over_the_pixel_limit_is_refused_with_the_limit():
    with pytest.raises(ImageTooLargeError, match=r"21x10 = 210 pixels.*limit of 200"):
        open_request_image(_encoded((21, 10)), max_pixels=200)
    assert open_request_image(_encoded((20, 10)), max_pixels=200).size == (20, 10)


def test_a_decompression_bomb_is_refused_before_decoding():
    # a PNG header claiming 100k x 100k pixels: Pillow refuses it at open, we report the limit
    data = _encoded((8, 8))
    import struct
    import zlib
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    bomb = data[:8] + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)) \
        + data[33:]
    with pytest.raises(ImageTooLargeError, match="limit"):
        open_request_image(bomb)
