"""``modelseal serve`` with tritonclient: sealed vs plain, server vs in-process, cold start.

One run sets up a real chain in a temporary directory: a vault home (SQLite, small scrypt cost)
with a customer, onnxruntime's ``logreg_iris.onnx`` and the PP-OCRv4 recognition model of
rapidocr-onnxruntime sealed to its import key and registered, licenses with no limits, and
``modelseal vault serve`` as a subprocess on loopback; a device enrolled against it. Then:

(a) one ``modelseal serve --agent-home`` serving each model twice, plain and sealed (its key
    released by the vault): throughput of tritonclient over REST (binary tensor extension) and
    gRPC at a few concurrencies (one client per thread), sealed and plain measured alternately
    in the same server. Target (issue 4): sealed >= 0.98 x plain.
(b) the compute-bound OCR model: the server (plain, tritonclient gRPC and REST binary) against
    ONNX Runtime in this process on the same input, one request at a time. Target: >= 0.9.
(c) cold start: from starting ``modelseal serve`` to the first successful inference, sealed (open
    the package, real key release from the vault, decrypt in memory, load) against plain, each
    repeated and taken alternately. Target: sealed <= 1.10 x plain.

Each measurement also records the CPU the server and this process used and what "other cores"
used meanwhile (``bench/_common.py`` CpuWatch), so a run on a shared machine says so.

    .venv/bin/python bench/serve.py [--seconds 3] [--concurrency 1 4 16] [--starts 5] [--quick]

Prints tables and writes ``bench/results/serve.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from _common import CpuWatch, cpu_busy_fraction, machine_info, print_table, write_json
from vault_mtls import free_port, process_tree_cpu, stop_server

HOST = "127.0.0.1"
PASSPHRASE = "serve benchmark passphrase"  # noqa: S105 - a throw-away benchmark vault
PASSPHRASE_ENV = "MODELSEAL_BENCH_VAULT_PASSPHRASE"  # noqa: S105 - a variable name
ADMIN = "OU=admin,CN=bench"
CUSTOMER = "bench"
MODELSEAL = [sys.executable, "-m", "modelseal"]
TARGET_SEALED = 0.98
TARGET_IN_PROCESS = 0.9
TARGET_COLD = 1.10


def iris_model() -> Path:
    from onnxruntime.datasets import get_example

    return Path(get_example("logreg_iris.onnx"))


def ocr_model() -> Path:
    import rapidocr_onnxruntime

    return sorted(Path(rapidocr_onnxruntime.__file__).parent.glob("models/*rec*.onnx"))[0]


INPUTS: dict[str, tuple[str, Callable[[], np.ndarray]]] = {
    "iris": (
        "float_input",
        lambda: np.array([[5.1, 3.5], [6.2, 2.9], [7.7, 3.0]], dtype=np.float32),
    ),
    "ocr": ("x", lambda: np.random.default_rng(7).random((1, 3, 48, 160), dtype=np.float32)),
}


# --- the chain ------------------------------------------------------------------------------------


def prepare(folder: Path) -> dict[str, Any]:
    """Vault home, sealed + plain repository, licenses, a config per case; the vault's token."""
    from modelseal.crypto import SigningKey, create_self_signed, parse_subject
    from modelseal.licensing import Policy, VersionSpec
    from modelseal.package import seal
    from modelseal.vault.home import SoftwareMaster, init_vault
    from modelseal.vault.service import VaultService

    now = datetime.now(UTC)
    master = SoftwareMaster(PASSPHRASE.encode(), scrypt_n=2**10)
    home = init_vault(folder / "vault", database_url=None, master=master, now=now)
    owner_key = SigningKey.generate()
    owner = create_self_signed(owner_key, parse_subject("CN=Bench Models"))
    import_key = home.import_public_key
    repo = folder / "repo"
    with home.unlock(passphrase=PASSPHRASE.encode()) as vault, VaultService(vault) as service:
        service.create_customer(ADMIN, CUSTOMER)
        for name, source in (("iris", iris_model()), ("ocr", ocr_model())):
            (repo / name / "1").mkdir(parents=True)
            shutil.copyfile(source, repo / name / "1" / "model.onnx")
            staging = folder / "staging" / name
            staging.mkdir(parents=True)
            shutil.copyfile(source, staging / "model.onnx")
            package = seal(
                staging, repo / f"{name}-sealed" / "1", name=name, version=1,
                signing_key=owner_key, certificates=[owner], import_keys=[import_key], now=now,
            ).path  # fmt: skip
            service.register_model(
                ADMIN,
                manifest=(package / "manifest.json").read_bytes(),
                signature=(package / "manifest.sig").read_bytes(),
                wrapped=None,
            )
            _, jws = service.issue_license(
                ADMIN, customer=CUSTOMER, model_name=name, versions=VersionSpec.parse("*"),
                policy=Policy(lease=timedelta(hours=1)),
            )  # fmt: skip
            (repo / f"{name}-sealed" / "license.jws").write_text(jws + "\n")
        token = service.create_enrollment_token(ADMIN, customer=CUSTOMER, ttl=timedelta(hours=1))
    configs = {
        "all": ["iris", "iris-sealed", "ocr", "ocr-sealed"],
        "cold-plain": ["ocr"],
        "cold-sealed": ["ocr-sealed"],
    }
    for case, names in configs.items():
        entries = [{"config": {"name": n, "base_path": f"repo/{n}"}} for n in names]
        (folder / f"{case}.json").write_text(json.dumps({"model_config_list": entries}))
    return {"home": str(home.path), "token": token}


