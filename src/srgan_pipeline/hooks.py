"""Project hooks, registered in settings.py."""

from __future__ import annotations

from typing import Any

from kedro.framework.hooks import hook_impl

from srgan_pipeline import tracking


class RunOwnershipHooks:
    """Claims the run kedro-mlflow opened and closes runs left RUNNING by killed processes.

    ``trylast``: kedro-mlflow's own ``before_pipeline_run`` must have opened the run first.
    """

    @hook_impl(trylast=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        if tracking.active():
            tracking.claim_run()
            tracking.close_orphaned_runs()
