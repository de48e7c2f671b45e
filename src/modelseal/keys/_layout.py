"""The files of a keystore directory and its ``keystore.json`` description."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from modelseal.crypto import (
    ALGORITHMS,
    Algorithm,
    FormatError,
    canonical_json,
    parse_canonical_json,
)
from modelseal.keys.errors import KeystoreError

__all__ = [
    "CERTIFICATE",
    "CHAIN",
    "CREATE_HINT",
    "KEYSTORE_FILE",
    "PREVIOUS_CERTIFICATE",
    "PRIVATE_KEY",
    "REQUEST",
    "describe",
    "read_description",
]

KEYSTORE_FILE = "keystore.json"
PRIVATE_KEY = "private-key.pem"
CERTIFICATE = "certificate.pem"
PREVIOUS_CERTIFICATE = "certificate.previous.pem"
REQUEST = "request.csr.pem"
CHAIN = "chain.pem"
CREATE_HINT = "create one with `modelseal keys create --name NAME --out DIR`"

_TYPE = "modelseal.keystore"
_VERSION = 1


def describe(*, name: str, algorithm: Algorithm, subject: str, created: dt.datetime) -> bytes:
    """The canonical JSON bytes of ``keystore.json``."""
    return canonical_json(
        {
            "type": _TYPE,
            "version": _VERSION,
            "name": name,
            "algorithm": algorithm,
            "subject": subject,
            "created": created.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    )


def read_description(path: Path, data: bytes) -> tuple[str, Algorithm]:
    """Check ``keystore.json`` (read from ``path``); return its name and algorithm."""
    try:
        meta: Any = parse_canonical_json(data, what=str(path))
    except FormatError as exc:
        raise KeystoreError(exc.message) from exc
    if not isinstance(meta, dict) or meta.get("type") != _TYPE:
        raise KeystoreError(f"{path} is not a modelseal keystore description")
    if meta.get("version") != _VERSION:
        raise KeystoreError(
            f"{path} has keystore version {meta.get('version')!r}; "
            f"this modelseal reads version {_VERSION}"
        )
    name, algorithm = meta.get("name"), meta.get("algorithm")
    if not isinstance(name, str) or not name:
        raise KeystoreError(f"{path} has no name")
    for known in ALGORITHMS:
        if algorithm == known:
            return name, known
    raise KeystoreError(f"{path} names unknown algorithm {algorithm!r}")
