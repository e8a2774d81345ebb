"""The source entities of a file drop, as CONTRACT.md section 1 defines them."""

from functools import partial

import polars as pl

from retail_etl.spec import Column, Entity, id_, text

# a text column holding personal data (masked, erasable): personal("city")
personal = partial(Column, kind="text", personal=True)
# ... that names a person on its own: no copy may keep it (`retail-etl db mask-copy`)
identifying = partial(Column, kind="text", personal=True, identifying=True)


UPDATED_AT = Column("updated_at", "timestamp", required=True)
# optional: a source that soft-deletes (or a snapshot that lost the key) says so here
IS_DELETED = Column("is_deleted", "bool")

PRODUCTS = Entity("products", (
    id_("product_id"), text("product_name"), text("category"), text("subcategory"),
    text("brand"), Column("unit_price", "decimal", min=0), UPDATED_AT, IS_DELETED,
))

CUSTOMERS = Entity("customers", (
    id_("customer_id"), identifying("first_name"), identifying("last_name"),
    Column("email", "email", personal=True, identifying=True), text("segment"), personal("city"),
    personal("state"), Column("country", "country"),
    Column("join_date", "date"), UPDATED_AT, IS_DELETED,
))

STORES = Entity("stores", (
    id_("store_id"), text("store_name"), text("store_type"), text("city"), text("state"),
    Column("country", "country"), identifying("manager"), Column("opened_date", "date"), UPDATED_AT, IS_DELETED,
))

SALES = Entity("sales", (
    id_("order_id"), Column("line_number", "int", required=True, min=1),
    Column("order_ts", "timestamp", required=True),
    id_("customer_id", required=False), id_("store_id", required=False), id_("product_id"),
    Column("quantity", "int", required=True, nonzero=True),
    Column("unit_price", "decimal", required=True, min=0),
    Column("discount", "decimal", min=0),
    Column("updated_at", "timestamp"),
))

# ---- external APIs (retail_etl/extract/http.py flattens their objects into these) --------

# a charge of the payment provider, its state as of `version_ts` (its creation, or the
# event that changed it): amounts in the currency's units, exact
PAYMENTS = Entity("payments", (
    id_("charge_id"), id_("order_id", required=False),
    Column("amount", "decimal", required=True, min=0),
    Column("amount_refunded", "decimal", min=0),
    Column("currency", "text", required=True),
    Column("created_ts", "timestamp", required=True),
    Column("status", "text", required=True, choices=("succeeded", "pending", "failed")),
    Column("paid", "bool"), Column("refunded", "bool"),
    text("method"), text("card_brand"),
    Column("version_ts", "timestamp", required=True),
))

# a parcel of the shipping service, as of its last update
SHIPMENTS = Entity("shipments", (
    id_("tracker_id"), id_("order_id", required=False), text("tracking_code"),
    Column("carrier", "text", required=True),
    Column("status", "text", required=True, choices=(
        "pre_transit", "in_transit", "out_for_delivery", "delivered", "return_to_sender",
        "failure", "unknown")),
    Column("created_ts", "timestamp", required=True),
    Column("updated_ts", "timestamp", required=True),
    Column("shipped_ts", "timestamp", plausible=False),
    Column("delivered_ts", "timestamp", plausible=False),
    Column("promised_date", "date", plausible=False),
))

# ---- web analytics (retail_etl/extract/events.py flattens GA4 export lines into these) -----

# one event as the export sent it; event_key is the hash of its content (GA4 sends no id)
WEB_EVENTS = Entity("web_events", (
    id_("event_key"), Column("event_timestamp", "timestamp", required=True),
    Column("event_date", "date", plausible=False),  # the export's day, in the property's zone
    Column("event_name", "text", required=True), id_("user_pseudo_id"),
    id_("customer_id", required=False), id_("ga_session_id"),
    text("page_location"), text("page_referrer"),
    Column("engagement_time_msec", "int", min=0), Column("other_params", "json"),
    text("device_category"), text("country"), text("traffic_source"), text("traffic_medium"),
    text("traffic_campaign"), id_("transaction_id", required=False),
    Column("purchase_revenue", "decimal"), Column("items", "json"),
    id_("product_id", required=False),
    Column("item_count", "int", min=0), Column("version_ts", "timestamp"),
), checks=(
    # a purchase names its order, or it cannot be matched to the sale it made
    ("transaction_id:missing_on_purchase",
     (pl.col("event_name") == "purchase") & pl.col("transaction_id").is_null()),
))
