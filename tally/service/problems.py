"""Errors as RFC 9457 problem details: the CLI's message, context and hint, as JSON.

Every error a request can meet answers ``application/problem+json`` with ``title`` (the
error's class), ``status``, ``detail`` (the message), ``context`` (where) and ``hint``
(what to do). Nothing else leaves: an unexpected error is logged and answered with its
class name only, never a traceback.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ledger.errors import (
    ChainIntegrityError,
    ConcurrencyError,
    IdempotencyConflict,
    StoreUnavailable,
    TallyError,
)
from ledger.redact import redact

log = logging.getLogger("tally.service")
PROBLEM = "application/problem+json"


class ServiceProblem(TallyError):
    """A refusal of the service itself (a missing token, an unknown run, a body too big)."""

    def __init__(self, status: int, message: str, *, hint: str, **context: Any) -> None:
        super().__init__(message, hint=hint, **context)
        self.status = status


def status_of(error: TallyError) -> int:
    if isinstance(error, ServiceProblem):
        return error.status
    if isinstance(error, ConcurrencyError | IdempotencyConflict | ChainIntegrityError):
        return 409
    if isinstance(error, StoreUnavailable):
        return 503
    return 422  # a user's input the ledger refuses


def problem(status: int, title: str, detail: str, hint: str, **context: Any) -> JSONResponse:
    body = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": redact(detail),
        "context": {k: _plain(v) for k, v in context.items()},
        "hint": hint,
    }
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return redact(str(value))


def install(app: FastAPI) -> None:
    """Answer every error the app can meet as a problem."""

    @app.exception_handler(TallyError)
    async def tally_error(_request: Request, error: TallyError) -> JSONResponse:
        status = status_of(error)
        # The service's own refusals are named by their status; the ledger's by their class.
        title = (
            HTTPStatus(status).phrase if isinstance(error, ServiceProblem) else type(error).__name__
        )
        return problem(status, title, error.message, error.hint, **error.context)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return problem(
            422,
            "InputError",
            f"{where}: {first.get('msg', 'invalid request')}",
            "see /docs for the parameters this endpoint takes",
            field=where,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        hint = "see /docs for the endpoints" if error.status_code in (404, 405) else ""
        title = HTTPStatus(error.status_code).phrase
        return problem(error.status_code, title, str(error.detail), hint)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.error(
            "internal error on %s %s: %s",
            request.method,
            request.url.path,
            type(error).__name__,
            exc_info=error,
        )
        return problem(
            500,
            "InternalError",
            f"internal error ({type(error).__name__}); nothing partial was committed",
            "this is a bug in Tally, not in your request; the service log has the details",
        )
