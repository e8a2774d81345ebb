"""`just mutate`: mutmut over the core (the paths in pyproject's [tool.mutmut]) against the
tests listed there, then tests/mutation/report.md: the score and every survivor, with the
reason tests/mutation/survivors.toml gives for it (equivalent, or why it is left).

Every mutant's pytest shares one scratch PostgreSQL server (RETAIL_ETL_TEST_CLUSTER, see
tests/conftest.py) instead of starting its own; hypothesis draws a fifth of its usual
examples (RETAIL_ETL_EXAMPLES), derandomised, so that a verdict is the same every run.

    just mutate                       # everything: hours on 2 cores (a release's run)
    just mutate --sample 150          # a seeded random sample: the score within about +-6%
    just mutate 'retail_etl.load.merge*'   # some mutants again, by name pattern
    just mutate --report              # only rewrite the report from the last run

A mutant in code that runs only while a module imports (a declaration helper) is never
active under mutmut (it switches a mutant on after the imports): such code is marked
`# pragma: no mutate` where it is, and tested like the rest.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
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

    # a SIGTERM (a timeout, a kill) still stops the scratch server below
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
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


def sample(n: int, seed: int = 20) -> list[str]:
    """n mutant names, drawn with a fixed seed (the same sample every run of one code)."""
    if not (ROOT / "mutants").is_dir():  # mutants are made by a run; this one tests none
        mutmut("run", "--max-children", "1", "__no_such_mutant__", check=False, capture=True)
    names = [line.strip().split(": ")[0]
             for line in mutmut("results", "--all", "true", capture=True).splitlines()
             if ": " in line]
    return sorted(random.Random(seed).sample(sorted(names), min(n, len(names))))


def report() -> None:
    if not (ROOT / "mutants").is_dir():
        sys.exit("no mutation run here yet (mutants/ is missing): `just mutate` makes one")
    reasons = tomllib.loads(REASONS.read_text()) if REASONS.exists() else {}
    status = dict(line.strip().split(": ", 1)
                  for line in mutmut("results", "--all", "true", capture=True).splitlines()
                  if ": " in line)
    count = {k: sum(1 for v in status.values() if v == k) for k in set(status.values())}
    # a mutant whose tests crashed (segfault) or ran out of time was caught by them
    killed = sum(count.get(k, 0) for k in ("killed", "timeout", "segfault"))
    survivors = sorted(n for n, v in status.items() if v in ("survived", "no tests"))
    tested = killed + len(survivors) + count.get("suspicious", 0)
    score = 100 * killed / tested if tested else 0.0
    # a survivor's reason says what it is: equivalent (or cosmetic, or not judgeable by
    # mutmut) leaves the count; "killed since" is a test added after the run
    kind = {n: (reasons.get(n) or "").split(":")[0].split(" ")[0] for n in survivors}
    out = sum(1 for k in kind.values() if k in ("equivalent", "cosmetic", "not"))
    later = sum(1 for k in kind.values() if k == "killed")
    net = 100 * (killed + later) / (tested - out) if tested > out else 0.0
    lines = [
        "# Mutation score of the core",
        "",
        "Written by `just mutate` (tests/mutation/run.py); do not edit by hand. The reasons",
        "come from tests/mutation/survivors.toml.",
        "",
        f"**{score:.1f}%**: {killed} of {tested} mutants checked were killed "
        f"({count.get('timeout', 0)} by a timeout, {count.get('segfault', 0)} by a crash); "
        f"{count.get('survived', 0)} survived, {count.get('no tests', 0)} were reached by no "
        f"test; {count.get('not checked', 0)} of {len(status)} not checked in this run.",
        "",
        f"Without the {out} equivalent, cosmetic or unjudgeable survivors, and with the {later} "
        f"killed since by new tests: **{net:.1f}%**.",
        "",
        "| survivor | why it is left |",
        "|---|---|",
    ]
    unexplained = [n for n in survivors if not reasons.get(n)]
    lines += [f"| `{n}` | {reasons.get(n) or '**not yet explained**'} |" for n in survivors]
    REPORT.write_text("\n".join(lines) + "\n")
    print(f"mutation score {score:.1f}% ({killed}/{tested}), {net:.1f}% net of equivalent "
          f"survivors and those killed since; {len(survivors)} survivors, "
          f"{len(unexplained)} without a reason; {REPORT.relative_to(ROOT)}")


def main(argv: list[str]) -> int:
    if "--sample" in argv:
        i = argv.index("--sample")
        argv = argv[:i] + argv[i + 2:] + sample(int(argv[i + 1]))
    if "--report" not in argv:
        run(argv)
    report()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
