"""Seal and open throughput against ``openssl speed``, random 4 KiB reads, and peak RSS.

One run, on a random file in a temporary directory on the same disk as the repository:

1. the limit: ``openssl speed -evp aes-256-gcm -bytes 1048576`` (one core);
2. ``seal`` (target >= 0.8x the limit);
3. ``open`` pinned to one CPU with ``workers=1`` (target >= 0.9x);
4. ``open`` with ``workers=os.cpu_count()``, unpinned (target >= 1.7x);
5. where the time goes: raw ``SegmentReader.decrypt_to_fd`` (no digest check) on one and all
   cores, SHA-256 of the ciphertext on one core (``open`` checks every ciphertext against the
   signed SHA-256, one sequential stream per file, so that bounds it), in-memory AES-GCM and
   SHA-256 on one and all cores, page-cache read/write, and cold-cache rows when permitted;
6. random 4 KiB reads through ``SealedPackage.reader(...).read``;
7. peak RSS of sealing and opening a ``--rss-size-gib`` file, each in a fresh process
   (target <= 128 MiB).

Timed phases run in child processes so each starts fresh and can be pinned. Prints tables and
writes ``bench/results/seal_open.json``.

    .venv/bin/python bench/seal_open.py [--size-gib 1] [--rss-size-gib 4] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from _common import (
    GIB,
    MIB,
    RESULTS_DIR,
    CpuWatch,
    Task,
    assert_same_bytes,
    child_main,
    cpu_busy_fraction,
    drop_page_cache,
    fit_to_disk,
    machine_info,
    mb_per_s,
    openssl_speed,
    page_cache_io,
    percentile,
    primitive_rates,
    print_table,
    run_child,
    settle,
    sha256_file,
    timed,
    warm_page_cache,
    write_json,
    write_random_file,
)

SCRIPT = Path(__file__).resolve()
READ_SIZE = 4096
RANDOM_READS = 2000
RSS_TARGET_MIB = 128.0
TARGET_SEAL, TARGET_OPEN_1CORE, TARGET_OPEN_ALL = 0.8, 0.9, 1.7
MODEL_FILE = "model.bin"


# --- child tasks (each runs in a fresh interpreter) ---------------------------------------------


def _load_key(path: str | Path) -> Any:
    from modelseal.crypto import load_data_key

    return load_data_key(Path(path).read_bytes())


def _task_primitives(task: Task) -> Task:
    return dict(primitive_rates(float(task["seconds"]), int(task.get("procs", 1))))


def _task_io(task: Task) -> Task:
    return page_cache_io(
        Path(task["path"]), Path(task["write_to"]) if task.get("write_to") else None
    )


def _task_sha256(task: Task) -> Task:
    return sha256_file(Path(task["path"]))


def _task_seal(task: Task) -> Task:
    from modelseal.crypto import SigningKey, create_self_signed, parse_subject
    from modelseal.package import seal

    signing_key = SigningKey.generate("ed25519")
    cert = create_self_signed(signing_key, parse_subject("CN=modelseal bench"))
    src = Path(task["src"])
    with timed() as elapsed:
        seal(
            src,
            Path(task["out"]),
            name="bench-model",
            version=1,
            signing_key=signing_key,
            certificates=[cert],
            data_key_out=Path(task["key_out"]),
        )
    return {"bytes": src.stat().st_size, "seconds": elapsed[0]}


def _task_open(task: Task) -> Task:
    from modelseal.package import open_package

    key = _load_key(task["key"])
    with timed() as elapsed:
        manifest = open_package(
            Path(task["package"]), key, Path(task["out"]), workers=task["workers"]
        )
    return {"bytes": manifest.total_size, "seconds": elapsed[0]}


def _task_decrypt(task: Task) -> Task:
    """Raw ``SegmentReader.decrypt_to_fd``: GCM authentication only, no SHA-256 check."""
    from modelseal.crypto import SegmentReader
    from modelseal.package import SealedPackage

    key, out = _load_key(task["key"]), Path(task["out"])
    with SealedPackage.open(Path(task["package"])) as package:
        entry = package.manifest.file(MODEL_FILE)
        reader = SegmentReader(
            key,
            package.manifest.associated_data(entry),
            package.container.source(entry.payload_name),
        )
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with timed() as elapsed:
                reader.decrypt_to_fd(fd, workers=task["workers"])
        finally:
            os.close(fd)
            out.unlink()
    return {"bytes": reader.plaintext_size, "seconds": elapsed[0]}


CHILD_TASKS: dict[str, Callable[[Task], Task]] = {
    "primitives": _task_primitives,
    "io": _task_io,
    "sha256": _task_sha256,
    "seal": _task_seal,
    "open": _task_open,
    "decrypt": _task_decrypt,
}


# --- results ------------------------------------------------------------------------------------


@dataclass
class Row:
    key: str
    phase: str
    mb_s: float
    ratio: float
    kind: str  # limit | measured | reference | estimate
    target: float | None = None
    met: bool | None = None
    nbytes: int | None = None
    seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Throughput:
    """Rows of MB/s, each also as a ratio to the ``openssl speed`` limit."""

    def __init__(self, limit_mb_s: float, command: str) -> None:
        self.limit = limit_mb_s
        self.rows = [Row("limit", f"limit: {command}", limit_mb_s, 1.0, "limit")]

    def add_rate(self, key: str, phase: str, mb_s: float, kind: str = "reference") -> None:
        self.rows.append(Row(key, phase, mb_s, mb_s / self.limit, kind))

    def add(
        self,
        key: str,
        phase: str,
        result: Task,
        *,
        kind: str = "measured",
        target: float | None = None,
    ) -> None:
        """A row from a child result with ``bytes`` and ``seconds``."""
        mbs = mb_per_s(result["bytes"], result["seconds"])
        met = None if target is None else mbs / self.limit >= target
        extra: dict[str, Any] = {
            name: result[name]
            for name in ("rss_mib", "workers_rss_mib", "pinned_cpu")
            if name in result
        }
        nbytes, seconds = result["bytes"], result["seconds"]
        row = Row(key, phase, mbs, mbs / self.limit, kind, target, met, nbytes, seconds, extra)
        self.rows.append(row)

    def rate(self, key: str) -> float:
        return next(row.mb_s for row in self.rows if row.key == key)


@dataclass
class Files:
    tmp: Path
    src: Path
    package: Path
    key: Path

    @property
    def ciphertext(self) -> Path:
        return self.package / "payload" / MODEL_FILE


# --- phases -------------------------------------------------------------------------------------


def primitive_phase(table: Throughput, seconds: float, workers: int) -> None:
    one = run_child(SCRIPT, "primitives", pin=True, seconds=seconds)
    every = run_child(SCRIPT, "primitives", procs=workers, seconds=seconds) if workers > 1 else {}
    for name, label in (
        ("gcm_encrypt", "AES-256-GCM encrypt, in memory, cryptography"),
        ("gcm_decrypt", "AES-256-GCM decrypt, in memory, cryptography"),
        ("sha256", "SHA-256, in memory, hashlib"),
    ):
        table.add_rate(f"mem_{name}", f"{label}, 1 core", one[name])
        if name in every:
            table.add_rate(f"mem_{name}_all", f"{label}, {workers} processes (sum)", every[name])


def where_time_goes(table: Throughput, files: Files, workers: int) -> None:
    """Page-cache I/O, SHA-256 of the ciphertext, raw decryption; an estimate of open on 1 core."""
    io = run_child(
        SCRIPT, "io", pin=True, path=str(files.ciphertext), write_to=str(files.tmp / "io.out")
    )
    table.add(
        "io_read",
        "page cache: pread 1 MiB, 1 core",
        {"bytes": io["read_bytes"], "seconds": io["read_seconds"]},
        kind="reference",
    )
    table.add(
        "io_write",
        "page cache: pwrite 1 MiB into a new file, 1 core",
        {"bytes": io["write_bytes"], "seconds": io["write_seconds"]},
        kind="reference",
    )
    settle()
    sha = run_child(SCRIPT, "sha256", pin=True, path=str(files.ciphertext))
    table.add(
        "sha256_file", "SHA-256 of the ciphertext file, 1 core (bounds open)", sha, kind="reference"
    )
    for key, label, pin, count in (
        ("decrypt_1core", "decrypt_to_fd, no digest check, 1 core", True, 1),
        ("decrypt_all", f"decrypt_to_fd, no digest check, workers={workers}", False, workers),
    ):
        raw = run_child(
            SCRIPT,
            "decrypt",
            pin=pin,
            package=str(files.package),
            key=str(files.key),
            out=str(files.tmp / "raw.out"),
            workers=count,
        )
        table.add(key, label, raw, kind="reference")
        settle()
    seconds_per_mb = sum(
        1 / table.rate(k) for k in ("io_read", "mem_gcm_decrypt", "io_write", "sha256_file")
    )
    table.add_rate(
        "estimate_open_1core",
        "estimate: open on 1 core = pread + decrypt + pwrite + SHA-256 rows",
        1 / seconds_per_mb,
        kind="estimate",
    )


def open_phase(table: Throughput, files: Files, workers: int, *, cold: bool = False) -> None:
    runs: list[tuple[str, str, bool, int, float | None]] = [
        ("open_1core", "open, pinned to 1 CPU, workers=1", True, 1, TARGET_OPEN_1CORE),
        (
            "open_1worker",
            "open, workers=1, unpinned (digest thread free to use another core)",
            False,
            1,
            None,
        ),
        (
            "open_all",
            f"open, workers={workers} (all cores), unpinned",
            False,
            workers,
            TARGET_OPEN_ALL,
        ),
    ]
    if cold:
        runs = [("cold_open_all", f"cold: open, workers={workers}, unpinned", False, workers, None)]
    for key, label, pin, count, target in runs:
        if cold:
            drop_page_cache()
        out = files.tmp / f"opened-{key}"
        result = run_child(
            SCRIPT,
            "open",
            pin=pin,
            package=str(files.package),
            key=str(files.key),
            out=str(out),
            workers=count,
        )
        assert_same_bytes(files.src, out / MODEL_FILE)
        table.add(key, label, result, target=target)
        shutil.rmtree(out)
        settle()


def random_reads(files: Files, size: int) -> dict[str, Any]:
    from modelseal.package import SealedPackage

    key = _load_key(files.key)
    rng = random.Random(2)
    last = max(0, size - READ_SIZE)
    offsets = [rng.randint(0, last) for _ in range(RANDOM_READS)]
    latencies: list[float] = []
    with SealedPackage.open(files.package) as package:
        reader = package.reader(MODEL_FILE, key)
        for _ in range(50):  # warm up
            reader.read(rng.randint(0, last), READ_SIZE)
        start = time.perf_counter()
        for offset in offsets:
            t0 = time.perf_counter_ns()
            reader.read(offset, READ_SIZE)
            latencies.append((time.perf_counter_ns() - t0) / 1000.0)
        seconds = time.perf_counter() - start
        with open(files.src, "rb") as plain:  # correctness, outside the timed loop
            for offset in offsets[:64]:
                plain.seek(offset)
                if plain.read(READ_SIZE) != reader.read(offset, READ_SIZE):
                    raise RuntimeError(f"random read at {offset} returned wrong bytes")
    latencies.sort()
    return {
        "reads": RANDOM_READS,
        "read_size": READ_SIZE,
        "seconds": seconds,
        "reads_per_s": RANDOM_READS / seconds,
        "mb_s": mb_per_s(RANDOM_READS * READ_SIZE, seconds),
        "p50_us": percentile(latencies, 0.50),
        "p99_us": percentile(latencies, 0.99),
        "max_us": latencies[-1],
    }


def rss_phase(tmp: Path, size: int, workers: int) -> list[dict[str, Any]]:
    """Seal, then open, a big file, each in a fresh process; files deleted as soon as done."""
    src = tmp / "big" / MODEL_FILE
    src.parent.mkdir()
    package, key = tmp / "big.sealed", tmp / "big.key"
    write_random_file(src, size, distinct_blocks=16)
    settle()
    sealed = run_child(SCRIPT, "seal", src=str(src), out=str(package), key_out=str(key))
    rows: list[dict[str, Any]] = [{"phase": "seal", "workers": None, **sealed}]
    src.unlink()
    settle()
    for count in sorted({1, workers}):
        out = tmp / f"big.open-{count}"
        opened = run_child(
            SCRIPT, "open", package=str(package), key=str(key), out=str(out), workers=count
        )
        rows.append({"phase": "open", "workers": count, **opened})
        shutil.rmtree(out)
        settle()
    shutil.rmtree(package)
    key.unlink()
    return [{**row, "target_mib": RSS_TARGET_MIB} for row in rows]


def run(args: argparse.Namespace) -> dict[str, Any]:
    size = 64 * MIB if args.quick else int(args.size_gib * GIB)
    rss_size = 256 * MIB if args.quick else int(args.rss_size_gib * GIB)
    workers = os.cpu_count() or 1
    notes: list[str] = []
    busy_before = cpu_busy_fraction(1.0)
    if busy_before > 0.1:
        notes.append(
            f"{busy_before:.0%} of the CPUs were busy before starting: another program was "
            "running, so the numbers are low and noisy"
        )
        print(f"WARNING: {notes[-1]}", file=sys.stderr)
    watch = CpuWatch()
    limit_bps, command = openssl_speed("aes-256-gcm", block=1048576, seconds=1 if args.quick else 3)
    table = Throughput(limit_bps / 1e6, command)
    primitive_phase(table, 0.5 if args.quick else 1.5, workers)

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=RESULTS_DIR, prefix=".tmp-seal_open-") as tmp_name:
        tmp = Path(tmp_name)
        size = fit_to_disk(tmp, size, "--size-gib")
        files = Files(tmp, tmp / "model" / MODEL_FILE, tmp / "model.sealed", tmp / "model.key")
        files.src.parent.mkdir()
        write_random_file(files.src, size)
        settle()
        sealed = run_child(
            SCRIPT, "seal", src=str(files.src), out=str(files.package), key_out=str(files.key)
        )
        table.add(
            "seal",
            "seal (SHA-256 of plaintext and of ciphertext on 2 threads)",
            sealed,
            target=TARGET_SEAL,
        )
        settle()
        warm_page_cache(files.ciphertext)
        where_time_goes(table, files, workers)
        open_phase(table, files, workers)

        cache = "warm"
        if drop_page_cache():
            cache = "warm (rows marked cold dropped the page cache first)"
            cold = run_child(SCRIPT, "io", pin=True, path=str(files.ciphertext))
            cold_read = {"bytes": cold["read_bytes"], "seconds": cold["read_seconds"]}
            table.add(
                "cold_read",
                "cold: pread the ciphertext from disk, 1 core",
                cold_read,
                kind="reference",
            )
            open_phase(table, files, workers, cold=True)
        else:
            notes.append("/proc/sys/vm/drop_caches is not writable: every phase ran on warm files")

        warm_page_cache(files.ciphertext)
        reads = random_reads(files, size)
        shutil.rmtree(files.src.parent)
        shutil.rmtree(files.package)
        files.key.unlink()

        rss_size = fit_to_disk(tmp, rss_size, "--rss-size-gib")
        rss = rss_phase(tmp, rss_size, workers)

    return {
        "benchmark": "seal_open",
        "machine": machine_info(),
        "config": {
            "size_bytes": size,
            "rss_size_bytes": rss_size,
            "quick": args.quick,
            "workers_all": workers,
            "cache": cache,
            "mb": "10**6 bytes",
            "cpu_busy_before_start": round(busy_before, 3),
            "cpu_during_run": watch.stop(),
        },
        "limit": {"command": command, "bytes_per_s": limit_bps},
        "rows": [asdict(row) for row in table.rows],
        "random_reads": reads,
        "rss": rss,
        "notes": notes,
    }


# --- report -------------------------------------------------------------------------------------


def report(result: dict[str, Any]) -> None:
    config, machine = result["config"], result["machine"]
    print(
        f"\nmachine: {machine['cpu_model']}, {machine['nproc']} CPUs, Python {machine['python']}, "
        f"cryptography {machine['cryptography']} ({machine['cryptography_openssl']}), "
        f"openssl CLI: {machine['openssl_cli']}"
    )
    print(
        f"file: {config['size_bytes'] / MIB:.0f} MiB random; files {config['cache']}; "
        "MB = 10^6 bytes; ratio = MB/s divided by the openssl speed limit"
    )
    rows = []
    for row in result["rows"]:
        tag = "" if row["kind"] in ("measured", "limit") else f" [{row['kind']}]"
        rows.append(
            [
                row["phase"] + tag,
                f"{row['mb_s']:.0f}",
                f"{row['ratio']:.2f}x",
                "-" if row["target"] is None else f">= {row['target']:.2f}x",
                "-" if row["met"] is None else ("yes" if row["met"] else "NO"),
            ]
        )
    print_table("Throughput", ["phase", "MB/s", "x OpenSSL", "target", "met?"], rows)

    reads = result["random_reads"]
    print_table(
        f"Random {reads['read_size']} B reads (SealedPackage.reader().read), N={reads['reads']}",
        ["reads/s", "MB/s", "p50 us", "p99 us", "max us"],
        [
            [
                f"{reads['reads_per_s']:.0f}",
                f"{reads['mb_s']:.1f}",
                f"{reads['p50_us']:.0f}",
                f"{reads['p99_us']:.0f}",
                f"{reads['max_us']:.0f}",
            ]
        ],
    )

    rows = []
    for row in result["rss"]:
        workers = "" if row["workers"] is None else f", workers={row['workers']}"
        peak = max(row["rss_mib"], row["workers_rss_mib"])
        rows.append(
            [
                f"{row['phase']} {row['bytes'] / GIB:.2f} GiB{workers}",
                f"{row['rss_mib']:.1f}",
                f"{row['workers_rss_mib']:.1f}" if row["workers_rss_mib"] else "-",
                f"{mb_per_s(row['bytes'], row['seconds']):.0f}",
                f"<= {row['target_mib']:.0f}",
                "yes" if peak <= row["target_mib"] else "NO",
            ]
        )
    print_table(
        "Peak RSS (fresh process each; VmHWM of the process, ru_maxrss of its largest worker)",
        ["phase", "RSS MiB", "worker MiB", "MB/s", "target", "met?"],
        rows,
    )
    cpu = config["cpu_during_run"]
    if cpu:
        print(
            f"\nCPU during the run ({cpu['wall_seconds']:.0f} s): user {cpu['user']:.0%}, "
            f"system {cpu['system']:.0%}, idle {cpu['idle']:.0%}, steal {cpu['steal']:.1%}; "
            f"{cpu['cpu_seconds_others']:.1f} of {cpu['cpu_seconds_busy']:.1f} busy CPU-s were "
            "not this benchmark (other programs, kernel writeback); busy before start: "
            f"{config['cpu_busy_before_start']:.0%}"
        )
    for note in result["notes"]:
        print(f"note: {note}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--size-gib", type=float, default=1.0, help="throughput file size")
    parser.add_argument("--rss-size-gib", type=float, default=4.0, help="peak-RSS file size")
    parser.add_argument("--quick", action="store_true", help="64 MiB and 256 MiB smoke run")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child_main(CHILD_TASKS, json.loads(args.child))
    result = run(args)
    report(result)
    print(f"\nwrote {write_json('seal_open', result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
