"""`python -m srgan_pipeline.serving`: the try-it page on http://127.0.0.1:8000."""

from __future__ import annotations

import argparse
import os

from srgan_pipeline.inference import DEFAULT_TILE
from srgan_pipeline.serving.images import DEFAULT_MAX_CONCURRENT, DEFAULT_MAX_PIXELS


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m srgan_pipeline.serving",
        description="A page to try the registered generators: upload, compare, download.")
    parser.add_argument("--tracking-uri",
                        default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"),
                        help="the MLflow store with the Model Registry (default: "
                             "$MLFLOW_TRACKING_URI, else the project's sqlite:///mlflow.db)")
    parser.add_argument("--model-name", default="srgan_pipeline_generator",
                        help="registered model whose versions and aliases the page offers")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help="LR pixels per image; larger uploads get a 413 naming the limit")
    parser.add_argument("--max-concurrent", type=int, default=DEFAULT_MAX_CONCURRENT,
                        help="uploads handled at once; one more gets a 503 with Retry-After")
    parser.add_argument("--tile", type=int, default=DEFAULT_TILE)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    if args.max_pixels < 1 or args.tile < 1 or args.max_concurrent < 1:
        parser.error("--max-pixels, --max-concurrent and --tile must be >= 1")

    import uvicorn

    from srgan_pipeline.serving.app import create_app

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    app = create_app(args.tracking_uri, args.model_name, max_pixels=args.max_pixels,
                     tile=args.tile, device=args.device, host=args.host,
                     max_concurrent=args.max_concurrent)
    print(f"Try the upscaler at http://{args.host}:{args.port}/ "
          f"(models: {args.model_name} in {args.tracking_uri})", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
