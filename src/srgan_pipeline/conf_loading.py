"""How the project's conf/ is read: by ``kedro run`` (settings.py) and by
``srgan-pipeline upscale`` (upscale_command.py, without a Kedro session; not named cli.py,
which Kedro would load as the project's CLI plugin)."""

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "merge_strategy": {"parameters": "soft"},
}
