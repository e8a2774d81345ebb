-- Revenue per store and fiscal year, with the store's attributes as they were at the sale.
CREATE OR REPLACE VIEW dw.v_sales_by_store_fiscal_year AS
SELECT d.fiscal_year,
       s.store_id,
       s.store_name,
       s.country,
       count(*)            AS order_lines,
       sum(f.total_amount) AS revenue
FROM dw.fact_sales f
JOIN dw.dim_date d ON d.date_key = f.date_key
JOIN dw.dim_store s ON s.store_key = f.store_key
GROUP BY d.fiscal_year, s.store_id, s.store_name, s.country;
