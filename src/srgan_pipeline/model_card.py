"""The model card of a trained generator: what it is, what it was trained on, under which terms.

The MLflow model (``serving.model.log_generator_model``) and every export (``exports``) carry the
same card, so a file found on its own still says what it is. The code is Apache-2.0 (LICENSE);
trained weights are a product of their training images, and their terms follow the data's:
DIV2K and Flickr2K are published for academic research only, so weights trained on them are
too. The card says so; it is no legal advice, and a user's own data brings its own terms.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from srgan_pipeline import __version__

__all__ = ["CODE_LICENSE", "DEGRADATION", "card_json", "model_card", "training_data"]

CODE_LICENSE = "Apache-2.0"
# How every LR image of data_prep is made from its HR image (imaging.py): MATLAB's imresize.
DEGRADATION = "bicubic x1/scale (MATLAB imresize, antialiased), no noise, no blur, no JPEG"
# The published terms of the sources conf/base names; any other source: its owner's terms.
SOURCE_TERMS = {
    "div2k": "DIV2K (NTIRE 2017): academic research use only",
    "flickr2k": "Flickr2K (EDSR authors): academic research use only",
}
OTHER_TERMS = ("source {name!r}: the terms of its images (scikit-image's sample photographs: "
               "each its own licence, skimage/data/README.txt; your own images: yours)")


def training_data(tiles_per_source: Mapping[str, int]) -> list[dict[str, Any]]:
    """The sources a training store holds (``TrainingStore.tiles_per_source``), with terms."""
    return [{"source": name, "tiles": int(tiles),
             "terms": SOURCE_TERMS.get(name, OTHER_TERMS.format(name=name))}
            for name, tiles in sorted(tiles_per_source.items())]


def model_card(checkpoint: Mapping[str, Any], model: str,
               training: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """The card of a generator checkpoint (``generator_config``, ``phase``, ``step``).

    ``training``: :func:`training_data` of the store train_gan read, or None where it is not
    known (the card then says so rather than guess).
    """
    config = dict(checkpoint["generator_config"])
    if training:
        terms = "; ".join(entry["terms"] for entry in training)
        licence = (f"the weights follow their training data's terms ({terms}), not the code's "
                   f"{CODE_LICENSE}")
    else:
        licence = ("the weights follow their training data's terms (not recorded here), not the "
                   f"code's {CODE_LICENSE}")
    return {
        "name": f"srgan_pipeline {model}",
        "architecture": (f"SRResNet (Ledig et al. 2017), residual blocks: "
                         f"{config.get('num_blocks')}, channels: {config.get('channels')}"
                         + (", bicubic input skip" if config.get("input_skip") else "")),
        "generator_config": config,
        "scale": config.get("scale"),
        "input": "RGB, float32 in [0, 1], NCHW",
        "output": "RGB, float32 in [0, 1], NCHW, scale x the input's height and width",
        "phase": checkpoint.get("phase"),
        "steps": checkpoint.get("step"),
        "training_data": training if training else "not recorded",
        "degradation": DEGRADATION,
        "weights_licence": licence,
        "code_licence": CODE_LICENSE,
        "code": f"srgan_pipeline {__version__}",
    }


def card_json(card: Mapping[str, Any]) -> str:
    return json.dumps(card, indent=2, sort_keys=True)
