"""A request aiohttp's parser refuses (a NUL in a header) is one INFO line, not an ERROR with a
traceback (issue #21: rejected input leaves no traceback in the log)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from server.kernel.logging import MalformedRequestFilter


async def test_a_header_with_a_nul_is_refused_with_one_info_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server_log = logging.getLogger("aiohttp.server")
    log_filter = MalformedRequestFilter()
    server_log.addFilter(log_filter)
    server = TestServer(web.Application())
    await server.start_server()
    try:
        with caplog.at_level(logging.INFO, logger="aiohttp.server"):
            reader, writer = await asyncio.open_connection(server.host, server.port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Probe: \x00\r\n\r\n")
            await writer.drain()
            status = await reader.readline()
            writer.close()
            await writer.wait_closed()
    finally:
        await server.close()
        server_log.removeFilter(log_filter)
    assert b" 400 " in status, status
    records = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert records, "aiohttp logged nothing: the test no longer provokes its parser"
    assert all(r.exc_info is None and r.levelno == logging.INFO for r in records)
    assert "malformed HTTP request refused" in records[0].getMessage()
