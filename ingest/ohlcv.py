"""One symbol's candles as plain columns: open times in epoch milliseconds and exact values.

A run reads, checks, rounds and prices its candles in this form, without pandas: importing
pandas (with numpy and pyarrow) is about a fifth of a second of every run's process, and
nothing a run does with its candles needs it. ``Candles.frame()`` is the pandas view, for
charts, exports and the frame-based contract checks.
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ingest.market import OHLCV_COLUMNS

if TYPE_CHECKING:
    import pandas as pd

# A compact set of candles keeps only the closes, each as integer units and a decimal
# exponent (``Decimal(units).scaleb(exponent)`` is the close exactly, as written).
CLOSE_UNITS, CLOSE_EXPONENT = "close_units", "close_exponent"


@dataclass(frozen=True)
class Candles:
    """One symbol's candles in file order: ``opens`` (epoch ms) and a column per field."""

    opens: Sequence[int]
    # OHLCV_COLUMNS (a Decimal or None each), or, compact, CLOSE_UNITS and CLOSE_EXPONENT.
    columns: Mapping[str, Sequence[Any]]

    def __len__(self) -> int:
        return len(self.opens)

    @property
    def compact(self) -> bool:
        return CLOSE_UNITS in self.columns

    def rows(self, keep: Sequence[int]) -> Candles:
        """Only the rows ``keep`` (in that order)."""
        opens: Sequence[int] = [self.opens[i] for i in keep]
        if isinstance(self.opens, array):
            opens = array(self.opens.typecode, opens)
        columns: dict[str, Sequence[Any]] = {}
        for name, values in self.columns.items():
            picked = [values[i] for i in keep]
            columns[name] = array(values.typecode, picked) if isinstance(values, array) else picked
        return Candles(opens, columns)

    def frame(self) -> pd.DataFrame:
        """The pandas view: a UTC ``timestamp`` index of the opens, a column per field."""
        import numpy as np
        import pandas as pd

        index = pd.DatetimeIndex(
            pd.to_datetime(list(self.opens), unit="ms", utc=True), name="timestamp"
        )
        if self.compact:
            return pd.DataFrame(
                {
                    CLOSE_UNITS: np.array(self.columns[CLOSE_UNITS], dtype=np.int64),
                    CLOSE_EXPONENT: np.array(self.columns[CLOSE_EXPONENT], dtype=np.int8),
                },
                index=index,
            )
        data = {c: list(self.columns[c]) for c in OHLCV_COLUMNS}
        return pd.DataFrame(data, index=index, columns=list(OHLCV_COLUMNS))

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> Candles:
        """An OHLCV frame with a datetime index (any unit) as columns."""
        import pandas as pd

        opens = [int(v) for v in pd.DatetimeIndex(frame.index).as_unit("ms").asi8]
        return cls(opens, {c: frame[c].tolist() for c in OHLCV_COLUMNS})


def closes_only(candles: Candles) -> Candles:
    """Only the closes, as integers and decimal exponents (``66301.15`` is 6630115 and -2):
    two machine numbers a candle instead of five ``Decimal`` objects, which is what a long
    backtest holds in memory. Candles with a close of more digits than 64 bits hold (a
    file's float noise, unrounded) are kept whole instead."""
    units, exponents = array("q"), array("b")
    try:
        for close in candles.columns["close"]:
            exponent = int(close.as_tuple().exponent)
            units.append(int(close.scaleb(-exponent)))
            exponents.append(exponent)
    except OverflowError:
        return candles
    opens = array("q", candles.opens)  # (8 bytes a candle, where a list holds int objects)
    return Candles(opens, {CLOSE_UNITS: units, CLOSE_EXPONENT: exponents})


def canonical_csv(candles: Candles) -> str:
    """The CSV text ``write_candles`` writes: a header, then ``ms,open,high,low,close,volume``."""
    lines = ["timestamp," + ",".join(OHLCV_COLUMNS)]
    columns = [candles.columns[c] for c in OHLCV_COLUMNS]
    for i, stamp in enumerate(candles.opens):
        lines.append(f"{int(stamp)}," + ",".join(str(col[i]) for col in columns))
    return "\n".join(lines) + "\n"
