"""Start-up cost of the command line: seconds of imports per command (``-X importtime``).

    python bench/startup.py [--runs 5]

Each command runs in a fresh interpreter on an empty ledger; the figure is the sum of the
top-level imports' cumulative times, the median of ``--runs`` runs. The interpreter's own
start-up is not counted: top-level modules that ``python -c pass`` imports too (``site``
and the ``.pth`` finders it runs, ``encodings``) are left out. The heavy libraries each
command loads are listed beside it.
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


def all_imports(code: str, *args: str) -> list[tuple[str, bool, int]]:
    """(module, whether top-level, cumulative microseconds) of each import ``python -c``
    makes."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code, *args],
        capture_output=True,
        text=True,
        check=False,
    )
    found = (LINE.match(line) for line in done.stderr.splitlines())
    return [(f.group(3), len(f.group(2)) == 1, int(f.group(1))) for f in found if f]


INTERPRETER = {name for name, top, _ in all_imports("pass") if top}


def measure(argv: list[str], db: str) -> tuple[float, list[str]]:
    """(seconds of imports, heavy packages imported) for one ``tally`` command."""
    args = argv if argv == ["--help"] else [*argv, "--db", db]
    code = (
        "import sys\nfrom tally.cli import main\ntry:\n    main(sys.argv[1:])\n"
        "except SystemExit:\n    pass\n"
    )
    imported = all_imports(code, *args)
    # A top-level import counts once, with its cumulative time; the interpreter's own
    # start-up imports do not count.
    total = sum(us for name, top, us in imported if top and name not in INTERPRETER)
    heavy = {name.split(".")[0] for name, _, _ in imported} & set(HEAVY)
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
