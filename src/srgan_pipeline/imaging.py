"""Image I/O and MATLAB-compatible resizing, in plain numpy + Pillow.

Why this module exists:

* Super-resolution benchmarks (Set5, Urban100, DIV2K, ...) publish LR inputs made with MATLAB's
  ``imresize(hr, 1/4, 'bicubic')``, and published PSNR/SSIM tables are computed against them.
  To make our own LR images (and the bicubic x4 baseline) comparable, we need the same
  resampling. No maintained library reproduces it: Pillow's BICUBIC renormalises the kernel at
  the image border (MATLAB normalises first, then clamps indices to the edge) and uses
  fixed-point weights, and OpenCV / scikit-image / torch use different kernels, coordinate
  mappings or no antialiasing. So :func:`imresize` re-implements MATLAB's algorithm
  (``imresize.m``, ``contributions``) directly; on Urban100 it reproduces the published
  ``LR_bicubic_X4`` files bit for bit.
* Real-world image folders contain every Pillow mode (palette, alpha, CMYK, 16-bit, EXIF-rotated
  JPEGs); :func:`to_rgb_array` turns all of them into one predictable uint8 HxWx3 array, and
  :func:`load_rgb` turns every decode failure into one exception type that names the file.
"""

from __future__ import annotations

import math
import os

import numpy as np
from PIL import Image, ImageOps

__all__ = [
    "GREY_MODES",
    "UnreadableImageError",
    "has_alpha",
    "imresize",
    "load_rgb",
    "mod_crop",
    "open_image",
    "rgb_to_y",
    "to_rgb_array",
]


class UnreadableImageError(ValueError):
    """A file could not be decoded as an image (corrupt, truncated, not an image, too large)."""


# --------------------------------------------------------------------------------------------
# Resizing
# --------------------------------------------------------------------------------------------


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5, exactly as MATLAB's ``cubic``."""
    absx = np.abs(x)
    absx2 = absx * absx
    absx3 = absx2 * absx
    near = (1.5 * absx3 - 2.5 * absx2 + 1.0) * (absx <= 1)
    far = (-0.5 * absx3 + 2.5 * absx2 - 4.0 * absx + 2.0) * ((absx > 1) & (absx <= 2))
    return near + far


def _weight_matrix(in_length: int, out_length: int, factor: float) -> np.ndarray:
    """Dense (out_length x in_length) matrix M such that ``M @ signal`` resizes one axis.

    Follows MATLAB's ``contributions``: taps are normalised to sum to 1 *before* out-of-range
    indices are clamped to the edge, and clamped taps then simply add onto the edge pixel. A
    dense matrix (mostly zeros) lets one BLAS matmul do a whole pass, which is far faster in
    numpy than gathering taps, and is small enough even for 2K images (510 x 2040 doubles = 8 MB).
    """
    kernel_width = 4.0
    if factor < 1:
        # Antialiasing: stretch the kernel by 1/factor so it low-passes before decimation,
        # and scale its height by `factor` so it still integrates to 1.
        def kernel(x):
            return factor * _cubic(factor * x)

        kernel_width /= factor
    else:
        kernel = _cubic

    # MATLAB works with 1-based output/input coordinates; keep them to stay line-for-line.
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / factor + 0.5 * (1 - 1 / factor)  # output pixel centre mapped into input space
    left = np.floor(u - kernel_width / 2)
    taps = math.ceil(kernel_width) + 2
    indices = left[:, None] + np.arange(taps)[None, :]  # 1-based, may fall outside the image
    weights = kernel(u[:, None] - indices)
    weights /= weights.sum(axis=1, keepdims=True)

    # Boundary: MATLAB's imresize.m clamps ("replicating end-points"):
    #     indices = min(max(1, indices), in_length);
    # Some ports mirror instead (aux = [1:n, n:-1:1]); that changes the outer ~2 output pixels
    # by up to 10 grey levels and does not reproduce the published benchmark LR files.
    zero_based = np.clip(indices.astype(np.int64) - 1, 0, in_length - 1)

    matrix = np.zeros((out_length, in_length), dtype=np.float64)
    rows = np.broadcast_to(np.arange(out_length)[:, None], zero_based.shape)
    np.add.at(matrix, (rows, zero_based), weights)
    return matrix


