"""Settings, resolved in one place: flags > environment (RETAIL_ETL_*) > retail_etl.toml > defaults."""

from __future__ import annotations

import codecs
import os
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from retail_etl.errors import ConfigError

# DDL and views ship inside the package: a wheel installed anywhere finds them
SQL_DIR = Path(str(resources.files("retail_etl") / "sql"))


def config_file() -> Path:
    return Path(os.environ.get("RETAIL_ETL_CONFIG", "retail_etl.toml"))


class FilesSource(BaseModel):
    """A directory of file drops (CONTRACT.md section 1)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["files"]
    dir: Path = Field(description="the drop directory")
    encoding: str = Field("utf-8", description="the CSV files' text encoding (a Python "
                          "codec name: utf-8, latin-1, cp1252, ...)")

    @field_validator("encoding")
    @classmethod
    def _codec(cls, v: str) -> str:
        try:
            codecs.lookup(v)
        except LookupError:
            raise ValueError(f"unknown text encoding {v!r} (try utf-8, latin-1 or cp1252)") from None
        return v


class PostgresSource(BaseModel):
    """An operational PostgreSQL database, pulled incrementally (see retail_etl/extract/oltp.py).
    `tables` renames the operational tables, `columns.<table>` their columns, for a schema
    laid out like ours under other names."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["postgres"]
    dsn: str | None = Field(None, description="source DSN; default: `database` on the local cluster")
    database: str = Field("retail_oltp", description="database on the local cluster")
    partitions: int = Field(2, ge=1, le=64, description="ConnectorX partitions per table")
    overlap_seconds: float = Field(300.0, ge=0, description="re-read window below the "
                                   "watermark, for transactions that commit late")
    batch_rows: int = Field(250_000, ge=1, description="rows per staged file: bounds "
                            "the memory of extracting and validating a big table")
    cancelled_statuses: list[str] = Field(["cancelled"], description="order statuses "
                                          "whose lines leave the fact table")
    line_scan_every: Literal["auto"] | Annotated[int, Field(ge=0)] = Field(
        "auto", description="scan the source's order lines for deleted orders and lines "
        "every N runs (0: only with --full); auto: every run while a scan takes at most 1 s "
        "or 15% of a run's time, else as often as 15% allows")
    tables: dict[str, str] = Field(default_factory=dict)
    columns: dict[str, dict[str, str]] = Field(default_factory=dict)


class HttpSource(BaseModel):
    """An external API read incrementally over paginated HTTP (retail_etl/extract/http.py):
    `payments` (Stripe's list conventions) or `shipping` (EasyPost's trackers)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["http"]
    api: Literal["payments", "shipping"] = Field(description="which API shape it speaks")
    base_url: str = Field(description="the API's base URL, e.g. https://api.stripe.com")
    token: SecretStr | None = Field(None, description="the API key: set it through the "
                                    "environment, RETAIL_ETL_SOURCES__<NAME>__TOKEN")
    page_size: int = Field(100, ge=1, le=1000, description="objects per page asked for")
    max_pages: int = Field(10_000, ge=1, description="a run that would read more pages "
                           "than this fails (a guard against runaway pagination)")
    lag_seconds: float | None = Field(None, ge=0, description="re-read window below the watermark "
                               "(late objects, status changes): default 1 h for payments, "
                               "30 days for shipping (parcels change for weeks)")
    timeout_seconds: float = Field(30.0, gt=0, description="per request (connect, read)")
    deadline_seconds: float = Field(600.0, gt=0, description="one request's retries, "
                                    "waits included, end by then")
    max_retry_wait_seconds: float = Field(60.0, gt=0, description="the longest wait between "
                                          "attempts (a Retry-After is honoured up to it)")

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"{v!r} is not an http(s):// URL")
        return v.rstrip("/")

    @property
    def lag(self) -> float:
        return self.lag_seconds if self.lag_seconds is not None else (
            3600.0 if self.api == "payments" else 30 * 86400.0)


class EventsSource(BaseModel):
    """A directory of web-analytics exports in the GA4 BigQuery shape: newline-delimited
    JSON (`.ndjson`, `.ndjson.gz`, `.jsonl`) or Parquet, one event per line or row
    (retail_etl/extract/events.py)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["events"]
    dir: Path = Field(description="the export directory")
    entity: str = Field("web_events", description="the project's entity the events make")
    batch_rows: int = Field(250_000, ge=1_000, description="events per staged file: bounds "
                            "the memory of reading one big export")


