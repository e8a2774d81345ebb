"""pipelines/fact_sales.py's measures on in-memory frames: money is exact to the cent over
the whole range the columns allow (issue 20: a total computed through Float64 passed every
other test, because no amount went beyond float's exact range, about 1e14)."""

from __future__ import annotations

from decimal import Decimal

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipelines.fact_sales import FACT_SALES


def _total(quantity: int, unit_price: str, discount: str | None) -> Decimal:
    frame = pl.DataFrame(
        {"quantity": [quantity], "unit_price": [Decimal(unit_price)],
         "discount": [Decimal(discount) if discount is not None else None]},
        schema={"quantity": pl.Int32, "unit_price": pl.Decimal(12, 2),
                "discount": pl.Decimal(12, 2)})
    return frame.select(FACT_SALES.measures["total_amount"]
                        .cast(FACT_SALES.dtypes["total_amount"])).item()


@pytest.mark.parametrize("quantity, unit_price, discount, total", [
    (1_000_000, "99999999.99", "0.01", "99999999989999.99"),  # beyond float's exact range
    # the extremes the columns allow (int4 x numeric(12,2)): about 2.1e19
    (2_147_483_647, "9999999999.99", "9999999999.99", "21474836459978525163.54"),
    (-3, "19.99", None, "-59.97"),  # a return: a negative line
    (3, "0.10", "0.00", "0.30"),  # 0.1 * 3 is not 0.3 in binary
    (1, "0.00", "0.01", "-0.01"),
])
def test_total_amount_is_exact_to_the_cent(quantity, unit_price, discount, total):
    assert _total(quantity, unit_price, discount) == Decimal(total)


INT4 = 2**31 - 1
CENTS = 10**12 - 1  # numeric(12,2): 9,999,999,999.99
# drawn near the limits as often as anywhere: the extremes, their neighbours, and values
# whose product is just past float's 2**53 exact range
quantities = st.one_of(st.sampled_from([INT4, -INT4, 1, -1, 2**24, 2**24 + 1]),
                       st.integers(-INT4, INT4))
cents = st.one_of(st.sampled_from([CENTS, CENTS - 1, 0, 1, 2**53 // 10**6]),
                  st.integers(0, CENTS))


@given(quantity=quantities, price=cents, discount=st.one_of(st.none(), cents))
def test_total_amount_is_exact_anywhere_in_the_columns_range(quantity, price, discount):
    unit_price, off = Decimal(price) / 100, Decimal(discount or 0) / 100
    got = _total(quantity, str(unit_price), None if discount is None else str(off))
    assert got == quantity * unit_price - off
