"""Server configuration files written next to the models, from the sources of truth: `.env` (ports, batching,
workers) and `models.toml` (which models, their versions; stack/registry.py)."""

from __future__ import annotations

import json
from pathlib import Path

from stack.config import TF_MODEL_BASE, TORCH_MODEL_STORE, StackConfig
from stack.registry import ModelSpec, load_registry

TF_MODELS_CONFIG = TF_MODEL_BASE / "models.config"
TF_BATCHING_CONFIG = TF_MODEL_BASE / "batching.config"
TF_MONITORING_CONFIG = TF_MODEL_BASE / "monitoring.config"
TS_CONFIG = TORCH_MODEL_STORE / "config.properties"


def tf_models_config(models: list[ModelSpec], base_path: str | None = "/models") -> str:
    """TF Serving's model_config_list: every model under `base_path/<name>` (containers), or at its registered
    base path when `base_path` is None (native)."""
    entries = "".join(
        "  config {\n"
        f'    name: "{m.name}"\n'
        f'    base_path: "{base_path + "/" + m.name if base_path else m.tf_base}"\n'
        '    model_platform: "tensorflow"\n'
        "  }\n"
        for m in models
    )
    return "model_config_list {\n" + entries + "}\n"


def tf_batching_config(max_batch_size: int, batch_timeout_micros: int, threads: int = 2) -> str:
    # Field names are TF Serving's BatchingParameters.
    return (
        f"max_batch_size {{ value: {max_batch_size} }}\n"
        f"batch_timeout_micros {{ value: {batch_timeout_micros} }}\n"
        f"max_enqueued_batches {{ value: 1000 }}\n"
        f"num_batch_threads {{ value: {threads} }}\n"
    )


TF_METRICS_PATH = "/monitoring/prometheus/metrics"


def tf_monitoring_config() -> str:
    return f'prometheus_config {{\n  enable: true,\n  path: "{TF_METRICS_PATH}"\n}}\n'


def ts_model_version(version: int) -> str:
    """The version string a `.mar` is archived with, and so the key of its settings in config.properties."""
    return str(version)


CONTAINER_MODEL_STORE = "/home/model-server/model-store"
CONTAINER_LOG4J = "/home/model-server/config/log4j2.xml"


def ts_config_properties(
    cfg: StackConfig,
    models: list[ModelSpec],
    model_store: str = CONTAINER_MODEL_STORE,
    log4j: str = CONTAINER_LOG4J,
) -> str:
    """Loopback addresses for native use; containers override them through TS_* environment variables.

    The per-model settings are keyed by each `.mar`'s own version string (`torch-model-archiver --version`, from
    the registry): TorchServe matches it exactly and silently falls back to its defaults for any other key. Every
    model gets the same workers and batching (.env), so models compare like for like."""
    settings = {
        m.name: {
            ts_model_version(m.version): {
                "defaultVersion": True,
                "marName": m.mar.name,
                "minWorkers": cfg.ts_workers,
                "maxWorkers": cfg.ts_workers,
                "batchSize": cfg.ts_batch_size,
                "maxBatchDelay": cfg.ts_max_batch_delay_ms,
                "responseTimeout": 30,
            }
        }
        for m in models
    }
    lines = [
        f"inference_address=http://127.0.0.1:{cfg.ts_inference_port}",
        f"management_address=http://127.0.0.1:{cfg.ts_management_port}",
        f"metrics_address=http://127.0.0.1:{cfg.ts_metrics_port}",
        f"grpc_inference_port={cfg.ts_grpc_inference_port}",
        f"grpc_management_port={cfg.ts_grpc_management_port}",
        "metrics_mode=prometheus",
        "enable_envvars_config=true",
        "disable_token_authorization=true",
        "install_py_dep_per_model=false",
        "default_workers_per_model=1",
        "job_queue_size=1000",
        f"model_store={model_store}",
        f"vmargs=-Dlog4j.configurationFile=file://{log4j}",
        f"load_models={','.join(m.mar.name for m in models)}",
        f"models={json.dumps(settings, separators=(',', ':'))}",
    ]
    return "\n".join(lines) + "\n"


def write_all(cfg: StackConfig, models: list[ModelSpec] | None = None) -> list[Path]:
    """The committed configs (compose and k8s use them): every registered model."""
    models = models or load_registry()
    written = []
    for path, text in (
        (TF_MODELS_CONFIG, tf_models_config(models)),
        (TF_BATCHING_CONFIG, tf_batching_config(cfg.tf_max_batch_size, cfg.tf_batch_timeout_micros)),
        (TF_MONITORING_CONFIG, tf_monitoring_config()),
        (TS_CONFIG, ts_config_properties(cfg, models)),
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written
