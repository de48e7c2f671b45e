"""The crypto filesystem against the plaintext file, in the same run.

1. sequential read throughput: one ``pread`` stream in 1 MiB chunks through the mount vs the
   plaintext file, with the page cache warm (plaintext file and ciphertext both cached; the
   mount's own page cache is invalidated at every open, so every mounted byte is decrypted) and,
   when permitted, cold (page cache dropped before each read); target >= 500 MB/s through the
   mount;
2. model load: ``onnxruntime.InferenceSession`` on the PP-OCRv4 det + rec models shipped with
   rapidocr-onnxruntime, and on a generated ONNX model with one large initializer, through the
   mount vs plain (median of several fresh processes, warm cache); target <= 1.3x plain.

The mount is served by a thread of this process, with the key from a stand-in for the agent
(the agent's one key release is not on the read path). Readers and model loads run in fresh
child processes. Prints tables and writes ``bench/results/cfs.json``.

    .venv/bin/python bench/cfs.py [--size-mib 512] [--model-mib 256] [--repeat 5] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from _common import (
    MIB,
    CpuWatch,
    Task,
    child_main,
    cpu_busy_fraction,
    drop_page_cache,
    fit_to_disk,
    machine_info,
    mb_per_s,
    print_table,
    run_child,
    timed,
    warm_page_cache,
    write_json,
    write_random_file,
)

SCRIPT = Path(__file__).resolve()
TARGET_READ_MB_S = 500.0
TARGET_LOAD_RATIO = 1.3


# --- child tasks ----------------------------------------------------------------------------------


def _task_read(task: Task) -> Task:
    fd = os.open(task["path"], os.O_RDONLY)
    size, offset = os.fstat(fd).st_size, 0
    try:
        with timed() as elapsed:
            while offset < size:
                got = len(os.pread(fd, MIB, offset))
                if not got:
                    break
                offset += got
    finally:
        os.close(fd)
    return {"bytes": offset, "seconds": elapsed[0]}


def _task_load(task: Task) -> Task:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    with timed() as elapsed:
        for path in task["paths"]:
            ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return {"seconds": elapsed[0]}


CHILD_TASKS: dict[str, Callable[[Task], Task]] = {"read": _task_read, "load": _task_load}


# --- the mount ------------------------------------------------------------------------------------


class _HeldKey:
    """A stand-in for the agent's held key: the key, a lease that does not end."""

    def __init__(self, key: Any) -> None:
        self._key = key

    @property
    def key(self) -> Any:
        return self._key

    def status(self) -> Any:
        raise NotImplementedError

    def count_inferences(self, count: int = 1) -> None:
        pass

    def on_end(self, callback: Callable[[Any], None]) -> None:
        pass

    def close(self) -> None:
        pass


class _KeySource:
    def __init__(self, key: Any) -> None:
        self._key = key

    def acquire(self, license_token: str, model_name: str, model_version: int) -> _HeldKey:
        return _HeldKey(self._key)

    def close(self) -> None:
        pass


