"""Paper and live runs against the recorded exchange server: real ccxt, real HTTP, real clock."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from ledger import events, open_store
from tally.run.live import exchange_from_environment, run_live
from tally.run.settings import LiveSettings, StrategySettings
from tally.settings import Settings
from tests.conftest import shared_data
from tests.support.recorded_exchange import Fault, RecordedExchangeServer, _rewrite, fixture_cases

ALWAYS_BUY = StrategySettings(params={"window": 2, "margin": "-0.5", "allocation": "0.1"})


class FixedBuy:
    """Asks for 0.001 BTC at cycle 1, whatever the books say (a live account may be empty)."""

    def decide(self, view: Any) -> list[Any]:
        from ingest.venues import OrderIntent

        if view.cycle != 1:
            return []
        return [OrderIntent(view.account, "BTC/USDT", "buy", Decimal("0.001"), intent="t")]


def settings_for(
    symbols: list[str], cache: Path, strategy: StrategySettings = ALWAYS_BUY
) -> Settings:
    base = Settings()
    live = LiveSettings(
        symbols=symbols, interval_s=0.01, warmup_candles=1, warmup_timeframe="1h", cache_dir=cache
    )
    run = base.run.model_copy(update={"live": live, "strategy": strategy})
    return base.model_copy(update={"run": run})


async def paper_run(store: Any, settings: Settings, server: Any, **options: Any) -> Any:
    """A paper run of ``settings`` against the recorded server's bitstamp."""
    return await run_live(
        store,
        settings.run,
        settings.ingest,
        config=settings.run_config(),
        exchange=server.exchange("bitstamp"),
        mode="paper",
        **options,
    )


async def with_server(scenario: Any) -> Any:
    data = shared_data("ccxt")
    server = RecordedExchangeServer(data)
    for method in ("fetchTicker", "fetchOHLCV"):
        for case in fixture_cases(data, "bitstamp", method):
            await server.learn("bitstamp", method, case)
    await server.start()
    try:
        return await scenario(server)
    finally:
        await server.stop()


def test_a_paper_run_prices_through_ccxt_and_books_on_the_paper_venue(
    ledger_url: str, tmp_path: Path
) -> None:
    settings = settings_for(["BTC/USDT"], tmp_path / "cache")

    async def scenario(server: RecordedExchangeServer) -> Any:
        # The warm-up's candles are answered; the first ticker request fails, is retried.
        server.plan.then(Fault.delay(0), Fault.http(503))
        with open_store(ledger_url) as store:
            first = await paper_run(
                store,
                settings,
                server,
                cycles=3,
                interval_s=0.01,
            )
            again = await paper_run(
                store,
                settings,
                server,
                cycles=1,
                interval_s=0.01,
            )
            return first, again, len([r for r in server.requests if "ohlc" in r])

    summary, again, ohlcv_requests = asyncio.run(with_server(scenario))
    # Warm-up candles came through the parquet cache: fetched once, then served from it.
    assert ohlcv_requests == 1
    manifests = sorted((tmp_path / "cache" / "manifests").glob("*.json"))
    assert [m.stem for m in manifests] == sorted([summary.run_id, again.run_id])
    assert summary.mode == "paper" and summary.counts["cycles"] == 3
    assert summary.counts["retries"] == 1 and summary.counts["fresh"] == 3
    assert summary.counts["trades"] == 1  # warmed up: bought at the first cycle, once
    with open_store(ledger_url) as store:
        assert store.verify().events == summary.events + again.events
        found = [r.event for r in store.read_all()]
    kinds = [type(e).__name__ for e in found]
    assert kinds[0] == "RunStarted" and kinds[-1] == "RunFinished"
    for kind in (
        "FetchFailed",
        "RetryScheduled",
        "FetchSucceeded",
        "SnapshotSealed",
        "OrderSubmitted",
        "TradeExecuted",
        "FeeCharged",
        "BalanceObserved",
        "ValidationPassed",
    ):
        assert kind in kinds, kind
    started = found[0]
    assert isinstance(started, events.RunStarted) and started.mode == "paper"
    assert started.data["exchange"] == "bitstamp"
    assert [w["cached"] for w in started.data["warmup"]] == [False]
    trade = next(e for e in found if isinstance(e, events.TradeExecuted))
    sealed = [e for e in found if isinstance(e, events.SnapshotSealed)]
    assert trade.price == sealed[0].marks["BTC/USDT"]  # filled at the cycle's snapshot
    second = [e for e in found if isinstance(e, events.RunStarted)][1]
    assert [w["cached"] for w in second.data["warmup"]] == [True]


