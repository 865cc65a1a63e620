"""Log lines carry the id of the request they belong to, and only those: an event-loop report (an aiohttp session
collected unclosed, an exception nobody retrieved) is written by a finalizer in whatever request is running, and
was blamed on it."""

from __future__ import annotations

import gc
import json
import logging

import aiohttp

from core.logging import JsonFormatter, TextFormatter, request_id_var


def _record(name: str) -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, "Unclosed client session", None, None)


def test_request_lines_carry_the_id_loop_reports_do_not() -> None:
    token = request_id_var.set("0123456789abcdef0123456789abcdef")
    try:
        own = json.loads(JsonFormatter().format(_record("rwa.http")))
        loop = json.loads(JsonFormatter().format(_record("asyncio")))
        text = TextFormatter("%(name)s: %(message)s").format(_record("asyncio"))
    finally:
        request_id_var.reset(token)
    assert own["request_id"] == "0123456789abcdef0123456789abcdef"
    assert "request_id" not in loop and "rid=" not in text


async def test_an_unclosed_session_collected_during_a_request_is_not_blamed_on_it(caplog) -> None:  # type: ignore[no-untyped-def]
    """The real report: aiohttp's ClientSession finalizer goes through the loop's exception handler (logger
    `asyncio`) while a request's id is set."""
    session = aiohttp.ClientSession()
    token = request_id_var.set("feedfacefeedfacefeedfacefeedface")
    try:
        with caplog.at_level(logging.ERROR, logger="asyncio"):
            del session
            gc.collect()
        reports = [r for r in caplog.records if "Unclosed client session" in r.getMessage()]
        assert reports and reports[0].name == "asyncio"
        assert "request_id" not in json.loads(JsonFormatter().format(reports[0]))
    finally:
        request_id_var.reset(token)
