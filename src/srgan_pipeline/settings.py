"""Project settings: https://docs.kedro.org/en/stable/configure/configuration_basics/"""

import os

# No run reaches the network except the download nodes. Kedro's telemetry is refused by the
# committed `.telemetry` file (consent: false) and its plugin's hooks are disabled; MLflow 3
# has usage telemetry of its own, off unless a user explicitly turns it back on. Set before
# the hooks import mlflow.
DISABLE_HOOKS_FOR_PLUGINS = ("kedro-telemetry",)
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

# Soft merge: an environment's parameter files hold only what differs from conf/base, merged
# key by key into it at every depth (lists and values replace; a table keyed by name, such as
# data_prep.train_sources, gains the environment's entries and keeps conf/base's).
from srgan_pipeline.conf_loading import CONFIG_LOADER_ARGS  # noqa: E402,F401
from srgan_pipeline.hooks import (  # noqa: E402
    DataPrepLockHook,
    MlflowSetupLockHook,
    RunIsolationHooks,
    StopOnSignalHooks,
    ValidateParametersHook,
    WritableOutputsHook,
)

# Every parameter block a run reads, then every output folder, is checked before its first node
# (params.py), then data_prep takes its lock: among tryfirst hooks pluggy calls the later
# registered first. Each run reads back its own outputs and owns its MLflow run, which
# SIGTERM/SIGINT end KILLED (hooks.py).
HOOKS = (DataPrepLockHook(), WritableOutputsHook(), ValidateParametersHook(), RunIsolationHooks(),
         StopOnSignalHooks(), MlflowSetupLockHook())
