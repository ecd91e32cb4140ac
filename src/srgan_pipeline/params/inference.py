"""The inference settings evaluation and upscale share (conf/base/parameters_evaluation.yml,
parameters_upscale.yml): one schema, extended by both blocks, so the same keys follow the same
rules. ``inference.plan_inference`` resolves them on the machine that runs the node.
"""

from __future__ import annotations

from pydantic import model_validator

from srgan_pipeline.params.rules import (
    Device,
    Params,
    PositiveInt,
    Precision,
    Runtime,
    runtime_on_device,
)


class TilePerPrecision(Params):
    """LR tile side of tiled inference for each precision (each runs fastest at its own)."""

    fp32: PositiveInt
    bf16: PositiveInt


class InferenceParams(Params):
    """How a generator runs on images: where, in which precision, in which tiles, by whom."""

    device: Device
    precision: Precision
    tile: TilePerPrecision
    runtime: Runtime

    @model_validator(mode="after")
    def _runtime_on_device(self) -> InferenceParams:
        runtime_on_device(self.runtime, self.device)
        return self
