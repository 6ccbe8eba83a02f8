"""`python -m stack.tfserving_compat`: takes a subset of `tensorflow_model_server`'s flags, same meanings."""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

from stack.tfserving_compat import DISPLAY_NAME


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m stack.tfserving_compat", description=DISPLAY_NAME)
    p.add_argument("--port", type=int, default=8500, help="gRPC port (0 disables gRPC)")
    p.add_argument("--rest_api_port", type=int, default=8501)
    p.add_argument("--rest_api_num_threads", type=int, default=8)
    p.add_argument("--rest_api_timeout_in_ms", type=int, default=30000)
    p.add_argument("--grpc_bind_address", default="127.0.0.1")
    p.add_argument("--rest_api_bind_address", default="127.0.0.1")
    p.add_argument("--model_name", default=None)
    p.add_argument("--model_base_path", default=None)
    p.add_argument("--model_config_file", default=None)
    p.add_argument("--enable_batching", default="false")
    p.add_argument("--batching_parameters_file", default=None)
    p.add_argument("--monitoring_config_file", default=None)
    p.add_argument(
        "--enable_model_warmup",
        default="true",
        help="replay assets.extra/tf_serving_warmup_requests when a version loads (as TF Serving)",
    )
    p.add_argument(
        "--version_label", action="append", default=[], help="LABEL=VERSION (the config file's version_labels)"
    )
    return p.parse_args(argv)


def _from_config_file(path: str) -> tuple[str, str, dict[str, int]]:
    """Read name/base_path/version_labels of the first model in a ModelServerConfig text proto."""
    text = Path(path).read_text()
    name = re.search(r'name:\s*"([^"]+)"', text)
    base = re.search(r'base_path:\s*"([^"]+)"', text)
    if not name or not base:
        raise SystemExit(f"{path}: no model name/base_path found")
    labels = {k: int(v) for k, v in re.findall(r'key:\s*"([^"]+)"\s*value:\s*(\d+)', text)}
    return name[1], base[1], labels


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s [{DISPLAY_NAME}] %(levelname)s %(message)s")
    log = logging.getLogger("tfserving_compat")

    from stack.tfserving_compat.servable import Servable

    labels: dict[str, int] = {}
    if args.model_config_file:
        name, base, labels = _from_config_file(args.model_config_file)
    else:
        if not (args.model_name and args.model_base_path):
            raise SystemExit("give --model_name and --model_base_path, or --model_config_file")
        name, base = args.model_name, args.model_base_path
    for item in args.version_label:
        key, _, value = item.partition("=")
        labels[key] = int(value)
    servable = Servable(name, Path(base), labels, warm_up=args.enable_model_warmup.lower() == "true")
    servable.load()

    batcher = None
    if args.enable_batching.lower() in ("1", "true", "yes"):
        from stack.tfserving_compat.batching import Batcher, BatchingParameters

        params = (
            BatchingParameters.parse(Path(args.batching_parameters_file).read_text())
            if args.batching_parameters_file
            else BatchingParameters()
        )
        batcher = Batcher(params, servable.run)
        log.info("server-side batching on: %s", params)

    monitoring_path = None
    if args.monitoring_config_file:
        found = re.search(r'path:\s*"([^"]+)"', Path(args.monitoring_config_file).read_text())
        monitoring_path = found[1] if found else "/monitoring/prometheus/metrics"

    grpc_server = None
    if args.port:
        from stack.tfserving_compat.grpc_service import serve

        grpc_server = serve(servable, args.grpc_bind_address, args.port, batcher=batcher)
        log.info("gRPC PredictionService on %s:%d", args.grpc_bind_address, args.port)

    import uvicorn

    from stack.tfserving_compat.rest import create_app

    app = create_app(servable, batcher, monitoring_path)
    log.info("REST API on http://%s:%d (model %s)", args.rest_api_bind_address, args.rest_api_port, name)
    try:
        uvicorn.run(
            app,
            host=args.rest_api_bind_address,
            port=args.rest_api_port,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=5,
            server_header=False,
        )
    finally:
        if grpc_server is not None:
            grpc_server.stop(grace=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
