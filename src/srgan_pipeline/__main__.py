"""``srgan-pipeline`` and ``python -m srgan_pipeline``: ``upscale INPUT OUTPUT`` upscales
without a Kedro session (:mod:`.upscale_command`); anything else is ``kedro run``'s options, as
Kedro's template makes them."""
import sys
from pathlib import Path
from typing import Any


def main(*args, **kwargs) -> Any:
    argv = sys.argv[1:] if not args else list(args[0])
    if argv[:1] == ["upscale"]:
        from srgan_pipeline.upscale_command import main as upscale

        sys.exit(upscale(argv[1:]))
    # imported here: Kedro's CLI takes seconds to import, which `upscale` does not need
    from kedro.framework.cli.utils import find_run_command
    from kedro.framework.project import configure_project

    package_name = Path(__file__).parent.name
    configure_project(package_name)

    interactive = hasattr(sys, 'ps1')
    kwargs["standalone_mode"] = not interactive

    run = find_run_command(package_name)
    return run(*args, **kwargs)


if __name__ == "__main__":
    main()
