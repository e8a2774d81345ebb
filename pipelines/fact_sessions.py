from pipelines.fact_web_events import FACT_WEB_EVENTS
from retail_etl.spec import Sessions


def first(column: str) -> str:
    """The session's first non-NULL value of an event column (ties: the event key)."""
    return (f"(array_agg(e.{column} ORDER BY e.event_timestamp, e.event_key) "
            f"FILTER (WHERE e.{column} IS NOT NULL))[1]")


def count(event_name: str) -> str:
    return f"count(*) FILTER (WHERE e.event_name = '{event_name}')"


# One row per (user_pseudo_id, ga_session_id): GA4's session, however long and across
# whatever midnight or month's end; its attributes are those of its first event that has
# them, its customer the last one logged in (-1: never), its revenue its purchases'.
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
        "landing_page": (first("page_location"), "text"),
        "traffic_source": (first("traffic_source"), "text"),
        "traffic_medium": (first("traffic_medium"), "text"),
        "traffic_campaign": (first("traffic_campaign"), "text"),
        "device_category": (first("device_category"), "text"),
        "country": (first("country"), "text"),
        "customer_key": ("coalesce((array_agg(e.customer_key ORDER BY e.event_timestamp DESC, "
                         "e.event_key) FILTER (WHERE e.customer_key <> -1))[1], -1)",
                         "int NOT NULL"),
        "bought": ("bool_or(e.event_name = 'purchase')", "boolean NOT NULL"),
        "orders": ("count(DISTINCT e.transaction_id) FILTER (WHERE e.event_name = 'purchase')",
                   "int NOT NULL"),
        "revenue": ("coalesce(sum(e.purchase_revenue) FILTER (WHERE e.event_name = "
                    "'purchase'), 0)::numeric(14, 2)", "numeric(14, 2) NOT NULL"),
    },
)
