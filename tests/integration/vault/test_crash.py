"""kill -9 of ``modelseal vault serve`` (SQLite) while devices release keys, then a restart on the
same home: every counted load has its ``key.release`` audit entry and no entry lacks its load
(they are written in one transaction), the audit chain verifies, and releases work again."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from modelseal.vault.client import VaultConnectionError, VaultRequestError
from modelseal.vault.home import VaultHome
from tests.integration.vault._processes import (
    DeviceFiles,
    Prepared,
    Serve,
    client,
    kill,
    make_home,
    prepare,
    release,
    serving,
    start,
)

WORKERS = 8
KILL_AFTER = 40
"""Grants seen before the SIGKILL; the workers keep sending until the vault is gone."""


def counted(home: VaultHome, license_id: str) -> tuple[int, int, int]:
    """(loads_used, ok key.release entries, leases) of the license, read from the database."""
    with sqlite3.connect(home.path / "vault.db") as db:
        (loads,) = db.execute(
            "SELECT loads_used FROM licenses WHERE id = ?", (license_id,)
        ).fetchone()
        (ok,) = db.execute(
            "SELECT count(*) FROM audit_log WHERE action = 'key.release' AND outcome = 'ok' "
            "AND subject = ?",
            (license_id,),
        ).fetchone()
        (leases,) = db.execute("SELECT count(*) FROM leases").fetchone()
    return int(loads), int(ok), int(leases)


def fire(serve: Serve, home: VaultHome, prepared: Prepared) -> tuple[int, int]:
    """Releases from WORKERS threads until the vault dies (it is killed after KILL_AFTER grants);
    (grants seen, connection failures seen)."""
    granted = 0
    failures = 0
    lock = threading.Lock()
    killed = threading.Event()

    def worker(device: DeviceFiles) -> None:
        nonlocal granted, failures
        with client(serve.url, home, device) as vault_client:
            while True:
                try:
                    release(vault_client, device, prepared)
                except (VaultConnectionError, VaultRequestError):
                    with lock:
                        failures += 1
                    if killed.is_set():
                        return
                    raise
                with lock:
                    granted += 1
                    if granted == KILL_AFTER:
                        os.kill(serve.process.pid, signal.SIGKILL)
                        killed.set()

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        for future in [pool.submit(worker, device) for device in prepared.devices]:
            future.result(timeout=60)
    assert killed.is_set()
    return granted, failures


def test_kill_9_during_releases_then_restart(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    prepared = prepare(home, tmp_path, devices=WORKERS)
    serve = start(home)
    try:
        granted, failures = fire(serve, home, prepared)
    finally:
        kill(serve)
    assert serve.process.returncode == -signal.SIGKILL

    loads, ok, leases = counted(home, prepared.license_id)
    assert loads == ok == leases
    # Every grant the devices saw was committed first; a release in flight may have committed
    # without its answer arriving, never the other way round.
    assert granted <= loads <= granted + failures

    with serving(home) as (again,):
        after = counted(home, prepared.license_id)
        assert after == (loads, ok, leases)  # restarting changes nothing
        device = prepared.devices[0]
        with client(again.url, home, device) as vault_client:
            for _ in range(3):
                release(vault_client, device, prepared)
    assert counted(home, prepared.license_id) == (loads + 3, ok + 3, leases + 3)

    verified = subprocess.run(
        [sys.executable, "-m", "modelseal", "vault", "audit", "verify", "--home", str(home.path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith("audit chain ok: ")
