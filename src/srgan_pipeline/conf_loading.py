"""How the project's conf/ is read: by ``kedro run`` (settings.py) and by
``srgan-pipeline upscale`` (cli.py), which reads it without a Kedro session."""

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "merge_strategy": {"parameters": "soft"},
}
