# retail-etl tasks. `pip install -e '.[test]'` installs `just` itself (rust-just);
# the bench recipes need `.[bench]`.

# Start the local cluster, generate drops and a shop database, load them, show KPIs.
demo:
    retail-etl demo

# The whole test suite (tests/unit, tests/property, tests/e2e) against a real PostgreSQL
# started by the fixtures, on two xdist workers.
test *ARGS:
    python3 -m pytest -q -p no:cacheprovider -n 2 {{ARGS}}

# The pure tests only (tests/unit: in-memory frames, no server): seconds.
test-fast *ARGS:
    python3 -m pytest -q -p no:cacheprovider -m unit {{ARGS}}

lint:
    ruff check retail_etl pipelines tests benchmarks

# The benchmark suite (volumes and references; see benchmarks/README.md).
bench *ARGS:
    python3 -m benchmarks.run {{ARGS}}

# Tuning sweeps (one knob at a time) -> benchmarks/results/sweeps.md
sweep *ARGS:
    python3 -m benchmarks.sweep {{ARGS}}

# The OLTP source: a day of changes against the size of the database -> results/oltp.md
bench-oltp *ARGS:
    python3 -m benchmarks.oltp {{ARGS}}

# Mutation testing of the core (mutmut; about an hour on 2 cores, not in CI: run it before a
# release) -> tests/mutation/report.md. `just mutate 'retail_etl.load.merge*'` reruns some.
mutate *ARGS:
    python3 -m tests.mutation.run {{ARGS}}
