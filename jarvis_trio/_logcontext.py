"""Log records that say where they come from: ``node``, ``agent`` and ``correlation_id``.

The runtime logs from many modules and tasks; rather than passing ids to every call, the node
and agent tasks set context variables (Trio tasks inherit their spawner's context), and a
log-record factory copies them onto each record as ``record.node``, ``record.agent`` and
``record.correlation_id`` (``None`` where there is none). A value passed explicitly with
``extra=`` wins: the context values are stored under private names and read through
non-data descriptors, so ``extra={"node": ...}`` neither collides (``makeRecord`` refuses to
overwrite an attribute) nor is shadowed. The factory is installed once, when the first node
is built, wraps whatever factory was installed before, and costs three ``ContextVar.get``
per record.

:class:`JsonFormatter` prints one JSON object per record (``JC_LOG_FORMAT=json`` for
``jarvis-trio run``), with those fields and any other ``extra``.
"""

from __future__ import annotations

import json
import logging
import time
from contextvars import ContextVar
from typing import Any

__all__ = [
    "CURRENT_AGENT",
    "CURRENT_CORRELATION",
    "CURRENT_NODE",
    "JsonFormatter",
    "install_record_factory",
]

CURRENT_NODE: ContextVar[str | None] = ContextVar("jarvis_trio_node", default=None)
CURRENT_AGENT: ContextVar[str | None] = ContextVar("jarvis_trio_agent", default=None)
CURRENT_CORRELATION: ContextVar[str | None] = ContextVar("jarvis_trio_correlation", default=None)

_installed = False
_FIELDS = ("node", "agent", "correlation_id")


def install_record_factory() -> None:
    """Make every log record carry ``node``, ``agent`` and ``correlation_id`` (idempotent)."""
    global _installed
    if _installed:
        return
    _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        values = record.__dict__
        values["_jt_node"] = CURRENT_NODE.get()
        values["_jt_agent"] = CURRENT_AGENT.get()
        values["_jt_correlation_id"] = CURRENT_CORRELATION.get()
        if type(record) is logging.LogRecord:
            record.__class__ = _ContextRecord
        else:  # another library's record class: plain attributes, unless already there
            for name in _FIELDS:
                values.setdefault(name, values["_jt_" + name])
        return record

    logging.setLogRecordFactory(factory)


class _FromContext:
    """A non-data descriptor: ``record.<name>`` is the context value captured at creation,
    unless ``extra=`` put ``<name>`` in the record's own ``__dict__`` (which then wins)."""

    def __init__(self, name: str) -> None:
        self.slot = "_jt_" + name

    def __get__(self, record: object, owner: type | None = None) -> Any:
        if record is None:
            return self
        return record.__dict__.get(self.slot)


class _ContextRecord(logging.LogRecord):
    node = _FromContext("node")
    agent = _FromContext("agent")
    correlation_id = _FromContext("correlation_id")


# attributes every LogRecord has; anything else on a record came from ``extra=``
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, node, agent, correlation_id,
    every other ``extra`` field, and the exception text when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _FIELDS:
            out[name] = getattr(record, name, None)
        for name, value in vars(record).items():
            if name not in _STANDARD and name not in out and not name.startswith("_jt_"):
                out[name] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)
