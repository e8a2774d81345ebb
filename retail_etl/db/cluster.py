"""A local PostgreSQL cluster managed for the user (`retail-etl db up|down|status`).

initdb and pg_ctl refuse to run as root, so as root the server runs as the unprivileged
`postgres` account, in a data directory that account owns."""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from retail_etl.errors import ClusterError

DATABASE = "retail"
SUPERUSER = "postgres"
# Tuned for bulk loads on one machine; wal_level=minimal lets COPY into a table created
# in the same transaction skip WAL.
SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "shared_buffers": "'1GB'",
    "work_mem": "'64MB'",
    "maintenance_work_mem": "'1GB'",
    "max_wal_size": "'8GB'",
    "checkpoint_timeout": "'30min'",
    "wal_level": "'minimal'",
    "max_wal_senders": "0",
    "max_connections": "100",
    "timezone": "'UTC'",
}


TLS_MARK = "# retail-etl: TLS (db/tls.py)"


@dataclass(frozen=True)
class Cluster:
    root: Path  # holds data/, run/ (socket), server.log, port

    def __post_init__(self):
        # the server runs from / as another account: every path must be absolute
        object.__setattr__(self, "root", Path(self.root).absolute())

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        # A Unix socket's path is capped at 107 bytes: a deep data dir gets a short one.
        near = self.root / "run"
        if len(str(near)) + len("/.s.PGSQL.65535") <= 107:
            return near
        return Path(tempfile.gettempdir()) / (
            "retail-etl-" + hashlib.sha256(str(self.root).encode()).hexdigest()[:12])

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    @property
    def tls_dir(self) -> Path:
        return self.root / "tls"  # see db/tls.py

    @property
    def port_file(self) -> Path:
        return self.root / "port"

    @property
    def port(self) -> int | None:
        try:
            return int(self.port_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def dsn(self, database: str = DATABASE) -> str:
        if self.port is None:
            raise ClusterError(
                f"no local cluster in {self.root}",
                hint="run `retail-etl db up`, or pass --dsn / set RETAIL_ETL_DSN",
            )
        dsn = f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"
        root = self.tls_dir / "root.crt"
        # the server's certificate verified, its name (127.0.0.1) included
        return f"{dsn}?sslmode=verify-full&sslrootcert={root}" if root.exists() else dsn

    # ---- lifecycle -------------------------------------------------------------------

    def is_initialised(self) -> bool:
        return (self.data / "PG_VERSION").exists()

    def is_running(self) -> bool:
        if not self.is_initialised():
            return False
        r = self._run([self._bin("pg_ctl"), "status", "-D", str(self.data)], check=False)
        return r.returncode == 0

    def up(self) -> str:
        """Create (once) and start the cluster; return its DSN. Idempotent."""
        if not self.is_initialised():
            self._initdb()
        tls_added = self._serve_tls()
        if self.is_running() and tls_added:
            self._run([self._bin("pg_ctl"), "reload", "-D", str(self.data)],
                      what="reload the server's configuration")
        if not self.is_running():
            port = self.port
            if port is None or not _port_free(port):
                port = free_port()
                self.port_file.write_text(f"{port}\n")
            self._run(
                [
                    self._bin("pg_ctl"), "start", "-w", "-t", "60", "-D", str(self.data),
                    "-l", str(self.log), "-o", f"-p {port} -k {self.socket_dir}",
                ],
                what="start the server",
            )
        self.ensure_database(DATABASE)
        return self.dsn()

    def alter_system(self, values: dict[str, str]) -> None:
        """ALTER SYSTEM SET each (postgresql.auto.conf); some need restart() to apply."""
        for k, v in values.items():
            self._psql(f"ALTER SYSTEM SET {k} = '{v}'")

    def setting(self, name: str) -> str:
        return self._psql(f"SHOW {name}").strip()

    def restart(self) -> None:
        """Stop and start with the same options (settings that need a restart)."""
        self._run([self._bin("pg_ctl"), "restart", "-w", "-t", "60", "-m", "fast",
                   "-D", str(self.data), "-l", str(self.log)], what="restart the server")

    def down(self) -> bool:
        """Stop the server if it runs; True if it was running."""
        if not self.is_running():
            return False
        self._run([self._bin("pg_ctl"), "stop", "-w", "-m", "fast", "-D", str(self.data)],
                  what="stop the server")
        return True

    def require_passwords(self, lines: list[str]) -> bool:
        """Put these pg_hba.conf lines first (the logins they name then need their password;
        the local superuser keeps trust), and reload. True if the file changed."""
        hba = self.data / "pg_hba.conf"
        text = hba.read_text()
        if all(line in text.splitlines() for line in lines):
            return False
        stat = hba.stat()
        hba.write_text("# retail-etl: the warehouse's logins use scram-sha-256\n"
                       + "".join(f"{line}\n" for line in lines) + text)
        os.chown(hba, stat.st_uid, stat.st_gid)
        self._run([self._bin("pg_ctl"), "reload", "-D", str(self.data)],
                  what="reload the server's configuration")
        return True

    def create_database(self, name: str, template: str | None = None) -> str:
        sql = f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")
        self._psql(sql)
        return self.dsn(name)

    # ---- internals -------------------------------------------------------------------

    def _serve_tls(self) -> bool:
        """A certificate (db/tls.py) and `ssl = on`, once; True if they were added now."""
        from retail_etl.db import tls

        key = self.tls_dir / "server.key"
        conf = self.data / "postgresql.conf"
        if key.exists() and TLS_MARK in conf.read_text():
            return False
        if not key.exists():
            tls.make(self.tls_dir)
            owner = _server_user()
            if owner:  # the key stays readable by the server's account alone
                for f in [self.tls_dir, *self.tls_dir.iterdir()]:
                    shutil.chown(f, owner, owner_group(owner))
        with open(conf, "a") as f:
            f.write(f"\n{TLS_MARK}\nssl = on\nssl_cert_file = '{self.tls_dir / 'server.crt'}'\n"
                    f"ssl_key_file = '{key}'\n")
        return True


    def _initdb(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.data.mkdir(exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        owner = _server_user()
        if owner:
            _make_reachable(self.root)
            for p in (self.root, self.data, self.socket_dir):
                shutil.chown(p, owner, owner_group(owner))
        self._run(
            [self._bin("initdb"), "-D", str(self.data), "-U", SUPERUSER, "--auth=trust",
             "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions"],
            what="initialise the cluster (initdb)",
        )
        with open(self.data / "postgresql.conf", "a") as f:
            f.write("\n# retail-etl local cluster\n")
            for k, v in SERVER_SETTINGS.items():
                f.write(f"{k} = {v}\n")
        if not self.port_file.exists():
            self.port_file.write_text(f"{free_port()}\n")

    def ensure_database(self, name: str) -> None:
        r = self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'", database="postgres")
        if r.strip() != "1":
            self._psql(f'CREATE DATABASE "{name}"', database="postgres")

    def drop_database(self, name: str) -> None:
        """Drop a database of the cluster, its sessions ended first."""
        self._psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _psql(self, sql: str, database: str = "postgres") -> str:
        r = self._run(
            [self._bin("psql"), "-X", "-q", "-t", "-A", "-h", str(self.socket_dir),
             "-p", str(self.port), "-U", SUPERUSER, "-d", database, "-c", sql],
            what=f"run {sql.split()[0]} on the local cluster",
        )
        return r.stdout

    def _bin(self, name: str) -> str:
        return str(pg_bindir() / name)

    def _run(self, argv: list[str], *, what: str = "", check: bool = True):
        owner = _server_user()
        if owner:
            argv = ["runuser", "-u", owner, "--", *argv]
        r = subprocess.run(argv, capture_output=True, text=True, cwd="/")
        if check and r.returncode != 0:
            detail = (r.stderr or r.stdout).strip().splitlines()
            last = detail[-1] if detail else f"exit code {r.returncode}"
            raise ClusterError(f"could not {what}: {last}", hint=f"see {self.log}")
        return r


def pg_bindir() -> Path:
    """The newest PostgreSQL (12+) server install on this machine."""
    env = os.environ.get("RETAIL_ETL_PG_BIN")
    candidates = [Path(env)] if env else []
    base = Path("/usr/lib/postgresql")
    if base.is_dir():
        versions = sorted((p for p in base.iterdir() if p.name.isdigit()),
                          key=lambda p: int(p.name), reverse=True)
        candidates += [v / "bin" for v in versions if int(v.name) >= 12]
    found = shutil.which("initdb")
    if found:
        candidates.append(Path(found).parent)
    for c in candidates:
        if (c / "initdb").exists() and (c / "pg_ctl").exists():
            return c
    raise ClusterError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found",
        hint="install them (e.g. `apt-get install -y postgresql`) or set RETAIL_ETL_PG_BIN",
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _server_user() -> str | None:
    """The account that runs the server: `postgres` when we are root, else ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise ClusterError(
            "running as root, but there is no unprivileged `postgres` account to run the server",
            hint="install the postgresql package, or run retail-etl as an ordinary user",
        ) from None
    return "postgres"


def owner_group(user: str) -> int:
    return pwd.getpwnam(user).pw_gid


def _make_reachable(path: Path) -> None:
    """The server account must be able to traverse every parent of its data directory."""
    for p in [path.resolve(), *path.resolve().parents]:
        mode = p.stat().st_mode
        if not mode & 0o001:
            p.chmod(mode | 0o001)
