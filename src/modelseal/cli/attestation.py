"""``tcb create`` / ``tcb show`` for owners, ``evidence verify`` / ``evidence collect`` for
operators. Thin: each command reads files and delegates to :mod:`modelseal.attestation`."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from pathlib import Path

import click

from modelseal._files import write_new
from modelseal.cli._common import passphrase_env_option, quiet_option, read_passphrase, say
from modelseal.errors import UsageError

__all__ = ["COMMANDS"]

_KINDS = ("software", "sgx", "tdx", "sev-snp")
_TEE_KINDS = ("sgx", "tdx", "sev-snp", "software")
_file = click.Path(exists=True, dir_okay=False, path_type=Path)
_new = click.Path(path_type=Path)
_HEX_TEXT = re.compile(rb"\s*(?:[0-9a-fA-F]{2})+\s*", re.ASCII)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}") from exc


def _write_new(path: Path, data: bytes) -> None:
    try:
        write_new(path, data, 0o644)
    except FileExistsError:
        raise UsageError(f"{path} already exists; refusing to overwrite it") from None
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from exc


def _report_data(text: str) -> bytes:
    try:
        data = bytes.fromhex(text)
    except ValueError:
        data = b""
    if len(data) != 64:
        raise UsageError("--report-data must be 64 bytes written as 128 hex digits")
    return data


def _now(seconds: int | None) -> dt.datetime:
    if seconds is None:
        return dt.datetime.now(dt.UTC)
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


@click.group("tcb")
def tcb() -> None:
    """Reference TCBs: the runtime measurements an owner vouches for (signed)."""


@tcb.command("create")
@click.option("--keystore", type=click.Path(path_type=Path), required=True, help="Owner keystore.")
@click.option("--type", "kind", type=click.Choice(_KINDS), required=True, help="Evidence type.")
@click.option("--out", type=_new, required=True, help="The reference TCB file (must not exist).")
@click.option("--name", help="A label for people, e.g. `ocr-runtime 1.4` (default: the type).")
@click.option("--from-runtime", is_flag=True, help="software: measure this installation.")
@click.option(
    "--config",
    "configs",
    type=_file,
    multiple=True,
    help="software: a server configuration file to measure (repeatable).",
)
@click.option("--mrenclave", metavar="HEX", help="sgx: the enclave measurement (32 bytes).")
@click.option("--mrsigner", metavar="HEX", help="sgx: the enclave signer (32 bytes).")
@click.option("--isv-prod-id", type=click.IntRange(0, 0xFFFF), help="sgx: with --mrsigner.")
@click.option("--isv-svn", type=click.IntRange(0, 0xFFFF), help="sgx: with --mrsigner.")
@click.option("--mrtd", metavar="HEX", help="tdx: the TD measurement (48 bytes).")
@click.option("--measurement", metavar="HEX", help="sev-snp: the launch measurement (48 bytes).")
@passphrase_env_option("Environment variable holding the keystore passphrase (default: prompt).")
@quiet_option
def tcb_create(
    keystore: Path,
    kind: str,
    out: Path,
    name: str | None,
    from_runtime: bool,
    configs: tuple[Path, ...],
    mrenclave: str | None,
    mrsigner: str | None,
    isv_prod_id: int | None,
    isv_svn: int | None,
    mrtd: str | None,
    measurement: str | None,
    passphrase_env: str | None,
    quiet: bool,
) -> None:
    """Sign a reference TCB with the owner's key (like OVSA's gen-tcb-signature)."""
    from modelseal.attestation import (
        load_reference_tcb,
        measure_runtime,
        reference_measurements,
        sign_reference_tcb,
    )
    from modelseal.keys import Keystore

    if kind != "software" and (from_runtime or configs):
        raise UsageError("--from-runtime and --config describe software TCBs only")
    if kind == "software" and not from_runtime:
        raise UsageError("a software reference TCB needs --from-runtime")
    store = Keystore.load(keystore)
    runtime = measure_runtime(config=configs) if kind == "software" else None
    measurements = reference_measurements(
        kind,
        runtime=runtime,
        mrenclave=mrenclave,
        mrsigner=mrsigner,
        isv_prod_id=isv_prod_id,
        isv_svn=isv_svn,
        mrtd=mrtd,
        measurement=measurement,
    )
    key = store.signing_key(read_passphrase(passphrase_env, prompt=f"Passphrase for {keystore}"))
    now = dt.datetime.now(dt.UTC)
    data = sign_reference_tcb(
        kind,
        measurements,
        key=key,
        chain=store.certificate_chain(),
        name=name or kind,
        now=now,
    )
    _write_new(out, data)
    reference = load_reference_tcb(data, now=now)
    say(quiet, f"wrote reference TCB {out}", *reference.describe())


@tcb.command("show")
@click.argument("file", type=_file)
@click.option(
    "--trust", "trust", type=_file, multiple=True, help="Owner certificate or CA (repeatable)."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
def tcb_show(file: Path, trust: tuple[Path, ...], as_json: bool) -> None:
    """Verify a reference TCB file's signature (and signer, with --trust) and print it."""
    from modelseal.attestation import load_reference_tcb
    from modelseal.crypto import load_certificates

    anchors = [c for p in trust for c in load_certificates(_read(p, "certificate"), what=str(p))]
    reference = load_reference_tcb(
        _read(file, "reference TCB"), trust=anchors, now=dt.datetime.now(dt.UTC), what=str(file)
    )
    if as_json:
        click.echo(
            json.dumps(
                {
                    "evidence_type": reference.evidence_type,
                    "name": reference.name,
                    "created": reference.created,
                    "signer": reference.signer.subject,
                    "signer_sha256": reference.signer.fingerprint,
                    "trusted": reference.trusted,
                    "allowed_measurements": list(reference.allowed_measurements()),
                    "measurements": dict(reference.measurements),
                },
                indent=2,
            )
        )
        return
    click.echo("\n".join(["OK " + str(file), *reference.describe()]))


