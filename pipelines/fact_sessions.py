from pipelines.fact_web_events import FACT_WEB_EVENTS
from retail_etl.spec import Sessions


def count(event_name: str) -> str:
    return f"count(*) FILTER (WHERE e.event_name = '{event_name}')"


# One row per (user_pseudo_id, ga_session_id): GA4's session, however long and across
# whatever midnight or month's end; its landing page, traffic source, device and country are
# its first event's, its customer the latest version of the one logged in (-1: never; the
# highest key if several), its revenue its purchases'.
FACT_SESSIONS = Sessions(
    name="fact_sessions",
    events=FACT_WEB_EVENTS,
    table="dw.fact_sessions",
    key=("user_pseudo_id", "ga_session_id"),
    start="session_start",
    columns={
        "session_start": ("min(e.event_timestamp)", "timestamptz NOT NULL"),
        "session_end": ("max(e.event_timestamp)", "timestamptz NOT NULL"),
        "duration_seconds": ("extract(epoch FROM max(e.event_timestamp) - "
                             "min(e.event_timestamp))::numeric(16, 6)", "numeric(16, 6)"),  # exact: us
        "events": ("count(*)", "int NOT NULL"),
        "page_views": (count("page_view"), "int NOT NULL"),
        "item_views": (count("view_item"), "int NOT NULL"),
        "add_to_carts": (count("add_to_cart"), "int NOT NULL"),
        "checkouts": (count("begin_checkout"), "int NOT NULL"),
        "purchases": (count("purchase"), "int NOT NULL"),
        "engagement_msec": ("coalesce(sum(e.engagement_time_msec), 0)", "bigint NOT NULL"),
        "customer_key": ("max(e.customer_key)", "int NOT NULL"),
        "bought": ("bool_or(e.event_name = 'purchase')", "boolean NOT NULL"),
        "revenue": ("coalesce(sum(e.purchase_revenue) FILTER (WHERE e.event_name = "
                    "'purchase'), 0)::numeric(14, 2)", "numeric(14, 2) NOT NULL"),
    },
    first={"landing_page": "page_location", "traffic_source": "traffic_source",
           "traffic_medium": "traffic_medium", "traffic_campaign": "traffic_campaign",
           "device_category": "device_category", "country": "country"},
)
