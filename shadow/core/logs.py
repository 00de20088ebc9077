"""Logging for every shadow process: the level from `log_level`, and no secret in any log line.

`configure_logging(level)` installs one stderr handler on the root logger (calling it again replaces it, so
a second process or a test may call it freely) and a `ScrubbingFilter` on that handler and on aiohttp's own
loggers. The filter rewrites each record with `scrub`: URL query strings (`?api-key=...`), URL credentials
(`http://user:pass@host`) and `Bearer` tokens never reach a log line. aiohttp logs a malformed request
with the exception that rejected it, whose message quotes the offending header bytes (a cookie, a token);
such a record keeps only the exception's name and status.

Nothing happens at import time; the module needs only the standard library.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import TextIO
from urllib.parse import urlsplit

from shadow.core.settings import SettingsError

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
AIOHTTP_LOGGERS = ("aiohttp.access", "aiohttp.client", "aiohttp.internal", "aiohttp.server", "aiohttp.web")

REDACTED = "<redacted>"
_SCHEME = r"[A-Za-z][A-Za-z0-9+.-]*://"
# userinfo runs up to the last "@" before the first "/", so a password with an "@" in it goes too.
_CREDENTIALS_RE = re.compile(rf"(?P<scheme>{_SCHEME})[^\s/?#\"'<>@]*(?:@[^\s/?#\"'<>@]*)*@")
# A query only after a URL or a path (`GET /v1/x?key=...`), so that a question mark in prose is kept.
_QUERY_RE = re.compile(
    rf"(?P<base>(?:{_SCHEME}[^\s/?#\"'<>]*)?/[^\s?#\"'<>]*|{_SCHEME}[^\s/?#\"'<>]+)\?[^\s\"'<>]+"
)
# "a bearer token" in a sentence of ours is prose, not a secret.
_BEARER_RE = re.compile(r"\b(?P<word>Bearer)\s+(?!tokens?\b)[^\s\"',;]+", re.IGNORECASE)


def scrub(text: str) -> str:
    """`text` without URL query strings, URL credentials and bearer tokens.

    >>> scrub("GET http://bob:pw@vllm:8000/v1/chat?api-key=sk-1 with Bearer abc.def")
    'GET http://***@vllm:8000/v1/chat?<redacted> with Bearer <redacted>'
    """
    text = _CREDENTIALS_RE.sub(r"\g<scheme>***@", text)
    text = _QUERY_RE.sub(rf"\g<base>?{REDACTED}", text)
    return _BEARER_RE.sub(rf"\g<word> {REDACTED}", text)


def safe_url(url: str) -> str:
    """`scheme://host:port/path` of `url`: no credentials, no query, no fragment; for messages.

    >>> safe_url("postgresql+psycopg://shadow:pw@db.internal:5432/shadow?sslmode=require")
    'postgresql+psycopg://db.internal:5432/shadow'
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:  # a bad port or bracket: keep the text, minus anything secret
        return scrub(url.split("?", 1)[0].split("#", 1)[0])
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    if not parts.scheme:
        return scrub(parts.path)
    return f"{parts.scheme}://{netloc}{parts.path}"


def parse_level(level: str) -> int:
    """The `logging` level of a name (case-insensitive); a SettingsError names the accepted ones."""
    name = level.strip().upper() if isinstance(level, str) else ""
    if name not in LEVELS:
        raise SettingsError(
            f"log_level must be one of {', '.join(LEVELS[:-1])} or {LEVELS[-1]} (any case), got {level!r}"
        )
    return logging.getLevelName(name)


class ScrubbingFilter(logging.Filter):
    """Rewrites a record so that its message, traceback and stack carry no secret; never drops one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "shadow_scrubbed", False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # arguments that do not fit the format: keep the format string alone
            message = str(record.msg)
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and _is_rejected_request(exc):
            # The exception's text quotes the request bytes that broke the parser; its name is enough.
            status = getattr(exc, "code", None)
            message = f"{message}: {type(exc).__name__}" + (f" (HTTP {status})" if status else "")
            record.exc_info = None
            record.exc_text = None
        elif record.exc_info:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        record.msg = scrub(message)
        record.args = None
        record.shadow_scrubbed = True
        return True


def _is_rejected_request(exc: BaseException) -> bool:
    """An aiohttp parser error (bad header, line too long, bad method...), without importing aiohttp."""
    http_exceptions = sys.modules.get("aiohttp.http_exceptions")
    error_type = getattr(http_exceptions, "HttpProcessingError", None)
    return error_type is not None and isinstance(exc, error_type)


class _ShadowHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler `configure_logging` owns, so that a second call finds and replaces it."""


class _StderrHandler(_ShadowHandler):
    """Writes to whatever `sys.stderr` is when a record comes (a redirected stream, a test's capture)."""

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def configure_logging(level: str, *, stream: TextIO | None = None) -> None:
    """Log at `level` (DEBUG, INFO, WARNING, ERROR or CRITICAL) to `stream` (default: standard error).

    Idempotent: the handler of an earlier call is replaced, filters are not stacked. A bad level raises
    SettingsError before anything changes.
    """
    numeric = parse_level(level)
    scrubber = ScrubbingFilter()
    handler = _StderrHandler() if stream is None else _ShadowHandler(stream)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(scrubber)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _ShadowHandler)]:
        root.removeHandler(old)
        old.close()
    # First among the root's handlers: the record is scrubbed in place before any other handler sees it.
    root.handlers = [handler, *root.handlers]
    root.setLevel(numeric)
    # Records logged on these loggers are scrubbed where they are made, whatever handler ends up with them.
    for name in AIOHTTP_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, ScrubbingFilter) for f in logger.filters):
            logger.addFilter(scrubber)


__all__ = [
    "LEVELS",
    "ScrubbingFilter",
    "configure_logging",
    "parse_level",
    "safe_url",
    "scrub",
]
