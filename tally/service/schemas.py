"""The API's documented shapes (OpenAPI), and the small bodies read by hand."""

from __future__ import annotations

import re
from typing import Any

import msgspec
from fastapi import FastAPI
from pydantic import BaseModel

from ledger.events import EVENT_TYPES
from tally.service.problems import ServiceProblem

STREAM_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+/=-]{0,199}")


class Problem(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    context: dict[str, Any]
    hint: str


class Appended(BaseModel):
    positions: list[int]
    version: int


class EventOut(BaseModel):
    position: int
    stream: str
    version: int
    type: str
    recorded_at: str
    run_id: str | None
    causation_id: str | None
    correlation_id: str | None
    idempotency_key: str | None
    data: dict[str, Any]
    hash: str


class EventsPage(BaseModel):
    events: list[EventOut]
    next_position: int


# What every /v1 operation can answer besides its own codes, and what they mean.
COMMON_PROBLEMS = {
    "401": "no token, or an unknown or revoked one",
    "403": "the token's scope does not allow this",
    "404": "no such run, account or view data",
    "422": "a parameter or the body is invalid",
    "500": "a bug in Tally (nothing partial was committed)",
    "503": "the ledger is unavailable; retry later",
}


def document_problems(app: FastAPI) -> None:
    """Document every error answer as application/problem+json with the Problem schema."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        spec = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = spec.setdefault("components", {}).setdefault("schemas", {})
        components["Problem"] = Problem.model_json_schema()
        problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
        for path, operations in spec.get("paths", {}).items():
            for operation in operations.values():
                answers = operation.setdefault("responses", {})
                if path.startswith("/v1/"):
                    for code, text in COMMON_PROBLEMS.items():
                        answers.setdefault(code, {"description": text})
                for code, answer in answers.items():
                    if code[0] in "45":
                        answer["content"] = problem
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]


def append_request_body(service_only: frozenset[str]) -> dict[str, Any]:
    """The append body's JSON schema (the body is read with msgspec, exactly)."""
    client_types = sorted(set(EVENT_TYPES) - service_only)
    return {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["events"],
                    "additionalProperties": False,
                    "properties": {
                        "events": {
                            "type": "array",
                            "minItems": 1,
                            "items": {
                                "type": "object",
                                "required": ["type"],
                                "additionalProperties": False,
                                "properties": {
                                    "type": {"type": "string", "enum": client_types},
                                    "data": {"type": "object"},
                                },
                            },
                        },
                        "expected_version": {
                            "anyOf": [{"type": "integer", "minimum": 0}, {"type": "null"}]
                        },
                    },
                },
                "example": {
                    "events": [
                        {
                            "type": "FundsDeposited",
                            "data": {"account": "main", "asset": "USDT", "amount": "1000"},
                        }
                    ],
                    "expected_version": 0,
                },
            }
        },
    }


VERIFY_BODY: dict[str, Any] = {
    "required": False,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"full": {"type": "boolean"}},
            }
        }
    },
}


class _VerifyBody(msgspec.Struct, forbid_unknown_fields=True):
    full: bool = False


def read_verify(body: bytes) -> bool:
    if not body.strip():
        return False
    try:
        return msgspec.json.decode(body, type=_VerifyBody).full
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise ServiceProblem(
            422, f"the body is not a verify request: {e}", hint='send {"full": true} or nothing'
        ) from e


def check_stream(stream: str) -> None:
    if not STREAM_PATTERN.fullmatch(stream):
        raise ServiceProblem(
            422,
            f"stream name {stream[:60]!r} is refused",
            hint="1-200 of letters, digits and . _ : @ + / = - (starting with a letter or digit)",
            field="stream",
        )
