-- Monthly revenue by product category (the demo's KPI table).
CREATE OR REPLACE VIEW dw.v_monthly_revenue_by_category AS
SELECT d.year,
       d.month,
       coalesce(p.category, '(unknown)') AS category,
       count(*)                          AS order_lines,
       sum(f.quantity)                   AS units,
       sum(f.total_amount)               AS revenue
FROM dw.fact_sales f
JOIN dw.dim_date d ON d.date_key = f.date_key
JOIN dw.dim_product p ON p.product_key = f.product_key
GROUP BY d.year, d.month, coalesce(p.category, '(unknown)');
