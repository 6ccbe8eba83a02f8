"""The compatible server takes and refuses the command lines and config files tensorflow_model_server 2.19 takes
and refuses, with its words and a non-zero exit (stack/tfserving_compat/flags.py and server_config.py cite the
vendor's source for each rule). Refusals run the real `python -m stack.tfserving_compat` (they end before
TensorFlow is imported); acceptance is checked on the parser and the start plan, which is what runs before the
models load."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stack.config import ROOT, StackConfig
from stack.tfserving_compat.__main__ import parse_args
from stack.tfserving_compat.flags import FlagError
from stack.tfserving_compat.server_config import BatchingSettings, StartError, plan

CFG = StackConfig.load()
BASE = str(CFG.tf_version_dir.parent)
TF_DIR = ROOT / "models" / "tf"


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stack.tfserving_compat", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def refused(*argv: str) -> str:
    done = run(*argv)
    assert done.returncode == 255, (done.returncode, done.stdout[-2000:], done.stderr[-2000:])
    return done.stdout


def models_config(tmp: Path, body: str) -> str:
    path = tmp / "models.config"
    path.write_text(body)
    return str(path)


def one_model(extra: str = "") -> str:
    return (
        f'model_config_list {{ config {{ name: "digits" base_path: "{BASE}" model_platform: "tensorflow" {extra} }} }}'
    )


# ---- the command line (tsl::Flags::Parse, main.cc) ----------------------------------------------------------------


def test_todays_compose_command_with_batching_off_is_refused() -> None:
    """Issue #22: docker-compose.yml and k8s passed the batching file with batching off; TF Serving 2.19 exits."""
    out = refused(
        "--port=8500",
        "--rest_api_port=8501",
        f"--model_config_file={TF_DIR / 'models.config'}",
        f"--monitoring_config_file={TF_DIR / 'monitoring.config'}",
        "--enable_batching=false",
        f"--batching_parameters_file={TF_DIR / 'batching.config'}",
        "--enable_model_warmup=true",
        "--tensorflow_intra_op_parallelism=1",
        "--tensorflow_inter_op_parallelism=1",
    )
    assert out.strip() == (
        "Failed to start server. Error: INVALID_ARGUMENT: server_options.batching_parameters_file is set without "
        "setting server_options.enable_batching to true."
    )


@pytest.mark.parametrize("value", ["on", "yes", "", "2", "truthy"])
def test_a_malformed_bool_is_refused_with_the_usage(value: str) -> None:
    out = refused(f"--model_base_path={BASE}", f"--enable_batching={value}")
    assert out.startswith(f"Couldn't interpret value {value} for flag enable_batching.\n")
    assert "usage: python -m stack.tfserving_compat\nFlags:\n" in out


@pytest.mark.parametrize(
    ("value", "expected"), [("true", True), ("TRUE", True), ("1", True), ("False", False), ("0", False)]
)
def test_bool_spellings_tsl_accepts(value: str, expected: bool) -> None:
    assert parse_args([f"--enable_batching={value}"]).enable_batching is expected
    assert parse_args(["--enable_batching"]).enable_batching is True


@pytest.mark.parametrize("arg", ["--port=12x", "--port=1.5", "--port=0x10", "--port=", "--rest_api_port=99999999999"])
def test_a_malformed_int_is_refused(arg: str) -> None:
    name, _, value = arg[2:].partition("=")
    out = refused(f"--model_base_path={BASE}", arg)
    assert out.startswith(f"Couldn't interpret value {value} for flag {name}.\n")


def test_ints_as_sscanf_reads_them() -> None:
    options = parse_args(["--port=+7", "--tensorflow_intra_op_parallelism=-1", "--port=9000"])
    assert options.port == 9000  # a later flag wins
    assert options.tensorflow_intra_op_parallelism == -1


@pytest.mark.parametrize(
    "arg", ["--no_such_flag=1", "--version_label=stable=1", "--port", "-port=1", "stray", "--model_name"]
)
def test_an_argument_that_is_no_flag_is_refused(arg: str) -> None:
    out = refused(f"--model_base_path={BASE}", arg)
    assert out.startswith(f"unknown argument: {arg}\n")
    assert "start anyway" in out  # says where it is stricter than the vendor


