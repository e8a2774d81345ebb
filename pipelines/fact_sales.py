import polars as pl

from pipelines.dim_customer import DIM_CUSTOMER
from pipelines.dim_product import DIM_PRODUCT
from pipelines.dim_store import DIM_STORE
from pipelines.sources import SALES
from retail_etl.spec import DimensionReference, FactByPartition

FACT_SALES = FactByPartition(
    name="fact_sales",
    entity=SALES,
    table="dw.fact_sales",
    natural_key=("order_id", "line_number"),
    event_ts="order_ts",
    version="updated_at",  # NULL: the sale's order_ts
    document=("order_id",),
    references=(
        DimensionReference(DIM_PRODUCT, "product_id", "product_key"),
        DimensionReference(DIM_CUSTOMER, "customer_id", "customer_key"),
        DimensionReference(DIM_STORE, "store_id", "store_key"),
    ),
    measures={
        "quantity": pl.col("quantity"),
        "unit_price": pl.col("unit_price"),
        "discount": pl.col("discount").fill_null(0),
        # exact: integer x decimal(12,2) - decimal(12,2), never float
        "total_amount": (pl.col("quantity").cast(pl.Decimal(22, 0)) * pl.col("unit_price")
                         - pl.col("discount").fill_null(0)).cast(pl.Decimal(22, 2)),
    },
    indexes=(("date_key", "product_key"),),  # the daily sales by product the views read
    dtypes={"quantity": pl.Int32, "unit_price": pl.Decimal(12, 2),
            "discount": pl.Decimal(12, 2), "total_amount": pl.Decimal(22, 2)},
)
