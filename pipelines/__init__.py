"""The warehouse's concrete pipelines, declared on top of the engine's vocabulary and
gathered in PROJECT, the registry the CLI hands the runner. Order matters: dimensions
before the facts that reference them."""

from pipelines.dim_customer import DIM_CUSTOMER
from pipelines.dim_product import DIM_PRODUCT
from pipelines.dim_store import DIM_STORE
from pipelines.fact_payments import FACT_PAYMENTS
from pipelines.fact_sales import FACT_SALES
from pipelines.fact_sessions import FACT_SESSIONS
from pipelines.fact_shipments import FACT_SHIPMENTS
from pipelines.fact_web_events import FACT_WEB_EVENTS
from pipelines.shop import SHOP
from retail_etl.spec import DimensionDate, Project

DIM_DATE = DimensionDate()
PROJECT = Project((DIM_DATE, DIM_PRODUCT, DIM_CUSTOMER, DIM_STORE, FACT_SALES, FACT_PAYMENTS,
                   FACT_SHIPMENTS, FACT_WEB_EVENTS, FACT_SESSIONS), oltp=SHOP)
DIMENSIONS, FACTS, ENTITIES = PROJECT.dimensions, PROJECT.facts, PROJECT.entities
