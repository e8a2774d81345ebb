-- Schemas: dw holds the star, etl the runs, rejects and watermarks.
CREATE SCHEMA IF NOT EXISTS dw;
CREATE SCHEMA IF NOT EXISTS etl;
