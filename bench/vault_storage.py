"""The vault's storage layer alone: release-shaped transactions per second on SQLite and PostgreSQL.

Each transaction is what a key release writes: ``use_nonce`` + ``take_load`` +
``append_audit`` (the chain lock held to commit), from ``--threads`` threads, each with its own
connection, for ``--seconds``. The peer in the same run is an empty transaction (``BEGIN;
SELECT 1; COMMIT``) on the same engine, the floor any transaction pays. Targets for the whole
vault (DESIGN, issue 3): >= 1,000 releases/s on SQLite and >= 800/s on PostgreSQL; the storage
layer alone must leave room for TLS, HPKE and the HTTP stack on top.

PostgreSQL is the throw-away server of the tests (``tests/postgres.py``: Debian binaries, loopback,
``fsync`` on) unless ``--postgres-url`` names one. Prints tables and writes
``bench/results/vault_storage.json``.

    .venv/bin/python bench/vault_storage.py [--seconds 5] [--threads 8] [--postgres-url URL]
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import machine_info, percentile, print_table, write_json

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.postgres

from sqlalchemy import Connection, Engine, func, insert, select

from modelseal.vault.db import (
    append_audit,
    create_vault_engine,
    default_sqlite_url,
    take_load,
    to_micros,
    upgrade,
    use_nonce,
    verify_audit_chain,
)
from modelseal.vault.db import schema as s

TARGETS = {"sqlite": 1000.0, "postgresql": 800.0}
NOW = datetime.now(UTC)


def seed(engine: Engine, nonces: int) -> tuple[str, list[str]]:
    """A customer, an unlimited license and ``nonces`` fresh nonce hashes."""
    hashes = [hashlib.sha256(i.to_bytes(8, "big")).hexdigest() for i in range(nonces)]
    with engine.begin() as conn:
        customer = conn.execute(
            insert(s.customers).values(name="bench", created_at=to_micros(NOW))
        ).inserted_primary_key
        if customer is None:
            raise RuntimeError("no customer id")
        conn.execute(
            insert(s.licenses).values(
                id="lic-bench",
                customer_id=customer[0],
                model_name="iris",
                versions="*",
                policy="{}",
                jws="h.c.s",
                issued_at=to_micros(NOW),
                not_before=to_micros(NOW),
            )
        )
    return "lic-bench", hashes


def release(conn: Connection, license_id: str, nonce: str) -> None:
    now = datetime.now(UTC)
    fresh = use_nonce(conn, nonce, now, expires_at=now + timedelta(minutes=1))
    granted = fresh and take_load(conn, license_id, now)
    if not granted:
        raise RuntimeError("a release the benchmark expected to be granted was refused")
    append_audit(
        conn,
        at=now,
        actor="dev-5d0c6c1e-3f0e-4c55-9a53-2b1c7f0e9a11",
        action="key.release",
        subject=license_id,
        outcome="ok",
        details={
            "model": "iris",
            "version": 1,
            "lease": "lease-8e2f9c55-0d6b-4c1e-b7a4-3d1f2e6a9b70",
            "nonce_hmac": nonce[:32],
        },
    )


def empty(conn: Connection) -> None:
    conn.execute(select(1))


def measure(
    engine: Engine, threads: int, seconds: float, work: Callable[[Connection, int], None]
) -> dict[str, Any]:
    """Run ``work`` in transactions from ``threads`` threads for ``seconds``; rate and latency."""
    counter = itertools.count()
    latencies: list[list[float]] = [[] for _ in range(threads)]
    barrier = threading.Barrier(threads + 1)
    stop = threading.Event()

    def worker(index: int) -> None:
        mine = latencies[index]
        barrier.wait()
        while not stop.is_set():
            start = time.perf_counter()
            with engine.begin() as conn:
                work(conn, next(counter))
            mine.append(time.perf_counter() - start)

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    barrier.wait()
    began = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - began
    merged = sorted(itertools.chain.from_iterable(latencies))
    return {
        "transactions": len(merged),
        "per_s": len(merged) / elapsed,
        "p50_ms": percentile(merged, 0.50) * 1000,
        "p99_ms": percentile(merged, 0.99) * 1000,
    }


def bench_backend(url: str, threads: int, seconds: float) -> dict[str, Any]:
    engine = create_vault_engine(url, pool_size=threads)
    try:
        upgrade(engine)
        license_id, nonces = seed(engine, nonces=int(seconds * 3 * 4000) + 1000)
        with engine.begin() as conn:  # warm up connections and prepared statements
            release(conn, license_id, nonces.pop())
        offset = itertools.count()  # every release takes a nonce no other has used

        def one(conn: Connection, _index: int) -> None:
            release(conn, license_id, nonces[next(offset)])

        rows: dict[str, Any] = {"empty": measure(engine, threads, seconds, lambda c, _i: empty(c))}
        for count in sorted({1, 2, threads}):
            rows[f"release_{count}"] = measure(engine, count, seconds, one)
        with engine.begin() as conn:
            bad = verify_audit_chain(conn)
            loads = conn.execute(select(s.licenses.c.loads_used)).scalar_one()
            audited = conn.execute(select(func.count()).select_from(s.audit_log)).scalar_one()
        if bad is not None or loads != audited:
            raise RuntimeError(
                f"after the run: chain bad at {bad}, {loads} loads, {audited} audited"
            )
        return rows
    finally:
        engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--postgres-url", help="an empty database to use (default: start one)")
    args = parser.parse_args()

    results: dict[str, Any] = {"machine": machine_info(), "threads": args.threads}
    with tempfile.TemporaryDirectory(prefix="bench-vault-") as home:
        results["sqlite"] = bench_backend(
            default_sqlite_url(Path(home)), args.threads, args.seconds
        )

    server = None
    url = args.postgres_url
    if url is None:
        from tests.postgres import start_postgres

        server = start_postgres()
        url = server.create_database()
    try:
        results["postgresql"] = bench_backend(url, args.threads, args.seconds)
    finally:
        if server is not None:
            server.stop()

    rows = []
    for backend in ("sqlite", "postgresql"):
        for kind, row in results[backend].items():
            count = args.threads if kind == "empty" else int(kind.rsplit("_", 1)[1])
            target = TARGETS[backend] if kind != "empty" else None
            rows.append(
                [
                    backend,
                    "empty" if kind == "empty" else "release",
                    str(count),
                    f"{row['per_s']:.0f}",
                    f"{row['p50_ms']:.2f}",
                    f"{row['p99_ms']:.2f}",
                    f"{row['per_s'] / target:.2f}x" if target else "-",
                ]
            )
    print_table(
        "vault storage: transactions per second "
        "(release = use_nonce + take_load + append_audit, one license, one commit)",
        ["engine", "transaction", "threads", "per s", "p50 ms", "p99 ms", "vs target"],
        rows,
    )
    print(f"\nwrote {write_json('vault_storage', results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
