"""The warehouse's roles (`retail-etl db roles`, run by an administrator; `db up` runs it on
the local cluster). Least privilege:

- retail_owner (NOLOGIN) owns every object of dw, etl, etl_build and mart;
- retail_loader (LOGIN), the ETL service account: not superuser, no CREATEDB or CREATEROLE;
  a member of retail_owner whose sessions start as retail_owner (ALTER ROLE ... SET role),
  so partitions, staging tables and the mart a later run makes are owned like the rest;
- retail_reporting and retail_analyst (LOGIN) read the mart and nothing else: no dw, no
  etl, no writes, no CREATE, not even temporary tables. The mart's views read dw with their
  owner's rights, so a partition made by a later load is readable through them with no new
  grant; the mart's own grants are made again whenever its schema is rebuilt (050_mart.sql).

Idempotent. Passwords come from the environment (RETAIL_ETL_<ROLE>_PASSWORD, e.g.
RETAIL_ETL_LOADER_PASSWORD), are sent as scram-sha-256 verifiers, and are never printed."""

from __future__ import annotations

import os
from dataclasses import dataclass

OWNER = "retail_owner"
AUDITOR = "retail_auditor"  # (no login) owns the audit log: the owner, so the loader, may only add to it
LOGINS = {"retail_loader": "LOADER", "retail_reporting": "REPORTING",
          "retail_analyst": "ANALYST"}
READERS = ["retail_reporting", "retail_analyst"]
SCHEMAS = ["dw", "etl", "etl_build", "mart"]


@dataclass
class RolesApplied:
    roles: list[str]
    passwords_set: list[str]  # logins whose password came from the environment
    objects_owned: int  # objects whose owner is now retail_owner


def password_variable(login: str) -> str:
    return f"RETAIL_ETL_{LOGINS[login]}_PASSWORD"


def apply(cur, database: str) -> RolesApplied:
    """Create or bring up to date the roles, the ownership and the grants of `database`."""
    for role, options in [(OWNER, "NOLOGIN"), (AUDITOR, "NOLOGIN"),
                          *[(login, "LOGIN") for login in LOGINS]]:
        cur.execute(f"SELECT to_regrole('{role}') IS NULL")
        if cur.fetchone()[0]:
            cur.execute(f"CREATE ROLE {role} {options}")
        cur.execute(f"ALTER ROLE {role} {options} NOSUPERUSER NOCREATEDB NOCREATEROLE "
                    "NOREPLICATION NOBYPASSRLS")
    cur.execute(f"GRANT {OWNER} TO retail_loader")
    cur.execute(f"ALTER ROLE retail_loader SET role = '{OWNER}'")
    passwords = []
    for login in LOGINS:
        secret = os.environ.get(password_variable(login))
        if secret:
            # the server hashes it (password_encryption = scram-sha-256); the statement
            # itself is not logged by this code and never printed
            cur.execute("SET LOCAL password_encryption = 'scram-sha-256'")
            cur.execute(f"ALTER ROLE {login} PASSWORD {_literal(secret)}")
            passwords.append(login)
    key = os.environ.get("RETAIL_ETL_MASKING_KEY")
    if key:  # the pseudonyms change with it
        cur.execute("DELETE FROM etl.masking_key")
        cur.execute("INSERT INTO etl.masking_key SELECT sha256(convert_to($1, 'UTF8'))",
                    parameters=(key,))
    _audit(cur)
    db = _ident(database)
    cur.execute(f"REVOKE ALL ON DATABASE {db} FROM PUBLIC")
    cur.execute(f"GRANT CONNECT, TEMPORARY, CREATE ON DATABASE {db} TO {OWNER}")
    cur.execute(f"GRANT CONNECT ON DATABASE {db} TO {', '.join(READERS)}")
    cur.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    owned = _own_everything(cur)
    for schema in ("dw", "etl"):
        cur.execute(f"REVOKE ALL ON SCHEMA {schema} FROM PUBLIC")
    cur.execute("SELECT to_regnamespace('mart') IS NOT NULL")
    if cur.fetchone()[0]:
        grant_readers(cur)
    cur.execute("INSERT INTO audit.events (login, event, detail) VALUES (session_user, "
                "'roles', jsonb_build_object('passwords_set', $1::text, 'objects_owned', $2::int))",
                parameters=(",".join(passwords), owned))
    return RolesApplied([OWNER, AUDITOR, *LOGINS], passwords, owned)


