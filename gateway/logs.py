"""The gateway's logs: one JSON object a line on stderr, written by a background thread so a request never waits for
the terminal or a log pipe.

What is logged: start-up (version, backends, models, limits), backend readiness changes, every 5xx the gateway makes
and every unexpected exception with its traceback, and, when GATEWAY_ACCESS_LOG is on, one line a request. Every
line about a request carries its id: X-Request-Id as the client sent it (or one made here), returned in the answer
and forwarded upstream (the id lives in a context variable, so the upstream clients read it without being passed it).
"""

from __future__ import annotations

import contextvars
import logging
import logging.handlers
import os
import queue
import sys
import time
import traceback
from typing import Any

import orjson

log = logging.getLogger("gateway")
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
_listener: logging.handlers.QueueListener | None = None


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        line.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            line["error"] = f"{record.exc_info[0].__name__}: {record.exc_info[1]}" if record.exc_info[0] else ""
            line["traceback"] = "".join(traceback.format_exception(*record.exc_info))
        return orjson.dumps(line, default=str).decode()


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """sys.stderr as it is when a line is written (tests capture it; a process may replace it)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


class _Enqueue(logging.handlers.QueueHandler):
    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record  # formatted in the listener's thread, not the request's


def configure() -> None:
    """Once per process: the "gateway" logger's lines go through a queue to a thread that writes them."""
    global _listener
    if _listener is not None:
        return
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    out = _Stderr()
    out.setFormatter(JsonFormatter())
    _listener = logging.handlers.QueueListener(records, out)
    _listener.start()
    log.addHandler(_Enqueue(records))
    log.setLevel(logging.INFO)
    log.propagate = False


def flush() -> None:
    """Write every line logged so far (the listener drains its queue as it stops), then go on."""
    if _listener is not None:
        _listener.stop()
        _listener.start()


def event(message: str, level: int = logging.INFO, exc_info: Any = None, **fields: Any) -> None:
    rid = REQUEST_ID.get()
    if rid is not None:
        fields.setdefault("request_id", rid)
    log.log(level, message, exc_info=exc_info, extra={"fields": fields})


def request_id(headers: list[tuple[bytes, bytes]]) -> str:
    """The client's X-Request-Id when it is a sane token (printable ASCII, at most 128 characters), else a new one."""
    for key, value in headers:
        if key == b"x-request-id":
            if 0 < len(value) <= 128 and value.isascii():
                text = value.decode("ascii")
                if text.isprintable():
                    return text
            break
    return os.urandom(8).hex()
