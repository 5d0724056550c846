"""An append request, read into events: every event checked before anything is written.

The body is decoded with msgspec straight from its bytes, so a JSON number such as ``1.10``
becomes ``Decimal("1.10")`` exactly (never a float on the way). A field the event type does
not have is refused, not ignored; so are the types only Tally itself records (tokens, runs,
alerts, configuration changes): a client with an append token cannot issue a token.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from ledger import events
from ledger.codec import encode_event
from ledger.errors import TallyError
from tally.service.problems import ServiceProblem

# Recorded by Tally itself, never by a client.
SERVICE_ONLY = frozenset(
    {
        "TokenIssued",
        "TokenRevoked",
        "RunStarted",
        "RunFinished",
        "RunResumed",
        "RunStopped",
        "LedgerUnavailable",
        "LedgerRecovered",
        "AlertRaised",
        "AlertResolved",
        "AlertDeliveryFailed",
        "ConfigChanged",
        "ConfigRejected",
    }
)
RESERVED_STREAM_PREFIX = "tally/"  # the service's own streams (tokens)


class EventIn(msgspec.Struct, forbid_unknown_fields=True):
    type: str
    data: msgspec.Raw = msgspec.Raw(b"{}")


class AppendBody(msgspec.Struct, forbid_unknown_fields=True):
    events: list[EventIn]
    expected_version: int | None = None


_body = msgspec.json.Decoder(AppendBody)
_keys = msgspec.json.Decoder(dict[str, msgspec.Raw])
_decoders: dict[str, msgspec.json.Decoder[Any]] = {
    name: msgspec.json.Decoder(cls) for name, cls in events.EVENT_TYPES.items()
}


def _field_of(message: str) -> str:
    """The field a msgspec validation message names (``... - at `$.amount```, or ``missing
    required field `account```)."""
    found = re.search(r"\$\.(\w+)", message) or re.search(r"field `(\w+)`", message)
    return found.group(1) if found else ""


def _refuse(message: str, hint: str, **where: Any) -> ServiceProblem:
    return ServiceProblem(422, message, hint=hint, **where)


def read_append(stream: str, body: bytes, events_max: int) -> tuple[list[events.Event], int | None]:
    """(events, expected_version) of an append body; ``ServiceProblem`` naming the event and
    field of the first thing wrong."""
    if stream.startswith(RESERVED_STREAM_PREFIX):
        raise _refuse(
            f"stream {stream!r} is Tally's own",
            hint=f"streams starting with {RESERVED_STREAM_PREFIX!r} are reserved",
            stream=stream,
        )
    try:
        request = _body.decode(body)
    except msgspec.DecodeError as e:
        raise _refuse(f"the body is not valid JSON: {e}", hint="send a JSON object") from e
    except msgspec.ValidationError as e:
        raise _refuse(
            f"the body is not an append: {e}",
            hint='send {"events": [{"type": T, "data": {...}}], "expected_version": N | null}',
        ) from e
    if not request.events:
        raise _refuse("no events to append", hint="send at least one event", field="events")
    if len(request.events) > events_max:
        raise ServiceProblem(
            413,
            f"{len(request.events):,} events in one append; at most {events_max:,}",
            hint="split the append (service.append_events_max sets the limit)",
            field="events",
        )
    if request.expected_version is not None and request.expected_version < 0:
        raise _refuse(
            "expected_version must be >= 0 or null",
            hint="0 is a new stream",
            field="expected_version",
        )
    out = []
    for index, item in enumerate(request.events):
        out.append(_event(index, item))
    return out, request.expected_version


def _event(index: int, item: EventIn) -> events.Event:
    where = f"events[{index}]"
    cls = events.EVENT_TYPES.get(item.type)
    if cls is None:
        raise _refuse(
            f"{where}: unknown event type {item.type!r}",
            hint="the event types are listed in /openapi.json (EventIn.type)",
            event=index,
            field="type",
        )
    if item.type in SERVICE_ONLY:
        raise _refuse(
            f"{where}: {item.type} is recorded by Tally itself",
            hint="append the events of your own system (fetches, orders, trades, fees ...)",
            event=index,
            field="type",
        )
    try:
        keys = _keys.decode(item.data)
    except (msgspec.ValidationError, msgspec.DecodeError) as e:
        raise _refuse(f"{where}.data must be an object: {e}", hint="", event=index) from e
    unknown = sorted(set(keys) - set(cls.__struct_fields__))
    if unknown:
        raise _refuse(
            f"{where}: {item.type} has no field {unknown[0]!r}",
            hint=f"its fields are {', '.join(cls.__struct_fields__)}",
            event=index,
            field=unknown[0],
        )
    try:
        event: events.Event = _decoders[item.type].decode(item.data)
    except msgspec.ValidationError as e:
        field = _field_of(str(e))
        raise _refuse(
            f"{where}: {item.type}: {e}",
            hint=f"its fields are {', '.join(cls.__struct_fields__)}",
            event=index,
            field=field or "data",
        ) from e
    try:
        encode_event(event)  # the catalog's own checks: bounds, positivity, times, names
    except TallyError as e:
        raise _refuse(
            f"{where}: {e.message}", hint=e.hint, event=index, field=str(e.context.get("field", ""))
        ) from e
    except TypeError as e:  # a float where money belongs cannot come from JSON; say so anyway
        raise _refuse(f"{where}: {e}", hint="send amounts as strings", event=index) from e
    return event
