"""Cleaning and validation rules, on frames (no database)."""

from datetime import UTC, datetime
from decimal import Decimal

import polars as pl
import pytest

from pipelines.sources import CUSTOMERS, PRODUCTS, SALES
from retail_etl.transform import clean, quality


def _validate(entity, records: list[dict], where: list[tuple[str, int]] | None = None,
              ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Validate records as read from files: `where` gives each one's (file, line); by
    default one file, f.csv, from line 2 (after the header)."""
    where = where or [("f.csv", i + 2) for i in range(len(records))]
    df = pl.DataFrame(
        [{c: r.get(c) for c in entity.column_names} for r in records],
        schema={c: pl.String for c in entity.column_names},
    ).with_columns(_file=pl.Series([f for f, _ in where]), _line=pl.Series([n for _, n in where]),
                   _seq=pl.int_range(0, len(records)))
    return quality.split(quality.validate(df.lazy(), entity).collect(), df.lazy(), entity)


@pytest.mark.parametrize("raw, cleaned", [
    ("  a   b  ", "a b"), ("\ta\u00a0\nb ", "a b"), ("   ", None), ("", None), (None, None),
    (" P-01 ", "P-01"),
])
def test_text_is_trimmed_collapsed_and_empty_is_null(raw, cleaned):
    out = pl.DataFrame({"x": [raw]}, schema={"x": pl.String}).select(clean.text(pl.col("x")))
    assert out.item() == cleaned


@pytest.mark.parametrize("raw, code", [
    ("USA", "US"), ("United States", "US"), ("us", "US"), (" united   states ", "US"),
    ("Germany", "DE"), ("deu", "DE"), ("UK", "GB"), ("United Kingdom", "GB"),
    ("Atlantis", "Atlantis"), (None, None),
])
def test_country_becomes_alpha2_or_stays_as_cleaned(raw, code):
    out = pl.DataFrame({"x": [raw]}, schema={"x": pl.String}).select(clean.country(pl.col("x")))
    assert out.item() == code


# how people write countries that ISO does not spell that way (issue 20: each alias is
# a test case, so losing one from clean._COUNTRY_ALIASES fails)
WRITTEN = {
    "US": ["USA", "U.S.", "U.S.A.", "u.s.a.", "United States of America", "America"],
    "GB": ["UK", "U.K.", "Great Britain", "Britain", "England", "Scotland", "Wales",
           "Northern Ireland"],
    "KR": ["South Korea"], "KP": ["North Korea"], "RU": ["Russia"], "VN": ["Vietnam"],
    "NL": ["Holland", "The Netherlands"], "CZ": ["Czechia"], "TR": ["Turkey"],
    "IR": ["Iran"], "SY": ["Syria"], "LA": ["Laos"], "BO": ["Bolivia"], "VE": ["Venezuela"],
    "TZ": ["Tanzania"], "MD": ["Moldova"], "TW": ["Taiwan"], "CI": ["Ivory Coast"],
}


@pytest.mark.parametrize("raw, code", [(w, c) for c, ws in WRITTEN.items() for w in ws])
def test_every_common_spelling_of_a_country_becomes_its_code(raw, code):
    out = pl.DataFrame({"x": [f"  {raw} "]}).select(clean.country(pl.col("x")))
    assert out.item() == code


@pytest.mark.parametrize("raw, expected", [
    ("2024-03-05T14:22:31Z", datetime(2024, 3, 5, 14, 22, 31, tzinfo=UTC)),
    ("2024-03-05T14:22:31", datetime(2024, 3, 5, 14, 22, 31, tzinfo=UTC)),
    ("2024-03-05 14:22:31", datetime(2024, 3, 5, 14, 22, 31, tzinfo=UTC)),
    ("2024-03-05T14:22:31+02:00", datetime(2024, 3, 5, 12, 22, 31, tzinfo=UTC)),
    ("2024-03-05T23:30:00-0500", datetime(2024, 3, 6, 4, 30, tzinfo=UTC)),
    ("2024-03-05T14:22:31.250Z", datetime(2024, 3, 5, 14, 22, 31, 250000, tzinfo=UTC)),
    ("2024-03-05T14:22", datetime(2024, 3, 5, 14, 22, tzinfo=UTC)),
    ("2024-03-05", datetime(2024, 3, 5, tzinfo=UTC)),
    ("2024-02-30T00:00:00Z", None), ("yesterday", None),
])
def test_timestamps_iso8601_without_offset_are_utc(raw, expected):
    out = pl.DataFrame({"x": [raw]}).select(quality.parse_timestamp(pl.col("x")))
    assert out.item() == expected


def test_every_rule_is_checked_and_a_row_breaking_several_is_one_reject():
    base = dict(order_id="O-1", line_number="1", order_ts="2024-01-01T00:00:00Z",
                product_id="P-1", quantity="2", unit_price="1.50")
    cases = [
        ({}, []),
        ({"order_id": "  "}, ["order_id:required"]),
        ({"product_id": None}, ["product_id:required"]),
        ({"line_number": "0"}, ["line_number:below_1"]),
        ({"line_number": "1.5"}, ["line_number:not_an_integer"]),
        ({"quantity": "0"}, ["quantity:zero"]),
        ({"quantity": "-3"}, []),  # a return
        ({"unit_price": "-0.01"}, ["unit_price:below_0"]),
        ({"unit_price": "1.234"}, ["unit_price:not_a_decimal_12_2"]),
        ({"unit_price": "1.230"}, []),
        ({"discount": "abc"}, ["discount:not_a_decimal_12_2"]),
        ({"discount": "-1"}, ["discount:below_0"]),
        ({"order_ts": "not-a-date"}, ["order_ts:not_a_timestamp"]),
        ({"updated_at": "2024-13-01"}, ["updated_at:not_a_timestamp"]),
        ({"quantity": "0", "unit_price": "-1", "order_id": None},
         ["order_id:required", "quantity:zero", "unit_price:below_0"]),
    ]
    valid, rejects = _validate(SALES, [base | c for c, _ in cases])
    expected_rejects = [sorted(rules) for _, rules in cases if rules]
    assert [sorted(r) for r in rejects["rules"].to_list()] == expected_rejects
    assert valid.height == sum(1 for _, rules in cases if not rules)
    # the whole original row is kept, untouched
    assert '"order_id":"  "' in rejects["row"][0]


def test_cleaned_values_and_types():
    valid, _ = _validate(CUSTOMERS, [dict(customer_id=" C-1 ", email=" Ann@X.COM ",
                                          country="usa", join_date="2020-02-29",
                                          updated_at="2024-01-01")])
    r = valid.row(0, named=True)
    assert (r["customer_id"], r["email"], r["country"]) == ("C-1", "ann@x.com", "US")
    assert str(r["join_date"]) == "2020-02-29"
    valid, rejects = _validate(PRODUCTS, [dict(product_id="P", unit_price="9999999999.99",
                                               updated_at="2024-01-01"),
                                          dict(product_id="P", unit_price="99999999999.99",
                                               updated_at="2024-01-01")])
    assert valid["unit_price"].to_list() == [Decimal("9999999999.99")]
    assert rejects["rules"].to_list() == [["unit_price:not_a_decimal_12_2"]]


def test_a_reject_names_its_own_file_and_line():
    """Rows of two files, interleaved, with gaps in the line numbers (a blank line, a quoted
    newline): each reject carries the file and line it came from, not its position."""
    good = dict(order_id="O-1", line_number="1", order_ts="2024-01-01T00:00:00Z",
                product_id="P-1", quantity="2", unit_price="1.50")
    records = [good, good | {"quantity": "0"}, good, good | {"order_id": ""},
               good | {"unit_price": "x"}]
    where = [("2024-01.csv", 2), ("2024-01.csv", 3), ("2024-02.csv", 2), ("2024-02.csv", 7),
             ("2024-01.csv", 41)]
    valid, rejects = _validate(SALES, records, where)
    assert valid.height == 2
    assert rejects.select("file", "line").rows() == [
        ("2024-01.csv", 3), ("2024-02.csv", 7), ("2024-01.csv", 41)]
    assert rejects["rules"].to_list() == [
        ["quantity:zero"], ["order_id:required"], ["unit_price:not_a_decimal_12_2"]]
    assert '"quantity":"0"' in rejects["row"][0] and '"unit_price":"x"' in rejects["row"][2]
