"""Embedded PostGIS: a PostgreSQL cluster the project creates and runs itself.

Used when no DATABASE_URL is configured. The cluster lives under
`<data_dir>/pgdata`, listens on 127.0.0.1 only (no Unix socket, so two
checkouts never collide on /var/run/postgresql), and requires a password
(scram-sha-256) on every connection: no trust authentication anywhere.

initdb and postgres refuse to run as root, so when we are root the server
runs as an unprivileged system user (`postgres` by default) that owns pgdata.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from . import connections

DB_NAME = "gisplatform"
DB_USER = "gisplatform"
EXTENSIONS = ("postgis", "btree_gist")

# Rewritten at every start so a changed port or tuning takes effect.
CONF_NAME = "gisplatform.conf"


class EmbeddedError(RuntimeError):
    """A problem the user must fix; the message says how."""


def find_bindir() -> Path:
    """The newest PostgreSQL bin dir whose share dir has PostGIS installed."""
    override = os.environ.get("GISPLATFORM_PG_BINDIR")
    if override:
        return Path(override)
    candidates = []
    for bindir in Path("/usr/lib/postgresql").glob("*/bin"):
        ver = bindir.parent.name
        # the extension's control file and its server library (postgresql-<v>-postgis-3),
        # and pg_trgm (contrib, in postgresql-<v> on Debian: migration 0021, geocoding)
        share = Path(f"/usr/share/postgresql/{ver}/extension")
        if (bindir / "initdb").exists() and (share / "postgis.control").exists() \
                and (bindir.parent / "lib/postgis-3.so").exists() \
                and (share / "pg_trgm.control").exists():
            candidates.append((int(ver) if ver.isdigit() else 0, bindir))
    if candidates:
        return max(candidates)[1]
    pg_config = shutil.which("pg_config")
    if pg_config:
        bindir = Path(subprocess.check_output([pg_config, "--bindir"], text=True).strip())
        share = Path(subprocess.check_output([pg_config, "--sharedir"], text=True).strip())
        if (bindir / "initdb").exists() and (share / "extension/postgis.control").exists():
            return bindir
    raise EmbeddedError(
        "No PostgreSQL server with PostGIS found. On Debian/Ubuntu: "
        "apt-get install postgresql postgresql-contrib postgresql-postgis "
        "(`make run` does this; `postgis` alone is only the command-line tools), "
        "or set DATABASE_URL to an existing PostGIS."
    )


@dataclass
class EmbeddedPostgres:
    data_dir: Path
    port: int = 55432
    host: str = "127.0.0.1"
    os_user: str = "postgres"
    # Throwaway clusters (tests) trade durability for speed (and archive no WAL).
    durable: bool = True
    # Where finished WAL segments are copied (point-in-time recovery: gisplatform/backup);
    # None: data_dir/wal-archive. Archiving is on for every durable cluster.
    wal_archive_dir: Path | None = None

    def __post_init__(self):
        # The server tools run from / (as the postgres user when we are root): a relative
        # GISPLATFORM_DATA_DIR must not be taken relative to that.
        self.data_dir = Path(self.data_dir).resolve()

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def wal_archive(self) -> Path:
        return Path(self.wal_archive_dir or self.data_dir / "wal-archive").resolve()

    @property
    def password_file(self) -> Path:
        return self.data_dir / "pg-password"

    @property
    def logfile(self) -> Path:
        return self.data_dir / "postgres.log"

    # -- running commands as the right user ---------------------------------

    def _run_as(self) -> pwd.struct_passwd | None:
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam(self.os_user)
        except KeyError:
            raise EmbeddedError(
                f"Running as root, but system user {self.os_user!r} does not exist to run "
                "PostgreSQL (initdb refuses root). Install the postgresql package (it creates "
                "'postgres') or set GISPLATFORM_PG_OS_USER to an unprivileged user."
            ) from None

    def _pg(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(find_bindir() / tool), *args]
        who = self._run_as()
        kwargs: dict = {"capture_output": True, "text": True}
        if who is not None:
            kwargs.update(user=who.pw_uid, group=who.pw_gid, extra_groups=[], cwd="/")
            kwargs["env"] = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C",
                             "HOME": who.pw_dir}
        proc = subprocess.run(cmd, **kwargs)
        if check and proc.returncode != 0:
            raise EmbeddedError(
                f"{tool} failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()}"
                + (f"\nSee {self.logfile}" if tool == "pg_ctl" else "")
            )
        return proc

    def _give_to_server_user(self, path: Path, recursive: bool = False) -> None:
        who = self._run_as()
        if who is None:
            return
        os.chown(path, who.pw_uid, who.pw_gid)
        if recursive:
            for p in Path(path).rglob("*"):
                os.chown(p, who.pw_uid, who.pw_gid, follow_symlinks=False)

    def _check_traversable(self) -> None:
        """As root, the server user must be able to reach pgdata through its parents."""
        who = self._run_as()
        if who is None:
            return
        for parent in reversed(self.pgdata.resolve().parents):
            st = parent.stat()
            if not st.st_mode & 0o001 and st.st_uid != who.pw_uid:
                raise EmbeddedError(
                    f"{parent} is not traversable by {self.os_user!r} (mode "
                    f"{oct(st.st_mode & 0o777)}); the PostgreSQL server runs as that user. "
                    f"chmod o+x {parent}, or set GISPLATFORM_DATA_DIR to another place."
                )

    # -- lifecycle ------------------------------------------------------------

    @property
    def initialized(self) -> bool:
        return (self.pgdata / "PG_VERSION").exists()

    def password(self) -> str:
        return self.password_file.read_text().strip()

    def url(self, dbname: str = DB_NAME) -> str:
        port = self._running_port() or self.port  # a running cluster keeps its port
        return f"postgresql://{DB_USER}:{self.password()}@{self.host}:{port}/{dbname}"

    def init(self) -> None:
        if self.initialized:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._check_traversable()
        if not self.password_file.exists():
            fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(16) + "\n")
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        self._give_to_server_user(self.pgdata)
        # initdb reads the superuser password from a file the server user can read;
        # it is removed right after.
        with tempfile.NamedTemporaryFile("w", dir=self.data_dir, delete=False) as tmp:
            tmp.write(self.password() + "\n")
        tmp_path = Path(tmp.name)
        try:
            os.chmod(tmp_path, 0o600)
            self._give_to_server_user(tmp_path)
            self._pg(
                "initdb", "-D", str(self.pgdata), "-U", DB_USER,
                "--auth=scram-sha-256", f"--pwfile={tmp_path}",
                "-E", "UTF8", "--locale=C", *([] if self.durable else ["--no-sync"]),
            )
        finally:
            tmp_path.unlink(missing_ok=True)
        with open(self.pgdata / "postgresql.conf", "a") as f:
            f.write(f"\ninclude_if_exists = '{CONF_NAME}'\n")

    def _write_conf(self) -> None:
        lines = [
            f"listen_addresses = '{self.host}'",
            f"port = {self.port}",
            "unix_socket_directories = ''",
            "password_encryption = 'scram-sha-256'",
            "shared_buffers = '256MB'",
            "work_mem = '32MB'",
            "maintenance_work_mem = '256MB'",
            "max_connections = 200",
            "logging_collector = off",
        ]
        if not self.durable:
            lines += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        else:
            # every finished WAL segment copied to the archive (a .tmp renamed, so a
            # segment is there whole or not at all; one already there is never overwritten):
            # with a base backup (gisplatform backup), the cluster at any moment since.
            # archive_timeout: a quiet cluster's last changes are archived within 5 min.
            arch = str(self.wal_archive).replace("'", "''")
            lines += ["wal_level = replica", "archive_mode = on", "archive_timeout = '5min'",
                      f"archive_command = 'test ! -f \"{arch}/%f\" && cp \"%p\" "
                      f"\"{arch}/%f.tmp\" && mv \"{arch}/%f.tmp\" \"{arch}/%f\"'"]
            self.wal_archive.mkdir(parents=True, exist_ok=True)
            self._give_to_server_user(self.wal_archive)
        conf = self.pgdata / CONF_NAME
        # pgdata is 0700 and owned by the server user; root may still write it.
        conf.write_text("\n".join(lines) + "\n")
        self._give_to_server_user(conf)

    def _running_port(self) -> int | None:
        try:  # postmaster.pid, line 4: the port
            return int((self.pgdata / "postmaster.pid").read_text().splitlines()[3])
        except (OSError, IndexError, ValueError):
            return None

    def is_running(self) -> bool:
        if not self.initialized:
            return False
        return self._pg("pg_ctl", "status", "-D", str(self.pgdata), check=False).returncode == 0

    def start(self) -> str:
        """Create (first time) and start the cluster, create the database; return its URL."""
        self.init()
        self.run()
        self.ensure_database()
        return self.url()

    def run(self) -> None:
        """Start the server of an initialised cluster (no database work: a cluster in
        recovery accepts no writes), unless it runs already."""
        if not self.is_running():
            if _port_in_use(self.host, self.port):
                raise EmbeddedError(
                    f"Port {self.port} on {self.host} is taken by another program; "
                    "set GISPLATFORM_PG_PORT to a free port."
                )
            self._write_conf()
            if not self.logfile.exists():
                self.logfile.touch()
            self._give_to_server_user(self.logfile)
            self._pg("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.pgdata),
                     "-l", str(self.logfile))

    def stop(self) -> bool:
        if not self.is_running():
            return False
        self._pg("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.pgdata))
        return True

    def ensure_database(self) -> None:
        with connections.connect(self.url("postgres"), autocommit=True) as conn:
            exists = conn.execute(
                "select 1 from pg_database where datname = %s", (DB_NAME,)
            ).fetchone()
            if not exists:
                conn.execute(sql.SQL("create database {}").format(sql.Identifier(DB_NAME)))
        with connections.connect(self.url(), autocommit=True) as conn:
            for ext in EXTENSIONS:
                conn.execute(
                    sql.SQL("create extension if not exists {}").format(sql.Identifier(ext))
                )


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def from_settings(settings) -> EmbeddedPostgres:
    return EmbeddedPostgres(
        data_dir=settings.data_dir, port=settings.pg_port, host=settings.pg_host,
        os_user=settings.pg_os_user, wal_archive_dir=settings.wal_archive_dir,
    )


def database_url(settings, start: bool = False) -> str:
    """The URL the platform uses: DATABASE_URL if set, else the embedded cluster's."""
    if settings.database_url:
        return settings.database_url
    pg = from_settings(settings)
    if start:
        return pg.start()
    if not pg.password_file.exists():
        raise EmbeddedError("The embedded database has not been created yet: run `gisplatform db start`.")
    return pg.url()


def connect(settings, **kwargs) -> psycopg.Connection:
    """A connection to the platform's database for a CLI command, with the platform's
    session options (db/connections.py). Not created yet or not reachable: an
    EmbeddedError whose message is the one line to print."""
    url = database_url(settings)
    try:
        return connections.connect(url, **kwargs)
    except psycopg.OperationalError as e:
        raise EmbeddedError(
            f"cannot connect to the database: {str(e).strip().splitlines()[0]}") from None