# the audit log's tables: name -> columns
AUDIT_TABLES = {
    "pii_reads": "read_at timestamptz NOT NULL DEFAULT clock_timestamp(), "
                 "read_by text NOT NULL, object text NOT NULL, row_count bigint",
    # each `db roles`, and each run's start and end with the login that ran it
    "events": "at timestamptz NOT NULL DEFAULT clock_timestamp(), login text NOT NULL, "
              "event text NOT NULL, detail jsonb",
}


def _audit(cur) -> None:
    """The audit schema, owned by retail_auditor: the owner (and so the loader) may not read
    or change it; it adds PII reads through mart.customers_pii (a definer function), and the
    runs are logged by a trigger on etl.runs that runs as the auditor."""
    cur.execute(f"CREATE SCHEMA IF NOT EXISTS audit AUTHORIZATION {AUDITOR}")
    cur.execute(f"ALTER SCHEMA audit OWNER TO {AUDITOR}")
    cur.execute("REVOKE ALL ON SCHEMA audit FROM PUBLIC")
    cur.execute(f"GRANT USAGE ON SCHEMA audit TO {OWNER}")
    for table, columns in AUDIT_TABLES.items():
        cur.execute(f"CREATE TABLE IF NOT EXISTS audit.{table} ({columns})")
        cur.execute(f"ALTER TABLE audit.{table} OWNER TO {AUDITOR}")
        cur.execute(f"REVOKE ALL ON audit.{table} FROM PUBLIC, {OWNER}")
    cur.execute(f"GRANT INSERT ON audit.pii_reads TO {OWNER}")
    cur.execute("""CREATE OR REPLACE FUNCTION audit.log_run() RETURNS trigger
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$ BEGIN
        INSERT INTO audit.events (login, event, detail) VALUES (session_user,
            CASE TG_OP WHEN 'INSERT' THEN 'run start' ELSE 'run ' || NEW.status END,
            jsonb_build_object('run_id', NEW.run_id, 'source', NEW.source));
        RETURN NULL; END $$""")
    cur.execute(f"ALTER FUNCTION audit.log_run() OWNER TO {AUDITOR}")
    cur.execute("CREATE OR REPLACE TRIGGER runs_audit AFTER INSERT OR UPDATE OF status "
                "ON etl.runs FOR EACH ROW EXECUTE FUNCTION audit.log_run()")


def grant_readers(cur) -> None:
    """The readers' rights on the mart: what 050_mart.sql grants again when it rebuilds it."""
    readers = ", ".join(READERS)
    cur.execute(f"GRANT USAGE ON SCHEMA mart TO {readers}")
    cur.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA mart TO {readers}")
    cur.execute(f"ALTER DEFAULT PRIVILEGES FOR ROLE {OWNER} IN SCHEMA mart "
                f"GRANT SELECT ON TABLES TO {readers}")
    cur.execute("GRANT EXECUTE ON FUNCTION mart.customers_pii() TO retail_analyst")


def _own_everything(cur) -> int:
    """retail_owner becomes the owner of the schemas and of every relation and function in
    them (made earlier by whichever login ran the loads)."""
    cur.execute(f"""
        SELECT 'ALTER SCHEMA ' || quote_ident(n.nspname) || ' OWNER TO {OWNER}'
        FROM pg_namespace n WHERE n.nspname = ANY($1::text[]) AND n.nspowner <> '{OWNER}'::regrole
        UNION ALL
        SELECT 'ALTER ' || CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                                          WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END
               || ' ' || c.oid::regclass::text || ' OWNER TO {OWNER}'
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = ANY($1::text[]) AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
          AND c.relowner <> '{OWNER}'::regrole
          -- (a serial's sequence follows its table)
          AND (c.relkind <> 'S' OR NOT EXISTS (
                   SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                   AND d.objid = c.oid AND d.deptype IN ('a', 'i')))
        UNION ALL
        SELECT 'ALTER ROUTINE ' || p.oid::regprocedure::text || ' OWNER TO {OWNER}'
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = ANY($1::text[]) AND p.proowner <> '{OWNER}'::regrole
    """, parameters=("{" + ",".join(SCHEMAS) + "}",))
    statements = [s for s, in cur.fetchall()]
    for sql in statements:
        cur.execute(sql)
    return len(statements)


def hba_lines() -> list[str]:
    """pg_hba.conf lines for the local cluster: these logins over TLS only, with a password
    (scram); without TLS they are refused (not passed on to the lines that trust)."""
    logins = ",".join(LOGINS)
    return [line for net in ("127.0.0.1/32", "::1/128")
            for line in (f"hostssl all {logins} {net} scram-sha-256",
                         f"hostnossl all {logins} {net} reject")]


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