def test_live_mode_keeps_its_keys_out_of_the_ledger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret_key, secret, password = "live-key-7f3a9c", "live-secret-c41d22", "live-pass-9e8d"
    monkeypatch.setenv("TALLY_API_KEY", secret_key)
    monkeypatch.setenv("TALLY_API_SECRET", secret)
    monkeypatch.setenv("TALLY_API_PASSWORD", password)
    from tally.logs import configure

    log = tmp_path / "debug.log"
    configure("debug", log_file=log, fmt="text")  # ccxt's debug lines quote its headers
    url = f"sqlite:///{tmp_path / 'live.db'}"
    from ledger import init_store

    init_store(url)
    settings = settings_for(
        ["BTC/USDT"],
        tmp_path / "cache",
        StrategySettings(path="tests.integration.test_paper_run:FixedBuy"),
    )

    async def scenario(server: RecordedExchangeServer) -> Any:
        exchange = exchange_from_environment("bitstamp", live=True)
        assert exchange.apiKey == secret_key  # the keys reached the exchange object...
        data = shared_data("ccxt", "bitstamp")
        exchange.set_markets(json.loads((data / "markets.json").read_text()))
        exchange.urls["api"] = _rewrite(exchange.urls["api"], f"http://127.0.0.1:{server.port}")
        with open_store(url) as store:
            return await run_live(
                store,
                settings.run,
                settings.ingest,
                config=settings.run_config(),
                exchange=exchange,
                mode="live",
                cycles=2,
                interval_s=0.01,
            )

    summary = asyncio.run(with_server(scenario))
    assert summary.mode == "live" and summary.account == "main"
    with open_store(url) as store:
        found = [r.event for r in store.read_all()]
    # The server has no order endpoint: ccxt calls its 404 ExchangeNotAvailable, so the
    # order may or may not have reached the venue. It is recorded as unknown, not guessed.
    unknown = next(e for e in found if isinstance(e, events.OrderOutcomeUnknown))
    assert "404" in unknown.reason and summary.counts["trades"] == 0
    # The venue's balance could not be read: recorded, and the cycles still committed.
    assert (
        sum(1 for e in found if isinstance(e, events.FetchFailed) and e.endpoint == "balance") == 2
    )
    assert sum(1 for e in found if isinstance(e, events.ValidationPassed)) == 2
    raw = (tmp_path / "live.db").read_bytes() + b"".join(
        p.read_bytes() for p in tmp_path.glob("live.db-*")
    )
    written = log.read_bytes()
    assert b"Request:" in written  # ccxt's own debug lines were written, masked
    for leaked in (secret_key, secret, password):  # ...and no further: not a byte of them
        assert leaked.encode() not in raw and leaked.encode() not in written, leaked


def test_live_mode_without_keys_is_refused() -> None:
    from ledger.errors import InputError

    with pytest.raises(InputError, match="TALLY_API_KEY"):
        exchange_from_environment("bitstamp", live=True)


def test_a_paper_run_stops_whole_on_a_signal_and_says_when_nothing_was_priced(
    sqlite_url: str, tmp_path: Path
) -> None:
    import time

    from tally.run.backtest import RunSummary
    from tally.run.lifecycle import StoppedRun, StopSignal
    from tally.run.live import priced_nothing

    settings = settings_for(["BTC/USDT"], tmp_path / "cache")
    stop = StopSignal()

    def progress(done: int, _total: int) -> None:
        if done == 1:  # a SIGTERM half a second into the 30 s wait after the first cycle
            asyncio.get_running_loop().call_later(0.5, stop.request, "SIGTERM")

    async def scenario(server: RecordedExchangeServer) -> Any:
        with open_store(sqlite_url) as store:
            began = time.monotonic()
            stopped = await paper_run(
                store,
                settings,
                server,
                cycles=50,
                interval_s=30,  # the wait after cycle 1 is cut short by the stop
                progress=progress,
                stop=stop,
            )
            took = time.monotonic() - began
            # Every ticker request fails from here on. The same configuration again carries
            # the stopped run on (to 3 cycles) with its last good price restored: stale.
            server.plan.then(*[Fault.http(503)] * 400)
            resumed = await paper_run(
                store,
                settings,
                server,
                cycles=3,
                interval_s=0.01,
            )
            kinds = [type(r.event).__name__ for r in store.read(f"run/{stopped.run_id}")]
            # Another configuration is a new run, with nothing to fall back on.
            other = settings.run.model_copy(update={"seed": 8})
            dark = await run_live(
                store,
                other,
                settings.ingest,
                config={**settings.run_config(), "seed": 8},
                exchange=server.exchange("bitstamp"),
                mode="paper",
                cycles=3,
                interval_s=0.01,
            )
            return stopped, resumed, dark, kinds, took

    stopped, resumed, dark, kinds, took = asyncio.run(with_server(scenario))
    assert took < 25  # the 30 s wait after cycle 1 did not run out
    assert isinstance(stopped, StoppedRun)
    assert (stopped.reason, stopped.cycles_done, stopped.cycles_planned) == ("SIGTERM", 1, 50)
    assert kinds == ["RunStarted", "RunStopped", "RunResumed", "RunFinished"]
    assert isinstance(resumed, RunSummary) and resumed.run_id == stopped.run_id
    assert resumed.counts["cycles"] == 2 and resumed.counts["stale"] == 2
    assert not priced_nothing(resumed)
    assert isinstance(dark, RunSummary) and dark.run_id != stopped.run_id
    assert priced_nothing(dark)
    assert dark.counts["failed"] == 3 and not priced_nothing(
        RunSummary(**{**dark.__dict__, "counts": {**dark.counts, "fresh": 1}})
    )


