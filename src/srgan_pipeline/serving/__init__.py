"""The trained generator outside the pipeline: an MLflow model, its registry, a try-it page.

* :mod:`.images`: request bytes -> a checked Pillow image (format, pixel budget, full decode),
  and images -> PNG bytes. Shared by the MLflow model and the page.
* :mod:`.model`: the MLflow pyfunc (``models from code``: :mod:`.model_code` is the file MLflow
  stores), and how a checkpoint becomes a logged model.
* :mod:`.registry`: registered versions, the alias on the best one, and reading a generator
  back from a ``models:/`` or ``runs:/`` URI.
* :mod:`.nodes`: the Kedro nodes that log (train_gan) and register (evaluation) the models.
* :mod:`.app`, ``python -m srgan_pipeline.serving``: the try-it page.
"""
