"""`python -m stack.tfserving_compat`: `tensorflow_model_server`'s command line (flags.py), its start-up checks and
config files (server_config.py), then the REST and gRPC fronts over the TensorFlow runtime."""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from stack.tfserving_compat import DISPLAY_NAME, flags, server_config
from stack.tfserving_compat.flags import EXIT_FAILURE, FlagError, Options

log = logging.getLogger("tfserving_compat")


def parse_args(argv: list[str] | None = None) -> Options:
    """The flags as tensorflow_model_server parses them; FlagError where it would print its usage and exit."""
    return flags.parse(sys.argv[1:] if argv is None else argv)


def _refuse(message: str) -> int:
    print(f"Failed to start server. Error: {message}", flush=True)  # main.cc:344, on stdout
    return EXIT_FAILURE


def main(argv: list[str] | None = None) -> int:
    try:
        options = parse_args(argv)
    except FlagError as exc:
        print("\n".join(exc.lines), flush=True)
        return EXIT_FAILURE
    if options.version:
        import tensorflow as tf

        print(f"TensorFlow ModelServer: none ({DISPLAY_NAME})\nTensorFlow Library: {tf.__version__}")
        return 0
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s [{DISPLAY_NAME}] %(levelname)s %(message)s")
    try:
        plan = server_config.plan(options)
    except server_config.StartError as exc:
        return _refuse(str(exc))
    if refused := flags.unsupported(options):
        return _refuse(
            f"UNIMPLEMENTED: {' '.join(refused)}: TF Serving flag(s) this compatible server does not implement "
            "(it refuses them rather than run without what they ask for)"
        )
    if ignored := flags.no_effect(options):
        log.warning("accepted, no effect in this server (resource knobs of TF Serving): %s", " ".join(ignored))
    if options.model_config_file and {"model_name", "model_base_path"} & options.given:
        log.warning("--model_config_file is set: --model_name and --model_base_path are ignored (as in TF Serving)")
    return _serve(options, plan)


def _serve(options: Options, plan: server_config.StartPlan) -> int:
    import tensorflow as tf

    # Before any op runs: TensorFlow fixes its thread pools on first use, as TF Serving does at start.
    if plan.intra_op_threads:
        tf.config.threading.set_intra_op_parallelism_threads(plan.intra_op_threads)
    if plan.inter_op_threads:
        tf.config.threading.set_inter_op_parallelism_threads(plan.inter_op_threads)

    from stack.tfserving_compat.batching import Batcher, BatchingParameters
    from stack.tfserving_compat.servable import Servable, Served

    params = BatchingParameters(**asdict(plan.batching)) if plan.batching else None
    if params:
        log.info("server-side batching on (a queue per model): %s", params)
    models: dict[str, Served] = {}
    for entry in plan.models:
        servable = Servable(entry.name, Path(entry.base_path), dict(entry.labels), warm_up=options.enable_model_warmup)
        try:
            servable.load()
        except Exception as exc:  # the vendor: "N model(s) did not become available" (server_core.cc:300-333)
            log.exception("model %s did not load", entry.name)
            return _refuse(f"UNKNOWN: 1 model(s) did not become available: {{{entry.name}: {exc}}}")
        models[entry.name] = Served(servable, Batcher(params, servable.run) if params else None)

    from stack.tfserving_compat.grpc_service import serve

    grpc_server = serve(models, options.grpc_bind_address, options.port)
    log.info("gRPC PredictionService on %s:%d", options.grpc_bind_address, options.port)
    try:
        if options.rest_api_port == 0:
            asyncio.run(_grpc_only(models, grpc_server))
        elif options.rest_api_port == options.port:
            log.error("server_options.http_port cannot be same as grpc_port. Skipped exporting HTTP/REST API.")
            asyncio.run(_grpc_only(models, grpc_server))
        else:
            _run_rest(options, models, plan.monitoring_path)
    finally:
        grpc_server.stop(grace=2)
    return 0


async def _grpc_only(models: dict[str, Any], grpc_server: Any) -> None:
    batchers = [m.batcher for m in models.values() if m.batcher is not None]
    for batcher in batchers:
        batcher.start()
    await asyncio.to_thread(grpc_server.wait_for_termination)


def _run_rest(options: Options, models: dict[str, Any], monitoring_path: str | None) -> None:
    import uvicorn

    from stack.tfserving_compat.rest import create_app

    app = create_app(models, monitoring_path)
    host, port = options.rest_api_bind_address, options.rest_api_port
    log.info("REST API on http://%s:%d (models %s)", host, port, ", ".join(models))
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
        server_header=False,
    )


if __name__ == "__main__":
    raise SystemExit(main())
