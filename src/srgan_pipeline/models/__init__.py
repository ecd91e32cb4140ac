"""SRGAN networks: SRResNet generator, WGAN-GP critic, VGG19 perceptual loss."""

from srgan_pipeline.models.critic import Critic, assert_no_batchnorm
from srgan_pipeline.models.generator import Generator, hr_to_unit, unit_to_hr
from srgan_pipeline.models.perceptual import VGGPerceptualLoss

__all__ = [
    "Critic",
    "Generator",
    "VGGPerceptualLoss",
    "assert_no_batchnorm",
    "hr_to_unit",
    "unit_to_hr",
]
