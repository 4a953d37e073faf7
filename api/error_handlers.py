"""Every error the API returns has one shape, `{"error": "<what to do>"}`, and no secrets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kombu.exceptions import OperationalError
from starlette.exceptions import HTTPException

from worker.core.errors import ConfigError, LiteshiftError
from worker.core.logs import get_logger
from worker.core.redact import redact
from worker.core.serverpaths import hide_paths

log = get_logger(component="api")

MAX_REPORTED = 5  # validation problems listed in one message; the rest are summarised


class ApiError(Exception):
    """Raised by a route to answer with `status` and a message a person can act on."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def error_response(status: int, message: str,
                   headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": redact(hide_paths(message))}, status_code=status,
                        headers=dict(headers) if headers else None)


def install(app: FastAPI, *, redis_url: str) -> None:
    """Register the handlers that turn every failure into the one error shape."""

    async def api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.message, exc.headers)

    async def validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        content_type = request.headers.get("content-type", "")
        if _body_not_json(exc.errors(), content_type):
            return error_response(422, "request body must be JSON: send it with Content-Type: "
                                  f"application/json (got {content_type or 'none'!r})")
        return error_response(422, describe_validation(exc.errors()))

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        return error_response(exc.status_code, str(exc.detail), exc.headers)

    async def liteshift_error(_: Request, exc: Exception) -> JSONResponse:
        # ConfigError is the server's fault (say a key file it cannot read), not the caller's.
        return error_response(500 if isinstance(exc, ConfigError) else 422, str(exc))

    async def redis_down(_: Request, exc: Exception) -> JSONResponse:
        return error_response(503, f"cannot reach Redis at {redis_url} ({exc}): is it running?")

    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled_error", error=repr(exc), exc_info=exc)
        return error_response(500, "internal error in the liteshift API; see its log")

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(LiteshiftError, liteshift_error)
    app.add_exception_handler(redis.RedisError, redis_down)
    app.add_exception_handler(OperationalError, redis_down)  # kombu: publishing a task failed
    app.add_exception_handler(Exception, unexpected)


def _body_not_json(errors: Sequence[Any], content_type: str) -> bool:
    # FastAPI parses the body as JSON only when the request says it is JSON; `curl -d`
    # says form data, and the resulting "not a dictionary" error would puzzle people.
    whole_body = any(tuple(err.get("loc", ())) == ("body",) and err.get("type") != "missing"
                     for err in errors)
    return whole_body and "json" not in content_type.lower()


def describe_validation(errors: Sequence[Any]) -> str:
    """One readable sentence per problem, each naming the field ("options.chunk_rows: …")."""
    parts = [_describe(err) for err in errors[:MAX_REPORTED]]
    if len(errors) > MAX_REPORTED:
        parts.append(f"and {len(errors) - MAX_REPORTED} more problem(s)")
    return "; ".join(parts) or "invalid request"


def _describe(err: dict[str, Any]) -> str:
    kind = err.get("type", "")
    field = _field(err.get("loc", ()))
    if kind == "json_invalid":
        detail = (err.get("ctx") or {}).get("error", "malformed JSON")
        return f"request body is not valid JSON ({detail}): send a JSON object"
    if not field:
        if kind == "missing":
            return "request body is missing: send a JSON object"
        return f"request body must be a JSON object ({err.get('msg')})"
    if kind == "extra_forbidden":
        return f"{field}: unknown field; see /docs for the accepted fields"
    if kind == "missing":
        return f"{field}: required"
    return f"{field}: {_message(err)}"


def _field(loc: Any) -> str:
    # loc starts with where the value came from ("body", "query", "path"); people think
    # in the JSON field names, so leave that out.
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    return ".".join(parts)


def _message(err: dict[str, Any]) -> str:
    msg = str(err.get("msg", "invalid value"))
    return msg.removeprefix("Value error, ")
