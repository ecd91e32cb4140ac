"""The ``degradations`` parameter block (conf/base/parameters_degradations.yml): the settings of
the real-world degradation model that ``train_gan.degradation`` and an evaluation set's
``degradation`` may choose (degradations.py). ``bicubic``, the paper's, has no settings."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field, Strict, StrictFloat, StrictInt, model_validator

from srgan_pipeline.names import BLUR_KERNELS, RESIZE_MODES
from srgan_pipeline.params.rules import Params

Probability = Annotated[float, Field(ge=0, le=1)]


def _range(value: Any) -> Any:
    if not (isinstance(value, list | tuple) and len(value) == 2) or value[0] > value[1]:
        raise ValueError(f"must be a range [low, high] with low <= high, got {value!r}")
    return value


def _range_of(item: Any) -> Any:
    # YAML gives a list; lax only at the outer level so [0.2, 3.0] becomes a tuple.
    return Annotated[tuple[item, item], Strict(False), BeforeValidator(_range)]


Sigma = _range_of(Annotated[StrictFloat, Field(gt=0)])
Beta = _range_of(Annotated[StrictFloat, Field(gt=0)])
NoiseSigma = _range_of(Annotated[StrictFloat, Field(ge=0, le=255)])  # in 0-255 pixel units
PoissonScale = _range_of(Annotated[StrictFloat, Field(ge=0)])
ResizeRange = _range_of(Annotated[StrictFloat, Field(gt=0)])
JpegQuality = _range_of(Annotated[StrictInt, Field(ge=1, le=100)])
KernelSize = _range_of(Annotated[StrictInt, Field(ge=3)])


def _sums_to_one(probs: dict[str, float], name: str) -> None:
    total = sum(probs.values())
    if abs(total - 1) > 1e-6:
        raise ValueError(f"{{param}}.{name} must add up to 1 (each is the chance of its "
                         f"choice), got {total:g}")


class KernelProbs(Params):
    iso: Probability
    aniso: Probability
    generalized_iso: Probability
    generalized_aniso: Probability
    plateau_iso: Probability
    plateau_aniso: Probability


class ResizeProbs(Params):
    up: Probability
    down: Probability
    keep: Probability


class StageParams(Params):
    """One order of the model: blur, random resize, noise, JPEG (Real-ESRGAN, section 3.1)."""

    blur_prob: Probability
    kernel_probs: KernelProbs
    sinc_prob: Probability  # a sinc kernel instead of the drawn one
    blur_sigma: Sigma
    betag: Beta  # shape of the generalised Gaussian kernels
    betap: Beta  # shape of the plateau kernels
    resize_probs: ResizeProbs
    resize_range: ResizeRange  # scale factor: up draws from [1, high], down from [low, 1]
    gaussian_noise_prob: Probability  # else Poisson noise
    noise_sigma: NoiseSigma
    poisson_scale: PoissonScale
    gray_noise_prob: Probability  # the same noise in every channel
    jpeg_quality: JpegQuality

    @model_validator(mode="after")
    def _choices_fit(self) -> StageParams:
        _sums_to_one(self.kernel_probs.model_dump(), "kernel_probs")
        _sums_to_one(self.resize_probs.model_dump(), "resize_probs")
        low, high = self.resize_range
        if not low <= 1 <= high:
            raise ValueError(f"{{param}}.resize_range must hold 1 (down draws from [low, 1], up "
                             f"from [1, high]), got {list(self.resize_range)}")
        return self


class RealWorldParams(Params):
    """Real-ESRGAN's second-order model: two stages with independent draws, then the resize to
    the LR size and a sinc filter and JPEG in random order."""

    kernel_size: KernelSize  # odd sizes drawn uniformly from this range
    resize_modes: Annotated[tuple[str, ...], Strict(False)]
    first: StageParams
    second: StageParams
    final_sinc_prob: Probability

    @model_validator(mode="after")
    def _sizes_and_modes(self) -> RealWorldParams:
        low, high = self.kernel_size
        if low % 2 == 0 or high % 2 == 0:
            raise ValueError(f"{{param}}.kernel_size must be odd sizes (a kernel has a centre "
                             f"pixel), got {list(self.kernel_size)}")
        unknown = [mode for mode in self.resize_modes if mode not in RESIZE_MODES]
        if not self.resize_modes or unknown:
            raise ValueError(f"{{param}}.resize_modes must be a non-empty list drawn from "
                             f"{list(RESIZE_MODES)}, got {list(self.resize_modes)}")
        return self


class DegradationsParams(Params):
    real_world: RealWorldParams


assert set(KernelProbs.model_fields) == set(BLUR_KERNELS)  # one list of kernel names