def test_help_prints_the_usage_and_fails_like_the_binary() -> None:
    with pytest.raises(FlagError):
        parse_args(["--help"])


def test_model_config_file_wins_over_model_name_and_base_path(tmp_path: Path) -> None:
    """main.cc: "(If used, --model_name, --model_base_path are ignored.)" - accepted, not refused."""
    config = models_config(tmp_path, one_model())
    started = plan(parse_args([f"--model_config_file={config}", "--model_name=other", "--model_base_path=/nowhere"]))
    assert [(m.name, m.base_path) for m in started.models] == [("digits", BASE)]


def test_missing_model_and_zero_grpc_port_are_refused() -> None:
    assert (
        refused("--model_name=digits")
        .strip()
        .endswith(
            "INVALID_ARGUMENT: Both server_options.model_base_path and server_options.model_config_file are empty!"
        )
    )
    assert "At least one of server_options.grpc_port or server_options.grpc_socket_path must be set." in refused(
        "--port=0", f"--model_base_path={BASE}"
    )


def test_all_three_parallelism_flags_are_refused() -> None:
    out = refused(
        f"--model_base_path={BASE}",
        "--tensorflow_intra_op_parallelism=1",
        "--tensorflow_inter_op_parallelism=1",
        "--tensorflow_session_parallelism=1",
    )
    assert "You cannot configure all." in out


def test_an_unimplemented_vendor_flag_is_refused_unless_it_asks_for_the_default() -> None:
    out = refused(f"--model_base_path={BASE}", "--rest_api_enable_cors_support=true")
    assert "UNIMPLEMENTED: --rest_api_enable_cors_support=True" in out
    assert plan(parse_args([f"--model_base_path={BASE}", "--rest_api_enable_cors_support=false"])).models


# ---- config files (ParseProtoTextFile with the real message types) ------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "words"),
    [
        ("typo", "max_batch_sise { value: 16 }", "Invalid protobuf file"),
        ("malformed", "max_batch_size { value: 1.5 }", "Invalid protobuf file"),
        ("negative timeout", "batch_timeout_micros { value: -1 }", "batch_timeout_micros must be non-negative; was -1"),
        ("negative size", "max_batch_size { value: -4 }", "max_batch_size must be positive; was -4"),
        ("zero threads", "num_batch_threads { value: 0 }", "num_batch_threads must be positive; was 0"),
    ],
)
def test_a_batching_file_tf_serving_refuses_is_refused(tmp_path: Path, name: str, text: str, words: str) -> None:
    path = tmp_path / "batching.config"
    path.write_text(text)
    out = refused(f"--model_base_path={BASE}", "--enable_batching=true", f"--batching_parameters_file={path}")
    assert out.startswith("Failed to start server. Error: INVALID_ARGUMENT: ") and words in out, name


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (one_model().replace("base_path", "base_pth"), "Invalid protobuf file"),
        (one_model("model_type: BOGUS"), "Invalid protobuf file"),
        (one_model().replace(BASE, "models/tf/digits"), "to have an absolute path or URI; got base_path()="),
        (one_model().replace('model_platform: "tensorflow"', ""), "nor ModelServerConfig::model_platform"),
        (one_model().replace('"tensorflow"', '"pytorch"'), "Model digits requests unsupported platform pytorch"),
        (
            one_model().replace(
                "} }", f'}} config {{ name: "digits" base_path: "{BASE}" model_platform: "tensorflow" }} }}'
            ),
            "Illegal to list model digits multiple times in config list",
        ),
        (
            one_model('version_labels { key: "stable" value: 1 }'),
            "FAILED_PRECONDITION: Request to assign label to version 1 of model digits, which is not currently "
            "available for inference",
        ),
    ],
)
def test_a_model_config_tf_serving_refuses_is_refused(tmp_path: Path, body: str, words: str) -> None:
    out = refused(f"--model_config_file={models_config(tmp_path, body)}")
    assert words in out


def test_a_missing_config_file_is_refused() -> None:
    out = refused("--model_config_file=/no/such/models.config")
    assert "NOT_FOUND: /no/such/models.config; No such file or directory" in out


