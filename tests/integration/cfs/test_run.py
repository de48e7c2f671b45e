"""``modelseal run``: unmodified programs against the plaintext, exit codes and stdio passed
through, the end of the lease stopping the program, SIGTERM, and no mount left behind."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from modelseal.cfs import CfsSession, run_program
from tests.conftest import assert_no_plaintext, onnx_example_path
from tests.integration.cfs.conftest import (
    REPO,
    Sealed,
    cli_env,
    modelseal_mounts,
    seal_model,
    static_cli,
)
from tests.unit.cfs.keysource import StaticKeySource

INFER = Path(__file__).with_name("infer.py")


def _run_cli(
    sealed: Sealed, at: Path, license_dir: Path, *command: str, **kwargs: object
) -> list[str]:
    license_file = license_dir / "license.jwt"
    license_file.write_text("test-license\n")
    return static_cli(
        "run",
        "--model",
        str(sealed.package),
        "--at",
        str(at),
        "--license",
        str(license_file),
        "--agent-home",
        str(license_dir),
        *(["--grace", str(kwargs["grace"])] if "grace" in kwargs else []),
        "--",
        *command,
    )


def test_exit_code_and_output_pass_through(sealed_model: Sealed, tmp_path: Path) -> None:
    at = sealed_model.work / "run-exit"
    at.mkdir()
    script = (
        "import hashlib, sys\n"
        f"data = open({str(at / 'weights' / 'big.bin')!r}, 'rb').read()\n"
        "print(hashlib.sha256(data).hexdigest())\n"
        "sys.exit(3)\n"
    )
    seen: list[str] = []
    with CfsSession(sealed_model.package, StaticKeySource(sealed_model.key), "lic") as session:
        result = run_program(session.view, at, [sys.executable, "-c", script], say=seen.append)
    assert result.returncode == 3 and result.lease_ended is None
    assert str(at) not in modelseal_mounts() and not seen


def test_stdin_stdout_and_the_mount_directory(sealed_model: Sealed, tmp_path: Path) -> None:
    at = sealed_model.work / "run-created"  # does not exist: run creates and removes it
    code = "import sys, os; print(input().upper(), sorted(os.listdir(sys.argv[1])))"
    done = subprocess.run(
        _run_cli(sealed_model, at, tmp_path, sys.executable, "-c", code, str(at)),
        input="hello\n",
        env=cli_env(sealed_model.key_file),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "HELLO ['config.json', 'empty.txt', 'model.onnx', 'weights']\n"
    assert not at.exists() and str(at) not in modelseal_mounts()


STUBBORN = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # must be killed
path = sys.argv[1]
print("reading", flush=True)
while True:
    try:
        with open(path, "rb") as handle:
            handle.read()
    except OSError as exc:
        print("errno", exc.errno, flush=True)
    time.sleep(0.05)
"""


def test_the_end_of_the_lease_stops_the_program(sealed_model: Sealed) -> None:
    at = sealed_model.work / "run-revoked"
    at.mkdir()
    source = StaticKeySource(sealed_model.key)
    seen: list[str] = []
    with CfsSession(sealed_model.package, source, "lic") as session:
        timer = threading.Timer(1.0, lambda: source.held[0].end("REVOKED", "revoked by the owner"))
        timer.start()
        try:
            command = [sys.executable, "-c", STUBBORN, str(at / "config.json")]
            started = time.monotonic()
            result = run_program(session.view, at, command, grace=0.5, say=seen.append)
        finally:
            timer.cancel()
    assert time.monotonic() - started < 10
    assert result.lease_ended is not None and result.lease_ended.code == "REVOKED"
    assert result.returncode == 128 + signal.SIGKILL  # it ignored SIGTERM
    assert len(seen) == 1 and "ended (REVOKED: revoked by the owner)" in seen[0]
    assert "SIGTERM, SIGKILL after 0.5 s" in seen[0]
    assert str(at) not in modelseal_mounts()