def start_vault(home: str, port: int) -> subprocess.Popen[bytes]:
    command = [*MODELSEAL, "vault", "serve", "--home", home, "--host", HOST, "--port", str(port)]
    command += ["--passphrase-env", PASSPHRASE_ENV, "--quiet"]
    server = subprocess.Popen(
        command, env={**os.environ, PASSPHRASE_ENV: PASSPHRASE}, stdin=subprocess.DEVNULL
    )
    import httpx

    ca = Path(home) / "ca" / "ca.pem"
    deadline = time.monotonic() + 60
    while True:
        if server.poll() is not None or time.monotonic() > deadline:
            stop_server(server)
            raise RuntimeError("the vault did not start")
        try:
            if httpx.get(f"https://{HOST}:{port}/healthz", verify=str(ca)).status_code == 200:
                return server
        except (httpx.TransportError, OSError):
            pass
        time.sleep(0.1)


def start_model_server(
    folder: Path, config: str, device: Path, rest: int, grpc: int, log: Path
) -> subprocess.Popen[bytes]:
    command = [*MODELSEAL, "serve", "--config", str(folder / config), "--agent-home", str(device)]
    command += ["--rest-port", str(rest), "--grpc-port", str(grpc), "--no-metrics"]
    with log.open("ab") as out:
        return subprocess.Popen(
            command, cwd=folder, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )


# --- clients --------------------------------------------------------------------------------------


def make_infer(protocol: str, rest: int, grpc: int, model: str) -> Callable[[], Any]:
    """A function that runs one inference with its own tritonclient client (binary tensors)."""
    name, make = INPUTS[model.removesuffix("-sealed")]
    array = make()
    if protocol == "grpc":
        import tritonclient.grpc as grpcclient

        client: Any = grpcclient.InferenceServerClient(f"{HOST}:{grpc}")
        tensor: Any = grpcclient.InferInput(name, list(array.shape), "FP32")
    else:
        import tritonclient.http as httpclient

        client = httpclient.InferenceServerClient(f"{HOST}:{rest}")
        tensor = httpclient.InferInput(name, list(array.shape), "FP32")
    tensor.set_data_from_numpy(array)

    def infer() -> Any:
        return client.infer(model, [tensor])

    infer.client = client  # type: ignore[attr-defined]
    return infer


