"""The warehouse's concrete pipelines, declared on top of the engine's vocabulary.
Order matters: dimensions before the facts that reference them."""

from pipelines.dim_customer import DIM_CUSTOMER
from pipelines.dim_product import DIM_PRODUCT
from pipelines.dim_store import DIM_STORE
from pipelines.fact_sales import FACT_SALES

DIMENSIONS = (DIM_PRODUCT, DIM_CUSTOMER, DIM_STORE)
FACTS = (FACT_SALES,)
ENTITIES = tuple(p.entity for p in (*DIMENSIONS, *FACTS))
