"""Small helpers shared by the benchmarks in ``bench/``.

Every benchmark prints plain-text tables, writes its numbers as JSON to ``bench/results/``
(gitignored) with the machine it ran on, compares against a limit measured in the same run
(``openssl speed``, raw primitives, page-cache I/O), and says when something else was using the
CPU meanwhile. Timed phases run in fresh child processes (the benchmark script re-invoked with
``--child``) so each can be pinned to one CPU and its peak RSS read on its own.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "BENCH_DIR",
    "GIB",
    "MIB",
    "RESULTS_DIR",
    "CpuWatch",
    "Task",
    "assert_same_bytes",
    "child_main",
    "children_peak_rss_mib",
    "cpu_busy_fraction",
    "drop_page_cache",
    "fit_to_disk",
    "machine_info",
    "mb_per_s",
    "openssl_speed",
    "page_cache_io",
    "peak_rss_mib",
    "percentile",
    "pin_to_one_cpu",
    "primitive_rates",
    "print_table",
    "run_child",
    "settle",
    "sha256_file",
    "timed",
    "warm_page_cache",
    "write_json",
    "write_random_file",
]

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
MIB = 1 << 20
GIB = 1 << 30

Task = dict[str, Any]


# --- output -------------------------------------------------------------------------------------


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print ``rows`` under ``headers`` as an aligned plain-text table (numbers right-aligned)."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def numeric(cell: str) -> bool:
        return cell not in ("", "-") and (cell[0].isdigit() or cell[0] in "-+.")

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.rjust(width) if i and numeric(cell) else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    print(f"\n{title}")
    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row))


def write_json(name: str, payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` to ``bench/results/<name>.json`` and return the path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return path


# --- measuring ----------------------------------------------------------------------------------


def mb_per_s(nbytes: float, seconds: float) -> float:
    """Throughput in MB/s (10**6 bytes per second), the unit ``openssl speed`` uses."""
    return nbytes / seconds / 1e6 if seconds > 0 else float("inf")


@contextmanager
def timed() -> Iterator[list[float]]:
    """``with timed() as t: ...`` leaves the elapsed seconds in ``t[0]``."""
    box: list[float] = []
    start = time.perf_counter()
    try:
        yield box
    finally:
        box.append(time.perf_counter() - start)


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values (``fraction`` in [0, 1])."""
    if not sorted_values:
        raise ValueError("no values")
    rank = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[rank]


def peak_rss_mib() -> float:
    """Peak resident set size of this process (VmHWM, else ru_maxrss), in MiB."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for text in status:
                if text.startswith("VmHWM:"):
                    return int(text.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def children_peak_rss_mib() -> float:
    """Peak RSS of the largest waited-for child of this process (0 if none), in MiB."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def pin_to_one_cpu(cpu: int | None = None) -> int:
    """Restrict this process (and the threads and processes it starts later) to one CPU."""
    chosen = min(os.sched_getaffinity(0)) if cpu is None else cpu
    os.sched_setaffinity(0, {chosen})
    return chosen


# --- is the machine ours? -----------------------------------------------------------------------

