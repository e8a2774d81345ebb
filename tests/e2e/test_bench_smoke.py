"""The benchmark suite runs end to end at smoke size (benchmarks are not timed tests: no
speed figure is asserted, only that every measurement produced sensible numbers)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KINDS = ("load", "raw_copy", "bare", "pandas_executemany", "pandas_copy")


def test_smoke_benchmark_writes_table_json_and_plot(tmp_path):
    pytest.importorskip("pandas")
    pytest.importorskip("sqlalchemy")
    pytest.importorskip("psycopg")
    out, cache = tmp_path / "results", tmp_path / "cache"
    r = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--smoke", "--out", str(out),
         "--cache", str(cache)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert r.returncode == 0, r.stderr[-3000:]

    md, js, png = out / "results.md", out / "results.json", out / "throughput.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = md.read_text()
    assert "| extract |" in text and "raw COPY" in text and "pandas" in text

    doc = json.loads(js.read_text())
    assert doc["machine"]["cores"] >= 1 and doc["machine"]["postgresql"]
    [vol] = doc["volumes"]
    assert vol["lines"] == 5000 and vol["lines_read"] == 5000
    assert 0 < vol["fact_rows"] <= 5000
    assert {s["name"] for s in vol["stages"]} >= {"extract", "validate", "dedup", "scd2",
                                                    "lookup", "compare", "copy", "index"}
    for s in vol["stages"]:
        assert s["seconds"] >= 0 and s["peak_rss_mb"] > 0
    for kind in KINDS:
        m = vol["measurements"][kind]
        # every path writes the same final rows
        assert m["rows"] == vol["fact_rows"], kind
        assert m["seconds"] > 0 and m["rows_per_s"] > 0 and m["peak_rss_mb"] > 0, kind
    assert set(vol["ratios"]) == {"fact_stages_vs_raw_copy_rate", "load_vs_bare_time",
                                  "speedup_vs_pandas_executemany", "speedup_vs_pandas_copy"}
    assert all(v > 0 for v in vol["ratios"].values())


def test_smoke_oltp_benchmark_writes_its_table(tmp_path):
    out = tmp_path / "results"
    r = subprocess.run(
        [sys.executable, "-m", "benchmarks.oltp", "--smoke", "--out", str(out),
         "--cache", str(tmp_path / "cache")],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads((out / "oltp.json").read_text())
    scenarios = [s["scenario"] for v in doc["volumes"] for s in v["scenarios"]]
    assert scenarios[:2] == ["full load", "no changes"] and len(scenarios) >= 3
    assert "| 1 day |" in (out / "oltp.md").read_text()
