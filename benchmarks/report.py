"""Results: the machine, the figures per volume, results.md, results.json, throughput.png."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

LABELS = {
    "load": "our load (end to end)",
    "raw_copy": "raw COPY of the final rows (the limit)",
    "bare": "bare path: Polars read + compute + COPY",
    "pandas_executemany": "pandas + SQLAlchemy to_sql (executemany)",
    "pandas_copy": "pandas + SQLAlchemy to_sql (COPY callable)",
}
FACT_STAGES = ("stored", "compare", "copy", "index")  # our load's fact write, compared with the raw COPY
PACKAGES = ("polars", "duckdb", "pyarrow", "adbc-driver-postgresql", "pandas", "sqlalchemy",
            "psycopg")


def machine(cluster) -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo
                if line.startswith("model name")), platform.processor() or "unknown")
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal"))
    from retail_etl.db.cluster import SERVER_SETTINGS

    def ver(pkg):
        try:
            return version(pkg)
        except PackageNotFoundError:
            return "not installed"

    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "postgresql": cluster._psql("SHOW server_version").strip(),
        "postgresql_settings": {k: SERVER_SETTINGS[k].strip("'") for k in
                                ("shared_buffers", "work_mem", "max_wal_size", "wal_level")},
        "packages": {p: ver(p) for p in PACKAGES},
    }


def _rate(rows, seconds):
    return rows / seconds if rows and seconds else None


def summarise(r: dict) -> dict:
    """Per-volume figures: stages, end-to-end measurements and the ratios."""
    load = r["load"]
    stages = [{**s, "rows_per_s": _rate(s["rows"], s["seconds"])} for s in load["stages"]]
    fact_seconds = sum(s["seconds"] for s in load["stages"] if s["name"] in FACT_STAGES)
    measured = {k: {"rows": v["rows"], "seconds": v["seconds"],
                    "rows_per_s": _rate(v["rows"], v["seconds"]),
                    "peak_rss_mb": v["peak_rss_mb"],
                    **{x: v[x] for x in ("compute_seconds", "copy_seconds") if x in v}}
                for k, v in r.items() if k in LABELS}
    ratios = {}
    if "raw_copy" in r:
        raw = r["raw_copy"]
        # rate of our copy+merge over the rate of one raw COPY of the same rows
        ratios["fact_stages_vs_raw_copy_rate"] = (
            _rate(load["rows"], fact_seconds) / _rate(raw["rows"], raw["copy_seconds"]))
    if "bare" in r:
        ratios["load_vs_bare_time"] = load["seconds"] / r["bare"]["seconds"]
    for k in ("pandas_executemany", "pandas_copy"):
        if k in r:
            ratios[f"speedup_vs_{k}"] = r[k]["seconds"] / load["seconds"]
    return {"lines": r["lines"], "seed": r["seed"], "drop": r["drop"],
            "lines_read": load["lines_read"], "fact_rows": load["rows"],
            "counts": load["counts"], "stages": stages, "fact_stage_seconds": fact_seconds,
            "measurements": measured, "ratios": ratios}


# ---- output ------------------------------------------------------------------------------


def _n(x, digits=0):
    if x is None:
        return ""
    return f"{x:,.{digits}f}"


def markdown(doc: dict) -> str:
    m = doc["machine"]
    pg = ", ".join(f"{k}={v}" for k, v in m["postgresql_settings"].items())
    pk = ", ".join(f"{k} {v}" for k, v in m["packages"].items())
    out = [
        "# Benchmark results", "",
        f"- date: {m['date']}",
        f"- command: `{doc['command']}` (wall time {doc['wall_seconds']:.0f} s)",
        f"- CPU: {m['cpu']}, {m['cores']} cores; memory {m['memory_gib']} GiB; {m['os']}",
        f"- PostgreSQL {m['postgresql']} (local cluster: {pg}); Python {m['python']}",
        f"- {pk}", "",
        "Rates are final `fact_sales` rows per second. Peak RSS is the peak resident memory",
        "of the measuring process (the PostgreSQL server's memory is not included).", "",
    ]
    for v in doc["volumes"]:
        ms, ra = v["measurements"], v["ratios"]
        out += [f"## {v['lines']:,} lines (seed {v['seed']})", "",
                f"{v['lines_read']:,} sales lines read, {v['fact_rows']:,} final fact rows.", "",
                "### Our load, by stage", "",
                "| stage | rows | seconds | rows/s | peak RSS (MB) |", "|---|--:|--:|--:|--:|"]
        for s in v["stages"]:
            out.append(f"| {s['name']} | {_n(s['rows'])} | {s['seconds']:.3f} | "
                       f"{_n(s['rows_per_s'])} | {s['peak_rss_mb']:.0f} |")
        ld = ms["load"]
        out.append(f"| **whole load** | {_n(ld['rows'])} | {ld['seconds']:.3f} | "
                   f"{_n(ld['rows_per_s'])} | {ld['peak_rss_mb']:.0f} |")
        notes = {
            "raw_copy": ("fact_stages_vs_raw_copy_rate",
                         "our copy+merge at {:.2f}x its rate (target >= 0.85x)"),
            "bare": ("load_vs_bare_time", "our load takes {:.2f}x its time (target <= 1.5x)"),
            "pandas_executemany": ("speedup_vs_pandas_executemany",
                                   "speed-up of our load: {:.1f}x (target >= 8x)"),
            "pandas_copy": ("speedup_vs_pandas_copy",
                            "speed-up of our load: {:.1f}x (target >= 1.3x)"),
        }
        out += ["", "### References (same machine, same drop)", "",
                "| measurement | rows | seconds | rows/s | peak RSS (MB) | comparison |",
                "|---|--:|--:|--:|--:|---|"]
        for k, label in LABELS.items():
            if k not in ms:
                continue
            x = ms[k]
            note = notes[k][1].format(ra[notes[k][0]]) if k in notes else ""
            secs = f"{x['seconds']:.3f}"
            if k == "raw_copy":
                secs = f"{x['copy_seconds']:.3f}"
            out.append(f"| {label} | {_n(x['rows'])} | {secs} | {_n(x['rows_per_s'])} | "
                       f"{x['peak_rss_mb']:.0f} | {note} |")
        out.append("")
    return "\n".join(out)


def plot(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    vols = doc["volumes"]
    for k, label in LABELS.items():
        pts = [(v["lines"], v["measurements"][k]) for v in vols if k in v["measurements"]]
        if not pts:
            continue
        xs = [p[0] for p in pts]
        ax1.plot(xs, [p[1]["rows_per_s"] for p in pts], marker="o", label=label)
        ax2.plot(xs, [p[1]["peak_rss_mb"] for p in pts], marker="o", label=label)
    for ax, title, unit in ((ax1, "Throughput", "final fact rows / s"),
                            (ax2, "Peak memory of the process", "peak RSS (MB)")):
        ax.set_xscale("log")
        ax.set_xlabel("volume (sales lines)")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    ax1.set_yscale("log")
    ax1.legend(fontsize=8)
    m = doc["machine"]
    fig.suptitle(f"retail-etl benchmarks: {m['cpu']}, {m['cores']} cores, "
                 f"PostgreSQL {m['postgresql']} ({m['date']})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(out: Path, doc: dict) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    md, js, png = out / "results.md", out / "results.json", out / "throughput.png"
    md.write_text(markdown(doc))
    js.write_text(json.dumps(doc, indent=2) + "\n")
    plot(doc, png)
    return [md, js, png]