def _big_onnx(path: Path, mib: int) -> None:
    """A valid ONNX model: y = x @ W with one float32 initializer of ``mib`` MiB."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    cols = 1024
    rows = max(1, mib * MIB // (4 * cols))
    weights = np.random.default_rng(7).standard_normal((rows, cols), dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, rows])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, cols])],
        [numpy_helper.from_array(weights, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _prepare(work: Path, size: int, model_mib: int) -> tuple[Path, Any]:
    from modelseal.crypto import DataKey, SigningKey, create_self_signed, parse_subject
    from modelseal.package import seal

    plain = work / "plain"
    plain.mkdir()
    write_random_file(plain / "stream.bin", size, distinct_blocks=64)
    import rapidocr_onnxruntime

    ocr = Path(str(rapidocr_onnxruntime.__file__)).parent / "models"
    for name in ("det", "rec"):
        shutil.copyfile(next(ocr.glob(f"*PP-OCRv4_{name}_infer.onnx")), plain / f"{name}.onnx")
    _big_onnx(plain / "big.onnx", model_mib)
    signing_key = SigningKey.generate("ed25519")
    cert = create_self_signed(signing_key, parse_subject("CN=modelseal bench"))
    key = DataKey.generate()
    result = seal(
        plain,
        work / "sealed",
        name="bench",
        version=1,
        signing_key=signing_key,
        certificates=[cert],
        data_key=key,
    )
    return result.path, key


def _median_load(paths: list[str], repeat: int) -> float:
    return float(
        statistics.median(run_child(SCRIPT, "load", paths=paths)["seconds"] for _ in range(repeat))
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    from modelseal.cfs import CfsSession, Mount

    size = fit_to_disk(SCRIPT.parent, (64 if args.quick else args.size_mib) * MIB, "file")
    model_mib = 32 if args.quick else args.model_mib
    repeat = 2 if args.quick else args.repeat
    busy = cpu_busy_fraction()
    watch = CpuWatch()
    work = Path(tempfile.mkdtemp(prefix="cfs-bench-", dir=SCRIPT.parent))
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    try:
        sealed, key = _prepare(work, size, model_mib)
        plain, mnt = work / "plain", work / "mnt"
        mnt.mkdir()
        with (
            CfsSession(sealed, _KeySource(key), "bench") as session,
            Mount(session.view, mnt) as mount,
        ):
            ra_knob = _readahead_kb(mnt)
            for cache in ("warm", "cold"):
                for where in ("plain", "mount"):
                    path = (plain if where == "plain" else mnt) / "stream.bin"
                    if cache == "warm":
                        warm_page_cache(plain / "stream.bin")
                        warm_page_cache(sealed / "payload" / "stream.bin")
                    elif not drop_page_cache():
                        notes.append("cold-cache rows skipped: dropping the page cache needs root")
                        break
                    result = run_child(SCRIPT, "read", path=str(path))
                    rows.append(
                        {
                            "kind": "read",
                            "cache": cache,
                            "where": where,
                            "bytes": result["bytes"],
                            "seconds": result["seconds"],
                            "mb_s": mb_per_s(result["bytes"], result["seconds"]),
                        }
                    )
            for label, names in (
                ("PP-OCRv4 det+rec", ["det.onnx", "rec.onnx"]),
                (f"generated {model_mib} MiB", ["big.onnx"]),
            ):
                for root in (plain, sealed):
                    for name in names:
                        warm_page_cache(root / ("payload" if root == sealed else "") / name)
                _median_load([str(plain / n) for n in names], 1)  # warm-up (imports, caches)
                plain_s = _median_load([str(plain / n) for n in names], repeat)
                mount_s = _median_load([str(mnt / n) for n in names], repeat)
                rows.append(
                    {
                        "kind": "load",
                        "model": label,
                        "bytes": sum((plain / n).stat().st_size for n in names),
                        "plain_seconds": plain_s,
                        "mount_seconds": mount_s,
                        "ratio": mount_s / plain_s,
                    }
                )
            stats = {"hits": session.view.cache.hits, "misses": session.view.cache.misses}
            if not mount.live:
                raise RuntimeError("the mount ended during the benchmark")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "machine": machine_info(),
        "config": {
            "file_bytes": size,
            "generated_model_mib": model_mib,
            "repeat": repeat,
            "read_chunk": MIB,
            "fuse_threads": 8,
            "cache_segments": 32,
            "mount_read_ahead_kb": ra_knob,
            "cpu_busy_before_start": busy,
            "cpu_during_run": watch.stop(),
        },
        "rows": rows,
        "segment_cache": stats,
        "targets": {"read_mb_s": TARGET_READ_MB_S, "load_ratio": TARGET_LOAD_RATIO},
        "notes": notes,
    }


def _readahead_kb(mountpoint: Path) -> int | None:
    device = os.stat(mountpoint).st_dev
    try:
        knob = f"/sys/class/bdi/{os.major(device)}:{os.minor(device)}/read_ahead_kb"
        return int(Path(knob).read_text())
    except (OSError, ValueError):
        return None


def report(result: dict[str, Any]) -> None:
    reads = [r for r in result["rows"] if r["kind"] == "read"]
    table = []
    for cache in ("warm", "cold"):
        pair = {r["where"]: r for r in reads if r["cache"] == cache}
        if "mount" not in pair:
            continue
        plain, mount = pair["plain"]["mb_s"], pair["mount"]["mb_s"]
        met = "yes" if mount >= TARGET_READ_MB_S else "NO"
        table.append(
            [cache, f"{plain:.0f}", f"{mount:.0f}", f"{mount / plain:.2f}", f">= 500: {met}"]
        )
    size_mib = result["config"]["file_bytes"] // MIB
    print_table(
        f"Sequential read, {size_mib} MiB in 1 MiB preads (MB/s)",
        ["page cache", "plain", "mount", "mount/plain", "target"],
        table,
    )
    loads = [r for r in result["rows"] if r["kind"] == "load"]
    print_table(
        "Model load: onnxruntime.InferenceSession (median seconds)",
        ["model", "MiB", "plain", "mount", "ratio", "target"],
        [
            [
                r["model"],
                f"{r['bytes'] / MIB:.1f}",
                f"{r['plain_seconds']:.3f}",
                f"{r['mount_seconds']:.3f}",
                f"{r['ratio']:.2f}",
                f"<= 1.3: {'yes' if r['ratio'] <= TARGET_LOAD_RATIO else 'NO'}",
            ]
            for r in loads
        ],
    )
    cpu = result["config"]["cpu_during_run"]
    if cpu:
        print(
            f"\nCPU during the run: {cpu['cpu_seconds_others']:.1f} of "
            f"{cpu['cpu_seconds_busy']:.1f} busy CPU-s were not this benchmark; busy before "
            f"start: {result['config']['cpu_busy_before_start']:.0%}"
        )
    for note in result["notes"]:
        print(f"note: {note}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=512, help="sequential-read file size")
    parser.add_argument("--model-mib", type=int, default=256, help="generated ONNX model size")
    parser.add_argument("--repeat", type=int, default=5, help="model loads per side (median)")
    parser.add_argument("--quick", action="store_true", help="64 MiB file, 32 MiB model, 2 loads")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child_main(CHILD_TASKS, json.loads(args.child))
    result = run(args)
    report(result)
    print(f"\nwrote {write_json('cfs', result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
