-- Schemas: dw holds the star, etl the runs, rejects and watermarks.
CREATE SCHEMA IF NOT EXISTS dw;
CREATE SCHEMA IF NOT EXISTS etl;
-- hmac() for the mart's pseudonyms (a trusted extension: the database's owner may add it)
CREATE EXTENSION IF NOT EXISTS pgcrypto;
