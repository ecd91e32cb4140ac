"""Super-resolve a Pillow image of any mode: the colour family in is the colour family out."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps
from torch import nn

from srgan_pipeline.imaging import GREY_MODES, has_alpha, imresize, to_rgb_array
from srgan_pipeline.inference.tiling import upscale

__all__ = ["upscale_image"]


def upscale_image(
    generator: nn.Module, image: Image.Image, scale: int | None = None, **kwargs
) -> Image.Image:
    """Super-resolve a Pillow image of any mode; the output mode mirrors the input family.

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

    ``scale``, when given, must equal the generator's ``scale`` (a check, not a resize).
    ``kwargs`` go to :func:`upscale` (tile, overlap, device, channels_last, precision).
    """
    gen_scale = getattr(generator, "scale", None)
    if scale is not None and gen_scale is not None and scale != gen_scale:
        raise ValueError(f"scale={scale} but the generator upscales x{gen_scale}")

    img = ImageOps.exif_transpose(image)
    grey = img.mode in GREY_MODES

    if has_alpha(img):
        if img.mode == "La":  # Pillow cannot go La -> RGBA directly
            img = img.convert("LA")
        rgba = np.asarray(img.convert("RGBA"))
        rgb = to_rgb_array(Image.fromarray(np.ascontiguousarray(rgba[..., :3]), "RGB"))
        sr = Image.fromarray(upscale(generator, rgb, **kwargs), "RGB")
        sr_scale = sr.height // rgb.shape[0]
        alpha = Image.fromarray(imresize(np.ascontiguousarray(rgba[..., 3]), sr_scale), "L")
        if grey:
            return Image.merge("LA", (sr.convert("L"), alpha))
        sr.putalpha(alpha)
        return sr

    sr = Image.fromarray(upscale(generator, to_rgb_array(img), **kwargs), "RGB")
    return sr.convert("L") if grey else sr
