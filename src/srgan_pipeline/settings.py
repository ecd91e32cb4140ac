"""Project settings: https://docs.kedro.org/en/stable/configure/configuration_basics/"""

from kedro.config import OmegaConfigLoader  # noqa: F401

# Telemetry is also refused by the committed `.telemetry` file (consent: false); disabling the
# plugin's hooks means a run never even tries to phone home.
DISABLE_HOOKS_FOR_PLUGINS = ("kedro-telemetry",)

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
}
