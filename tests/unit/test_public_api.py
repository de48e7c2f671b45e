"""The public surface is deliberate: every public package lists exactly what it exports."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

SURFACES = {
    "modelseal": {"Error", "__version__"},
    "modelseal.agent": {
        "AgentHome",
        "AgentHomeError",
        "AgentSocketClient",
        "AgentSocketError",
        "AgentSocketServer",
        "EnrollmentToken",
        "EvidenceSource",
        "InferenceLimitError",
        "KeyAgent",
        "KeySource",
        "LeaseEndedError",
        "LeaseState",
        "LeaseStatus",
        "ModelKey",
        "ReleaseError",
        "ReleasedKey",
        "default_evidence",
        "parse_enrollment_token",
        "request_key",
    },
    "modelseal.keys": {"Keystore", "KeystoreError", "create_keystore", "import_certificate"},
    "modelseal.crypto.masterkey": {
        "DEFAULT_SCRYPT_N",
        "MasterKey",
        "MasterKeyError",
        "MasterKeyRing",
        "Pkcs11MasterKey",
        "SoftwareMasterKey",
        "WRAPPED_SIZE",
        "data_key_context",
        "generate_data_key",
        "master_version_of",
    },
    "modelseal.vault.db": {
        "SchemaError",
        "StorageError",
        "append_audit",
        "audit_entry_hash",
        "audit_entry_intact",
        "bind_device",
        "check_schema_current",
        "claim_enrollment_token",
        "sweep_nonces",
        "use_nonce",
        "create_vault_engine",
        "current_revision",
        "default_sqlite_url",
        "downgrade",
        "from_micros",
        "head_revision",
        "metadata",
        "read_only",
        "redact_url",
        "take_load",
        "take_window",
        "to_micros",
        "upgrade",
        "verify_audit_chain",
    },
    "modelseal.vault.service": {
        "LEASE_TYP",
        "AuditReport",
        "BadRequest",
        "Challenge",
        "Conflict",
        "CustomerView",
        "DeviceView",
        "Enrollment",
        "GeneratedKey",
        "LeaseGrant",
        "LicenseState",
        "LicenseView",
        "ModelView",
        "NotFound",
        "ReleaseGrant",
        "ReleaseRequest",
        "Unauthorized",
        "VaultError",
        "VaultService",
        "utc_now",
    },
    "modelseal.licensing": {
        "DEFAULT_LEASE",
        "EVIDENCE_TYPES",
        "LICENSE_TYP",
        "License",
        "MAX_LEASE",
        "MAX_OFFLINE_GRACE",
        "MAX_VERSION",
        "MIN_LEASE",
        "PERIODS",
        "Policy",
        "Rate",
        "Refusal",
        "RefusalCode",
        "VersionSpec",
        "check_model",
        "check_time_window",
        "format_datetime",
        "format_duration",
        "format_rate",
        "issue_license",
        "new_license_id",
        "parse_datetime",
        "parse_duration",
        "parse_duration_from_first_use",
        "parse_license",
        "parse_rate",
    },
    "modelseal.cfs": {
        "DEFAULT_CACHE_SEGMENTS",
        "DEFAULT_GRACE",
        "EXIT_LEASE_ENDED",
        "FUSE_DEVICE",
        "KEY_RECHECK_SECONDS",
        "CfsError",
        "CfsSession",
        "FuseMount",
        "FuseUnavailableError",
        "LeaseGuard",
        "Mount",
        "MountError",
        "NotMountedError",
        "PlaintextView",
        "RunResult",
        "SegmentCache",
        "check_fuse",
        "fuse_mounts",
        "run_program",
        "serve_until_stopped",
        "unmount",
    },
    "modelseal.serving": {
        "STATUS",
        "ConfigError",
        "InternalServerError",
        "InvalidRequestError",
        "ModelConfig",
        "ModelNotFoundError",
        "ModelUnavailableError",
        "PayloadTooLargeError",
        "ServeSettings",
        "ServerConfig",
        "ServingError",
        "Status",
        "TooManyInferencesError",
        "VersionPolicy",
        "load_config",
        "parse_config",
        "single_model_config",
    },
    "modelseal.attestation": {
        "EVIDENCE_KINDS",
        "REPORT_DATA_SIZE",
        "TCB_STATUSES",
        "AttestationError",
        "AttestationPolicy",
        "Check",
        "Collateral",
        "EvidenceRejected",
        "ReferenceTcb",
        "RuntimeMeasurement",
        "Verdict",
        "collect_evidence",
        "fetch_collateral",
        "license_measurements",
        "load_collateral",
        "load_reference_tcb",
        "measure_runtime",
        "reference_measurements",
        "report_data",
        "sign_reference_tcb",
        "verify_evidence",
    },
    "modelseal.jobs": {
        "ENDED_STATES",
        "EXIT_NODE_NOT_READY",
        "Job",
        "JobError",
        "JobLogs",
        "JobNotFoundError",
        "JobSpec",
        "JobStatus",
        "JobTimeoutError",
        "PlainModel",
        "SchedulerUnavailableError",
        "SealedModel",
        "Slurm",
        "SubmitError",
        "Via",
        "cancel",
        "default_modelseal_command",
        "logs",
        "prepare",
        "render_script",
        "status",
        "submit",
        "wait",
    },
    "modelseal.package": {
        "FileEntry",
        "FileReader",
        "IntegrityError",
        "Manifest",
        "ModelInfo",
        "PackageError",
        "SealResult",
        "SealedPackage",
        "Signer",
        "TrustError",
        "VerifyReport",
        "WrappedKey",
        "open_package",
        "seal",
        "verify_package",
    },
}


@pytest.mark.parametrize("module", sorted(SURFACES))
def test_public_surface(module: str) -> None:
    mod = importlib.import_module(module)
    assert set(mod.__all__) == SURFACES[module]
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.{name} is listed in __all__ but missing"


def test_crypto_surface_resolves() -> None:
    crypto = importlib.import_module("modelseal.crypto")
    missing = [name for name in crypto.__all__ if not hasattr(crypto, name)]
    assert missing == []
    assert "DataKey" in crypto.__all__ and "SegmentReader" in crypto.__all__


HEAVY = (
    "onnxruntime",
    "openvino",
    "grpc",
    "sqlalchemy",
    "fastapi",
    "numpy",
    "mfusepy",
    "dcap_qvl",
)


@pytest.mark.parametrize(
    "module",
    [
        "modelseal.package",
        "modelseal.keys",
        "modelseal.licensing",
        "modelseal.agent",
        "modelseal.cli.main",
        "modelseal.jobs",
        "modelseal.cli.jobs",
        "modelseal.cfs",
        "modelseal.attestation",
    ],
)
def test_import_stays_light(module: str) -> None:
    code = (
        f"import sys, {module}\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "", f"{module} pulls in {result.stdout.strip()}"
