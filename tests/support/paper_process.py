"""A paper run in a process of its own against the recorded exchange server, for the tests
that kill it: ``python -m tests.support.paper_process URL CACHE SPOOL CYCLES ANSWERED``.

The server answers the first ANSWERED requests and fails every later one with HTTP 503, so
the ticker breaker opens; the run prints ``cycle N`` after each cycle.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from ledger import open_store
from tally.run.settings import RunnerSettings
from tests.integration.test_paper_run import paper_run, settings_for, with_server
from tests.support.recorded_exchange import Fault


def main(argv: list[str]) -> None:
    url, cache, spool, cycles, answered = argv
    settings = settings_for(["BTC/USDT"], Path(cache))

    async def scenario(server: Any) -> Any:
        server.plan.then(*[Fault.delay(0)] * int(answered), *[Fault.http(503)] * 10_000)
        with open_store(url) as store:
            return await paper_run(
                store,
                settings,
                server,
                cycles=int(cycles),
                interval_s=0.2,
                progress=lambda done, _total: print(f"cycle {done}", flush=True),
                runner=RunnerSettings(spool_dir=Path(spool)),
            )

    asyncio.run(with_server(scenario))


if __name__ == "__main__":
    main(sys.argv[1:])
