"""`just mutate`: mutmut over the core (the paths in pyproject's [tool.mutmut]) against the
tests listed there, then tests/mutation/report.md: the score and every survivor, with the
reason tests/mutation/survivors.toml gives for it (equivalent, or why it is left).

Every mutant's pytest shares one scratch PostgreSQL server (RETAIL_ETL_TEST_CLUSTER, see
tests/conftest.py) instead of starting its own; hypothesis draws a fifth of its usual
examples (RETAIL_ETL_EXAMPLES), derandomised, so that a verdict is the same every run.

    just mutate                       # everything (about an hour on 2 cores)
    just mutate 'retail_etl.load.merge*'   # some mutants again, by name pattern
    just mutate --report              # only rewrite the report from the last run
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
REPORT = HERE / "report.md"
REASONS = HERE / "survivors.toml"


def mutmut(*args: str, check: bool = True, capture: bool = False) -> str:
    r = subprocess.run(["mutmut", *args], cwd=ROOT, check=check, text=True,
                       stdout=subprocess.PIPE if capture else None)
    return r.stdout or ""


def run(patterns: list[str]) -> None:
    from retail_etl.db.cluster import Cluster

    scratch = Path(tempfile.mkdtemp(prefix="retail-etl-mutate-"))
    scratch.chmod(0o755)  # the server account must reach it
    cluster = Cluster(scratch / "pg")
    cluster.up()
    env = {"RETAIL_ETL_TEST_CLUSTER": str(scratch), "HYPOTHESIS_PROFILE": "ci",
           "RETAIL_ETL_EXAMPLES": os.environ.get("RETAIL_ETL_EXAMPLES", "0.2")}
    os.environ.update(env)
    try:
        # mutmut's exit code is not the score: the report says what survived
        mutmut("run", "--max-children", str(os.cpu_count() or 2), *patterns, check=False)
    finally:
        cluster.down()
        shutil.rmtree(scratch, ignore_errors=True)


def report() -> None:
    mutmut("export-cicd-stats", capture=True)
    stats = json.loads((ROOT / "mutants" / "mutmut-cicd-stats.json").read_text())
    reasons = tomllib.loads(REASONS.read_text()) if REASONS.exists() else {}
    listed = [line.strip().split(": ") for line in mutmut("results", capture=True).splitlines()
              if ": " in line]
    survivors = sorted(name for name, status in listed if status in ("survived", "no tests"))
    tested = stats["total"] - stats.get("skipped", 0)
    killed = stats["killed"] + stats.get("timeout", 0)
    score = 100 * killed / tested if tested else 0.0
    lines = [
        "# Mutation score of the core",
        "",
        "Written by `just mutate` (tests/mutation/run.py); do not edit by hand. Reasons come",
        "from tests/mutation/survivors.toml.",
        "",
        f"**{score:.1f}%**: {killed} of {tested} mutants killed "
        f"({stats['survived']} survived, {stats.get('no_tests', 0)} reached by no test, "
        f"{stats.get('timeout', 0)} timed out, counted as killed).",
        "",
        "| survivor | why it is left |",
        "|---|---|",
    ]
    unexplained = []
    for name in survivors:
        why = reasons.get(name)
        if not why:
            unexplained.append(name)
        lines.append(f"| `{name}` | {why or '**not yet explained**'} |")
    REPORT.write_text("\n".join(lines) + "\n")
    print(f"mutation score {score:.1f}% ({killed}/{tested}); {len(survivors)} survivors, "
          f"{len(unexplained)} without a reason; {REPORT.relative_to(ROOT)}")


def main(argv: list[str]) -> int:
    if "--report" not in argv:
        run(argv)
    report()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