def test_a_broken_monitoring_config_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "monitoring.config"
    path.write_text("prometheus_config { enabled: true }")
    out = refused(f"--model_base_path={BASE}", "--rest_api_port=8501", f"--monitoring_config_file={path}")
    assert f"Invalid protobuf file: '{path}'" in out


def test_labels_attach_to_their_own_model(tmp_path: Path) -> None:
    """Labels once went to the first model whatever model they were written under."""
    wide = str(Path(BASE).parent / "digits_wide")
    body = (
        "model_config_list {\n"
        f'  config {{ name: "digits" base_path: "{BASE}" model_platform: "tensorflow" }}\n'
        f'  config {{ name: "digits_wide" base_path: "{wide}" model_platform: "tensorflow"\n'
        '           version_labels { key: "stable" value: 1 } }\n'
        "}\n"
    )
    options = parse_args([f"--model_config_file={models_config(tmp_path, body)}"])
    with pytest.raises(StartError):
        plan(options)  # at start, only with --allow_version_labels_for_unavailable_models
    options = parse_args(
        [f"--model_config_file={models_config(tmp_path, body)}", "--allow_version_labels_for_unavailable_models"]
    )
    assert {m.name: m.labels for m in plan(options).models} == {"digits": {}, "digits_wide": {"stable": 1}}


# ---- the command lines this project passes are accepted ----------------------------------------------------------


def _compose_command(batching: bool) -> list[str]:
    """docker-compose.yml / k8s's args as they must be (built here, not read from the files the lead is changing):
    the batching file only with batching on."""
    args = [
        "--port=8500",
        "--rest_api_port=8501",
        f"--model_config_file={TF_DIR / 'models.config'}",
        f"--monitoring_config_file={TF_DIR / 'monitoring.config'}",
        "--enable_model_warmup=true",
        "--tensorflow_intra_op_parallelism=1",
        "--tensorflow_inter_op_parallelism=1",
    ]
    if batching:
        args += ["--enable_batching=true", f"--batching_parameters_file={TF_DIR / 'batching.config'}"]
    else:
        args += ["--enable_batching=false"]
    return args


@pytest.mark.parametrize("batching", [False, True])
def test_the_container_command_lines_are_accepted(batching: bool) -> None:
    # the committed models.config names container paths (/models/...): the start plan is what is checked here
    options = parse_args(
        ["--rest_api_bind_address=0.0.0.0", "--grpc_bind_address=0.0.0.0", *_compose_command(batching)]
    )
    started = plan(options)
    assert [m.name for m in started.models] == [m.name for m in CFG_MODELS]
    assert started.monitoring_path == "/monitoring/prometheus/metrics"
    assert (started.batching is not None) is batching
    if batching:
        assert started.batching == BatchingSettings(16, 2000, 1000, 2)


def test_the_native_launchers_command_line_is_accepted(tmp_path: Path) -> None:
    """stack/launcher.py's _tf_service args, rebuilt: absolute base paths, batching file only with batching on."""
    from export import serving_config

    conf = tmp_path
    (conf / "models.config").write_text(serving_config.tf_models_config(CFG_MODELS, base_path=None))
    (conf / "batching.config").write_text(serving_config.tf_batching_config(8, 500))
    args = [
        "--port=8500",
        "--rest_api_port=8501",
        f"--model_config_file={conf / 'models.config'}",
        f"--monitoring_config_file={serving_config.TF_MONITORING_CONFIG}",
        "--tensorflow_intra_op_parallelism=2",
        "--tensorflow_inter_op_parallelism=2",
        "--enable_batching=true",
        f"--batching_parameters_file={conf / 'batching.config'}",
        "--rest_api_bind_address=127.0.0.1",
        "--grpc_bind_address=127.0.0.1",
    ]
    started = plan(parse_args(args))
    assert [m.base_path for m in started.models] == [str(m.tf_base) for m in CFG_MODELS]
    assert started.batching == BatchingSettings(8, 500, 1000, 2)
    assert (started.intra_op_threads, started.inter_op_threads) == (2, 2)


def _registry():  # type: ignore[no-untyped-def]
    from stack.registry import load_registry

    return load_registry()


CFG_MODELS = _registry()
