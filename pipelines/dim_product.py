import polars as pl

from pipelines.sources import PRODUCTS
from retail_etl.spec import DimensionSCD2

DIM_PRODUCT = DimensionSCD2(
    name="dim_product",
    entity=PRODUCTS,
    table="dw.dim_product",
    surrogate_key="product_key",
    business_key="product_id",
    attributes={
        "product_name": pl.col("product_name"),
        "category": pl.col("category"),
        "subcategory": pl.col("subcategory"),
        "brand": pl.col("brand"),
        "price": pl.col("unit_price"),
        "is_deleted": pl.col("is_deleted").fill_null(False),
    },
    dtypes={"price": pl.Decimal(12, 2), "is_deleted": pl.Boolean},
)
