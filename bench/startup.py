"""Start-up cost of the command line: seconds of imports per command (``-X importtime``).

    python bench/startup.py [--runs 5]

Each command runs in a fresh interpreter on an empty ledger; the figure is the sum of the
top-level imports' cumulative times (the interpreter's own start-up is not counted), the
median of ``--runs`` runs. The heavy libraries each command loads are listed beside it.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

COMMANDS = (["--help"], ["verify"], ["stats"], ["events"], ["runs"], ["replay"])
HEAVY = ("sqlalchemy", "pydantic", "pandas", "ccxt", "alembic", "numpy", "yaml")
LINE = re.compile(r"import time:\s+\d+ \|\s+(\d+) \|( +)(\S+)")


def measure(argv: list[str], db: str) -> tuple[float, list[str]]:
    """(seconds of imports, heavy packages imported) for one ``tally`` command."""
    args = argv if argv == ["--help"] else [*argv, "--db", db]
    code = (
        "import sys\nfrom tally.cli import main\ntry:\n    main(sys.argv[1:])\n"
        "except SystemExit:\n    pass\n"
    )
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code, *args],
        capture_output=True,
        text=True,
        check=False,
    )
    total, heavy = 0, set()
    for line in done.stderr.splitlines():
        found = LINE.match(line)
        if found is None:
            continue
        name = found.group(3)
        if len(found.group(2)) == 1:  # a top-level import: its cumulative time counts once
            total += int(found.group(1))
        if name.split(".")[0] in HEAVY:
            heavy.add(name.split(".")[0])
    return total / 1e6, sorted(heavy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as folder:
        db = f"sqlite:///{Path(folder) / 'ledger.db'}"
        subprocess.run(
            [sys.executable, "-m", "tally", "init", "--db", db], check=True, capture_output=True
        )
        print(f"{'command':<10} {'imports (median of ' + str(runs) + ')':>24}  heavy packages")
        for argv in COMMANDS:
            times = []
            for _ in range(runs):
                seconds, heavy = measure(argv, db)
                times.append(seconds)
            print(
                f"tally {argv[0]:<10} {statistics.median(times):>15.3f} s  "
                f"{', '.join(heavy) or '-'}"
            )


if __name__ == "__main__":
    main()