Source = Annotated[FilesSource | PostgresSource | HttpSource | EventsSource,
                   Field(discriminator="kind")]


class Thresholds(BaseModel):
    """Data-quality alerts for one entity (`[quality.<entity>]`, or `[quality.default]` for
    the rest): a run past one is a `warning` (and notifies), not a failure, unless
    fail_on_warning. Rates are judged only on runs that read at least min_rows rows."""

    model_config = ConfigDict(extra="forbid")
    max_reject_rate: float | None = Field(0.05, ge=0, le=1, description="rejected / read")
    max_duplicate_rate: float | None = Field(0.2, ge=0, le=1, description="duplicates / read")
    min_read_ratio: float | None = Field(0.5, ge=0, description="rows read against the "
                                         "median of the source's last runs (a drop that "
                                         "lost files); judged after 3 runs")
    min_rows: int = Field(1000, ge=0, description="fewer rows read: no rate is judged")
    history_runs: int = Field(5, ge=1, description="the last runs the read drop compares with")


class Notify(BaseModel):
    """Where a failed (or, with on = ["failure", "warning"], a warned) run is reported."""

    model_config = ConfigDict(extra="forbid")
    webhook_url: str | None = Field(None, description="POST a JSON message (Slack-compatible)")
    smtp_url: str | None = Field(None, description="smtp://user:password@host:port (or "
                                 "smtps://, or smtp://...?starttls=1) to send mail through")
    mail_to: list[str] = Field(default_factory=list, description="the mail's recipients")
    mail_from: str = Field("retail-etl@localhost", description="the mail's sender")
    on: list[Literal["failure", "warning"]] = Field(["failure"], description="which runs notify")
    timeout_seconds: float = Field(15.0, gt=0, description="the whole notification's "
                                   "deadline, retries included: it never holds a run longer")


