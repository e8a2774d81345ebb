import polars as pl

from pipelines.sources import CUSTOMERS
from retail_etl.spec import DimensionSCD2

# `first last`, a NULL part left out; both NULL gives NULL.
_name = pl.concat_str(["first_name", "last_name"], separator=" ", ignore_nulls=True)

DIM_CUSTOMER = DimensionSCD2(
    name="dim_customer",
    entity=CUSTOMERS,
    table="dw.dim_customer",
    surrogate_key="customer_key",
    business_key="customer_id",
    unknown_attributes={"customer_name": "Unknown"},  # where sales without a customer point
    attributes={
        "customer_name": pl.when(_name != "").then(_name),
        "email": pl.col("email"),
        "segment": pl.col("segment"),
        "city": pl.col("city"),
        "state": pl.col("state"),
        "country": pl.col("country"),
        "join_date": pl.col("join_date"),
        "is_deleted": pl.col("is_deleted").fill_null(False),
    },
    dtypes={"join_date": pl.Date, "is_deleted": pl.Boolean},
)
