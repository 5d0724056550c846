"""How the health table shows a check's value: grouped thousands, small fractions as is."""

from __future__ import annotations

import pytest

from tally.service.health import number


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, ""),
        (0, "0"),
        (1_000_000.0, "1,000,000"),
        (53900.1, "53,900.1"),  # free disk in MB: was shown as 53900.1
        (0.0075, "0.0075"),
        (12.5, "12.5"),
    ],
)
def test_a_value_is_shown_as_people_read_it(value: float | None, shown: str) -> None:
    assert number(value) == shown
