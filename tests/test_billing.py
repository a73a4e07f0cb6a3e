"""What a job really cost (issue 13, item 4): the units the provider bills, recorded with the
delivery and priced, shown as the job's `billing` block."""

from __future__ import annotations

import pytest

from shared.providers.fal_protocol import billable_units

# ---- the provider boundary ------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "units"),
    [
        ("5", 5.0),
        ("5.04", 5.04),
        ("0", 0.0),
        (None, None),
        ("", None),
        ("five", None),
        ("-1", None),
        ("nan", None),
        ("inf", None),
    ],
)
def test_the_billable_units_header_is_read_or_left_unknown(
    header: str | None, units: float | None
) -> None:
    assert billable_units(header) == units