def throughput(
    protocol: str, rest: int, grpc: int, model: str, concurrency: int, seconds: float,
    server_pid: int,
) -> dict[str, Any]:  # fmt: skip
    """Inferences/s of ``concurrency`` threads, each with its own client, over ``seconds``."""
    counts = [0] * concurrency
    errors: list[str] = []
    ready = threading.Barrier(concurrency + 1)
    window: dict[str, float] = {}
    go = threading.Event()

    def worker(index: int) -> None:
        try:
            infer = make_infer(protocol, rest, grpc, model)
            for _ in range(3):
                infer()
        except Exception as exc:  # reported below
            errors.append(repr(exc))
            ready.wait()
            return

        ready.wait()
        go.wait()
        try:
            while time.monotonic() < window["start"]:
                infer()
            count = 0
            while time.monotonic() < window["end"]:
                infer()
                count += 1
            counts[index] = count
        except Exception as exc:
            errors.append(repr(exc))
        finally:
            infer.client.close()  # type: ignore[attr-defined]

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    ready.wait()
    window["start"] = time.monotonic() + 0.3
    window["end"] = window["start"] + seconds
    go.set()
    time.sleep(0.3)
    watch, own, server = CpuWatch(), os.times(), process_tree_cpu(server_pid)
    time.sleep(seconds)
    server_cpu = process_tree_cpu(server_pid) - server
    client_cpu = sum(os.times()[:2]) - sum(own[:2])
    machine = watch.stop()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"{protocol} {model}: {errors[0]}")
    total = sum(counts)
    return {
        "protocol": protocol, "model": model, "concurrency": concurrency,
        "inferences": total, "per_s": total / seconds,
        "server_cores": server_cpu / seconds, "client_cores": client_cpu / seconds,
        "other_cores": max(0.0, machine.get("cpu_seconds_busy", 0.0) - server_cpu - client_cpu)
        / seconds,
    }  # fmt: skip


def in_process(model_path: Path, seconds: float) -> dict[str, Any]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    name, make = INPUTS["ocr"]
    feed = {name: make()}
    for _ in range(3):
        session.run(None, feed)
    watch, own = CpuWatch(), os.times()
    count, start = 0, time.monotonic()
    while time.monotonic() - start < seconds:
        session.run(None, feed)
        count += 1
    elapsed = time.monotonic() - start
    mine = sum(os.times()[:2]) - sum(own[:2])
    machine = watch.stop()
    return {
        "per_s": count / elapsed,
        "client_cores": mine / elapsed,
        "other_cores": max(0.0, machine.get("cpu_seconds_busy", 0.0) - mine) / elapsed,
    }


def cold_start(folder: Path, config: str, device: Path) -> dict[str, float]:
    """Seconds from spawning the server to the first successful inference (REST binary)."""
    import tritonclient.http as httpclient

    rest, grpc = free_port(), free_port()
    name, make = INPUTS["ocr"]
    tensor = httpclient.InferInput(name, [1, 3, 48, 160], "FP32")
    tensor.set_data_from_numpy(make())
    model = "ocr-sealed" if "sealed" in config else "ocr"
    began = time.monotonic()
    server = start_model_server(folder, config, device, rest, grpc, folder / "cold.log")
    try:
        client = httpclient.InferenceServerClient(f"{HOST}:{rest}", connection_timeout=1)
        while True:
            if server.poll() is not None or time.monotonic() - began > 60:
                raise RuntimeError(f"{config}: the server did not serve; see {folder}/cold.log")
            try:
                client.infer(model, [tensor])
                break
            except Exception:  # not listening or not loaded yet
                client.close()
                time.sleep(0.01)
                client = httpclient.InferenceServerClient(f"{HOST}:{rest}", connection_timeout=1)
        first = time.monotonic() - began
        client.close()
    finally:
        stop_server(server)
    return {"seconds": first}


# --- the driver -----------------------------------------------------------------------------------


