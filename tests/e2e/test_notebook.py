"""Issue 19: notebooks/sales_analysis.ipynb runs top to bottom against a warehouse (nbclient,
a real kernel), reading the mart through the DSN in the environment."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

from retail_etl.generate.drops import generate_drops
from tests.helpers import load, rows

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "sales_analysis.ipynb"


def test_the_notebook_answers_its_questions_from_the_mart(settings, dsn, tmp_path, monkeypatch):
    generate_drops(tmp_path / "raw", 3_000, seed=5, drops=1, dirt=False)
    load(settings, tmp_path / "raw" / "drop_001")
    monkeypatch.setenv("RETAIL_ETL_DSN", dsn)  # the kernel inherits the environment
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()  # raises on any error
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 4
    last = rows(dsn, "SELECT max(month) FROM mart.kpi_monthly")[0][0]
    assert repr(last) in outputs[0]["data"]["text/plain"]
    # the top product of the last month, as the mart ranks it, is in question 3's table
    top = rows(dsn, f"SELECT product_id FROM mart.top_products_monthly WHERE month = '{last}' "
                    "ORDER BY revenue_rank, product_id LIMIT 1")[0][0]
    assert top in nb.cells[7].outputs[0]["data"]["text/plain"]
