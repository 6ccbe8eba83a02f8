"""stack/tfserving_compat/flags.py on its own: tsl's value rules at their edges, what parse() refuses and with which
lines (main.cc prints them), the usage layout, and the lists of unsupported and no-effect flags."""

from __future__ import annotations

import math

import pytest

from stack.tfserving_compat.flags import FLAGS, FlagError, Options, _value, no_effect, parse, unsupported, usage

FLAG = {f.name: f for f in FLAGS}
REFUSAL_NOTE = (
    "(TF Serving 2.19 would print this and start anyway, without the argument; this compatible server "
    "refuses it: see stack/tfserving_compat/flags.py)"
)


def refusal(argv: list[str]) -> tuple[str, ...]:
    with pytest.raises(FlagError) as err:
        parse(argv)
    assert str(err.value) == "\n".join(err.value.lines)
    return err.value.lines


def test_ints_at_the_edges_of_their_range_and_typed_as_ints() -> None:
    assert parse(["--port=2147483647"]).port == 2**31 - 1
    assert parse(["--port=-2147483648"]).port == -(2**31)
    assert refusal(["--port=2147483648"])[0] == "Couldn't interpret value 2147483648 for flag port."
    assert refusal(["--port=-2147483649"])[0] == "Couldn't interpret value -2147483649 for flag port."
    assert parse(["--load_retry_interval_micros=9223372036854775807"]).load_retry_interval_micros == 2**63 - 1
    assert type(parse(["--port= +12"]).port) is int


@pytest.mark.parametrize(
    ("text", "expected"), [("0.25", 0.25), (" 1.5", 1.5), ("-2", -2.0), ("1e-3", 1e-3), ("inf", math.inf)]
)
def test_floats_as_sscanf_reads_them(text: str, expected: float) -> None:
    got = parse([f"--per_process_gpu_memory_fraction={text}"]).per_process_gpu_memory_fraction
    assert got == expected and type(got) is float


@pytest.mark.parametrize("text", ["", " ", "1.5 ", "1_0", "abc", "1.5x"])
def test_a_malformed_float_is_refused(text: str) -> None:
    lines = refusal([f"--per_process_gpu_memory_fraction={text}"])
    assert lines == (f"Couldn't interpret value {text} for flag per_process_gpu_memory_fraction.", usage())


@pytest.mark.parametrize(
    ("flag", "text"),
    [("enable_batching", "on"), ("port", "12x"), ("port", "9999999999"), ("per_process_gpu_memory_fraction", "1_0")],
)
def test_value_errors_carry_the_text(flag: str, text: str) -> None:
    with pytest.raises(ValueError) as err:
        _value(FLAG[flag], text)
    assert str(err.value) == text


def test_every_malformed_value_is_listed_then_the_usage() -> None:
    assert refusal(["bogus", "--port=abc", "--enable_batching=on"]) == (
        "Couldn't interpret value abc for flag port.",
        "Couldn't interpret value on for flag enable_batching.",
        usage(),
    )


def test_help_prints_only_the_usage() -> None:
    assert refusal(["--help"]) == (usage(),)
    assert refusal(["--port=1", "--help"]) == (usage(),)
    assert refusal(["--help=1"])[0] == "unknown argument: --help=1"


def test_the_first_unknown_argument_is_named_with_the_usage_and_why() -> None:
    assert refusal(["--version_label=stable", "other"]) == (
        "unknown argument: --version_label=stable",
        usage(),
        REFUSAL_NOTE,
    )


def test_nothing_after_a_double_dash_is_read_as_a_flag() -> None:
    assert refusal(["--port=1", "--", "--port=abc"]) == ("unknown argument: --", usage(), REFUSAL_NOTE)


def test_options_name_what_was_given() -> None:
    options = parse(["--port=9000", "--enable_batching"])
    assert isinstance(options, Options)
    assert options.given == {"port", "enable_batching"}
    assert options.port == 9000 and options.enable_batching is True and options.rest_api_port == 0
    with pytest.raises(AttributeError) as err:
        options.__getattr__("no_such_flag")
    assert str(err.value) == "no_such_flag"


def test_the_usage_has_tsls_layout() -> None:
    text = usage()
    lines = text.split("\n")
    assert lines[:2] == ["usage: python -m stack.tfserving_compat", "Flags:"]
    assert text.endswith("\n")
    assert not text.endswith("\n\n") and len(lines) == len(FLAGS) + 3
    assert f"\t{'--port=8500':<33}\tint32\tTCP port to listen on" in text
    assert f"\t{'--enable_batching=false':<33}\tbool\tenable batching" in text
    assert f"\t{'--enable_model_warmup=true':<33}\tbool\t" in text
    name = '--model_name="default"'
    assert f"\t{name:<33}\tstring\tignored if --model_config_file is set" in text
    assert f"\t{'--per_process_gpu_memory_fraction=0.000000':<33}\tfloat\t" in text


def test_unsupported_lists_each_flag_set_away_from_the_vendors_default() -> None:
    assert unsupported(parse([])) == []
    assert unsupported(parse(["--rest_api_timeout_in_ms=30000", "--saved_model_tags=serve"])) == []
    assert unsupported(parse(["--saved_model_tags=serve,gpu", "--rest_api_enable_cors_support", "--port=1"])) == [
        "--rest_api_enable_cors_support=True",
        "--saved_model_tags=serve,gpu",
    ]


def test_no_effect_lists_the_given_resource_knobs_only() -> None:
    assert no_effect(parse([])) == []
    assert no_effect(parse(["--grpc_max_threads=8", "--port=1", "--num_load_threads=0"])) == [
        "--num_load_threads",
        "--grpc_max_threads",
    ]
