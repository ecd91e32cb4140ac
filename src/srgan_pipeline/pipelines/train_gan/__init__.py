"""train_gan: SRResNet pretraining, then WGAN-GP adversarial training (SRGAN)."""

from srgan_pipeline.pipelines.train_gan.pipeline import create_pipeline

__all__ = ["create_pipeline"]
