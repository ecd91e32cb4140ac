"""Project settings: https://docs.kedro.org/en/stable/configure/configuration_basics/"""

import os

from srgan_pipeline.hooks import ValidateParametersHook

# No run reaches the network except the download nodes. Kedro's telemetry is refused by the
# committed `.telemetry` file (consent: false) and its plugin's hooks are disabled; MLflow 3
# has usage telemetry of its own, off unless a user explicitly turns it back on.
DISABLE_HOOKS_FOR_PLUGINS = ("kedro-telemetry",)
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
}

# Every parameter block a run reads is checked before its first node (params.py).
HOOKS = (ValidateParametersHook(),)