def drive(args: argparse.Namespace) -> None:
    from modelseal.agent import AgentHome

    busy = cpu_busy_fraction()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        folder = Path(tmp)
        setup = prepare(folder)
        vault_port = free_port()
        vault = start_vault(setup["home"], vault_port)
        try:
            device = folder / "device"
            AgentHome.enroll(device, vault_url=f"https://{HOST}:{vault_port}", token=setup["token"])
            rest, grpc = free_port(), free_port()
            server = start_model_server(folder, "all.json", device, rest, grpc, folder / "s.log")
            try:
                wait_ready(server, rest, folder / "s.log")
                results["sealed_vs_plain"] = sealed_vs_plain(args, rest, grpc, server.pid)
                results["server_vs_in_process"] = server_vs_in_process(args, rest, grpc, server.pid)
            finally:
                stop_server(server)
            results["cold_start"] = cold_starts(args, folder, device)
        finally:
            stop_server(vault)
    report(args, busy, results)


def wait_ready(server: subprocess.Popen[bytes], rest: int, log: Path) -> None:
    import httpx

    deadline = time.monotonic() + 60
    while True:
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"modelseal serve did not start:\n{log.read_text()}")
        try:
            ready = httpx.get(f"http://{HOST}:{rest}/v2/models/ocr-sealed/ready")
            if ready.status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)


def sealed_vs_plain(
    args: argparse.Namespace, rest: int, grpc: int, pid: int
) -> list[dict[str, Any]]:
    rows = []
    for model in ("iris", "ocr"):
        for protocol in ("rest-binary", "grpc"):
            for concurrency in args.concurrency:
                runs: dict[str, list[dict[str, Any]]] = {"plain": [], "sealed": []}
                for _ in range(args.rounds):  # alternately, so drift hits both alike
                    for kind, name in (("plain", model), ("sealed", f"{model}-sealed")):
                        runs[kind].append(
                            throughput(protocol, rest, grpc, name, concurrency, args.seconds, pid)
                        )
                plain = sum(r["per_s"] for r in runs["plain"]) / args.rounds
                sealed = sum(r["per_s"] for r in runs["sealed"]) / args.rounds
                every = runs["plain"] + runs["sealed"]
                rows.append(
                    {
                        "model": model, "protocol": protocol, "concurrency": concurrency,
                        "plain_per_s": plain, "sealed_per_s": sealed, "ratio": sealed / plain,
                        "per_round_ratios": [
                            s["per_s"] / p["per_s"]
                            for p, s in zip(runs["plain"], runs["sealed"], strict=True)
                        ],
                        "server_cores": statistics.mean(r["server_cores"] for r in every),
                        "client_cores": statistics.mean(r["client_cores"] for r in every),
                        "other_cores": statistics.mean(r["other_cores"] for r in every),
                    }
                )  # fmt: skip
                print(f"  {model} {protocol} x{concurrency}: plain {plain:.0f}/s, sealed "
                      f"{sealed:.0f}/s ({sealed / plain:.3f})", flush=True)  # fmt: skip
    return rows


def server_vs_in_process(
    args: argparse.Namespace, rest: int, grpc: int, pid: int
) -> list[dict[str, Any]]:
    rows = []
    for _ in range(args.rounds):
        local = in_process(ocr_model(), args.seconds)
        for protocol in ("grpc", "rest-binary"):
            served = throughput(protocol, rest, grpc, "ocr", 1, args.seconds, pid)
            rows.append(
                {
                    "protocol": protocol, "server_per_s": served["per_s"],
                    "in_process_per_s": local["per_s"], "ratio": served["per_s"] / local["per_s"],
                    "server_cores": served["server_cores"],
                    "client_cores": served["client_cores"],
                    "in_process_cores": local["client_cores"],
                    "other_cores": max(served["other_cores"], local["other_cores"]),
                }
            )  # fmt: skip
    return rows


