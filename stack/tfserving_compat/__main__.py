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
    p.add_argument("--tensorflow_intra_op_parallelism", type=int, default=0, help="0: TensorFlow's default")
    p.add_argument("--tensorflow_inter_op_parallelism", type=int, default=0, help="0: TensorFlow's default")
    p.add_argument(
        "--enable_model_warmup",
        default="true",
        help="replay assets.extra/tf_serving_warmup_requests when a version loads (as TF Serving)",
    )
    p.add_argument(
        "--version_label", action="append", default=[], help="LABEL=VERSION (the config file's version_labels)"
    )
    return p.parse_args(argv)


def _from_config_file(path: str) -> list[tuple[str, str, dict[str, int]]]:
    """(name, base_path, version_labels) of every model in a ModelServerConfig text proto's model_config_list."""
    text = Path(path).read_text()
    models = []
    for block in re.split(r"\bconfig\s*\{", text)[1:]:
        name = re.search(r'name:\s*"([^"]+)"', block)
        base = re.search(r'base_path:\s*"([^"]+)"', block)
        if not name or not base:
            raise SystemExit(f"{path}: a model without name or base_path")
        labels = {k: int(v) for k, v in re.findall(r'key:\s*"([^"]+)"\s*value:\s*(\d+)', block)}
        models.append((name[1], base[1], labels))
    if not models:
        raise SystemExit(f"{path}: no model found")
    return models


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s [{DISPLAY_NAME}] %(levelname)s %(message)s")
    log = logging.getLogger("tfserving_compat")

    import tensorflow as tf

    # Before any op runs: TensorFlow fixes its thread pools on first use, as TF Serving does at start.
    if args.tensorflow_intra_op_parallelism:
        tf.config.threading.set_intra_op_parallelism_threads(args.tensorflow_intra_op_parallelism)
    if args.tensorflow_inter_op_parallelism:
        tf.config.threading.set_inter_op_parallelism_threads(args.tensorflow_inter_op_parallelism)

    from stack.tfserving_compat.servable import Servable, Served

    if args.model_config_file:
        configured = _from_config_file(args.model_config_file)
    else:
        if not (args.model_name and args.model_base_path):
            raise SystemExit("give --model_name and --model_base_path, or --model_config_file")
        configured = [(args.model_name, args.model_base_path, {})]
    for item in args.version_label:  # the single-model form's labels
        key, _, value = item.partition("=")
        configured[0][2][key] = int(value)
    params = None
    if args.enable_batching.lower() in ("1", "true", "yes"):
        from stack.tfserving_compat.batching import Batcher, BatchingParameters

        params = (
            BatchingParameters.parse(Path(args.batching_parameters_file).read_text())
            if args.batching_parameters_file
            else BatchingParameters()
        )
        log.info("server-side batching on (a queue per model): %s", params)
    models: dict[str, Served] = {}
    for name, base, labels in configured:
        servable = Servable(name, Path(base), labels, warm_up=args.enable_model_warmup.lower() == "true")
        servable.load()
        models[name] = Served(servable, Batcher(params, servable.run) if params else None)

    monitoring_path = None
    if args.monitoring_config_file:
        found = re.search(r'path:\s*"([^"]+)"', Path(args.monitoring_config_file).read_text())
        monitoring_path = found[1] if found else "/monitoring/prometheus/metrics"

    grpc_server = None
    if args.port:
        from stack.tfserving_compat.grpc_service import serve

        grpc_server = serve(models, args.grpc_bind_address, args.port)
        log.info("gRPC PredictionService on %s:%d", args.grpc_bind_address, args.port)

    import uvicorn

    from stack.tfserving_compat.rest import create_app

    app = create_app(models, monitoring_path)
    log.info("REST API on http://%s:%d (models %s)", args.rest_api_bind_address, args.rest_api_port, ", ".join(models))
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
