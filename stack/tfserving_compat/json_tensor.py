"""TF Serving's REST JSON <-> tensors, following tensorflow_serving/util/json_tensor.cc, error texts included."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from stack.tfserving_compat.errors import ServingError, invalid

ROW = "row"
COLUMNAR = "columnar"

# TF dtype enum names -> (numpy dtype, DataTypeString)
DTYPES: dict[str, tuple[Any, str]] = {
    "DT_FLOAT": (np.float32, "float"),
    "DT_DOUBLE": (np.float64, "double"),
    "DT_INT32": (np.int32, "int32"),
    "DT_INT64": (np.int64, "int64"),
    "DT_BOOL": (np.bool_, "bool"),
    "DT_STRING": (np.object_, "string"),
}
_FLOAT_MAX = float(np.finfo(np.float32).max)
_FLOAT_MAX_INT = (1 << 24) - 1


@dataclass(frozen=True)
class PredictRequest:
    signature_name: str
    inputs: dict[str, np.ndarray]
    format: str


def value_to_string(val: Any) -> str:
    """JsonValueToString: the offending JSON value, as TF Serving quotes it in errors."""
    if isinstance(val, float):
        return _float_text(val)
    return json.dumps(val, indent=4, allow_nan=True)


def _json_type(val: Any) -> str:
    if val is None:
        return "Null"
    if val is True:
        return "True"
    if val is False:
        return "False"
    if isinstance(val, dict):
        return "Object"
    if isinstance(val, list):
        return "Array"
    if isinstance(val, str):
        return "String"
    return "Number"


def _first_key_wins(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object as TF Serving sees it: it looks keys up with RapidJSON's FindMember, which returns the FIRST
    member of that name (json_tensor.cc), where Python's dict would keep the last."""
    obj: dict[str, Any] = {}
    for key, value in pairs:
        obj.setdefault(key, value)
    return obj


def parse_json(body: bytes) -> dict[str, Any]:
    if not body:
        raise invalid("JSON Parse error: The document is empty")
    try:
        # like rapidjson's kParseNanAndInfFlag, Python accepts NaN/Infinity; a duplicated key: the first wins
        doc = json.loads(body, object_pairs_hook=_first_key_wins)
    except UnicodeDecodeError as exc:
        raise invalid(f"JSON Parse error: Invalid encoding in string. at offset: {exc.start}") from exc
    except json.JSONDecodeError as exc:
        raise invalid(f"JSON Parse error: {exc.msg} at offset: {exc.pos}") from exc
    except RecursionError as exc:
        raise invalid("JSON Parse error: Nesting too deep") from exc
    if not isinstance(doc, dict):
        raise invalid(f"JSON Value: {value_to_string(doc)} Is not object")
    return doc


def dense_shape(val: Any) -> list[int]:
    """GetDenseTensorShape: dims taken from the first element at each level."""
    dims: list[int] = []
    while isinstance(val, list):
        dims.append(len(val))
        if not val:
            break
        val = val[0]
    return dims


def _type_error(val: Any, dtype: str) -> ServingError:
    return invalid(
        f"JSON Value: {value_to_string(val)} Type: {_json_type(val)} is not of expected type: {DTYPES[dtype][1]}"
    )


def _check_scalar(val: Any, dtype: str) -> None:
    if dtype in ("DT_FLOAT", "DT_DOUBLE"):
        if isinstance(val, bool) or not isinstance(val, int | float):
            raise _type_error(val, dtype)
        if dtype == "DT_FLOAT" and not _lossless_float(val):
            raise invalid(f"Cannot convert JSON value: {value_to_string(val)} to float without loss of precision.")
    elif dtype in ("DT_INT32", "DT_INT64"):
        if isinstance(val, bool) or not isinstance(val, int):
            raise _type_error(val, dtype)
    elif dtype == "DT_BOOL":
        if not isinstance(val, bool):
            raise _type_error(val, dtype)
    elif dtype == "DT_STRING":
        if not isinstance(val, str):
            raise _type_error(val, dtype)
    else:
        raise ServingError("UNIMPLEMENTED", f"Conversion of JSON Value: {value_to_string(val)} to type: {dtype}")