def cold_starts(args: argparse.Namespace, folder: Path, device: Path) -> dict[str, Any]:
    times: dict[str, list[float]] = {"plain": [], "sealed": []}
    watch = CpuWatch()
    cold_start(folder, "cold-plain.json", device)  # warm the page cache and imports once
    for _ in range(args.starts):
        for kind in ("plain", "sealed"):
            times[kind].append(cold_start(folder, f"cold-{kind}.json", device)["seconds"])
    machine = watch.stop()
    plain, sealed = statistics.median(times["plain"]), statistics.median(times["sealed"])
    return {
        "plain_s": times["plain"], "sealed_s": times["sealed"],
        "plain_median_s": plain, "sealed_median_s": sealed, "ratio": sealed / plain,
        "machine_cpu": machine,
    }  # fmt: skip


def report(args: argparse.Namespace, busy: float, results: dict[str, Any]) -> None:
    rows = [
        [
            r["model"], r["protocol"], str(r["concurrency"]), f"{r['plain_per_s']:.0f}",
            f"{r['sealed_per_s']:.0f}", f"{r['ratio']:.3f}",
            " ".join(f"{x:.3f}" for x in r["per_round_ratios"]),
            f"{r['ratio'] / TARGET_SEALED:.3f}", f"{r['server_cores']:.2f}",
            f"{r['client_cores']:.2f}", f"{r['other_cores']:.2f}",
        ]
        for r in results["sealed_vs_plain"]
    ]  # fmt: skip
    print_table(
        f"(a) sealed vs plain in one server, tritonclient, {args.seconds:g} s x {args.rounds} "
        f"rounds each (CPU busy before start: {busy:.0%})",
        ["model", "protocol", "clients", "plain inf/s", "sealed inf/s", "sealed/plain",
         "per round", "x target 0.98", "server cores", "client cores", "other cores"],
        rows,
    )  # fmt: skip
    rows = [
        [
            r["protocol"], f"{r['server_per_s']:.1f}", f"{r['in_process_per_s']:.1f}",
            f"{r['ratio']:.3f}", f"{r['ratio'] / TARGET_IN_PROCESS:.3f}",
            f"{r['server_cores']:.2f}", f"{r['client_cores']:.2f}",
            f"{r['in_process_cores']:.2f}", f"{r['other_cores']:.2f}",
        ]
        for r in results["server_vs_in_process"]
    ]  # fmt: skip
    print_table(
        "(b) PP-OCRv4 rec, one request at a time: server (plain) vs ONNX Runtime in process",
        ["protocol", "server inf/s", "in-process inf/s", "server/in-process", "x target 0.9",
         "server cores", "client cores", "in-process cores", "other cores"],
        rows,
    )  # fmt: skip
    cold = results["cold_start"]
    print_table(
        f"(c) cold start to first inference, PP-OCRv4 rec, {args.starts} starts each (median)",
        ["model", "median s", "all s"],
        [
            ["plain", f"{cold['plain_median_s']:.2f}", " ".join(f"{x:.2f}" for x in cold["plain_s"])],
            ["sealed", f"{cold['sealed_median_s']:.2f}", " ".join(f"{x:.2f}" for x in cold["sealed_s"])],
            ["sealed/plain", f"{cold['ratio']:.3f}", f"target <= {TARGET_COLD}"],
        ],
    )  # fmt: skip
    machine = cold["machine_cpu"]
    print(f"cold starts: other programs used {machine.get('cpu_seconds_others', 0):.1f} CPU s "
          f"of {machine.get('cpu_seconds_available', 0):.1f} available")  # fmt: skip
    path = write_json(
        "serve",
        {
            "machine": machine_info(),
            "cpu_busy_before": busy,
            "seconds": args.seconds,
            "rounds": args.rounds,
            "targets": {"sealed_vs_plain": TARGET_SEALED, "server_vs_in_process":
                        TARGET_IN_PROCESS, "cold_start_sealed_over_plain": TARGET_COLD},
            **results,
        },
    )  # fmt: skip
    print(f"\nwrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="alternating repetitions")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--starts", type=int, default=5, help="cold starts of each kind")
    parser.add_argument("--quick", action="store_true", help="1 s, 1 round, 2 starts")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.rounds, args.starts = 1.0, 1, 2
        args.concurrency = [1, 8]
    drive(args)


if __name__ == "__main__":
    main()
