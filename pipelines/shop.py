"""The shop's operational database (the PostgreSQL source): which of its tables make which
entity, and the kind of value each column must hold. The extractor (retail_etl/extract/
oltp.py) reads only this; a source laid out the same way under other names is mapped with
`sources.<name>.tables` / `.columns` in the configuration."""

from retail_etl.extract.oltp import Mapping, Table, dimension_table

SHOP = Mapping(
    dimensions=(
        dimension_table("products", "product_id", "product_name", "category", "subcategory",
                        "brand", unit_price="decimal"),
        dimension_table("customers", "customer_id", "first_name", "last_name", "email",
                        "segment", "city", "state", "country", join_date="date"),
        dimension_table("stores", "store_id", "store_name", "store_type", "city", "state",
                        "country", "manager", opened_date="date"),
    ),
    orders=Table("orders", ("order_id",), {
        "order_id": "id", "customer_id": "id", "store_id": "id", "order_ts": "timestamp",
        "status": "text", "updated_at": "timestamp"}),
    order_items=Table("order_items", ("order_id", "line_number"), {
        "order_id": "id", "line_number": "int", "product_id": "id", "quantity": "int",
        "unit_price": "decimal", "discount": "decimal", "updated_at": "timestamp"},
        optional=("discount",)),
    fact="sales",
)
