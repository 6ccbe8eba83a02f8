"""The cheapest accept: a request body of plain numbers, checked on its bytes without building 4,096 floats.

At 64 rows, decoding a body into Python floats (msgspec, with the rules: ~95 µs) is most of what the gateway does
and a passthrough does not. Most bodies are plain: `{"instances": [[0.0, 0.3125, ...], ...]}`, one key, every
number written with a point and no exponent. For those the rules (gateway/schemas.py) can be read off the bytes:
- well-formed JSON: msgspec parses it without building anything (`msgspec.Raw`), refusing what any parser would;
- the shape, one comparison: with digits, minus signs and whitespace taken out, the body must be exactly
  `{"instances":[[.,.,...,.],...,[.,.,...,.]]}` with `width` points in every row. So: one key, once, no escape, no
  other string, no boolean, null, NaN, Infinity, exponent or nested value; at least one row, each of `width`
  numbers, each with one point;
- so a number at or beyond 1e6 has 7 digits before its point (JSON allows no leading zero): any such body goes to
  the validators (1000000.0 itself included). With no exponent, every number is finite.

Whatever this does not take (None: integers, exponents, any other spelling) is judged as before: msgspec's typed
accept, then pydantic's verdict and messages. It only ever accepts what those accept, with the same rows (a property
test holds it to that); the body is forwarded as it came, as before.
"""

from __future__ import annotations

import functools

import msgspec

_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_WHITESPACE_AND_MINUS = b" \t\r\n-"
_HEAD, _TAIL = b'{"instances":[', b"]}"
_RAW = msgspec.json.Decoder(msgspec.Raw)


@functools.lru_cache(maxsize=1024)
def _skeleton(rows: int, width: int) -> bytes:
    """What a plain body of `rows` x `width` numbers leaves once its digits, signs and spaces are out: a point for
    each number."""
    return _HEAD + b",".join([b"[" + b".," * (width - 1) + b".]"] * rows) + _TAIL


def plain_rows(body: bytes, width: int) -> int | None:
    """The row count of a plain body that is a valid request for rows of `width` features, else None (not
    necessarily invalid: the validators say)."""
    zeros = body.translate(_DIGITS_TO_ZERO, _WHITESPACE_AND_MINUS)  # {"instances":[[0.0,0.0000,...],[...]]}
    skeleton = zeros.translate(None, b"0")  # {"instances":[[.,.,...,.],[...]]}
    rows, extra = divmod(len(skeleton) - len(_HEAD) - len(_TAIL) + 1, 2 * width + 2)
    if rows < 1 or extra or skeleton != _skeleton(rows, width) or b'"instances"' not in body:
        return None
    if b"0000000." in zeros:
        return None  # 7 digits before a point: at or beyond 1e6
    try:
        _RAW.decode(body)  # well-formed JSON throughout, nothing after it
    except msgspec.DecodeError:
        return None
    return rows
