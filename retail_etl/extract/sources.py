"""The extract stage over every configured source, in configuration order: file drops and
PostgreSQL sources staged alike, as the project's entities (Parquet, all text, with file,
line and load order)."""

from __future__ import annotations

import time
from pathlib import Path

from retail_etl.config import (
    EventsSource,
    FilesSource,
    HttpSource,
    PostgresSource,
    Settings,
    Source,
)
from retail_etl.db.cluster import Cluster
from retail_etl.errors import ConfigError
from retail_etl.extract import events, http, oltp
from retail_etl.extract.files import Extracted, extract
from retail_etl.monitor import log
from retail_etl.spec import Project


def source_dsn(settings: Settings, name: str, cfg: PostgresSource) -> str:
    if cfg.dsn:
        if not cfg.dsn.startswith(("postgres://", "postgresql://")):
            raise ConfigError(f"sources.{name}.dsn is not a postgresql:// URL")
        return cfg.dsn
    return Cluster(settings.pg_dir).dsn(cfg.database)


def extract_all(stage: Path, cur, project: Project, settings: Settings,
                sources: dict[str, Source], full: bool, progress=None,
                inputs: list[dict] | None = None, apis: list | None = None,
                ) -> tuple[dict[str, Extracted], list, list[tuple[int, str]]]:
    """Every source staged as the project's entities; files numbered in source order.
    Also returns the database sources' pulls, and [(first file number, source name)]:
    where each source's files begin. `inputs` gets what was read (lineage.py's datasets:
    {source, kind, name, entity, rows}), `apis` the API sources' reads (their watermarks)."""
    entities = project.entities
    extracted = {e.name: Extracted(e) for e in entities}
    pulls, file_no, origins = [], 1, []
    for name, cfg in sources.items():
        origins.append((file_no, name))
        log.bind(source=name)  # the retries of its reads name it too
        t0 = time.perf_counter()
        if isinstance(cfg, FilesSource):
            got = extract(cfg.dir, entities, stage, file_no, allow_empty=len(sources) > 1,
                          encoding=cfg.encoding, progress=progress)
            read = [{"source": name, "kind": "file", "name": str(f.resolve()), "entity": e}
                    for e, ex in got.items() for f in ex.files]
        elif isinstance(cfg, EventsSource):
            entity = next((e for e in entities if e.name == cfg.entity), None)
            if entity is None:
                raise ConfigError(f"sources.{name}.entity: this project has no entity "
                                  f"{cfg.entity!r}")
            ex = events.extract_events(cfg.dir, entity, stage, file_no, cfg.batch_rows,
                                       threads=settings.duckdb_threads, progress=progress,
                                       allow_empty=len(sources) > 1)
            got = {entity.name: ex}
            read = [{"source": name, "kind": "file", "name": str(f.resolve()),
                     "entity": entity.name} for f in ex.files]
        elif isinstance(cfg, HttpSource):
            api = http.extract_api(name, cfg, {e.name: e for e in entities},
                                   oltp.read_marks(cur, name), stage, file_no, full=full)
            if apis is not None:
                apis.append(api)
            got = api.extracted
            read = [{"source": name, "kind": "api", "name": cfg.base_url + ep.path,
                     "entity": ep.entity} for ep in http.ENDPOINTS[cfg.api]]
        else:
            if project.oltp is None:
                raise ConfigError(f"sources.{name}: this project maps no database tables "
                                  "to its entities (Project.oltp)")
            reader = oltp.Reader(name, cfg, source_dsn(settings, name, cfg), project.oltp)
            pull = oltp.extract_oltp(reader, {e.name: e for e in entities},
                                     oltp.read_marks(cur, name), stage, file_no, full=full)
            pulls.append(pull)
            got = pull.extracted
            read = [{"source": name, "kind": "table", "dsn": reader.dsn, "entity": e,
                     "name": reader.table_name(t)} for e, t in _tables(project)]
        log.log.info("source_read", source=name, rows=sum(x.rows for x in got.values()),
                     seconds=round(time.perf_counter() - t0, 3), files=len(read))
        log.unbind("source")
        if inputs is not None:
            inputs.extend(read)
        for entity, ex in got.items():
            extracted[entity].staged += ex.staged
            extracted[entity].files += ex.files
            extracted[entity].rows += ex.rows
            extracted[entity].malformed += ex.malformed
        file_no += sum(len(ex.staged) if ex.numbers is None else ex.numbers
                       for ex in got.values())
    return extracted, pulls, origins


def _tables(project: Project) -> list[tuple[str, str]]:
    """(entity, operational table) of a project's database mapping."""
    m = project.oltp
    return ([(t.name, t.name) for t in m.dimensions]
            + [(m.fact, m.orders.name), (m.fact, m.order_items.name)])
