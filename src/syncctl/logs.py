"""Log lines on stderr: one structured line per event, text or JSON, never a secret.

What an operator reads under cron or in journald: one line per applied
action (key, outcome, external reference), the run's summary, warnings. The
same records are JSON objects with `--log-format json`, for log shippers.

Records carry their structured fields in `extra={"fields": {...}}`; the text
format prints them as `key=value` pairs after the message. Every line goes
through a filter that replaces the configured secret values, whatever the
message, so a vendor echoing a token back cannot leak it into the logs.

`configure` is called once per CLI invocation; it returns a function that
puts the logging setup back as it was (the CLI calls it when the command
ends), so the library stays silent, and tests stay isolated, outside the CLI.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import IO, Any

LOGGER = "syncctl"
#: The logger of the per-action lines.
ACTIONS = "syncctl.actions"
#: The logger of run summaries and reports.
REPORT = "syncctl.report"
FORMATS = ("text", "json")
REDACTED = "[redacted]"
#: Shorter values are not redacted (they would mangle ordinary words).
_MIN_SECRET = 6


def level_for(verbosity: int, *, terminal: bool) -> int:
    """-q: warnings only; default: actions and summaries (errors only on a terminal,
    where tables show them); -v: one step more; -vv: debug."""
    if verbosity < 0:
        return logging.WARNING
    steps = [logging.WARNING, logging.INFO, logging.DEBUG] if terminal else [logging.INFO]
    steps += [logging.DEBUG]
    return steps[min(verbosity, len(steps) - 1)]


class SecretFilter(logging.Filter):
    """Replaces known secret values in a record's message and fields."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        super().__init__()
        self._values: list[str] = []
        self.add(values)

    def add(self, values: Iterable[str]) -> None:
        known = set(self._values) | {v for v in values if v and len(v) >= _MIN_SECRET}
        self._values = sorted(known, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self._values:
            record.msg = self.redact(record.getMessage())
            record.args = None
            fields = getattr(record, "fields", None)
            if isinstance(fields, Mapping):
                record.fields = {
                    k: self.redact(v) if isinstance(v, str) else v for k, v in fields.items()
                }
        return True


def _text_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if not text or any(c.isspace() or c in "\"'=" for c in text):
        return json.dumps(text, ensure_ascii=False)
    return text


class TextFormatter(logging.Formatter):
    """`message key=value ...`; warnings and errors prefixed with their level."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [record.getMessage()]
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            parts += [f"{k}={_text_value(v)}" for k, v in fields.items() if v not in (None, "")]
        line = " ".join(p for p in parts if p)
        if record.levelno >= logging.WARNING:
            line = f"{record.levelname.lower()}: {line}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, then the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            for key, value in fields.items():
                doc.setdefault(key, value)
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, ensure_ascii=False, separators=(",", ":"))


class _WriterHandler(logging.Handler):
    """Writes formatted lines through a callable (a rich console, or a stream)."""

    def __init__(self, write: Callable[[str], None]) -> None:
        super().__init__()
        self._write = write

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._write(self.format(record))
        except Exception:  # never let logging break a run
            self.handleError(record)


_filter = SecretFilter()


def configure(
    fmt: str = "text",
    verbosity: int = 0,
    *,
    terminal: bool = False,
    stream: IO[str] | None = None,
    write: Callable[[str], None] | None = None,
) -> Callable[[], None]:
    """Send syncctl's log records to stderr (or `write`); returns an undo function."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {FORMATS}")
    logger = logging.getLogger(LOGGER)
    saved = (list(logger.handlers), logger.level, logger.propagate)
    if write is None:
        out = stream if stream is not None else sys.stderr

        def write(line: str) -> None:
            out.write(line + "\n")
            out.flush()

    handler = _WriterHandler(write)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_filter)
    logger.handlers = [handler]
    logger.setLevel(level_for(verbosity, terminal=terminal))
    logger.propagate = False

    def undo() -> None:
        handlers, level, propagate = saved
        logger.handlers = handlers
        logger.setLevel(level)
        logger.propagate = propagate
        handler.close()

    return undo


def add_secrets(values: Iterable[str]) -> None:
    """Values that must never appear in a log line (the loaded secrets)."""
    _filter.add(values)


def redact(text: str) -> str:
    """`text` with every known secret value replaced."""
    return _filter.redact(text)


def event(logger: str, level: int, message: str, **fields: Any) -> None:
    """Log one record with structured fields."""
    logging.getLogger(logger).log(level, message, extra={"fields": fields})


def log_outcome(outcome: Any) -> None:
    """The line for one applied action: key, outcome, reference (and the error).

    A failure is a warning, and so is an action skipped because the service
    refused it before with the same inputs: it makes the run exit 1, so
    `-q` (cron mail) must still say which item and why.
    """
    status = str(outcome.status)
    held = status == "skipped" and bool(getattr(outcome, "refused", False))
    level = logging.WARNING if status == "failed" or held else logging.INFO
    event(
        ACTIONS,
        level,
        "action",
        key=outcome.key,
        system=outcome.action.system,
        kind=str(outcome.action.kind),
        who=outcome.action.subject,
        outcome=status,
        ref=outcome.ref,
        error=outcome.message if status == "failed" else None,
        reason=outcome.message if status == "skipped" else None,
    )
