"""Log setup: request, room and peer ids on every record; JSON lines when configured."""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")
room_id_var: ContextVar[str] = ContextVar("room_id", default="-")
peer_id_var: ContextVar[str] = ContextVar("peer_id", default="-")


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        record.room_id = room_id_var.get()
        record.peer_id = peer_id_var.get()
        return True


class MalformedRequestFilter(logging.Filter):
    """aiohttp logs a request its HTTP parser rejects (a NUL in a header, a bad request line)
    at ERROR with a traceback, although it answered 400 and nothing failed on our side: such
    input is the client's problem, so it becomes one INFO line without a traceback (a probe
    must not fill the log with tracebacks, issue #21)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from aiohttp.http_exceptions import HttpProcessingError

        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            record.msg = "malformed HTTP request refused: %s"
            record.args = (first[:200],)
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "at": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
            "room_id": getattr(record, "room_id", "-"),
            "peer_id": getattr(record, "peer_id", "-"),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def configure(level: str = "INFO", *, json_lines: bool = False) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(ContextFilter())
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s %(levelname)s %(name)s [req=%(request_id)s room=%(room_id)s "
                "peer=%(peer_id)s] %(message)s"
            )
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel("WARNING")
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, MalformedRequestFilter) for f in server_log.filters):
        server_log.addFilter(MalformedRequestFilter())
