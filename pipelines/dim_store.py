import polars as pl

from pipelines.sources import STORES
from retail_etl.spec import DimensionSCD2

DIM_STORE = DimensionSCD2(
    name="dim_store",
    entity=STORES,
    table="dw.dim_store",
    surrogate_key="store_key",
    business_key="store_id",
    unknown_attributes={"store_name": "Unknown"},  # where sales without a store point
    attributes={
        **{c: pl.col(c) for c in ("store_name", "store_type", "city", "state", "country",
                                  "manager", "opened_date")},
        "is_deleted": pl.col("is_deleted").fill_null(False),
    },
    dtypes={"opened_date": pl.Date, "is_deleted": pl.Boolean},
)