def test_revocation_via_the_cli_exits_77_with_the_reason(
    sealed_model: Sealed, tmp_path: Path
) -> None:
    at = sealed_model.work / "run-cli-revoked"
    code = (
        "import sys, time\nprint('ready', flush=True)\n"
        "while True:\n"
        "    try: open(sys.argv[1], 'rb').read()\n"
        "    except OSError as exc: print('errno', exc.errno, flush=True); time.sleep(30)\n"
        "    time.sleep(0.05)\n"
    )
    process = subprocess.Popen(
        _run_cli(sealed_model, at, tmp_path, sys.executable, "-c", code, str(at / "config.json")),
        env=cli_env(sealed_model.key_file),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline() == "ready\n"
    process.send_signal(signal.SIGUSR1)  # static_cli: the lease ends as if revoked
    _, err = process.communicate(timeout=30)
    assert process.returncode == 77
    assert "ended (REVOKED: the license was revoked by the model controller)" in err
    assert "error: stopped" in err and not at.exists()
    assert str(at) not in modelseal_mounts()


def test_sigterm_is_forwarded_and_the_mount_goes(sealed_model: Sealed, tmp_path: Path) -> None:
    at = sealed_model.work / "run-term"
    code = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: (print('got SIGTERM', flush=True), sys.exit(9)))\n"
        "print('ready', flush=True)\ntime.sleep(60)\n"
    )
    process = subprocess.Popen(
        _run_cli(sealed_model, at, tmp_path, sys.executable, "-c", code),
        env=cli_env(sealed_model.key_file),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline() == "ready\n"
    assert str(at) in modelseal_mounts()
    process.terminate()
    out, err = process.communicate(timeout=30)
    assert out == "got SIGTERM\n" and process.returncode == 9, err
    assert str(at) not in modelseal_mounts() and not at.exists()


def test_onnxruntime_and_rapidocr_load_models_through_the_mount(tmp_path: Path) -> None:
    import rapidocr_onnxruntime
    from PIL import Image, ImageDraw, ImageFont

    ocr_models = Path(str(rapidocr_onnxruntime.__file__)).parent / "models"
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "iris.onnx").write_bytes(onnx_example_path().read_bytes())
    for name in ("det", "rec"):
        (plain / f"{name}.onnx").write_bytes(
            next(ocr_models.glob(f"*PP-OCRv4_{name}_infer.onnx")).read_bytes()
        )
    picture = tmp_path / "text.png"
    image = Image.new("RGB", (460, 90), "white")
    ImageDraw.Draw(image).text(
        (20, 20), "sealed 2026", fill="black", font=ImageFont.load_default(size=44)
    )
    image.save(picture)
    sealed = seal_model(plain, tmp_path / "work", name="ocr")
    at = sealed.work / "models"
    jobs = []
    for root in (plain, at):  # the same program on the plaintext files and on the mount
        jobs += ["onnx", str(root / "iris.onnx"), "+"]
        jobs += ["ocr", str(root / "det.onnx"), str(root / "rec.onnx"), str(picture), "+"]
    done = subprocess.run(
        _run_cli(sealed, at, tmp_path, sys.executable, str(INFER), *jobs[:-1]),
        env=cli_env(sealed.key_file),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    iris_plain, ocr_plain, iris_mounted, ocr_mounted = map(json.loads, done.stdout.splitlines())
    assert iris_mounted == iris_plain
    assert ocr_mounted == ocr_plain
    assert ocr_plain and "sealed" in ocr_plain[0][0]
    assert str(at) not in modelseal_mounts()
    assert_no_plaintext(sealed.work, sealed.plaintexts())


@pytest.fixture(scope="module", autouse=True)
def _no_plaintext_left(sealed_model: Sealed) -> object:
    yield None
    assert_no_plaintext(sealed_model.work, sealed_model.plaintexts())