def _resize_axis(array: np.ndarray, matrix: np.ndarray, axis: int) -> np.ndarray:
    """Apply a weight matrix along one axis as a single 2-D matmul."""
    moved = np.moveaxis(array, axis, 0)
    rest = moved.shape[1:]
    flat = moved.reshape(moved.shape[0], -1)
    out = (matrix @ flat).reshape((matrix.shape[0], *rest))
    return np.moveaxis(out, 0, axis)


def _round_to_uint8_range(array: np.ndarray) -> np.ndarray:
    """MATLAB's float -> uint8 cast: saturate to 0..255, round half away from zero."""
    # After clipping, every value is >= 0, so floor(x + 0.5) is round-half-away-from-zero.
    return np.floor(np.clip(array, 0, 255) + 0.5)


def imresize(image: np.ndarray, factor: float) -> np.ndarray:
    """Resize like MATLAB's ``imresize(image, factor, 'bicubic')`` (antialiased when shrinking).

    ``factor`` < 1 shrinks, > 1 enlarges (e.g. 1/4 makes the LR of an x4 pair). Output size is
    ``ceil(factor * size)`` per spatial axis, as in MATLAB. Rows (height) are resized first,
    then columns: MATLAB resizes the axis with the smallest factor first and, for equal
    factors, keeps the axis order. Accepts HxW or HxWxC arrays.

    uint8 input returns uint8 and, like MATLAB, is quantised to uint8 after *each* pass: MATLAB's
    ``imresizemex`` returns the input's class, so the intermediate (after the row pass) is
    already rounded and saturated. That detail is what makes the output bit-identical to the
    published benchmark LR images (rounding only once at the end differs from them by up to
    11 grey levels at bright/dark edges). Float input returns float64, unrounded and unclipped,
    because bicubic overshoot is real signal for callers that compute metrics in float.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"expected an HxW or HxWxC array, got shape {image.shape}")
    is_uint8 = image.dtype == np.uint8
    if not (is_uint8 or np.issubdtype(image.dtype, np.floating)):
        raise TypeError(f"expected uint8 or floating-point input, got {image.dtype}")
    if not factor > 0:
        raise ValueError(f"factor must be positive, got {factor}")

    out = image.astype(np.float64)
    for axis in (0, 1):
        in_length = image.shape[axis]
        out_length = math.ceil(factor * in_length)
        out = _resize_axis(out, _weight_matrix(in_length, out_length, factor), axis)
        if is_uint8:
            out = _round_to_uint8_range(out)
    out = np.ascontiguousarray(out)
    return out.astype(np.uint8) if is_uint8 else out


def mod_crop(image: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom/right edges so height and width are multiples of ``scale``.

    HR/LR pairs must align exactly (HR = scale x LR), which is how the benchmark LR images were
    made. Returns a view, not a copy.
    """
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    height, width = image.shape[:2]
    return image[: height - height % scale, : width - width % scale]


