"""Pipeline kinds: each module owns, for the pipelines of its kind, the DDL (rendered from
the declaration), the staging tables, the reads of stored state and the merge. The runner
(retail_etl/flow.py) only orders them: `of(pipeline)` is the dispatch on `kind`.

A kind module has:
    ddl(pipeline) -> [statement]                idempotent: CREATE ... IF NOT EXISTS
    prepare(pipeline, valid_files, run, settings, handoff)   the file stages' part (dedup)
    write(cur, run, pipeline, handoff, settings)             the database stages' part
"""

from __future__ import annotations

from types import ModuleType

from retail_etl.kinds import dim_date, dim_scd2, fact_by_partition, sessions
from retail_etl.spec import Pipeline, Project

KINDS: dict[str, ModuleType] = {
    "dim_date": dim_date,
    "dim_scd2": dim_scd2,
    "fact_by_partition": fact_by_partition,
    "sessions": sessions,
}


def of(pipeline: Pipeline) -> ModuleType:
    try:
        return KINDS[pipeline.kind]
    except KeyError:
        raise ValueError(f"pipeline {pipeline.name}: no kind {pipeline.kind!r} "
                         f"(kinds: {', '.join(KINDS)})") from None


def schema(project: Project) -> list[tuple[str, list[str]]]:
    """[(pipeline name, its DDL statements)] in dependency order."""
    return [(p.name, of(p).ddl(p)) for p in project.pipelines]
