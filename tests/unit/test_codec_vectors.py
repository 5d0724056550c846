"""Pinned canonical bytes and chain hashes. If this test fails, stored ledgers no longer
verify: change the codec only deliberately, with a migration story."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import msgspec
import pytest

from ledger import events
from ledger.codec import (
    GENESIS_HASH,
    Envelope,
    chain_hash,
    decode_record,
    encode_event,
    encode_record,
    encode_records,
)

pytestmark = pytest.mark.smoke

RECORDED_AT = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)

VECTORS: list[tuple[str, events.Event, bytes, str]] = [
    (
        "run/r1",
        events.RunStarted(
            run_id="r1",
            mode="backtest",
            seed=42,
            config={"b": 1, "a": [1, 2]},
            config_hash="c0ffee",
            code_version="0.1.0",
        ),
        b'[1,"run/r1",1,"RunStarted","2026-01-02T03:04:05.678901Z","r1",null,null,null,'
        b'{"type":"RunStarted","run_id":"r1","mode":"backtest","seed":42,'
        b'"config":{"a":[1,2],"b":1},"config_hash":"c0ffee","code_version":"0.1.0"}]',
        "f7d7002f9cb9c898b279408fbff92b145c2b7e7e553db07cf90c4dcf2fe35503",
    ),
    (
        "portfolio/main",
        events.FundsDeposited(account="main", asset="USDT", amount=Decimal("10000.00")),
        b'[2,"portfolio/main",1,"FundsDeposited","2026-01-02T03:04:05.678901Z","r1",null,"c2",'
        b'null,{"type":"FundsDeposited","account":"main","asset":"USDT","amount":"10000.00"}]',
        "89d2d1b3a0d95c29e099f1c6ac23d67337e4feb1c50a6c1f499a63b4868e107b",
    ),
    (
        "symbol/BTC-USDT",
        events.SnapshotSealed(
            snapshot_id="s1",
            fresh=2,
            stale=1,
            failed=0,
            marks={"ETH/USDT": Decimal("3000.5"), "BTC/USDT": Decimal("100000.00")},
        ),
        b'[3,"symbol/BTC-USDT",1,"SnapshotSealed","2026-01-02T03:04:05.678901Z","r1",null,"c3",'
        b'null,{"type":"SnapshotSealed","snapshot_id":"s1","fresh":2,"stale":1,"failed":0,'
        b'"marks":{"BTC/USDT":"100000.00","ETH/USDT":"3000.5"}}]',
        "426ec794e2d22084cb3c94cb6ad151d8533e3d6d841070abe3e13ee7650f9780",
    ),
    (
        "portfolio/main",
        events.TradeExecuted(
            account="main",
            symbol="BTC/USDT",
            side="buy",
            qty=Decimal("0.12346"),
            price=Decimal("100000.00"),
            order_id="o1",
            trade_id="t1",
        ),
        b'[4,"portfolio/main",1,"TradeExecuted","2026-01-02T03:04:05.678901Z","r1",null,"c4",'
        b'null,{"type":"TradeExecuted","account":"main","symbol":"BTC/USDT","side":"buy",'
        b'"qty":"0.12346","price":"100000.00","order_id":"o1","trade_id":"t1"}]',
        "890630c5ebb991762c7601394b5b17b2c51fc34ffc6c653a7dbe84bfdd4363a1",
    ),
    (
        "portfolio/main",
        events.FeeCharged(account="main", trade_id="t1", asset="USDT", amount=Decimal("12.35")),
        b'[5,"portfolio/main",1,"FeeCharged","2026-01-02T03:04:05.678901Z","r1",null,"c5",'
        b'null,{"type":"FeeCharged","account":"main","trade_id":"t1","asset":"USDT",'
        b'"amount":"12.35"}]',
        "e9e8c94bb9b52f5f45d02356a86dadd074fe44d23592b31b9292f9e92028416f",
    ),
    (
        "symbol/BTC-USDT",
        events.StalePriceUsed(
            symbol="BTC/USDT",
            price=Decimal("99999.99"),
            as_of=datetime(2026, 1, 2, 3, 0, 0, tzinfo=UTC),
            age_s=Decimal("305.678901"),
            reason="primary down: RequestTimeout",
        ),
        b'[6,"symbol/BTC-USDT",1,"StalePriceUsed","2026-01-02T03:04:05.678901Z","r1",null,"c6",'
        b'null,{"type":"StalePriceUsed","symbol":"BTC/USDT","price":"99999.99",'
        b'"as_of":"2026-01-02T03:00:00Z","age_s":"305.678901",'
        b'"reason":"primary down: RequestTimeout"}]',
        "6d556440cbc0942fbff2cbf48156993702cd6ff6b8b03eb00474a8de8eea0704",
    ),
]


def encoded(position: int, stream: str, event: events.Event) -> bytes:
    correlation = None if position == 1 else f"c{position}"
    return encode_record(
        Envelope(recorded_at=RECORDED_AT, run_id="r1", correlation_id=correlation),
        event,
        position=position,
        stream=stream,
        version=1,
    )


def test_canonical_records_are_pinned() -> None:
    for position, (stream, event, record, _) in enumerate(VECTORS, start=1):
        assert encoded(position, stream, event) == record


def test_chain_hashes_are_pinned() -> None:
    prev = GENESIS_HASH
    for _stream, _event, record, expected in VECTORS:
        prev = chain_hash(prev, record)
        assert prev.hex() == expected


def test_records_decode_back_to_the_same_events() -> None:
    for position, (stream, event, record, _) in enumerate(VECTORS, start=1):
        recorded = decode_record(record)
        assert (recorded.position, recorded.stream, recorded.version) == (position, stream, 1)
        assert recorded.event == event
        assert recorded.recorded_at == RECORDED_AT
        assert encoded(position, stream, recorded.event) == record


def test_a_run_of_records_encoded_at_once_is_byte_for_byte_the_pinned_records() -> None:
    # The appender's path without an idempotency key: each event nested in its record by
    # one encoder call. It must write exactly what encode_record writes.
    for position, (stream, event, record, _) in enumerate(VECTORS, start=1):
        correlation = None if position == 1 else f"c{position}"
        envelope = Envelope(recorded_at=RECORDED_AT, run_id="r1", correlation_id=correlation)
        (only,) = encode_records(
            envelope, stream, [event], first_position=position, first_version=1
        )
        assert only == record
    run = [event for _, event, _, _ in VECTORS]
    envelope = Envelope(recorded_at=RECORDED_AT, idempotency_key="k")
    together = encode_records(envelope, "s", run, first_position=7, first_version=3)
    one_by_one = [
        encode_record(envelope, event, position=7 + i, stream="s", version=3 + i)
        for i, event in enumerate(run)
    ]
    assert together == one_by_one


def test_runs_recorded_before_the_catalog_version_read_as_catalog_1() -> None:
    # A field added with a default is left out of the bytes while it has that default: the
    # pinned RunStarted (written before `catalog` existed) decodes as version 1 and
    # re-encodes unchanged, and a run of a later version says so in its own bytes.
    stream, _, record, _ = VECTORS[0]
    started = decode_record(record).event
    assert isinstance(started, events.RunStarted) and started.catalog == 1
    current = msgspec.structs.replace(started, catalog=events.CATALOG)
    assert events.CATALOG == 3
    assert encoded(1, stream, current) == record[:-2] + b',"catalog":3}]'


def test_a_seal_without_folded_fetches_keeps_its_bytes() -> None:
    # Catalog 3 added SnapshotSealed.fetched with a default: seals recorded before it (and
    # every seal of a run whose sources are not local) encode exactly as they did.
    sealed = events.SnapshotSealed(
        snapshot_id="0-x", fresh=1, stale=0, failed=0, marks={"BTC/USDT": Decimal("1.5")}
    )
    assert b"fetched" not in encode_event(sealed)
    folded = msgspec.structs.replace(sealed, fetched={"BTC/USDT": "candles"})
    assert encode_event(folded) == encode_event(sealed)[:-1] + b',"fetched":{"BTC/USDT":"candles"}}'
    assert events.sealed_fetches(folded) == [
        events.FetchSucceeded(
            source="candles", endpoint="ticker", symbol="BTC/USDT", attempt=1, latency_ms=0
        )
    ]
