"""A real PostgreSQL server for the tests, started once per session on loopback.

The server is the Debian package's (``/usr/lib/postgresql/<N>/bin``; ``MODELSEAL_TEST_PG_BINDIR``
points elsewhere). It gets a fresh data directory in a temporary directory, listens on
127.0.0.1 at a free port, trusts local TCP connections (nothing else can reach it) and keeps its
durability settings (``fsync`` on), so timings measured against it are honest. PostgreSQL refuses
to run as root, so when the tests run as root every server command runs as the ``postgres`` OS
user, in a directory that user owns. The postmaster is a child of the test process (not
daemonised by ``pg_ctl start``), so it is reaped here and never left as a zombie.

Fixtures (exposed to a test directory by importing them into its ``conftest.py``):

* ``postgres_server`` (session): the running :class:`PostgresServer`; stopped with
  ``pg_ctl stop -m fast`` at the end of the session. Skips when the binaries are missing.
* ``postgres_database`` (function): a factory; each call creates a fresh, empty database and returns
  its SQLAlchemy URL ``postgresql+psycopg://postgres@127.0.0.1:PORT/modelseal_test_<random>``.
  The databases are dropped when the test ends.
* ``postgres_url`` (function): one such URL.
"""

from __future__ import annotations

import atexit
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

__all__ = [
    "PostgresServer",
    "find_bindir",
    "postgres_database",
    "postgres_server",
    "postgres_url",
    "start_postgres",
]

BINDIR_ENV = "MODELSEAL_TEST_PG_BINDIR"
OS_USER = "postgres"
SUPERUSER = "postgres"
START_ATTEMPTS = 3
TIMEOUT_S = 30


@dataclass
class PostgresServer:
    """A PostgreSQL server this process started; :meth:`stop` ends it and removes its files."""

    bindir: Path
    root: Path
    port: int
    run_as: str | None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _stopped: bool = field(default=False, repr=False)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of ``database`` on this server."""
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def conninfo(self, database: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname={database}"

    def create_database(self) -> str:
        """A new empty database; its SQLAlchemy URL."""
        name = f"modelseal_test_{secrets.token_hex(6)}"
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def stop(self) -> None:
        """``pg_ctl stop -m fast``, then remove the data directory. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        try:
            if self.process is not None and self.process.poll() is None:
                _run(self, "pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop", check=False)
                try:
                    self.process.wait(timeout=TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def find_bindir() -> Path | None:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``, or None."""
    candidates: list[Path] = []
    if override := os.environ.get(BINDIR_ENV):
        candidates.append(Path(override))
    installed = Path("/usr/lib/postgresql").glob("*/bin")
    candidates += sorted(installed, key=lambda p: _version_key(p.parent.name), reverse=True)
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).parent)
    for candidate in candidates:
        if all((candidate / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return candidate
    return None


def start_postgres() -> PostgresServer:
    """Initialise and start a throw-away server; skips the calling test when that is impossible."""
    bindir = find_bindir()
    if bindir is None:
        pytest.skip(
            "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found; install the "
            f"Debian package postgresql or set {BINDIR_ENV}"
        )
    run_as = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(OS_USER)
        except KeyError:
            pytest.skip(f"running as root and there is no {OS_USER!r} OS user to run PostgreSQL")
        run_as = OS_USER
    root = Path(tempfile.mkdtemp(prefix="modelseal-pg-"))
    if run_as is not None:
        account = pwd.getpwnam(run_as)
        os.chown(root, account.pw_uid, account.pw_gid)
    server = PostgresServer(bindir=bindir, root=root, port=0, run_as=run_as)
    atexit.register(server.stop)  # a second line of defence if the session dies before teardown
    try:
        _run(
            server,
            "initdb",
            *("-D", str(server.data), "-U", SUPERUSER, "-A", "trust"),
            *("-E", "UTF8", "--locale=C", "--no-sync"),
        )
        for _attempt in range(START_ATTEMPTS):
            server.port = _free_port()
            _configure(server)
            if _start(server):
                return server
            if "could not bind" not in _tail(server.log):
                break  # a port taken in the meantime is worth another try; nothing else is
        raise RuntimeError(f"PostgreSQL did not start; server log:\n{_tail(server.log)}")
    except BaseException:
        server.stop()
        raise


def _start(server: PostgresServer) -> bool:
    """Start the postmaster as our child (so we reap it) and wait until it accepts connections."""
    with open(server.log, "ab") as log:
        server.process = subprocess.Popen(
            [str(server.bindir / "postgres"), "-D", str(server.data)],
            cwd=server.root,
            env=_env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            user=server.run_as,
            group=server.run_as,
            extra_groups=None if server.run_as is None else [],
        )
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        try:
            psycopg.connect(server.conninfo(), connect_timeout=2).close()
            return True
        except psycopg.OperationalError:
            time.sleep(0.05)
    server.process.kill()
    server.process.wait()
    return False


def _configure(server: PostgresServer) -> None:
    settings = {
        "listen_addresses": "'127.0.0.1'",
        "port": str(server.port),
        "unix_socket_directories": f"'{server.root}'",
        "max_connections": "200",
        "shared_buffers": "128MB",
        "log_min_messages": "warning",
    }
    # postgresql.auto.conf is read last and overrides postgresql.conf; rewrite it on each attempt.
    auto = server.data / "postgresql.auto.conf"
    auto.write_text("".join(f"{key} = {value}\n" for key, value in settings.items()))


def _run(
    server: PostgresServer, tool: str, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a server tool, as the ``postgres`` OS user when we are root."""
    result = subprocess.run(
        [str(server.bindir / tool), *args],
        cwd=server.root,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S + 30,
        check=False,
        user=server.run_as,
        group=server.run_as,
        extra_groups=None if server.run_as is None else [],
    )
    if check and result.returncode != 0:
        raise RuntimeError(
            f"{tool} {' '.join(args)} failed (exit {result.returncode}):\n"
            f"{result.stdout}{result.stderr}"
        )
    return result


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no server log)"


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_database(postgres_server: PostgresServer) -> Iterator[Callable[[], str]]:
    created: list[str] = []

    def factory() -> str:
        url = postgres_server.create_database()
        created.append(url.rsplit("/", 1)[1])
        return url

    yield factory
    for name in created:
        postgres_server.drop_database(name)


@pytest.fixture
def postgres_url(postgres_database: Callable[[], str]) -> str:
    return postgres_database()
