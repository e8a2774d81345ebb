import polars as pl

from pipelines.dim_customer import DIM_CUSTOMER
from pipelines.dim_product import DIM_PRODUCT
from pipelines.sources import WEB_EVENTS
from retail_etl.spec import DimensionReference, FactByPartition

# One row per event, as sent (any event_name is kept); identified by the hash of its content
# (retail_etl/extract/events.py), so an event re-sent is a duplicate. The product is the
# event's first item (view_item names one; a purchase's items stay in `items`), the customer
# the logged-in user: each the version valid at the event, -1 when there is none.
FACT_WEB_EVENTS = FactByPartition(
    name="fact_web_events",
    entity=WEB_EVENTS,
    table="dw.fact_web_events",
    natural_key=("event_key",),
    event_ts="event_timestamp",
    version="version_ts",  # never sent: the event time (an event does not change)
    references=(
        DimensionReference(DIM_PRODUCT, "product_id", "product_key"),
        DimensionReference(DIM_CUSTOMER, "customer_id", "customer_key"),
    ),
    measures={
        "event_name": pl.col("event_name"),
        "event_date": pl.col("event_date"),
        "user_pseudo_id": pl.col("user_pseudo_id"),
        "ga_session_id": pl.col("ga_session_id"),
        "page_location": pl.col("page_location"),
        "page_referrer": pl.col("page_referrer"),
        "engagement_time_msec": pl.col("engagement_time_msec"),
        "device_category": pl.col("device_category"),
        "country": pl.col("country"),
        "traffic_source": pl.col("traffic_source"),
        "traffic_medium": pl.col("traffic_medium"),
        "traffic_campaign": pl.col("traffic_campaign"),
        "transaction_id": pl.col("transaction_id"),
        "purchase_revenue": pl.col("purchase_revenue"),
        "item_count": pl.col("item_count").fill_null(0),
        "items": pl.col("items"),
        "other_params": pl.col("other_params"),
    },
    nullable=("event_date", "page_location", "page_referrer", "engagement_time_msec",
              "device_category", "country", "traffic_source", "traffic_medium",
              "traffic_campaign", "transaction_id", "purchase_revenue", "items",
              "other_params"),
    # a session's events, read back when late ones arrive (kinds/sessions.py); purchases
    # are matched to fact_sales by mart.web_purchases_vs_sales
    indexes=(("user_pseudo_id", "ga_session_id"),),
    dtypes={"event_name": pl.String, "event_date": pl.Date, "user_pseudo_id": pl.String,
            "ga_session_id": pl.String, "page_location": pl.String, "page_referrer": pl.String,
            "engagement_time_msec": pl.Int32, "device_category": pl.String,
            "country": pl.String, "traffic_source": pl.String, "traffic_medium": pl.String,
            "traffic_campaign": pl.String, "transaction_id": pl.String,
            "purchase_revenue": pl.Decimal(12, 2), "item_count": pl.Int32, "items": pl.String,
            "other_params": pl.String},
)
