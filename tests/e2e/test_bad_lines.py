"""Issue 10, defect 3: a malformed line is a reject of that line, with its file and line,
and the rest of the file loads; a file that cannot be read at all fails the run with one
line naming it, before anything is written."""

from __future__ import annotations

import gzip

from tests.helpers import HEADERS, cli, error_line, load, rows

HEADER = HEADERS["sales"].encode()


def _sales(d, *lines: bytes, name: str = "sales.csv"):
    d.mkdir(exist_ok=True)
    (d / name).write_bytes(HEADER + b"\n" + b"\n".join(lines) + b"\n")
    return d


def _line(order: str, product: bytes = b"P-1", ts: bytes = b"2024-01-15") -> bytes:
    return order.encode() + b",1," + ts + b",,," + product + b",1,1.00,0,"


def _rejects(dsn):
    return rows(dsn, "SELECT file, line, rules::text FROM etl.rejects ORDER BY line")


def test_wrong_field_counts_reject_their_line_and_the_rest_loads(settings, dsn, tmp_path):
    d = _sales(tmp_path / "d", _line("O-1"), _line("O-2") + b",extra", b"O-3,1,2024-01-15",
               _line("O-4"))
    c = load(settings, d).counts["sales"]
    assert (c.read, c.loaded, c.rejected, c.duplicate) == (4, 2, 2, 0)
    assert _rejects(dsn) == [("sales.csv", 3, "{line:too_many_fields}"),
                             ("sales.csv", 4, "{line:too_few_fields}")]
    assert rows(dsn, "SELECT row->>'text' AS t, row->>'fields' AS f FROM etl.rejects ORDER BY line") == [
        (_line("O-2").decode() + ",extra", "11"), ("O-3,1,2024-01-15", "3")]
    assert rows(dsn, "SELECT order_id FROM dw.fact_sales ORDER BY 1") == [("O-1",), ("O-4",)]


def test_a_malformed_line_with_bytes_that_are_not_utf8_is_one_reject(settings, dsn, tmp_path):
    d = _sales(tmp_path / "d", _line("O-1"), _line("O-2", product=b"Caf\xe9") + b",extra",
               _line("O-3"))
    c = load(settings, d).counts["sales"]
    assert (c.read, c.loaded, c.rejected) == (3, 2, 1)
    assert _rejects(dsn) == [("sales.csv", 3, "{line:too_many_fields}")]


def test_a_quote_never_closed_rejects_what_it_swallowed_and_the_rest_loads(settings, dsn, tmp_path):
    # the quote in line 3 swallows lines 4 and 5 up to the quote in line 6; the record it
    # makes has the header's width, so only what the value holds gives it away
    d = _sales(tmp_path / "d", _line("O-1"), _line("O-2", b'"P-2'), _line("O-3"), _line("O-4"),
               _line("O-5", b'"P-5"'), _line("O-6"))
    c = load(settings, d).counts["sales"]
    assert (c.read, c.loaded, c.rejected) == (3, 2, 1)
    assert _rejects(dsn) == [("sales.csv", 3, "{product_id:unclosed_quote}")]
    assert rows(dsn, "SELECT order_id FROM dw.fact_sales ORDER BY 1") == [("O-1",), ("O-6",)]


def test_a_quote_open_at_the_end_swallows_the_rest_of_the_file_into_one_reject(
        settings, dsn, tmp_path):
    d = _sales(tmp_path / "d", _line("O-1"), _line("O-2") + b'"late', _line("O-3"))
    c = load(settings, d).counts["sales"]
    assert (c.read, c.loaded, c.rejected) == (2, 1, 1)
    assert _rejects(dsn) == [("sales.csv", 3, "{updated_at:unclosed_quote}")]


def test_a_multi_line_value_is_no_broken_quote(settings, dsn, tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "products.csv").write_bytes(
        HEADERS["products"].encode() + b'\nP-1,"Mug,\nlarge",Home,,,1.00,2024-01-01\n'
        b'P-2,Cup,Home,,,2.00,"2024-01-01"\n')
    c = load(settings, d).counts["products"]
    assert (c.read, c.loaded, c.rejected) == (2, 2, 0)


def test_another_encoding_is_a_setting(settings, dsn, tmp_path):
    d = _sales(tmp_path / "d", _line("O-1", "Café".encode("latin-1")))
    assert cli("load", "-s", str(d), "--dsn", dsn, "--encoding", "latin-1").exit_code == 0
    assert rows(dsn, "SELECT product_id FROM dw.dim_product WHERE product_id IS NOT NULL") == [
        ("Café",)]
    wrong = cli("load", "-s", str(d), "--dsn", dsn, "--encoding", "latin-9x")
    assert wrong.exit_code == 2 and "Traceback" not in wrong.output
    assert "Invalid value for --encoding: unknown text encoding 'latin-9x'" in wrong.output


def test_a_truncated_gzip_fails_the_run_naming_the_file(tmp_path, dsn):
    d = tmp_path / "d"
    d.mkdir()
    whole = gzip.compress(HEADER + b"\n" + b"\n".join(_line(f"O-{i}") for i in range(2000)))
    (d / "sales.csv.gz").write_bytes(whole[: len(whole) // 2])
    line = error_line(cli("load", "-s", str(d), "--dsn", dsn))
    assert line.startswith(f"Error: cannot read {d / 'sales.csv.gz'}: ")
    assert rows(dsn, "SELECT count(*) FROM dw.fact_sales") == [(0,)]


def test_unreadable_files_fail_with_one_line_naming_the_file(tmp_path, dsn):
    d = tmp_path / "d"
    d.mkdir()
    (d / "sales.csv").write_bytes(b"")
    assert error_line(cli("load", "-s", str(d), "--dsn", dsn)) == (
        f"Error: {d / 'sales.csv'}: the file is empty (0 bytes, not even a header)")
    (d / "sales.csv").write_text("order_id,ORDER_ID,line_number\n1,2,3\n")
    assert error_line(cli("load", "-s", str(d), "--dsn", dsn)) == (
        f"Error: {d / 'sales.csv'}: column 'order_id' appears more than once in the header")
    assert rows(dsn, "SELECT count(*) FROM etl.rejects") == [(0,)]


def test_nul_and_non_utf8_bytes_reject_their_line_and_the_rest_loads(settings, dsn, tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "sales.csv").write_bytes(
        b"order_id,line_number,order_ts,customer_id,store_id,product_id,quantity,unit_price\n"
        b"O-1,1,2024-01-15,,,P-1,1,1.00\n"
        b"O-2,1,2024-01-15,,,P-\x001,1,1.00\n"
        b"O-3,1,2024-01-15,,,Caf\xe9,1,1.00\n"
        b"O-4,1,2024-01-15,,,P-1,1,1.00\n")
    run = load(settings, d)
    c = run.counts["sales"]
    assert (c.read, c.loaded, c.rejected) == (4, 2, 2)
    assert rows(dsn, "SELECT line, rules::text, row->>'product_id' FROM etl.rejects ORDER BY line") == [
        (3, "{product_id:nul_byte}", "P-\u24001"), (4, "{product_id:not_utf8}", "Caf\ufffd")]
    assert rows(dsn, "SELECT order_id FROM dw.fact_sales ORDER BY 1") == [("O-1",), ("O-4",)]
    load(settings, d)  # a reload counts its rejects again but does not store them twice
    assert rows(dsn, "SELECT count(*) FROM etl.rejects") == [(2,)]
    assert rows(dsn, "SELECT rows_rejected FROM etl.run_entities WHERE entity = 'sales' "
                     "ORDER BY run_id") == [(2,), (2,)]
