"""JSON logs with a request id on every line of a request.

The request id lives in a contextvar set by the request-id middleware, so any logger used while a request
is being served (resolvers, db, redis) writes it without passing it around.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from contextvars import ContextVar

from core.tracing import current_ids

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
# Event-loop reports (a resource collected unclosed, a task's exception never retrieved) are written from a
# finalizer or callback in whatever request happens to be running: tagging them with its id blamed that request.
_LOOP_LOGGERS = ("asyncio",)


def _request_id(record: logging.LogRecord) -> str | None:
    if record.name.startswith(_LOOP_LOGGERS):
        return None
    return request_id_var.get()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = _request_id(record)
        if rid:
            payload["request_id"] = rid
        if (ids := current_ids()) is not None:
            payload["trace_id"], payload["span_id"] = ids
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        rid = _request_id(record)
        base = super().format(record)
        return f"{base} [rid={rid}]" if rid else base


def configure_logging(level: str = "INFO", json_logs: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if json_logs else TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
    # uvicorn's access log duplicates our request log line; httpx logs every RPC call at INFO; alembic's INFO
    # lines describe its plugins on every start
    for noisy in ("uvicorn.access", "httpx", "httpcore", "alembic.runtime.plugins"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
