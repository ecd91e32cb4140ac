"""Project hooks: every parameter block a run reads is validated before its first node runs."""

from __future__ import annotations

import logging
from typing import Any

from kedro.framework.hooks import hook_impl

from srgan_pipeline.params import (
    PARAMETER_BLOCKS,
    ParameterError,
    blocks_read_by,
    validate_params,
)

logger = logging.getLogger(__name__)


class ValidateParametersHook:
    """Checks the blocks the nodes of this run read (all phases of all pipelines in it), and
    that every top-level key is a known block. Blocks no node of the run reads are left alone,
    so an unfinished upscale setting does not stop a training run.

    ``tryfirst``: before kedro-mlflow's hook opens an MLflow run for a run that cannot start.
    Kedro's own typed-parameter validation (node arguments annotated with a model) is not used:
    it checks one ``params:`` input at a time, so keys no node reads whole (``data_prep``'s node
    inputs are ``params:data_prep.tiles`` and the like) and rules relative to ``scale`` have no
    place; it hands nodes model instances instead of the dicts kedro-mlflow flattens into one
    MLflow parameter per key; and its messages are pydantic's, not parameter paths.
    """

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        def value(name: str) -> Any:  # the dataset itself: catalog.load would log every block
            return catalog[name].load()

        errors = []
        if "parameters" in catalog:  # a misspelt block (--params=upscal.x=...) is read by none
            unknown = sorted(set(value("parameters")) - set(PARAMETER_BLOCKS))
            errors += [f"{name}: unknown parameter block; valid blocks: "
                       f"{', '.join(PARAMETER_BLOCKS)}" for name in unknown]
        scale = None
        if "params:scale" in catalog:  # first: other blocks' rules are relative to it
            try:
                scale = validate_params("scale", value("params:scale"))
            except ParameterError as error:
                errors.append(str(error))
        blocks = [b for b in blocks_read_by(pipeline) if f"params:{b}" in catalog]
        for block in blocks:
            if block == "scale":
                continue
            try:
                validate_params(block, value(f"params:{block}"), scale=scale)
            except ParameterError as error:
                errors.append(str(error))
        if errors:
            raise ParameterError("Invalid parameters (nothing was run):\n" + "\n".join(errors))
        logger.info("Parameters valid: %s", ", ".join(blocks))