def test_a_paper_run_takes_a_reloaded_configuration_at_a_cycle_boundary(
    ledger_url: str, tmp_path: Path
) -> None:
    from tally.reload import FROZEN_FOR_RUNS, RELOADABLE_FOR_RUNS, ConfigReloader
    from tally.settings import load_settings

    config = tmp_path / "tally.yaml"
    base = (
        "run:\n"
        "  strategy: {params: {window: 2, margin: '-0.5', allocation: '0.1'}}\n"
        f"  live: {{symbols: [BTC/USDT], warmup_candles: 1, warmup_timeframe: 1h, "
        f"cache_dir: {tmp_path / 'cache'}, INTERVAL}}\n"
    )
    config.write_text(base.replace("INTERVAL", "interval_s: 0.01"))
    settings = load_settings(config)
    reloader = ConfigReloader(config, settings, FROZEN_FOR_RUNS, RELOADABLE_FOR_RUNS)

    def edit(done: int, _total: int) -> None:
        if done == 1:  # an alert rule and a new validator epsilon: applied
            config.write_text(
                base.replace("INTERVAL", "interval_s: 0.02")
                + "  validator: {base_epsilon: '0.05'}\n"
                + "  alerts:\n    rules: [{name: any, kind: error_count, threshold: 1}]\n"
            )
        elif done == 2:  # the account cannot change while the run goes: refused whole
            config.write_text(base.replace("INTERVAL", "interval_s: 0.5") + "  account: other\n")
        reloader.request()

    async def scenario(server: RecordedExchangeServer) -> Any:
        server.plan.then(Fault.delay(0))
        with open_store(ledger_url) as store:
            return await paper_run(
                store, settings, server, cycles=4, interval_s=0.01, progress=edit,
                reloader=reloader,
            )  # fmt: skip

    summary = asyncio.run(with_server(scenario))
    assert summary.counts["cycles"] == 4
    with open_store(ledger_url) as store:
        found = [r for r in store.read_all() if r.type in ("ConfigChanged", "ConfigRejected")]
    assert [r.type for r in found] == ["ConfigChanged", "ConfigRejected"]
    changed, rejected = found[0].event, found[1].event
    assert isinstance(changed, events.ConfigChanged) and isinstance(rejected, events.ConfigRejected)
    assert changed.changed == [
        "run.alerts.rules", "run.live.interval_s", "run.validator.base_epsilon",
    ]  # fmt: skip
    assert found[0].run_id == summary.run_id and found[0].stream == f"config/{summary.run_id}"
    assert rejected.errors == [
        "run.account: cannot change while running (a run keeps its account; start a new run)"
    ]  # the interval change beside it is allowed, but a change is applied whole or not at all
    assert found[1].position > found[0].position
    # Applied at that boundary: cycle 0 was validated with the old epsilon, the rest with
    # the new one (the refused change left it as it was).
    with open_store(ledger_url) as store:
        epsilons = {
            r.event.cycle: r.event.diff["epsilon"]
            for r in store.query(types=("ValidationPassed",))
            if isinstance(r.event, events.ValidationPassed)
        }
    assert epsilons == {0: "0.02", 1: "0.05", 2: "0.05", 3: "0.05"}
