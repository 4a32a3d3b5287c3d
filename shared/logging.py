"""structlog set-up: JSON in production, console in dev; the correlation id rides a contextvar."""
from __future__ import annotations

import logging
import sys
from contextvars import ContextVar

import structlog

correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)


def _add_correlation_id(_, __, event_dict):
    cid = correlation_id.get()
    if cid and "correlation_id" not in event_dict:
        event_dict["correlation_id"] = cid
    return event_dict


def configure(production: bool, level: str = "INFO") -> None:
    renderer = structlog.processors.JSONRenderer() if production else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _add_correlation_id,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # aiohttp logs requests it refuses at the protocol level (bad request lines, broken chunking) with a
    # traceback at ERROR; the caller already got a 4xx, so they are not server errors
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)


def get_logger(name: str):
    return structlog.get_logger(name)
