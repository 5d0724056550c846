"""Terminal tables, drawn by rich (aligned whatever the widths; plain text when piped)."""

from __future__ import annotations

from collections.abc import Sequence


def render(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    title: str | None = None,
    numeric: Sequence[int] = (),
) -> str:
    """The table as text, as wide as it needs (up to 200 columns); ``numeric`` columns are
    right-aligned, so amounts at one precision line up on their decimal point."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left")
    for index, header in enumerate(headers):
        table.add_column(header, justify="right" if index in numeric else "left")
    for row in rows:
        table.add_row(*row)
    console = Console(width=200, color_system=None, highlight=False)
    with console.capture() as captured:
        console.print(table)
    return "\n".join(line.rstrip() for line in captured.get().splitlines()).strip("\n")
