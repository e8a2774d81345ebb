import polars as pl

from pipelines.sources import SHIPMENTS
from retail_etl.spec import FactByPartition

# One row per parcel, as of its last update (the status moves on in place); the shipped and
# delivered instants come from its tracking history.
FACT_SHIPMENTS = FactByPartition(
    name="fact_shipments",
    entity=SHIPMENTS,
    table="dw.fact_shipments",
    natural_key=("tracker_id",),
    event_ts="created_ts",
    version="updated_ts",
    references=(),
    measures={
        "order_id": pl.col("order_id"),
        "tracking_code": pl.col("tracking_code"),
        "carrier": pl.col("carrier"),
        "status": pl.col("status"),
        "shipped_ts": pl.col("shipped_ts"),
        "delivered_ts": pl.col("delivered_ts"),
        "promised_date": pl.col("promised_date"),
    },
    nullable=("order_id", "tracking_code", "shipped_ts", "delivered_ts", "promised_date"),
    indexes=(("order_id",),),
    links={"order_id": "dw.fact_sales.order_id"},
    dtypes={"order_id": pl.String, "tracking_code": pl.String, "carrier": pl.String,
            "status": pl.String, "shipped_ts": pl.Datetime("us", "UTC"),
            "delivered_ts": pl.Datetime("us", "UTC"), "promised_date": pl.Date},
)
