"""Project hooks, registered in settings.py."""

from __future__ import annotations

from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.io.core import AbstractVersionedDataset, Version

from srgan_pipeline import tracking


class RunIsolationHooks:
    """Keeps runs in one project apart: each reads back its own outputs, owns its MLflow run.

    * Versioned datasets this run produces are read back at the version this run saves, not
      the latest on disk: with Kedro's default (latest), evaluation in a full ``kedro run`` could
      score the generator another run saved a moment later. Inputs this run does not produce
      stay as Kedro resolves them (latest, or ``--load-versions``).
    * The MLflow run kedro-mlflow opened is claimed by this process, and runs left RUNNING by
      killed processes are closed (tracking.py). ``trylast``: kedro-mlflow's own
      ``before_pipeline_run`` must have opened the run first.
    """

    @hook_impl(trylast=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        pin_own_outputs(pipeline, catalog)
        if tracking.active():
            tracking.claim_run()
            tracking.close_orphaned_runs()


def pin_own_outputs(pipeline: Any, catalog: Any) -> list[str]:
    """Pin the load version of each versioned output of ``pipeline`` to its save version."""
    pinned = []
    for name in sorted(pipeline.all_outputs()):
        if name not in catalog:
            continue
        dataset = catalog[name]
        # Kedro keeps the version in a private field; _copy is its own way to change one.
        version = getattr(dataset, "_version", None)
        if isinstance(dataset, AbstractVersionedDataset) and version and version.load is None:
            save = dataset.resolve_save_version()
            catalog[name] = dataset._copy(_version=Version(save, save))
            pinned.append(name)
    return pinned
