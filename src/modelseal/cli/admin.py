"""The model controller's commands over the vault's REST API: ``model``, ``customer``, ``device``
and ``license``.

Each command reaches the vault with ``--vault URL`` and ``--admin DIR`` (the admin credential
``vault init`` wrote), defaulting to ``MODELSEAL_VAULT`` and ``MODELSEAL_ADMIN``; without a URL the
one recorded in the credential is used. Output meant for scripts (a token, a license id) is alone
on stdout; everything else is for people. This module stays light: the HTTP client is imported when
a command runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from modelseal._files import write_new
from modelseal.errors import UsageError
from modelseal.licensing import (
    DEFAULT_LEASE,
    EVIDENCE_TYPES,
    Policy,
    format_datetime,
    parse_datetime,
    parse_duration,
    parse_duration_from_first_use,
    parse_rate,
)

if TYPE_CHECKING:
    from pydantic import BaseModel

    from modelseal.vault.api.schemas import Device, LicenseRecord
    from modelseal.vault.client import VaultClient

__all__ = ["COMMANDS", "customer", "device", "license_", "model"]

F = TypeVar("F", bound=Callable[..., Any])
V = TypeVar("V", bound="BaseModel")
_DIR = click.Path(path_type=Path, file_okay=False)
_DEFAULT_REASON = "revoked by the model controller"


def admin_options(func: F) -> F:
    """``--vault`` and ``--admin``, read from the environment by click (only here)."""
    func = click.option(
        "--admin",
        "admin_dir",
        envvar="MODELSEAL_ADMIN",
        show_envvar=True,
        type=_DIR,
        help="The admin credential directory (admin/ of the vault home).",
    )(func)
    return click.option(
        "--vault",
        "vault_url",
        envvar="MODELSEAL_VAULT",
        show_envvar=True,
        metavar="URL",
        help="The vault's https:// URL (default: the one recorded in the admin credential).",
    )(func)


@contextmanager
def admin_client(vault_url: str | None, admin_dir: Path | None) -> Iterator[VaultClient]:
    from modelseal.vault.client import VaultClient

    if admin_dir is None:
        raise UsageError(
            "this command needs the admin credential",
            hint="pass --admin DIR or export MODELSEAL_ADMIN=DIR (printed by `vault init`)",
        )
    with VaultClient.admin(vault_url, admin_dir) as client:
        yield client


def _json_out(value: BaseModel | list[Any]) -> None:
    if isinstance(value, list):
        click.echo(json.dumps([item.model_dump(mode="json") for item in value], indent=2))
    else:
        click.echo(value.model_dump_json(indent=2))


def _list_out(items: list[V], as_json: bool, row: Callable[[V], str]) -> None:
    """A listing: JSON with ``--json``, else one tab-separated ``row`` per item."""
    if as_json:
        _json_out(items)
        return
    for item in items:
        click.echo(row(item))


def _when(value: Any) -> str:
    return "-" if value is None else format_datetime(value)


# --- model -----------------------------------------------------------------------------------------


@click.group()
def model() -> None:
    """Sealed models registered with the vault."""


@model.command("register")
@click.argument("sealed", type=click.Path(path_type=Path, exists=True))
@admin_options
def model_register(sealed: Path, vault_url: str | None, admin_dir: Path | None) -> None:
    """Register the sealed package SEALED (directory or archive) with the vault.

    The package must have been sealed with --vault-import-key (the vault's GET /v1/import-key):
    the vault opens the data key with its import key and keeps it wrapped by its master key.
    """
    with admin_client(vault_url, admin_dir) as client:
        view = client.register_package(sealed)  # checks the signature before anything is sent
    click.echo(
        f"registered {view.name}:{view.version} (model {view.model_id}, key {view.key_id}, "
        f"owner {view.owner})"
    )


@model.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@admin_options
def model_list(as_json: bool, vault_url: str | None, admin_dir: Path | None) -> None:
    """List the registered models."""
    with admin_client(vault_url, admin_dir) as client:
        models = client.list_models()
    _list_out(
        models, as_json, lambda v: f"{v.name}:{v.version}\t{v.model_id}\t{_when(v.registered_at)}"
    )


# --- customer --------------------------------------------------------------------------------------


@click.group()
def customer() -> None:
    """Customers: who devices and licenses belong to."""


@customer.command("create")
@click.argument("name")
@admin_options
def customer_create(name: str, vault_url: str | None, admin_dir: Path | None) -> None:
    """Create the customer NAME."""
    with admin_client(vault_url, admin_dir) as client:
        view = client.create_customer(name)
    click.echo(f"created customer {view.name}")


@customer.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@admin_options
def customer_list(as_json: bool, vault_url: str | None, admin_dir: Path | None) -> None:
    """List the customers."""
    with admin_client(vault_url, admin_dir) as client:
        customers = client.list_customers()
    _list_out(customers, as_json, lambda v: f"{v.name}\t{_when(v.created_at)}")


# --- device ----------------------------------------------------------------------------------------


@click.group()
def device() -> None:
    """Devices: enrolment tokens, enrolled devices, revocation."""


@device.command("enroll-token")
@click.option("--customer", required=True, help="The customer the device will belong to.")
@click.option(
    "--ttl",
    default="1h",
    show_default=True,
    help="How long the token stays valid (up to 30d: 30m, 1h, 2d).",
)
@admin_options
def device_enroll_token(
    customer: str, ttl: str, vault_url: str | None, admin_dir: Path | None
) -> None:
    """Create a one-time enrolment token and print it alone on stdout.

    \b
    On the device:
      modelseal agent enroll --vault URL --token TOKEN --home DIR
    """
    seconds = int(parse_duration(ttl).total_seconds())
    with admin_client(vault_url, admin_dir) as client:
        issued = client.create_enrollment_token(customer=customer, ttl_seconds=seconds)
    click.echo(issued.token)


@device.command("list")
@click.option("--customer", help="Only the devices of this customer.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@admin_options
def device_list(
    customer: str | None, as_json: bool, vault_url: str | None, admin_dir: Path | None
) -> None:
    """List the enrolled devices."""
    with admin_client(vault_url, admin_dir) as client:
        devices = client.list_devices(customer=customer)
    _list_out(devices, as_json, _device_row)


def _device_row(view: Device) -> str:
    state = "active" if view.revoked_at is None else f"revoked {_when(view.revoked_at)}"
    return f"{view.id}\t{view.customer}\t{_when(view.enrolled_at)}\t{state}"


@device.command("revoke")
@click.argument("device_id", metavar="ID")
@click.option("--reason", default=_DEFAULT_REASON, show_default=True, help="Recorded in the audit.")
@admin_options
def device_revoke(
    device_id: str, reason: str, vault_url: str | None, admin_dir: Path | None
) -> None:
    """Revoke device ID: its next key release or lease renewal is refused."""
    with admin_client(vault_url, admin_dir) as client:
        view = client.revoke_device(device_id, reason=reason)
    click.echo(f"revoked device {view.id} ({view.revoked_reason})")


# --- license ---------------------------------------------------------------------------------------


@click.group("license")
def license_() -> None:
    """Licenses: issue, show, list, revoke."""


def _model_and_versions(text: str) -> tuple[str, str]:
    name, _, versions = text.partition(":")
    if not name:
        raise UsageError(f"--model {text!r}: write NAME or NAME:VERSIONS (iris, iris:1,2,5-7)")
    return name, versions or "*"


def _policy(
    expires: str | None,
    duration: str | None,
    max_loads: int | None,
    loads_per: str | None,
    max_devices: int | None,
    devices: tuple[str, ...],
    lease: str | None,
    offline_grace: str | None,
    max_inferences_per: str | None,
    require_evidence: str,
    allowed_measurements: tuple[str, ...] = (),
    heartbeat: str | None = None,
) -> Policy:
    """The terms from the command line, checked here before anything is sent."""
    if expires is not None and duration is not None:
        raise UsageError("give --expires or --duration, not both")
    return Policy(
        expires_at=None if expires is None else parse_datetime(expires),
        duration_from_first_use=None
        if duration is None
        else parse_duration_from_first_use(duration),
        max_loads=max_loads,
        loads_per=None if loads_per is None else parse_rate(loads_per),
        max_devices=max_devices,
        devices=devices,
        lease=DEFAULT_LEASE if lease is None else parse_duration(lease),
        heartbeat=None if heartbeat is None else parse_duration(heartbeat),
        offline_grace=parse_duration(offline_grace or "0s"),
        max_inferences_per=None if max_inferences_per is None else parse_rate(max_inferences_per),
        require_evidence=require_evidence,
        allowed_measurements=allowed_measurements,
    )


def _reference_tcbs(
    files: tuple[Path, ...], trust_files: tuple[Path, ...], require_evidence: str | None
) -> tuple[str, tuple[str, ...]]:
    """(require_evidence, allowed_measurements) from owner-signed reference TCB files."""
    import datetime as dt

    from modelseal.attestation import license_measurements, load_reference_tcb
    from modelseal.crypto import load_certificates

    trust = [
        cert
        for path in trust_files
        for cert in load_certificates(path.read_bytes(), what=f"the certificate {path}")
    ]
    now = dt.datetime.now(dt.UTC)
    tcbs = [
        load_reference_tcb(path.read_bytes(), trust=trust, now=now, what=f"reference TCB {path}")
        for path in files
    ]
    kind, allowed = license_measurements(tcbs)
    if require_evidence not in (None, "none", kind):
        raise UsageError(
            f"--require-evidence {require_evidence} does not match the reference TCBs, which "
            f"are for {kind} evidence"
        )
    return kind, allowed


@license_.command("issue")
@click.option("--customer", required=True, help="The customer the license is for.")
@click.option(
    "--model",
    "model_spec",
    required=True,
    metavar="NAME[:VERSIONS]",
    help="The registered model and the versions covered (* or 1,2,5-7; default all).",
)
@click.option("--expires", metavar="DATE", help="Expiry: 2027-01-31 or 2027-01-31T12:00:00Z.")
@click.option(
    "--duration", metavar="D-from-first-use", help="Expiry after first use: 30d-from-first-use."
)
@click.option("--max-loads", type=click.IntRange(min=1), metavar="N", help="Key releases in total.")
@click.option("--loads-per", metavar="PERIOD=N", help="Key releases per period: day=100, 1h=50.")
@click.option("--max-devices", type=click.IntRange(min=1), metavar="N", help="Devices at once.")
@click.option(
    "--device",
    "devices",
    multiple=True,
    metavar="ID",
    help="Lock the license to this device (repeatable).",
)
@click.option("--lease", metavar="DURATION", help="Lease length (default 10m; 30s to 1d).")
@click.option(
    "--heartbeat",
    metavar="DURATION",
    help="How often the runtime renews its lease (default a third of the lease; from 1s, "
    "shorter than the lease). A revocation takes effect within one heartbeat.",
)
@click.option("--offline-grace", metavar="DURATION", help="Time past a lease without the vault.")
@click.option("--max-inferences-per", metavar="PERIOD=N", help="Inferences per period: day=10000.")
@click.option(
    "--require-evidence",
    type=click.Choice(EVIDENCE_TYPES),
    default=None,
    help="Attestation evidence the device must present (default none, or the type of the "
    "--tcb files).",
)
@click.option(
    "--tcb",
    "tcb_files",
    multiple=True,
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    metavar="FILE",
    help="A reference TCB the owner signed (`modelseal tcb create`), accepted for this license "
    "(repeatable): sets --require-evidence to its type and allows only its measurements.",
)
@click.option(
    "--tcb-trust",
    "tcb_trust",
    multiple=True,
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    metavar="CERT",
    help="Accept --tcb files only when signed by this certificate or a chain to it (PEM; "
    "repeatable), e.g. the model owner's certificate.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the license (a compact JWS) to this new file.",
)
@admin_options
def license_issue(
    customer: str,
    model_spec: str,
    expires: str | None,
    duration: str | None,
    max_loads: int | None,
    loads_per: str | None,
    max_devices: int | None,
    devices: tuple[str, ...],
    lease: str | None,
    heartbeat: str | None,
    offline_grace: str | None,
    max_inferences_per: str | None,
    require_evidence: str | None,
    tcb_files: tuple[Path, ...],
    tcb_trust: tuple[Path, ...],
    out: Path,
    vault_url: str | None,
    admin_dir: Path | None,
) -> None:
    """Issue a license, write it to --out and print its id alone on stdout."""
    from modelseal.vault.api.schemas import LicenseRequest, PolicyTerms

    name, versions = _model_and_versions(model_spec)
    if tcb_trust and not tcb_files:
        raise UsageError("--tcb-trust checks --tcb files; give the reference TCBs with --tcb")
    allowed: tuple[str, ...] = ()
    if tcb_files:
        require_evidence, allowed = _reference_tcbs(tcb_files, tcb_trust, require_evidence)
    policy = _policy(
        expires, duration, max_loads, loads_per, max_devices, devices, lease, offline_grace,
        max_inferences_per, require_evidence or "none", allowed, heartbeat,
    )  # fmt: skip
    if out.exists() or out.is_symlink():
        raise UsageError(f"{out} already exists; choose a new file for the license")
    if not out.parent.is_dir():
        raise UsageError(f"the directory {out.parent} does not exist")
    request = LicenseRequest(
        customer=customer, model=name, versions=versions, policy=PolicyTerms.of(policy)
    )
    with admin_client(vault_url, admin_dir) as client:
        issued = client.issue_license(request)
    _write_new(out, (issued.token + "\n").encode("ascii"))
    click.echo(issued.license.id)


def _write_new(path: Path, data: bytes) -> None:
    try:
        write_new(path, data, 0o644)
    except OSError as exc:
        raise UsageError(f"cannot create {path}: {exc.strerror}") from exc


@license_.command("revoke")
@click.argument("license_id", metavar="ID")
@click.option("--reason", default=_DEFAULT_REASON, show_default=True, help="Recorded in the audit.")
@admin_options
def license_revoke(
    license_id: str, reason: str, vault_url: str | None, admin_dir: Path | None
) -> None:
    """Revoke license ID: its next key release or lease renewal is refused."""
    with admin_client(vault_url, admin_dir) as client:
        record = client.revoke_license(license_id, reason=reason)
    click.echo(f"revoked license {record.id} ({record.revoked_reason})")


@license_.command("show")
@click.argument("license_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@admin_options
def license_show(
    license_id: str, as_json: bool, vault_url: str | None, admin_dir: Path | None
) -> None:
    """Show license ID: state, terms, counters and devices."""
    with admin_client(vault_url, admin_dir) as client:
        record = client.show_license(license_id)
    if as_json:
        _json_out(record)
        return
    for line in _describe(record):
        click.echo(line)


@license_.command("list")
@click.option("--customer", help="Only the licenses of this customer.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@admin_options
def license_list(
    customer: str | None, as_json: bool, vault_url: str | None, admin_dir: Path | None
) -> None:
    """List licenses."""
    with admin_client(vault_url, admin_dir) as client:
        records = client.list_licenses(customer=customer)
    _list_out(records, as_json, _license_row)


def _license_row(record: LicenseRecord) -> str:
    used = f"{record.loads_used}/{record.max_loads or '∞'} loads"
    return (
        f"{record.id}\t{record.customer}\t{record.model}:{record.versions}\t{record.state}\t{used}"
    )


def _describe(record: LicenseRecord) -> list[str]:
    lines = [
        f"license   {record.id}",
        f"customer  {record.customer}",
        f"model     {record.model}:{record.versions}",
        f"state     {record.state}"
        + (f" ({record.revoked_reason}, {_when(record.revoked_at)})" if record.revoked_at else ""),
        f"issued    {_when(record.issued_at)} (valid from {_when(record.not_before)})",
        f"ends      {_when(record.ends_at)}",
        f"first use {_when(record.first_use_at)}",
        f"loads     {record.loads_used}"
        + (f" of {record.max_loads}" if record.max_loads is not None else ""),
    ]
    if record.period_loads is not None:
        lines.append(f"          {record.period_loads} in the current period")
    if record.period_inferences is not None:
        lines.append(f"inferences {record.period_inferences} in the current period")
    lines.append(f"devices   {', '.join(record.devices) or '-'}")
    lines.append(f"leases    {record.active_leases} active")
    lines.extend(f"terms     {term}" for term in record.policy.to_policy().describe())
    return lines


COMMANDS = (model, customer, device, license_)
