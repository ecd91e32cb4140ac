"""Project hooks: every parameter block a run reads is validated before its first node runs."""

from __future__ import annotations

import logging
from typing import Any

from kedro.framework.hooks import hook_impl

from srgan_pipeline.params import ParameterError, blocks_read_by, validate_params

logger = logging.getLogger(__name__)


class ValidateParametersHook:
    """Checks the blocks the nodes of this run read (all phases of all pipelines in it).

    ``tryfirst``: before kedro-mlflow's hook opens an MLflow run for a run that cannot start.
    Kedro's own typed-parameter validation (node arguments annotated with a model) is not used:
    it checks one ``params:`` input at a time, so keys no node reads whole (``data_prep``'s node
    inputs are ``params:data_prep.tiles`` and the like) and rules relative to ``scale`` have no
    place; it hands nodes model instances instead of the dicts kedro-mlflow flattens into one
    MLflow parameter per key; and its messages are pydantic's, not parameter paths.
    """

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        blocks = [b for b in blocks_read_by(pipeline) if f"params:{b}" in catalog]
        scale = None
        errors = []
        if "params:scale" in catalog:  # first: other blocks' rules are relative to it
            try:
                scale = validate_params("scale", catalog.load("params:scale"))
            except ParameterError as error:
                errors.append(str(error))
        for block in blocks:
            if block == "scale":
                continue
            try:
                validate_params(block, catalog.load(f"params:{block}"), scale=scale)
            except ParameterError as error:
                errors.append(str(error))
        if errors:
            raise ParameterError("Invalid parameters (nothing was run):\n" + "\n".join(errors))
        logger.info("Parameters of %s are valid", ", ".join(blocks))