@click.group("evidence")
def evidence() -> None:
    """Attestation evidence: verify a quote or report offline, or collect one on a device."""


@evidence.command("verify")
@click.argument("file", type=_file)
@click.option("--type", "kind", type=click.Choice(_TEE_KINDS), required=True)
@click.option(
    "--collateral",
    "collateral_files",
    type=_file,
    multiple=True,
    help="sgx/tdx: DCAP collateral JSON (dcap-qvl QuoteCollateralV3; repeatable).",
)
@click.option(
    "--collateral-url",
    metavar="URL",
    help="sgx/tdx: fetch collateral from this PCCS / Intel PCS (https). Default: offline.",
)
@click.option(
    "--certs",
    "cert_files",
    type=_file,
    multiple=True,
    help="sev-snp: VCEK and ASK/ARK, PEM or DER (repeatable).",
)
@click.option("--now", "now_seconds", type=int, metavar="UNIX_SECONDS", help="Verify as of then.")
@click.option("--policy", "policy_file", type=_file, help="Policy JSON (default: inspect only).")
@click.option(
    "--tcb",
    "tcb_files",
    type=_file,
    multiple=True,
    help="Reference TCB file(s) whose measurements the policy allows (repeatable).",
)
@click.option("--report-data", metavar="HEX", help="The 64 report-data bytes expected.")
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON on stdout.")
def evidence_verify(
    file: Path,
    kind: str,
    collateral_files: tuple[Path, ...],
    collateral_url: str | None,
    cert_files: tuple[Path, ...],
    now_seconds: int | None,
    policy_file: Path | None,
    tcb_files: tuple[Path, ...],
    report_data: str | None,
    as_json: bool,
) -> None:
    """Verify evidence FILE offline; print measurements, TCB status, every claim and the verdict.

    Exits 0 only when the evidence passes. Without --policy, measurements are shown but not
    checked; debug, TCB status (UpToDate), signatures, chains and freshness still are.
    """
    from modelseal.attestation import (
        AttestationPolicy,
        fetch_collateral,
        load_collateral,
        load_reference_tcb,
        verify_evidence,
    )

    now = _now(now_seconds)
    raw = _read(file, "evidence")
    if kind == "sev-snp" and _HEX_TEXT.fullmatch(raw):
        raw = bytes.fromhex(raw.decode("ascii"))
    collateral = [load_collateral(_read(p, "collateral"), what=str(p)) for p in collateral_files]
    if collateral_url:
        if kind not in ("sgx", "tdx"):
            raise UsageError("--collateral-url serves sgx and tdx quotes only")
        collateral.append(fetch_collateral(raw, collateral_url))
    references = [
        load_reference_tcb(_read(p, "reference TCB"), now=now, what=str(p)) for p in tcb_files
    ]
    if policy_file is not None:
        policy = AttestationPolicy.from_json(_read(policy_file, "policy"), what=str(policy_file))
    else:
        policy = AttestationPolicy.inspection()
    if references:
        allowed = [m for r in references for m in r.allowed_measurements()]
        policy = dataclasses.replace(
            policy,
            allowed_measurements=tuple(dict.fromkeys([*policy.allowed_measurements, *allowed])),
            require_measurement=True,
        )
    expected = None if report_data is None else _report_data(report_data)
    verdict = verify_evidence(
        kind,
        raw,
        report_data=expected,
        policy=policy,
        now=now,
        collateral=collateral,
        certs=[_read(p, "certificates") for p in cert_files],
        references=references,
    )
    if as_json:
        click.echo(json.dumps(verdict.to_json(), indent=2))
    else:
        _print_verdict(verdict, file)
    if not verdict.passed:
        raise SystemExit(1)


