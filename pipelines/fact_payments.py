import polars as pl

from pipelines.sources import PAYMENTS
from retail_etl.spec import FactByPartition

# One row per charge, its latest state (a refund or a failure arrives as an event and
# replaces it); order_id links it to fact_sales (NULL, or an order nobody has: loaded,
# counted as unmatched by the run and shown by the reconciliation view, never dropped).
FACT_PAYMENTS = FactByPartition(
    name="fact_payments",
    entity=PAYMENTS,
    table="dw.fact_payments",
    natural_key=("charge_id",),
    event_ts="created_ts",
    version="version_ts",
    references=(),
    measures={
        "order_id": pl.col("order_id"),
        "status": pl.col("status"),
        "currency": pl.col("currency").str.to_uppercase(),
        "method": pl.col("method"),
        "card_brand": pl.col("card_brand"),
        "paid": pl.col("paid").fill_null(False),
        "refunded": pl.col("refunded").fill_null(False),
        "amount": pl.col("amount"),
        "amount_refunded": pl.col("amount_refunded").fill_null(0),
    },
    nullable=("order_id", "method", "card_brand"),
    indexes=(("order_id",),),
    links={"order_id": "dw.fact_sales.order_id"},
    dtypes={"order_id": pl.String, "status": pl.String, "currency": pl.String,
            "method": pl.String, "card_brand": pl.String, "paid": pl.Boolean,
            "refunded": pl.Boolean, "amount": pl.Decimal(12, 2),
            "amount_refunded": pl.Decimal(12, 2)},
)