def rgb_to_y(image: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma (studio range 16..235) from RGB in [0, 255], as float64.

    Published SR tables report PSNR/SSIM on this Y channel (MATLAB's ``rgb2ycbcr``), not on RGB
    or on full-range luma, so our metrics must use the same formula. Not rounded: rounding to
    uint8 would shift PSNR by a measurable amount.
    """
    rgb = np.asarray(image, dtype=np.float64)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB array, got shape {rgb.shape}")
    return 16.0 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255.0


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------

_SIXTEEN_BIT_GREY = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})

# Pillow modes whose pixels are grey levels (with or without alpha): to_rgb_array makes them
# R = G = B, and inference.upscale_image gives them back as grey.
GREY_MODES = frozenset({"1", "L", "LA", "La", "F"}) | _SIXTEEN_BIT_GREY


def has_alpha(img: Image.Image) -> bool:
    """Whether ``img`` has transparency: an alpha band (straight or premultiplied), or a tRNS
    entry (palette or single-colour transparency), which is alpha in disguise."""
    bands = img.getbands()
    return "A" in bands or "a" in bands or (
        img.mode in ("P", "L", "RGB") and "transparency" in img.info)


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """Alpha-composite a uint8 HxWx4 array onto a white background.

    Dropping alpha instead would expose whatever colour the encoder left in fully transparent
    pixels (often black, sometimes garbage), which would then be treated as image content.
    """
    rgb = rgba[..., :3].astype(np.uint32)
    alpha = rgba[..., 3:4].astype(np.uint32)
    # Integer form of round(rgb * a/255 + 255 * (1 - a/255)).
    return ((rgb * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)


def to_rgb_array(img: Image.Image) -> np.ndarray:
    """Convert any Pillow image to a contiguous uint8 HxWx3 RGB array.

    Applies the EXIF orientation first (phone JPEGs store pixels sideways and rely on the tag),
    composites alpha onto white, and maps 16-bit grey to 8 bit by ``round(x / 257)`` (Pillow's
    own ``convert('L')`` clips 16-bit values to 255 instead of scaling them, which turns most
    16-bit images white). Float ('F') images are assumed to be in 0..255 and are clipped.
    """
    img = ImageOps.exif_transpose(img)
    mode = img.mode

    if mode in _SIXTEEN_BIT_GREY:
        # np.asarray understands the byte order of every I;16 variant.
        grey = np.asarray(img).astype(np.float64)
        grey = np.floor(np.clip(grey, 0, 65535) / 257.0 + 0.5).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=2))
    if mode == "F":
        grey = np.asarray(img, dtype=np.float64)
        grey = np.floor(np.clip(np.nan_to_num(grey), 0, 255) + 0.5).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=2))

    if has_alpha(img):
        rgba = np.asarray(img.convert("RGBA"))
        return np.ascontiguousarray(_composite_on_white(rgba))

    if mode != "RGB":
        # Covers 1, L, P, CMYK, YCbCr, HSV, RGBX and 16-bit RGB (which Pillow reads as RGB).
        try:
            img = img.convert("RGB")
        except ValueError as exc:
            raise ValueError(f"cannot convert Pillow mode {mode!r} to RGB: {exc}") from exc
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))


def open_image(
    path: str | os.PathLike, max_pixels: int | None = None, limit_name: str = "max_pixels"
) -> Image.Image:
    """Open an image file and decode it fully, so a damaged file fails here and not later.

    Pillow decodes lazily, so a truncated file can "open" fine and fail much later; we force the
    full decode here. Any decode failure becomes :class:`UnreadableImageError` naming the file,
    so pipelines can skip or report bad files with one ``except``. A missing or unreadable file
    (``FileNotFoundError``, ``PermissionError``) is not a decode failure and propagates as is.
    Note: if some code sets ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES = True`` globally, Pillow
    silently pads truncated files and they are no longer detected.

    ``max_pixels`` (width x height) is checked against the header, before any pixel is
    decoded: Pillow's own decompression-bomb limit (~179 MP) is far above what a pipeline can
    afford, and a few-kB PNG can declare 36 MP. ``limit_name`` is the setting named in the
    error (e.g. ``data_prep.max_pixels``), so the user knows what to raise.
    """
    with open(path, "rb") as handle:
        try:
            img = Image.open(handle)  # reads the header only
        # Pillow's format plugins raise a zoo of types on bad input (OSError, SyntaxError,
        # EOFError, struct.error, zlib.error, DecompressionBombError, ValueError...), so catch
        # broadly; the original is chained for debugging.
        except Exception as exc:
            raise _unreadable(path, exc) from exc
        if max_pixels is not None and img.width * img.height > max_pixels:
            img.close()
            raise UnreadableImageError(
                f"cannot read image {os.fspath(path)!r}: {img.width}x{img.height} "
                f"({img.width * img.height / 1e6:.1f} MP) is more than "
                f"{limit_name}={max_pixels} pixels; raise {limit_name} to use it"
            )
        try:
            img.load()  # the pixels are in memory now; the file can close
            return img
        except Exception as exc:
            raise _unreadable(path, exc) from exc


def _unreadable(path: str | os.PathLike, exc: Exception) -> UnreadableImageError:
    return UnreadableImageError(
        f"cannot read image {os.fspath(path)!r}: {type(exc).__name__}: {exc}"
    )


def load_rgb(
    path: str | os.PathLike, max_pixels: int | None = None, limit_name: str = "max_pixels"
) -> np.ndarray:
    """An image file as a uint8 HxWx3 RGB array (:func:`open_image`, then :func:`to_rgb_array`)."""
    with open_image(path, max_pixels, limit_name) as img:
        return to_rgb_array(img)