def _print_verdict(verdict: object, file: Path) -> None:
    from modelseal.attestation import Verdict

    assert isinstance(verdict, Verdict)  # noqa: S101 - for the type checker
    lines = [f"{verdict.kind} evidence {file}"]
    if not verdict.hardware_backed:
        lines.append(
            "  NOT hardware-backed: a software TCB proves only what an honest runtime runs"
        )
    lines.append("measurements:")
    lines += [f"  {name}: {value}" for name, value in verdict.measurements.items()]
    lines.append(f"TCB status: {verdict.tcb_status or 'unknown'}")
    if verdict.advisories:
        lines.append(f"advisories: {', '.join(verdict.advisories)}")
    lines.append("claims:")
    marks = {"pass": "ok  ", "fail": "FAIL", "skip": "skip"}
    lines += [f"  {marks[c.outcome]} {c.detail}" for c in verdict.checks]
    if verdict.passed:
        lines.append("verdict: PASS")
    else:
        lines.append(f"verdict: FAIL ({len(verdict.failures)} failed claim(s))")
        lines += [f"  - {sentence}" for sentence in verdict.failure_sentences()]
    click.echo("\n".join(lines))


@evidence.command("collect")
@click.option("--type", "kind", type=click.Choice(_KINDS), required=True)
@click.option("--report-data", metavar="HEX", help="64 bytes as hex (default: zeros).")
@click.option("--nonce", help="Compute the report data from this nonce and --public-key.")
@click.option("--public-key", "public_key", type=_file, help="Raw public key file for --nonce.")
@click.option("--config", "configs", type=_file, multiple=True, help="software: config file(s).")
@click.option("--out", type=_new, required=True, help="Where to write the evidence.")
def evidence_collect(
    kind: str,
    report_data: str | None,
    nonce: str | None,
    public_key: Path | None,
    configs: tuple[Path, ...],
    out: Path,
) -> None:
    """Collect evidence on this device (to test a deployment before writing a license)."""
    from modelseal.attestation import collect_evidence
    from modelseal.attestation import report_data as bind

    if nonce is not None:
        if public_key is None or report_data is not None:
            raise UsageError("--nonce needs --public-key, and excludes --report-data")
        data = bind(nonce, _read(public_key, "public key"))
    else:
        data = _report_data(report_data) if report_data else bytes(64)
    _write_new(out, collect_evidence(kind, data, config=configs))
    click.echo(f"wrote {kind} evidence to {out}", err=True)


COMMANDS = [tcb, evidence]
