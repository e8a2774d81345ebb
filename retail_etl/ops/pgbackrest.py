"""pgBackRest on the local cluster: its configuration (two repositories: repo1 here, repo2
the off-site copy, both encrypted when a key is set), WAL archiving switched on, and the
commands run as the server's account. Physical backups need the server's data directory:
a remote warehouse is backed up by its own pgBackRest, or logically (ops/backup.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from retail_etl.config import Settings
from retail_etl.db.cluster import Cluster, _server_user, owner_group
from retail_etl.errors import ConfigError, EtlError

STANZA = "retail"


class BackupError(EtlError):
    """pgBackRest (or pg_dump) refused or failed."""


def binary() -> str:
    found = shutil.which("pgbackrest")
    if not found:
        raise ConfigError("pgBackRest is not installed (physical backups need it)",
                          hint="install it: `apt-get install -y pgbackrest`; or take a "
                          "logical backup: `retail-etl backup --logical`")
    return found


def local_cluster(settings: Settings) -> Cluster:
    binary()  # said first: without pgBackRest nothing else here matters
    if settings.dsn:
        raise ConfigError("physical backups run beside the server's data directory: the "
                          "local cluster, not --dsn / RETAIL_ETL_DSN",
                          hint="back another server up with its own pgBackRest, or take a "
                          "logical backup: `retail-etl backup --logical`")
    c = Cluster(settings.pg_dir)
    if not c.is_running():
        raise ConfigError(f"the local cluster in {settings.pg_dir} is not running",
                          hint="start it: `retail-etl db up`")
    return c


def config_file(settings: Settings) -> Path:
    return settings.backup_dir / "pgbackrest.conf"


def repo_paths(settings: Settings) -> tuple[Path, Path]:
    d = settings.backup_dir
    return d / "repo1", (settings.backup.repo2_path or d / "repo2").absolute()


def write_config(settings: Settings, cluster: Cluster) -> Path:
    """The configuration, owned by the server's account and readable by it only (it holds
    the repositories' key: the server's archive_command needs it to push WAL)."""
    b = settings.backup
    d = settings.backup_dir
    repo1, repo2 = repo_paths(settings)
    lines = ["[global]", f"log-path={d / 'log'}", f"lock-path={d / 'lock'}",
             "log-level-console=warn", "log-level-file=info", "start-fast=y",
             "process-max=2", "compress-type=zst", "archive-async=n"]
    for i, repo in ((1, repo1), (2, repo2)):
        lines += [f"repo{i}-path={repo}", f"repo{i}-retention-full={b.retention_full}"]
        if b.cipher_pass:
            lines += [f"repo{i}-cipher-type=aes-256-cbc", f"repo{i}-cipher-pass={b.cipher_pass}"]
    lines += ["", f"[{STANZA}]", f"pg1-path={cluster.data}", f"pg1-port={cluster.port}",
              f"pg1-socket-path={cluster.socket_dir}", "pg1-user=postgres", ""]
    for p in (d, d / "log", d / "lock", repo1, repo2):
        p.mkdir(parents=True, exist_ok=True)
        _own(p)
    conf = config_file(settings)
    conf.write_text("\n".join(lines))
    conf.chmod(0o600)
    _own(conf)
    return conf


def _own(p: Path) -> None:
    owner = _server_user()
    if owner:
        shutil.chown(p, owner, owner_group(owner))


def archive_command(settings: Settings) -> str:
    return f"{binary()} --config={config_file(settings)} --stanza={STANZA} archive-push %p"


def archiving(settings: Settings, cluster: Cluster) -> bool:
    """WAL archiving is on and pushes to our repositories."""
    return (cluster.setting("archive_mode") == "on"
            and str(config_file(settings)) in cluster.setting("archive_command")
            and config_file(settings).exists())


def run(settings: Settings, *args: str, what: str, timeout: float = 6 * 3600) -> str:
    """pgbackrest ARGS as the server's account; one-line BackupError on failure."""
    argv = [binary(), f"--config={config_file(settings)}", f"--stanza={STANZA}", *args]
    owner = _server_user()
    if owner:
        argv = ["runuser", "-u", owner, "--", *argv]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGBACKREST_")}
    try:
        r = subprocess.run(argv, capture_output=True, text=True, cwd="/", env=env,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BackupError(f"could not {what}: pgBackRest ran past {timeout:.0f}s") from None
    if r.returncode != 0:
        lines = [ln for ln in (r.stderr or r.stdout).splitlines() if ln.strip()]
        detail = next((ln for ln in lines if "ERROR" in ln), lines[-1] if lines else
                      f"exit code {r.returncode}")
        raise BackupError(f"could not {what}: {detail.strip()}",
                          hint=f"see {settings.backup_dir / 'log'}")
    return r.stdout


def info(settings: Settings) -> list[dict]:
    """The backups of both repositories, oldest first (pgbackrest info --output=json)."""
    if not config_file(settings).exists():
        return []
    doc = json.loads(run(settings, "--output=json", "info", what="list the backups"))
    return [b for stanza in doc for b in stanza.get("backup", [])]