def _lossless_float(val: int | float) -> bool:
    if isinstance(val, int):
        return abs(val) <= _FLOAT_MAX_INT
    if not math.isfinite(val):
        return True
    return -_FLOAT_MAX <= val <= _FLOAT_MAX


def _check_tensor(val: Any, level: int, dims: list[int], dtype: str) -> int:
    """FillTensorProto: validates a nested list against `dims`; returns the number of values."""
    rank = len(dims)
    if not isinstance(val, list):
        if level != rank:
            raise invalid(
                f"JSON Value: {value_to_string(val)} found at incorrect level: {level + 1} in the JSON DOM. "
                f"Expected at level: {rank}"
            )
        if isinstance(val, dict):
            raise _type_error(val, dtype)
        _check_scalar(val, dtype)
        return 1
    if level >= rank:
        raise invalid(f"Encountered list at unexpected level: {level} expected < {rank}")
    if len(val) != dims[level]:
        raise invalid(f"Encountered list at unexpected size: {len(val)} at level: {level} expected size: {dims[level]}")
    flat_numbers = level == rank - 1 and dtype == "DT_FLOAT" and all(type(v) in (float, int) for v in val)
    if flat_numbers and all(_lossless_float(v) for v in val):
        return len(val)  # fast path for the common case: a flat row of plain numbers
    return sum(_check_tensor(v, level + 1, dims, dtype) for v in val)


def _to_array(val: Any, dtype: str) -> np.ndarray:
    return np.asarray(val, dtype=DTYPES[dtype][0])


def _shape_text(dims: list[int]) -> str:
    return "[" + ",".join(str(d) for d in dims) + "]"


def _instances(rows: list[Any], tensorinfo: Mapping[str, str]) -> dict[str, np.ndarray]:
    """FillTensorMapFromInstancesList."""
    if not isinstance(rows[0], dict) and len(tensorinfo) > 1:
        raise invalid(
            "instances is a plain list, but expecting list of objects as multiple input tensors required as per "
            "tensorinfo_map"
        )
    objects = isinstance(rows[0], dict)
    names = sorted(tensorinfo)
    sizes: dict[str, int] = {}
    shapes: dict[str, list[int]] = {}
    columns: dict[str, list[Any]] = {name: [] for name in names}

    def add(item: Any, name: str) -> None:
        if name not in tensorinfo:
            raise invalid(f"JSON object: does not have named input: {name}")
        dims = dense_shape(item)
        size = _check_tensor(item, 0, dims, tensorinfo[name])
        if name not in sizes:
            sizes[name], shapes[name] = size, dims
        elif sizes[name] != size:
            raise invalid(f"Expecting tensor size: {sizes[name]} but got: {size}")
        elif shapes[name] != dims:
            raise invalid(f"Expecting shape {_shape_text(shapes[name])} but got: {_shape_text(dims)}")
        columns[name].append(item)

    for i, elem in enumerate(rows):
        if objects:
            if not isinstance(elem, dict):
                raise invalid(f"Expecting object but got list at item {i} of input list")
            for key, value in elem.items():
                try:
                    add(value, key)
                except ServingError as exc:
                    raise invalid(
                        f"Failed to process element: {i} key: {key} of 'instances' list. Error: {exc.to_string()}"
                    ) from exc
            if set(elem) != set(names):
                raise invalid(
                    f"Failed to process element: {i} of 'instances' list. JSON object: {value_to_string(elem)} "
                    f"must only have keys: {','.join(names)}"
                )
        else:
            if isinstance(elem, dict):
                raise invalid(f"Expecting value/list but got object at item {i} of input list")
            try:
                add(elem, names[0])
            except ServingError as exc:
                raise invalid(f"Failed to process element: {i} of 'instances' list. Error: {exc.to_string()}") from exc
    return {name: _to_array(columns[name], tensorinfo[name]) for name in names}


