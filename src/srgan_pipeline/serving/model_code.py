"""The file MLflow stores as the model ("models from code"): it names the model object."""

from mlflow.models import set_model

from srgan_pipeline.serving.model import SuperResolutionModel

set_model(SuperResolutionModel())
