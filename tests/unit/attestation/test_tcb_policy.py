"""Reference TCBs (sign, verify, tamper, trust, license terms), policy files, the Gramine
template."""

from __future__ import annotations

import datetime as dt
import json
import tomllib
from pathlib import Path

import pytest

from modelseal.attestation import (
    AttestationError,
    AttestationPolicy,
    license_measurements,
    load_reference_tcb,
    measure_runtime,
    reference_measurements,
    sign_reference_tcb,
)
from modelseal.attestation.gramine import DEFAULTS, installation_paths, render_manifest
from modelseal.licensing import Policy
from tests.conftest import Identity

NOW = dt.datetime.now(dt.UTC)
MRENCLAVE = "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"
MRSIGNER = "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6"
TEMPLATE = (
    Path(__file__).resolve().parents[3] / "deploy" / "gramine" / "modelseal.manifest.template"
)


def signed(owner: Identity, kind: str = "sgx", **measurements: object) -> bytes:
    values = reference_measurements(kind, **measurements)  # type: ignore[arg-type]
    return sign_reference_tcb(kind, values, key=owner.key, chain=[owner.cert], name="rt", now=NOW)


def test_round_trip_and_license_terms(owner: Identity) -> None:
    data = signed(owner, mrenclave=MRENCLAVE.upper())
    tcb = load_reference_tcb(data, trust=[owner.cert], now=NOW)
    assert tcb.trusted and tcb.evidence_type == "sgx"
    assert tcb.allowed_measurements() == (MRENCLAVE,)
    signer = load_reference_tcb(signed(owner, mrsigner=MRSIGNER, isv_svn=1), now=NOW)
    assert not signer.trusted
    assert signer.allowed_measurements() == (MRSIGNER + "0000" + "0100",)
    kind, allowed = license_measurements([tcb, signer, tcb])
    assert kind == "sgx" and allowed == (MRENCLAVE, MRSIGNER + "00000100")
    Policy(require_evidence=kind, allowed_measurements=allowed)  # the license policy accepts them


def test_software_reference_from_runtime(owner: Identity) -> None:
    runtime = measure_runtime()
    tcb = load_reference_tcb(signed(owner, "software", runtime=runtime), now=NOW)
    assert tcb.allowed_measurements() == (runtime.measurement,)
    Policy(require_evidence="software", allowed_measurements=tcb.allowed_measurements())


def test_mixed_types_are_refused(owner: Identity) -> None:
    sgx = load_reference_tcb(signed(owner, mrenclave=MRENCLAVE), now=NOW)
    tdx = load_reference_tcb(signed(owner, "tdx", mrtd="ab" * 48), now=NOW)
    with pytest.raises(AttestationError, match="one type"):
        license_measurements([sgx, tdx])


@pytest.mark.parametrize("position", [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99])
def test_any_changed_byte_is_refused(owner: Identity, position: float) -> None:
    """Anywhere in the signed part, or in the signature; in the certificate, once a trust
    anchor is given (as for any signature that carries its certificate)."""
    data = bytearray(signed(owner, mrenclave=MRENCLAVE))
    offset = int((len(data) - 2) * position)
    data[offset] = ord("0") if data[offset] != ord("0") else ord("1")
    with pytest.raises(AttestationError):
        load_reference_tcb(bytes(data), trust=[owner.cert], now=NOW)


def test_a_re_signed_measurement_by_another_key_is_not_trusted(
    owner: Identity, attacker: Identity
) -> None:
    forged = signed(attacker, mrenclave="00" * 32)
    assert not load_reference_tcb(forged, now=NOW).trusted
    with pytest.raises(AttestationError, match="not trusted"):
        load_reference_tcb(forged, trust=[owner.cert], now=NOW)
    doc = json.loads(signed(owner, mrenclave=MRENCLAVE))
    doc["tcb"]["measurements"]["mrenclave"] = "00" * 32
    tampered = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    with pytest.raises(AttestationError, match="changed after signing"):
        load_reference_tcb(tampered, now=NOW)


def test_bad_measurements_are_refused() -> None:
    with pytest.raises(AttestationError, match="--mrenclave or --mrsigner"):
        reference_measurements("sgx")
    with pytest.raises(AttestationError, match="32 bytes"):
        reference_measurements("sgx", mrenclave="abc")
    with pytest.raises(AttestationError, match="--isv-svn"):
        reference_measurements("sgx", mrsigner=MRSIGNER)
    with pytest.raises(AttestationError, match="--from-runtime"):
        reference_measurements("software")


def test_policy_file_and_its_refusals() -> None:
    policy = AttestationPolicy.from_json(
        json.dumps(
            {"allowed_measurements": [MRENCLAVE.upper()], "tcb_statuses": ["SWHardeningNeeded"]}
        )
    )
    assert policy.allowed_measurements == (MRENCLAVE,)
    assert policy.tcb_statuses == ("UpToDate", "SWHardeningNeeded")
    assert AttestationPolicy.from_json(json.dumps(policy.to_json())) == policy
    for bad, message in [
        ({"allowed_measurements": []}, "empty list would accept any"),
        ({"require_measurement": False, "tcb_statuses": ["Revoked"]}, "never acceptable"),
        ({"require_measurement": False, "tcb_statuses": ["Fine"]}, "not one of"),
        ({"require_measurement": False, "debug": True}, "unknown field"),
        ({"require_measurement": False, "snp_min_tcb": {"snp": 300}}, "0 to 255"),
        ({"allowed_measurements": ["xyz"]}, "hex"),
    ]:
        with pytest.raises(AttestationError, match=message):
            AttestationPolicy.from_json(json.dumps(bad))


def test_policy_for_license() -> None:
    software = AttestationPolicy.for_license("software", ["ab" * 48])
    assert software.allow_software and software.require_measurement
    sgx = AttestationPolicy.for_license("sgx", [], tcb_statuses=("SWHardeningNeeded",))
    assert not sgx.allow_software and not sgx.require_measurement


def test_gramine_template_renders_and_trusts_every_package_file(tmp_path: Path) -> None:
    values = {
        **DEFAULTS,
        **installation_paths(),
        "config_dir": "/srv/config",
        "models_dir": "/srv/models",
        "agent_home": "/srv/agent",
    }
    manifest = tomllib.loads(render_manifest(TEMPLATE.read_text(encoding="utf-8"), values))
    assert manifest["sgx"]["remote_attestation"] == "dcap"
    assert manifest["sgx"]["debug"] is False
    assert manifest["loader"]["argv"][1:4] == ["-m", "modelseal", "serve"]
    trusted = [uri.removeprefix("file:") for uri in manifest["sgx"]["trusted_files"]]
    import modelseal

    package = Path(modelseal.__file__).resolve().parent
    uncovered = [
        name
        for name in measure_runtime().package_files
        if not any(
            str(package / name) == t or (t.endswith("/") and str(package / name).startswith(t))
            for t in trusted
        )
    ]
    assert uncovered == []
    mounts = {m["path"]: m for m in manifest["fs"]["mounts"]}
    assert mounts["/modelseal/agent"]["type"] == "encrypted"
    with pytest.raises(AttestationError, match="needs value"):
        render_manifest(TEMPLATE.read_text(encoding="utf-8"), {})