_CPU_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def _read_cpu_times() -> list[int]:
    """Cumulative jiffies of all CPUs from ``/proc/stat`` in ``_CPU_FIELDS`` order."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = stat.readline().split()
    except OSError:
        return []
    return [int(v) for v in fields[1 : 1 + len(_CPU_FIELDS)]]


def _cpu_share(before: Sequence[int], after: Sequence[int]) -> dict[str, float]:
    deltas = [b - a for a, b in zip(before, after, strict=False)]
    total = sum(deltas)
    if not total:
        return {}
    return {name: round(d / total, 4) for name, d in zip(_CPU_FIELDS, deltas, strict=False)}


def cpu_busy_fraction(interval: float = 0.5) -> float:
    """Fraction of all CPUs busy over the next ``interval`` seconds (before a benchmark starts,
    anything above zero means another program is running)."""
    before = _read_cpu_times()
    time.sleep(interval)
    share = _cpu_share(before, _read_cpu_times())
    return 1.0 - share.get("idle", 1.0) - share.get("iowait", 0.0) if share else 0.0


class CpuWatch:
    """How the machine's CPU time was spent between construction and :meth:`stop`, and how much
    of the busy time was *not* this process or its children (other programs, kernel writeback),
    so a run that shared the machine says so instead of quietly reporting low numbers."""

    def __init__(self) -> None:
        self._stat = _read_cpu_times()
        self._own = os.times()
        self._wall = time.monotonic()

    def stop(self) -> dict[str, float]:
        stat, own, wall = _read_cpu_times(), os.times(), time.monotonic() - self._wall
        share = _cpu_share(self._stat, stat)
        if not share:
            return {}
        total = sum(b - a for a, b in zip(self._stat, stat, strict=False)) / os.sysconf(
            "SC_CLK_TCK"
        )
        busy = total * (1.0 - share["idle"] - share["iowait"])
        mine = sum(own[:4]) - sum(self._own[:4])  # user, system, children's user and system
        return {
            **share,
            "wall_seconds": round(wall, 2),
            "cpu_seconds_available": round(total, 2),
            "cpu_seconds_busy": round(busy, 2),
            "cpu_seconds_this_benchmark": round(mine, 2),
            "cpu_seconds_others": round(max(0.0, busy - mine), 2),
        }


# --- child processes ----------------------------------------------------------------------------


def run_child(script: str | Path, task: str, **params: Any) -> Task:
    """Run ``task`` in a fresh interpreter (``script --child JSON``); return its JSON result.

    ``pin=True`` pins the child to one CPU before it starts any thread.
    """
    done = subprocess.run(
        [sys.executable, str(script), "--child", json.dumps({**params, "task": task})],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    result: Task = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def child_main(tasks: Mapping[str, Callable[[Task], Task]], task: Task) -> int:
    """The ``--child`` side of :func:`run_child`: run one task, print its result as JSON with the
    pinned CPU and the peak RSS of this process and of its largest worker process."""
    cpu = pin_to_one_cpu() if task.get("pin") else None  # before any thread starts
    result = tasks[task["task"]](task)
    result.update(
        pinned_cpu=cpu,
        rss_mib=peak_rss_mib(),
        workers_rss_mib=children_peak_rss_mib(),
    )
    print(json.dumps(result))
    return 0


# --- limits and primitives ----------------------------------------------------------------------


def openssl_speed(cipher: str, *, block: int, seconds: int) -> tuple[float, str]:
    """Bytes/s of ``openssl speed -evp CIPHER`` on one core, and the command line that ran."""
    cmd = ["openssl", "speed", "-evp", cipher, "-bytes", str(block), "-seconds", str(seconds)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    lines = [text for text in done.stdout.splitlines() if text.strip()]
    match = re.search(r"([0-9.]+)k\s*$", lines[-1]) if lines else None
    if match is None:
        raise RuntimeError(f"cannot parse the output of {' '.join(cmd)}: {lines[-1:]!r}")
    return float(match.group(1)) * 1000.0, " ".join(cmd)  # "in 1000s of bytes per second"


def _rates_in_windows(seconds: float, start_at: float, cpu: int | None) -> dict[str, float]:
    """MB/s of AES-256-GCM (cryptography's OpenSSL) and SHA-256 (hashlib) on 1 MiB buffers.

    Each primitive runs in its own time window from ``start_at`` (monotonic clock), so processes
    started together measure the same primitive at the same moment.
    """
    import hashlib

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    data = os.urandom(MIB)
    aead = AESGCM(AESGCM.generate_key(256))
    nonce = os.urandom(12)
    sealed = aead.encrypt(nonce, data, None)
    digest = hashlib.sha256()
    steps: list[tuple[str, Callable[[], object]]] = [
        ("gcm_encrypt", lambda: aead.encrypt(nonce, data, None)),
        ("gcm_decrypt", lambda: aead.decrypt(nonce, sealed, None)),
        ("sha256", lambda: digest.update(data)),
    ]
    rates: dict[str, float] = {}
    for index, (name, step) in enumerate(steps):
        for _ in range(8):  # warm up
            step()
        time.sleep(max(0.0, start_at + index * (seconds + 0.25) - time.monotonic()))
        count, start = 0, time.monotonic()
        while (elapsed := time.monotonic() - start) < seconds:
            for _ in range(8):
                step()
            count += 8
        rates[name] = mb_per_s(count * MIB, elapsed)
    return rates


def primitive_rates(seconds: float, procs: int = 1) -> dict[str, float]:
    """In-memory MB/s of ``gcm_encrypt``, ``gcm_decrypt`` and ``sha256`` on this process's CPU,
    or summed over ``procs`` forked processes running at once, each pinned to its own CPU."""
    if procs == 1:
        return _rates_in_windows(seconds, time.monotonic() + 0.1, None)
    from multiprocessing import get_context

    cpus = sorted(os.sched_getaffinity(0))
    start_at = time.monotonic() + 1.0  # once every worker has started
    jobs = [(seconds, start_at, cpus[i % len(cpus)]) for i in range(procs)]
    with get_context("fork").Pool(procs) as pool:
        each = pool.starmap(_rates_in_windows, jobs)
    return {name: sum(rates[name] for rates in each) for name in each[0]}


# --- files --------------------------------------------------------------------------------------


def fit_to_disk(where: Path, wanted: int, label: str, factor: int = 3) -> int:
    """``wanted`` bytes, or less (with a printed warning) when under ``factor`` times is free."""
    free = shutil.disk_usage(where).free
    if free >= factor * wanted:
        return wanted
    scaled = max(16 * MIB, (free // factor) // MIB * MIB)
    print(
        f"WARNING: only {free / GIB:.1f} GiB free in {where}; {label} scaled down from "
        f"{wanted / GIB:.2f} GiB to {scaled / GIB:.2f} GiB",
        file=sys.stderr,
    )
    return scaled


def write_random_file(path: Path, size: int, *, distinct_blocks: int | None = None) -> None:
    """Random bytes; with ``distinct_blocks``, that many random MiB blocks repeated (fast)."""
    blocks = [os.urandom(MIB) for _ in range(distinct_blocks or 0)]
    with open(path, "wb", buffering=0) as out:
        for index, offset in enumerate(range(0, size, MIB)):
            block = blocks[index % len(blocks)] if blocks else os.urandom(MIB)
            out.write(block[: min(MIB, size - offset)])


def warm_page_cache(path: Path) -> None:
    """Read ``path`` once so timed phases find it in the page cache."""
    fd = os.open(path, os.O_RDONLY)
    try:
        for offset in range(0, os.fstat(fd).st_size, 4 * MIB):
            os.pread(fd, 4 * MIB, offset)
    finally:
        os.close(fd)


def settle() -> None:
    """Write dirty pages back now, so writeback does not take CPU from the next timed phase."""
    os.sync()


def page_cache_io(path: Path, write_to: Path | None = None) -> dict[str, Any]:
    """The I/O floor: seconds to pread ``path`` in 1 MiB chunks and, with ``write_to``, to pwrite
    as many bytes into that new file (deleted afterwards)."""
    fd = os.open(path, os.O_RDONLY)
    size = os.fstat(fd).st_size
    try:
        with timed() as read_time:
            for offset in range(0, size, MIB):
                os.pread(fd, MIB, offset)
    finally:
        os.close(fd)
    result: dict[str, Any] = {"read_bytes": size, "read_seconds": read_time[0]}
    if write_to is not None:
        block = os.urandom(MIB)
        fd = os.open(write_to, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with timed() as write_time:
                os.ftruncate(fd, size)
                for offset in range(0, size, MIB):
                    os.pwrite(fd, block[: min(MIB, size - offset)], offset)
        finally:
            os.close(fd)
            write_to.unlink()
        result.update(write_bytes=size, write_seconds=write_time[0])
    return result


def sha256_file(path: Path, chunk: int = 4 * MIB) -> dict[str, Any]:
    """Seconds to SHA-256 ``path`` (hashlib) read with pread in ``chunk``-byte pieces."""
    import hashlib

    fd = os.open(path, os.O_RDONLY)
    size = os.fstat(fd).st_size
    digest = hashlib.sha256()
    try:
        with timed() as elapsed:
            for offset in range(0, size, chunk):
                digest.update(os.pread(fd, chunk, offset))
    finally:
        os.close(fd)
    return {"bytes": size, "seconds": elapsed[0], "sha256": digest.hexdigest()}


def assert_same_bytes(expected: Path, actual: Path, samples: int = 32) -> None:
    """Raise unless ``actual`` has the size of ``expected`` and the same bytes at its start, end
    and ``samples`` random places (a cheap check that a benchmark produced the right output)."""
    import random

    size = expected.stat().st_size
    if actual.stat().st_size != size:
        raise RuntimeError(f"{actual} is {actual.stat().st_size} bytes, expected {size}")
    rng = random.Random(7)
    with open(expected, "rb") as a, open(actual, "rb") as b:
        for offset in [0, max(0, size - 65536)] + [rng.randrange(size) for _ in range(samples)]:
            a.seek(offset)
            b.seek(offset)
            if a.read(65536) != b.read(65536):
                raise RuntimeError(f"{actual} differs from {expected} at offset {offset}")


def drop_page_cache() -> bool:
    """Flush and drop the page cache; False when not permitted (not root, read-only /proc)."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w", encoding="ascii") as knob:
            knob.write("3\n")
    except OSError:
        return False
    return True


# --- the machine --------------------------------------------------------------------------------


def _cpuinfo(field: str) -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for text in info:
                if text.split(":", 1)[0].strip() == field:
                    return text.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def _openssl_cli_version() -> str:
    try:
        done = subprocess.run(
            ["openssl", "version"], capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return "unavailable"
    return done.stdout.strip()


def machine_info() -> dict[str, Any]:
    """What the numbers depend on: CPU, cores, memory, Python, cryptography and OpenSSL builds."""
    import ssl

    import cryptography
    from cryptography.hazmat.backends.openssl import backend

    flags = set(_cpuinfo("flags").split())
    wanted = ("aes", "vaes", "pclmulqdq", "vpclmulqdq", "sha_ni", "avx2", "avx512f")
    return {
        "timestamp": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpu_model": _cpuinfo("model name") or platform.processor() or "unknown",
        "cpu_flags": [flag for flag in wanted if flag in flags],
        "hypervisor": "hypervisor" in flags,
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "mem_total_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB, 1),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "cryptography": cryptography.__version__,
        "cryptography_openssl": backend.openssl_version_text(),
        "hashlib_openssl": ssl.OPENSSL_VERSION,
        "openssl_cli": _openssl_cli_version(),
    }
