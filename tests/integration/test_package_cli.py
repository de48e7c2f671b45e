"""`modelseal seal / verify / inspect / open` end to end, and every refusal as the user sees it.

Most runs go through click's CliRunner (same process, fast); a few run the installed console script
to check real exit codes and streams.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from modelseal.cli.main import cli
from modelseal.crypto import (
    ImportPrivateKey,
    canonical_json,
    dump_data_key,
    load_data_key,
    unwrap_data_key,
    wrap_info,
)
from modelseal.keys import Keystore
from modelseal.package import IntegrityError, SealedPackage
from modelseal.package.signature import sign_manifest
from tests.conftest import (
    PASSPHRASE,
    PASSPHRASE_ENV,
    Identity,
    assert_failed_cleanly,
    entry_bytes,
    flip_byte,
    read_tree,
    replace_entries,
    write_archive,
)

SCRIPT = Path(sys.executable).parent / "modelseal"
ENV = {PASSPHRASE_ENV: PASSPHRASE}


def modelseal(*args: str | Path) -> Result:
    return CliRunner(env=ENV).invoke(cli, [str(a) for a in args], catch_exceptions=False)


def ok(*args: str | Path) -> Result:
    result = modelseal(*args)
    assert result.exit_code == 0, result.output
    return result


def refused(result: Result, *fragments: str) -> str:
    """Exit 1, nothing on stdout, one ``error:`` line on stderr (maybe a hint), no traceback."""
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    first, *rest = result.stderr.splitlines()
    assert first.startswith("error: ")
    assert all(line.startswith("  hint: ") for line in rest), result.stderr
    assert len(rest) <= 1
    for fragment in fragments:
        assert fragment in first, f"{fragment!r} not in {first!r}"
    return first


def trust(keystore: Path) -> Path:
    return keystore / "certificate.pem"


def seal_cli(
    model: Path, out: Path, keystore: Path, *extra: str | Path, data_key: Path | None = None
) -> Result:
    key_args: list[str | Path] = ["--data-key-out", data_key] if data_key else []
    return modelseal(
        "seal",
        model,
        "--keystore",
        keystore,
        "--name",
        "iris",
        "--version",
        "3",
        "--out",
        out,
        "--passphrase-env",
        PASSPHRASE_ENV,
        *key_args,
        *extra,
    )


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """Packages and keys live here, apart from the model and from opened output."""
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture(params=[False, True], ids=["directory", "archive"])
def package(
    request: pytest.FixtureRequest, model_dir: Path, owner_keystore: Path, work: Path
) -> tuple[Path, Path]:
    """(sealed package, data key file) made by the CLI, as a directory or an archive."""
    return seal_package(model_dir, owner_keystore, work, archive=request.param)


def seal_package(model: Path, keystore: Path, work: Path, *, archive: bool) -> tuple[Path, Path]:
    out = work / ("iris.tar" if archive else "iris")
    extra = ["--archive"] if archive else []
    result = seal_cli(model, out, keystore, *extra, data_key=work / "iris.key")
    assert result.exit_code == 0, result.output
    return out, work / "iris.key"


# --- help ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "options"),
    [
        (
            "seal",
            [
                "--keystore",
                "--name",
                "--version",
                "--out",
                "--archive",
                "--data-key-out",
                "--vault-import-key",
                "--model-id",
                "--passphrase-env",
                "--quiet",
            ],
        ),
        ("verify", ["--trust", "--json", "--quiet"]),
        ("inspect", ["--json"]),
        ("open", ["--data-key", "--out", "--trust", "--workers", "--quiet"]),
    ],
)
def test_help_mentions_every_option(command: str, options: list[str]) -> None:
    text = ok(command, "--help").stdout
    assert text.startswith(f"Usage: cli {command} [OPTIONS] ")
    for option in options:
        assert option in text
    assert command in ok("--help").stdout


# --- the happy paths -----------------------------------------------------------------------------


def test_seal_a_single_onnx_file(onnx_model: Path, owner_keystore: Path, work: Path) -> None:
    result = seal_cli(onnx_model, work / "iris", owner_keystore, data_key=work / "iris.key")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "sealed iris v3 (1 files, 670 B)" in result.stderr
    assert "signed by CN=Acme Models" in result.stderr
    assert f"data key written to {work / 'iris.key'} (mode 0600)" in result.stderr
    assert stat.S_IMODE((work / "iris.key").stat().st_mode) == 0o600
    with SealedPackage.open(work / "iris") as sealed:
        assert [e.path for e in sealed.manifest.files] == ["model.onnx"]
        assert sealed.manifest.key_id == load_data_key((work / "iris.key").read_bytes()).key_id


def test_seal_quietly(model_dir: Path, owner_keystore: Path, work: Path) -> None:
    result = seal_cli(model_dir, work / "iris", owner_keystore, "-q", data_key=work / "k")
    assert result.exit_code == 0, result.output
    assert (result.stdout, result.stderr) == ("", "")


def test_verify_with_trust(package: tuple[Path, Path], owner_keystore: Path) -> None:
    path, _ = package
    result = ok("verify", path, "--trust", trust(owner_keystore))
    assert result.stdout == ""
    assert f"OK {path}: iris v3, 5 files" in result.stderr
    assert "signature valid (ed25519), signed by CN=Acme Models" in result.stderr
    assert "every ciphertext matches its signed SHA-256" in result.stderr
    assert "signer trusted through CN=Acme Models" in result.stderr
    assert "warning" not in result.stderr


def test_verify_without_trust_warns_but_succeeds(package: tuple[Path, Path]) -> None:
    result = ok("verify", package[0])
    assert "warning: signer not checked against a trust anchor (pass --trust CERT)" in (
        result.stderr
    )


def test_verify_json(package: tuple[Path, Path], owner_keystore: Path) -> None:
    path, _ = package
    with SealedPackage.open(path) as sealed:
        manifest, signer = sealed.manifest, sealed.signer
    report = json.loads(ok("verify", path, "--trust", trust(owner_keystore), "--json").stdout)
    assert report == {
        "ok": True,
        "model": {"id": manifest.model.id, "name": "iris", "version": 3},
        "signer": "CN=Acme Models",
        "signer_sha256": signer.certificate.fingerprint,
        "trusted_by": "CN=Acme Models",
        "files": 5,
    }
    untrusted = json.loads(ok("verify", path, "--json", "-q").stdout)
    assert untrusted["ok"] is True and untrusted["trusted_by"] is None


def test_inspect_json_is_the_signed_manifest(package: tuple[Path, Path]) -> None:
    path, _ = package
    result = ok("inspect", path, "--json")
    assert json.loads(result.stdout) == json.loads(entry_bytes(path, "manifest.json"))


def test_inspect_table(package: tuple[Path, Path]) -> None:
    path, _ = package
    with SealedPackage.open(path) as sealed:
        manifest = sealed.manifest
    text = ok("inspect", path).stdout
    for expected in (
        "iris v3",
        manifest.model.id,
        manifest.key_id,
        "AES256_GCM_HKDF_1MB (segment 1048576 bytes)",
        "CN=Acme Models (ed25519)",
        "5 files",
        "weights/extra/small.bin",
        "2,621,440",
        manifest.file("weights/big.bin").sha256,
    ):
        assert expected in text, expected


@pytest.mark.parametrize("workers", ["1", "2"])
def test_open_gives_identical_files(
    package: tuple[Path, Path],
    model_dir: Path,
    owner_keystore: Path,
    opened_parent: Path,
    workers: str,
) -> None:
    path, key_file = package
    out = opened_parent / "out"
    result = ok(
        "open",
        path,
        "--data-key",
        key_file,
        "--out",
        out,
        "--trust",
        trust(owner_keystore),
        "--workers",
        workers,
    )
    assert f"opened iris v3: 5 files → {out}" in result.stderr
    assert read_tree(out) == read_tree(model_dir)
    assert sorted(p.name for p in opened_parent.iterdir()) == ["out"]


def test_the_opened_model_runs(
    onnx_model: Path, owner_keystore: Path, work: Path, opened_parent: Path
) -> None:
    import numpy as np
    import onnxruntime

    def outputs(model: bytes) -> list[int]:
        session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
        features = np.array([[4.9, 3.0], [6.4, 3.2], [6.3, 3.3]], dtype=np.float32)
        labels = session.run(["label"], {"float_input": features})[0]
        return [int(x) for x in labels]

    seal_cli(onnx_model, work / "iris.tar", owner_keystore, "--archive", data_key=work / "k")
    ok("open", work / "iris.tar", "--data-key", work / "k", "--out", opened_parent / "out")
    opened = (opened_parent / "out" / "model.onnx").read_bytes()
    assert opened == onnx_model.read_bytes()
    assert outputs(opened) == outputs(onnx_model.read_bytes())


@pytest.mark.parametrize("archive", [False, True], ids=["directory", "archive"])
def test_vault_import_key_without_a_key_file(
    model_dir: Path, owner_keystore: Path, work: Path, opened_parent: Path, archive: bool
) -> None:
    vault = ImportPrivateKey.generate()
    (work / "vault.pem").write_bytes(vault.public_key().to_pem())
    out = work / ("iris.tar" if archive else "iris")
    extra = ["--archive"] if archive else []
    result = seal_cli(
        model_dir, out, owner_keystore, "--vault-import-key", work / "vault.pem", *extra
    )
    assert result.exit_code == 0, result.output
    assert (
        f"data key wrapped to vault import key {vault.public_key().key_id[:16]}…" in result.stderr
    )
    assert "data key written" not in result.stderr
    assert sorted(p.name for p in work.iterdir()) == sorted([out.name, "vault.pem"])

    manifest = json.loads(ok("inspect", out, "--json").stdout)
    (wrapped,) = manifest["encryption"]["wrapped_keys"]
    assert wrapped["recipient"] == vault.public_key().key_id
    key_id = manifest["encryption"]["key_id"]
    key = unwrap_data_key(
        base64.b64decode(wrapped["wrapped"]),
        vault,
        key_id=key_id,
        info=wrap_info(key_id=key_id, model_id=manifest["model"]["id"], version=3),
    )
    (work / "unwrapped.key").write_bytes(dump_data_key(key))
    ok("open", out, "--data-key", work / "unwrapped.key", "--out", opened_parent / "out")
    assert read_tree(opened_parent / "out") == read_tree(model_dir)


def test_the_installed_script_seals_verifies_and_refuses(
    model_dir: Path, owner_keystore: Path, work: Path
) -> None:
    def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(SCRIPT), *map(str, args)],
            env={**os.environ, **ENV},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    out = work / "iris.tar"
    sealed = run(
        "seal",
        model_dir,
        "--keystore",
        owner_keystore,
        "--name",
        "iris",
        "--version",
        "1",
        "--out",
        out,
        "--archive",
        "--data-key-out",
        work / "k",
        "--passphrase-env",
        PASSPHRASE_ENV,
    )
    assert sealed.returncode == 0, sealed.stderr
    verified = run("verify", out, "--trust", trust(owner_keystore), "--json")
    assert verified.returncode == 0 and json.loads(verified.stdout)["ok"] is True
    flip_byte(out, "payload/weights/big.bin", 5000)
    failed = run("verify", out, "--trust", trust(owner_keystore))
    assert failed.returncode == 1
    assert failed.stdout == ""
    assert failed.stderr == (
        "error: payload/weights/big.bin does not match the SHA-256 in the signed manifest: it was "
        "tampered with or swapped with another file\n"
    )


# --- refusals ------------------------------------------------------------------------------------


def test_seal_refuses_without_a_key_destination(
    model_dir: Path, owner_keystore: Path, work: Path
) -> None:
    refused(
        seal_cli(model_dir, work / "iris", owner_keystore),
        "error: the data key would be lost: nobody could ever open this package",
    )
    assert list(work.iterdir()) == []


def test_seal_refuses_existing_outputs(
    model_dir: Path, owner_keystore: Path, work: Path, plaintexts: list[bytes]
) -> None:
    (work / "iris").mkdir()
    (work / "iris" / "keep").write_text("mine")
    (work / "old.key").write_text("an older key")
    refused(
        seal_cli(model_dir, work / "iris", owner_keystore, data_key=work / "new.key"),
        f"{work / 'iris'} already exists; nothing was written",
    )
    refused(
        seal_cli(model_dir, work / "other", owner_keystore, data_key=work / "old.key"),
        f"{work / 'old.key'} already exists; refusing to overwrite a key file",
    )
    assert read_tree(work) == {"iris/keep": b"mine", "old.key": b"an older key"}
    assert_failed_cleanly(work, plaintexts, "iris", "old.key")


def test_seal_refuses_an_output_inside_the_model(
    model_dir: Path, owner_keystore: Path, work: Path
) -> None:
    before = read_tree(model_dir)
    refused(
        seal_cli(model_dir, model_dir / "sealed", owner_keystore, data_key=work / "k"),
        f"{model_dir / 'sealed'} is inside the model being sealed",
    )
    assert read_tree(model_dir) == before
    assert not (work / "k").exists()


def test_seal_refuses_a_model_with_a_symlink(
    model_dir: Path, owner_keystore: Path, work: Path
) -> None:
    (model_dir / "alias.onnx").symlink_to(model_dir / "model.onnx")
    refused(
        seal_cli(model_dir, work / "iris", owner_keystore, data_key=work / "k"),
        "alias.onnx is a symbolic link",
    )
    assert list(work.iterdir()) == []


def _flip(entry: str, offset: int) -> Callable[[Path, Identity], None]:
    return lambda path, attacker: flip_byte(path, entry, offset)


def _resign(path: Path, signer: Identity) -> None:
    manifest = entry_bytes(path, "manifest.json")
    replace_entries(path, {"manifest.sig": sign_manifest(manifest, signer.key, [signer.cert])})


def _add_evil_member(path: Path, name: str, kind: bytes) -> None:
    with tarfile.open(path) as tar:
        names = [m.name for m in tar.getmembers()]
    write_archive(path, [(n, entry_bytes(path, n)) for n in names])
    with tarfile.open(path, "a:") as tar:
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, "" if kind == tarfile.REGTYPE else "payload/model.onnx"
        tar.addfile(info)


BAD_PACKAGES: list[tuple[str, Callable[[Path, Identity], None], str, str]] = [
    # (case, tamper, what verify says, what open says)
    (
        "header",
        _flip("payload/weights/big.bin", 3),
        "payload/weights/big.bin does not match the SHA-256",
        "payload/weights/big.bin, segment 0: failed authentication",
    ),
    (
        "middle-segment",
        _flip("payload/weights/big.bin", 1_600_000),
        "payload/weights/big.bin does not match the SHA-256",
        "payload/weights/big.bin, segment 1: failed authentication",
    ),
    (
        "last-tag",
        _flip("payload/weights/extra/small.bin", -1),
        "payload/weights/extra/small.bin does not match the SHA-256",
        "payload/weights/extra/small.bin, segment 0: failed authentication",
    ),
    (
        "manifest",
        _flip("manifest.json", 100),
        "manifest.json does not match its signature",
        "manifest.json does not match its signature",
    ),
    (
        "signature",
        _flip("manifest.sig", 0),
        "manifest.sig is not valid UTF-8 JSON",
        "manifest.sig is not valid UTF-8 JSON",
    ),
    (
        "truncated",
        lambda p, a: replace_entries(
            p, {"payload/model.onnx": entry_bytes(p, "payload/model.onnx")[:-1]}
        ),
        "payload/model.onnx is 725 bytes but the manifest says 726: it was truncated",
        "payload/model.onnx is 725 bytes but the manifest says 726: it was truncated",
    ),
    (
        "untrusted-signer",
        _resign,
        "the package is signed by 'CN=Mallory'",
        "the package is signed by 'CN=Mallory'",
    ),
    (
        "no-manifest",
        lambda p, a: replace_entries(p, {"manifest.json": None}),
        "is not a sealed package: manifest.json is missing",
        "is not a sealed package: manifest.json is missing",
    ),
]

ARCHIVE_MEMBERS = [
    (
        "dotdot",
        "../escape",
        tarfile.REGTYPE,
        "archive entry '../escape' has an absolute or '..' path",
    ),
    (
        "absolute",
        "/escape",
        tarfile.REGTYPE,
        "archive entry '/escape' has an absolute or '..' path",
    ),
    ("symlink", "payload/link", tarfile.SYMTYPE, "archive entry 'payload/link' is a link"),
    ("hardlink", "payload/hard", tarfile.LNKTYPE, "archive entry 'payload/hard' is a link"),
]


@pytest.mark.parametrize(
    ("tamper", "verify_says", "open_says"),
    [case[1:] for case in BAD_PACKAGES],
    ids=[case[0] for case in BAD_PACKAGES],
)
def test_a_bad_package_is_refused_by_every_command(
    package: tuple[Path, Path],
    owner_keystore: Path,
    attacker: Identity,
    opened_parent: Path,
    plaintexts: list[bytes],
    tamper: Callable[[Path, Identity], None],
    verify_says: str,
    open_says: str,
) -> None:
    path, key_file = package
    tamper(path, attacker)
    refused(modelseal("verify", path, "--trust", trust(owner_keystore)), verify_says)
    refused(modelseal("verify", path, "--trust", trust(owner_keystore), "--json"), verify_says)
    out = opened_parent / "out"
    refused(
        modelseal(
            "open", path, "--data-key", key_file, "--out", out, "--trust", trust(owner_keystore)
        ),
        open_says,
    )
    assert not out.exists()
    assert_failed_cleanly(opened_parent, plaintexts)


def test_inspect_refuses_a_tampered_manifest(package: tuple[Path, Path]) -> None:
    path, _ = package
    flip_byte(path, "manifest.json", 10)
    refused(modelseal("inspect", path, "--json"), "manifest.json does not match its signature")
    refused(modelseal("inspect", path), "manifest.json does not match its signature")


def test_verify_without_trust_accepts_another_signer_but_names_it(
    package: tuple[Path, Path], attacker: Identity
) -> None:
    """Without --trust only the signature is checked: the output says who signed and warns."""
    path, _ = package
    _resign(path, attacker)
    result = ok("verify", path)
    assert "signed by CN=Mallory" in result.stderr
    assert "warning: signer not checked" in result.stderr


def test_open_refuses_a_wrong_data_key(
    package: tuple[Path, Path],
    onnx_model: Path,
    owner_keystore: Path,
    work: Path,
    opened_parent: Path,
    plaintexts: list[bytes],
) -> None:
    path, _ = package
    seal_cli(onnx_model, work / "other", owner_keystore, data_key=work / "other.key")
    other = load_data_key((work / "other.key").read_bytes())
    out = opened_parent / "out"
    message = refused(
        modelseal("open", path, "--data-key", work / "other.key", "--out", out),
        "error: wrong data key: this package was sealed with key",
        f"the key given is {other.key_id}",
    )
    assert "hint" not in message
    assert_failed_cleanly(opened_parent, plaintexts)


def test_open_refuses_an_unreadable_key_file(
    package: tuple[Path, Path], work: Path, opened_parent: Path
) -> None:
    path, _ = package
    (work / "garbage.key").write_text("not a key")
    refused(
        modelseal("open", path, "--data-key", work / "garbage.key", "--out", opened_parent / "o"),
        "not a modelseal data key file",
    )
    refused(
        modelseal("open", path, "--data-key", work / "absent.key", "--out", opened_parent / "o"),
        f"cannot read data key {work / 'absent.key'}",
    )
    assert list(opened_parent.iterdir()) == []


def test_open_refuses_an_existing_output(
    package: tuple[Path, Path], opened_parent: Path, plaintexts: list[bytes]
) -> None:
    path, key_file = package
    out = opened_parent / "out"
    out.mkdir()
    (out / "keep").write_text("mine")
    refused(
        modelseal("open", path, "--data-key", key_file, "--out", out),
        f"{out} already exists; nothing was written",
    )
    assert read_tree(out) == {"keep": b"mine"}
    assert_failed_cleanly(opened_parent, plaintexts, "out")


def test_open_refuses_an_untrusted_signer(
    package: tuple[Path, Path],
    attacker: Identity,
    work: Path,
    opened_parent: Path,
    plaintexts: list[bytes],
) -> None:
    path, key_file = package
    (work / "mallory.pem").write_bytes(attacker.cert.pem())
    refused(
        modelseal(
            "open",
            path,
            "--data-key",
            key_file,
            "--out",
            opened_parent / "o",
            "--trust",
            work / "mallory.pem",
        ),
        "the package is signed by 'CN=Acme Models'",
        "which is not trusted",
    )
    assert_failed_cleanly(opened_parent, plaintexts)


def test_verbose_shows_the_exception(package: tuple[Path, Path], owner_keystore: Path) -> None:
    path, _ = package
    flip_byte(path, "payload/weights/big.bin", 100)
    result = CliRunner(env=ENV).invoke(
        cli, ["--verbose", "verify", str(path), "--trust", str(trust(owner_keystore))]
    )
    assert result.exit_code == 1
    assert isinstance(result.exception, IntegrityError)


@pytest.mark.parametrize(
    ("name", "kind", "message"),
    [case[1:] for case in ARCHIVE_MEMBERS],
    ids=[case[0] for case in ARCHIVE_MEMBERS],
)
def test_an_archive_with_an_unsafe_entry_is_refused_by_every_command(
    model_dir: Path,
    owner_keystore: Path,
    work: Path,
    opened_parent: Path,
    plaintexts: list[bytes],
    name: str,
    kind: bytes,
    message: str,
) -> None:
    path, key_file = seal_package(model_dir, owner_keystore, work, archive=True)
    _add_evil_member(path, name, kind)
    refused(modelseal("verify", path, "--trust", trust(owner_keystore)), f"{path}: {message}")
    refused(modelseal("inspect", path), message)
    refused(
        modelseal("open", path, "--data-key", key_file, "--out", opened_parent / "out"), message
    )
    assert_failed_cleanly(opened_parent, plaintexts)


@pytest.mark.parametrize(
    ("rewrite", "message"),
    [
        (
            lambda doc: canonical_json(doc | {"format_version": 2}),
            "manifest.json: unknown format version 2; this modelseal reads version 1",
        ),
        (
            lambda doc: json.dumps(doc, indent=2).encode(),
            "manifest.json is not in canonical JSON form (RFC 8785)",
        ),
    ],
    ids=["format-version-2", "non-canonical"],
)
def test_a_manifest_the_owner_signed_but_this_modelseal_cannot_read(
    package: tuple[Path, Path],
    owner_keystore: Path,
    opened_parent: Path,
    plaintexts: list[bytes],
    rewrite: Callable[[dict[str, object]], bytes],
    message: str,
) -> None:
    path, key_file = package
    store = Keystore.load(owner_keystore)
    manifest = rewrite(json.loads(entry_bytes(path, "manifest.json")))
    signature = sign_manifest(
        manifest, store.signing_key(PASSPHRASE.encode()), store.certificate_chain()
    )
    replace_entries(path, {"manifest.json": manifest, "manifest.sig": signature})
    refused(modelseal("verify", path, "--trust", trust(owner_keystore)), message)
    refused(modelseal("inspect", path), message)
    refused(
        modelseal("open", path, "--data-key", key_file, "--out", opened_parent / "out"), message
    )
    assert_failed_cleanly(opened_parent, plaintexts)
