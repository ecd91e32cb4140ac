"""Super-resolve a Pillow image of any mode: the colour family in is the colour family out."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageOps

from srgan_pipeline.imaging import GREY_MODES, has_alpha, imresize, to_rgb_array

__all__ = ["upscale_any_mode"]


def upscale_any_mode(
    upscale_rgb: Callable[[np.ndarray], np.ndarray], image: Image.Image
) -> Image.Image:
    """``image`` of any mode through ``upscale_rgb`` (uint8 RGB -> uint8 RGB, e.g.
    :meth:`.upscaler.Upscaler.upscale`); the output mode mirrors the input family.

    * EXIF orientation is applied first, so the output is upright (and, for a rotated photo,
      has the rotated size) and carries no orientation tag.
    * Grey (1, L, I;16*, I, F) -> 'L': the grey image goes through the generator as RGB
      (16-bit grey reduced to 8 bit by :func:`imaging.to_rgb_array`) and the result is
      converted back to 'L' (BT.601 luma). Output is 8-bit even for 16-bit input.
    * With alpha (RGBA, LA, PA, P/L/RGB with tRNS, premultiplied RGBa/La) -> 'RGBA' or 'LA':
      the straight (un-premultiplied) colours go through the generator; the alpha channel is
      upscaled with MATLAB bicubic (:func:`imaging.imresize`) and re-attached. Colours are *not*
      composited onto white first (unlike ``to_rgb_array`` for training/metrics): re-attaching
      alpha to pre-blended colours would blend semi-transparent pixels with white twice.
    * Everything else (RGB, P, CMYK, YCbCr, ...) -> 'RGB'.
    """
    img = ImageOps.exif_transpose(image)
    grey = img.mode in GREY_MODES

    if has_alpha(img):
        if img.mode == "La":  # Pillow cannot go La -> RGBA directly
            img = img.convert("LA")
        rgba = np.asarray(img.convert("RGBA"))
        rgb = to_rgb_array(Image.fromarray(np.ascontiguousarray(rgba[..., :3]), "RGB"))
        sr = Image.fromarray(upscale_rgb(rgb), "RGB")
        sr_scale = sr.height // rgb.shape[0]
        alpha = Image.fromarray(imresize(np.ascontiguousarray(rgba[..., 3]), sr_scale), "L")
        if grey:
            return Image.merge("LA", (sr.convert("L"), alpha))
        sr.putalpha(alpha)
        return sr

    sr = Image.fromarray(upscale_rgb(to_rgb_array(img)), "RGB")
    return sr.convert("L") if grey else sr
