"""Image bytes from a request -> a checked Pillow image, and back to PNG bytes.

Checks run cheapest first, so a bad request costs nothing: empty body, then the header
(format, size) without decoding, then the pixel budget, then the full decode (a truncated file
fails here, not halfway through the network).
"""

from __future__ import annotations

import io

from PIL import Image, ImageOps, UnidentifiedImageError

# What the page and the MLflow model accept (Pillow format names): photos and lossless images.
ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF")

# LR pixels of one request: few enough that the default generator upscales them on one busy
# CPU core well inside the scoring server's 60 s request timeout (seconds per LR pixel:
# benchmarks/results/, the upscale and serving note; benchmarks/upscale.py). Larger images
# belong to `kedro run --pipelines=upscale`, which has no timeout.
DEFAULT_MAX_PIXELS = 512 * 512
# Requests upscaled at once by one server process: one computes while the next is read and
# decoded; more would only wait for the cores (and hold their images in memory meanwhile).
DEFAULT_MAX_CONCURRENT = 2


class ImageRequestError(ValueError):
    """The request's image is unusable; the message says why and what to send instead."""


class NotAnImageError(ImageRequestError):
    """The bytes are not an image of an accepted format."""


class ImageTooLargeError(ImageRequestError):
    """The image is over the pixel budget of one request."""


def open_request_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode ``data`` fully into an upright Pillow image, or raise :class:`ImageRequestError`."""
    if not data:
        raise ImageRequestError("the request holds no image (empty body): send PNG or JPEG bytes")
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as error:  # header over 2x Pillow's own limit
        raise ImageTooLargeError(f"the image is far over this server's limit of "
                                 f"{max_pixels:,} LR pixels per request: {error}") from error
    except ValueError as error:  # Pillow's safety limits on metadata, e.g. PNG text chunks
        raise ImageRequestError(
            f"the image's metadata is over Pillow's safety limit ({error}): save the image "
            f"again without its metadata (text chunks, EXIF, ICC profile) and send that"
        ) from error
    except (UnidentifiedImageError, OSError) as error:
        detail = "" if isinstance(error, UnidentifiedImageError) else f": {error}"
        raise NotAnImageError(
            f"the {len(data)} bytes sent are not an image Pillow can read (accepted: "
            f"{', '.join(ACCEPTED_FORMATS)}){detail}") from error
    if image.format not in ACCEPTED_FORMATS:
        raise NotAnImageError(
            f"{image.format} images are not accepted: send one of {', '.join(ACCEPTED_FORMATS)}")
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"the image is {width}x{height} = {width * height:,} pixels, over this server's "
            f"limit of {max_pixels:,} LR pixels per request (e.g. {_side(max_pixels)}x"
            f"{_side(max_pixels)}): crop or downscale it, or run `kedro run --pipelines=upscale` "
            f"for large images")
    # Pillow decodes lazily: without a full decode a truncated file "opens" and fails later.
    # Pillow's plugins raise many types on damaged data (OSError, SyntaxError, EOFError, ...).
    try:
        image.load()
    except Exception as error:
        raise ImageRequestError(
            f"the {image.format} image ({width}x{height}) is damaged or truncated: "
            f"{type(error).__name__}: {error}") from error
    return ImageOps.exif_transpose(image)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)  # far faster than level 6, a bit larger
    return buffer.getvalue()


def _side(pixels: int) -> int:
    return int(pixels**0.5)