class Backup(BaseModel):
    """Backups (retail_etl/ops): pgBackRest on the local cluster, pg_dump anywhere."""

    model_config = ConfigDict(extra="forbid")
    dir: Path | None = Field(None, description="where backups live (default data_dir/backups): "
                             "repo1/, logical/, manifests/, the pgBackRest config")
    repo2_path: Path | None = Field(None, description="the second pgBackRest repository, "
                                    "the off-site copy (default <dir>/repo2; mount it from "
                                    "another machine)")
    cipher_pass: str | None = Field(None, description="encrypt both repositories "
                                    "(aes-256-cbc) with this key (RETAIL_ETL_BACKUP__CIPHER_PASS)")
    retention_full: int = Field(2, ge=1, description="full backups kept per repository")
    full_weekday: int = Field(6, ge=0, le=6, description="the day of the weekly full "
                              "backup (0 = Monday, 6 = Sunday); incremental on the others")
    max_rto_seconds: float = Field(4 * 3600, gt=0, description="restore-drill: the recovery "
                                   "time objective")
    max_rpo_seconds: float = Field(24 * 3600, gt=0, description="restore-drill: the recovery "
                                   "point objective")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RETAIL_ETL_", extra="ignore",
                                      env_nested_delimiter="__")

    dsn: str | None = Field(None, description="warehouse DSN; default: the local cluster")
    data_dir: Path = Field(Path("data"), description="raw, staging, rejects, pg/ live here")
    fiscal_year_start_month: int = Field(2, description="first month of the fiscal year")
    plausible_from: date = Field(date(1990, 1, 1), description="the earliest plausible "
                                 "sale or version time; earlier ones are rejects")
    plausible_days_ahead: float = Field(1.0, ge=0, description="how far past the run's "
                                        "start a time (or a date) may lie before it is a reject")
    lock_wait_seconds: float = Field(300.0, description="how long a run waits for another")
    keep_staging: bool = Field(False, description="keep data/staging/<run> after success")
    duckdb_threads: int = Field(2, description="DuckDB threads for the as-of lookup")
    duckdb_memory_limit: str = Field("1GB", description="DuckDB memory limit (dedup and "
                                     "lookup spill beyond it: memory does not grow with a drop)")
    fact_chunk_rows: int = Field(250_000, description="fact lines looked up and written "
                                 "at once (whole months): bounds a run's memory")
    copy_streams: int = Field(2, ge=0, le=16, description="sessions that build new month "
                              "partitions (COPY, index, analyse) in parallel with the run; "
                              "0: the run's own session builds them (see the sweeps)")
    polars_engine: Literal["auto", "in-memory", "streaming"] = Field(
        "auto", description="Polars' engine for the file stages (see the sweeps)")
    random_page_cost: float = Field(1.1, gt=0, description="the planner's random_page_cost "
                                    "for the run's transaction (SET LOCAL): a warehouse on "
                                    "SSD or in cache; it makes daily merges probe indexes")
    refresh_mart: Literal["after_load", "manual"] = Field(
        "after_load", description="when the mart's materialized views refresh: after every "
        "load that changed what they read, or only by `retail-etl refresh` (a big warehouse "
        "whose readers are fine with a nightly refresh)")
    sources: dict[str, Source] = Field(default_factory=dict, description="the configured "
                                       "sources, loaded in this order by `retail-etl load`")
    # ---- monitoring (retail_etl/monitor) ----
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="the job log on stderr: console on a terminal, JSON otherwise")
    log_file: Path | None = Field(None, description="also write the job log (JSON) to this "
                                  "file, rotated by size (e.g. data/logs/retail-etl.log)")
    log_file_max_mb: float = Field(10.0, gt=0, description="rotate the log file past this size")
    log_file_backups: int = Field(5, ge=0, description="rotated log files kept")
    metrics_file: Path | None = Field(None, description="write the run's Prometheus metrics "
                                      "here (atomically), for node exporter's textfile collector")
    pushgateway_url: str | None = Field(None, description="push the run's metrics to this "
                                        "Prometheus Pushgateway")
    openlineage_url: str | None = Field(None, description="send OpenLineage run events to "
                                        "this HTTP endpoint, or append them to a file "
                                        "(file:///path or a path); off by default")
    notify: Notify = Field(default_factory=Notify)
    backup: Backup = Field(default_factory=Backup)
    quality: dict[str, Thresholds] = Field(default_factory=dict, description="data-quality "
                                           "alerts per entity ('default' for the rest)")
    fail_on_warning: bool = Field(False, description="a data-quality warning fails the run "
                                  "(rolled back) instead of loading it")
    freshness_hours: float = Field(26.0, gt=0, description="`doctor`: a source whose last "
                                   "successful run is older is stale")
    freshness: dict[str, float] = Field(default_factory=dict, description="`doctor`: the "
                                        "same, per source name")
    min_free_disk_pct: float = Field(10.0, ge=0, le=100, description="`doctor`: less free "
                                     "space on the server's or data_dir's disk is a problem")

    @field_validator("fiscal_year_start_month")
    @classmethod
    def _month(cls, v: int) -> int:
        if not 1 <= v <= 12:
            raise ValueError("must be a month number from 1 to 12")
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, config_file()))

    def thresholds(self, entity: str) -> Thresholds:
        return self.quality.get(entity) or self.quality.get("default") or Thresholds()

    @property
    def pg_dir(self) -> Path:
        return self.data_dir / "pg"

    @property
    def backup_dir(self) -> Path:
        return (self.backup.dir or self.data_dir / "backups").absolute()

    @property
    def staging_dir(self) -> Path:
        return self.data_dir / "staging"


def load_settings(**flags: Any) -> Settings:
    """Settings with the given flags on top (a flag left as None does not override)."""
    given = {k: v for k, v in flags.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as e:
        first = e.errors()[0]
        loc = [str(p) for p in first["loc"]]
        if loc[0] == "sources" and len(loc) > 3 and loc[2] in ("files", "postgres", "http", "events"):
            del loc[2]  # (pydantic's tag of the source's kind: no part of the setting's name)
        name = ".".join(loc)
        flag = f"--{name.replace('_', '-')}, " if len(loc) == 1 else ""  # (flags: top level only)
        raise ConfigError(
            f"setting {name!r}: {first['msg']}",
            hint=f"check {flag}RETAIL_ETL_{'__'.join(loc).upper()} or {config_file()}",
        ) from None
    except Exception as e:  # a malformed TOML file
        raise ConfigError(f"cannot read {config_file()}: {e}") from None