def _inputs(val: Any, tensorinfo: Mapping[str, str]) -> dict[str, np.ndarray]:
    """FillTensorMapFromInputsMap."""
    if not isinstance(val, dict):
        if len(tensorinfo) > 1:
            raise invalid(
                "inputs is a plain value/list, but expecting an object as multiple input tensors required as per "
                "tensorinfo_map"
            )
        name = next(iter(tensorinfo))
        _check_tensor(val, 0, dense_shape(val), tensorinfo[name])
        return {name: _to_array(val, tensorinfo[name])}
    out = {}
    for name in sorted(tensorinfo):
        if name not in val:
            raise invalid(f"Missing named input: {name} in 'inputs' object.")
        _check_tensor(val[name], 0, dense_shape(val[name]), tensorinfo[name])
        out[name] = _to_array(val[name], tensorinfo[name])
    return out


def parse_predict_request(body: bytes, input_dtypes: Any) -> PredictRequest:
    """FillPredictRequestFromJson. `input_dtypes(signature_name)` -> {input name: DT_* name}."""
    doc = parse_json(body)
    signature_name = doc.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise invalid(
            f"JSON Value: {value_to_string(doc)} not formatted correctly. 'signature_name' key must be a string value."
        )
    tensorinfo = input_dtypes(signature_name)
    if not tensorinfo:
        raise invalid(f"Failed to get input map for signature: {signature_name or 'DEFAULT'}")
    if "instances" in doc:
        if "inputs" in doc:
            raise invalid(
                f"JSON Value: {value_to_string(doc)} Not formatted correctly expecting only one of 'inputs' or "
                "'instances' keys to exist "
            )
        rows = doc["instances"]
        if not isinstance(rows, list):
            raise invalid(f"JSON Value: {value_to_string(doc)} Excepting 'instances' to be an list/array")
        if not rows:
            raise invalid(f"JSON Value: {value_to_string(doc)} No values in 'instances' array")
        return PredictRequest(signature_name, _instances(rows, tensorinfo), ROW)
    if "inputs" in doc:
        return PredictRequest(signature_name, _inputs(doc["inputs"], tensorinfo), COLUMNAR)
    raise invalid("Missing 'inputs' or 'instances' key")


def _float_text(v: float | np.floating) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "-Infinity" if v < 0 else "Infinity"
    text = str(v)  # numpy scalars print the shortest text that round-trips at their own precision
    return text if ("." in text or "e" in text) else text + ".0"


def _encode(value: Any) -> str:
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f":
            if value.ndim == 0:
                return _float_text(value.item())
            return "[" + ",".join(_encode(v) for v in value) + "]"
        return json.dumps(value.tolist())
    if isinstance(value, np.floating):
        return _float_text(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}: {_encode(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_encode(v) for v in value) + "]"
    return json.dumps(value)


def _float_rows(arr: np.ndarray) -> str:
    if arr.ndim == 2 and np.isfinite(arr).all():
        # One str() per value keeps float32's short form (0.2, not 0.20000000298023224), as TF Serving writes it.
        return "[" + ",".join("[" + ",".join(_float_text(v) for v in row) + "]" for row in arr) + "]"
    return _encode(arr)


def encode_predict_response(outputs: dict[str, np.ndarray], fmt: str) -> str:
    """MakeJsonFromTensors: one output -> the bare value; several -> objects per row (row) or a map (columnar)."""
    if len(outputs) == 1:
        (arr,) = outputs.values()
        body = _float_rows(arr) if arr.dtype.kind == "f" else _encode(arr)
        return f'{{"{"predictions" if fmt == ROW else "outputs"}": {body}}}'
    if fmt == ROW:
        n = len(next(iter(outputs.values())))
        rows = [{name: arr[i] for name, arr in outputs.items()} for i in range(n)]
        return '{"predictions": ' + _encode(rows) + "}"
    return '{"outputs": ' + _encode(dict(outputs)) + "}"
