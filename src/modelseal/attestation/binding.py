"""The report data every kind of evidence carries: what binds it to one key release.

``report_data(nonce, public_key)`` is SHA-384 of the RFC 8785 JSON
``{"nonce": <nonce>, "public_key": <base64url of the key, no padding>}``, zero-padded to 64 bytes
(the Trustee KBS binding, with modelseal's field names). ``nonce`` is the vault's challenge exactly
as it was issued (a base64url string) and ``public_key`` the raw bytes of the release's one-time
HPKE public key, as sent in ``KeyReleaseRequest.public_key``. The vault recomputes it from the
request and the evidence must carry it, so evidence made for one nonce and key cannot be replayed
for another.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Final

from modelseal.crypto import canonical_json
from modelseal.errors import UsageError

__all__ = ["REPORT_DATA_SIZE", "report_data"]

REPORT_DATA_SIZE: Final = 64


def report_data(nonce: str, public_key: bytes) -> bytes:
    """The 64 report-data bytes for a release with ``nonce`` and one-time ``public_key``."""
    if not isinstance(nonce, str) or not nonce:
        raise UsageError("report data needs the vault's nonce (a non-empty string)")
    if not isinstance(public_key, bytes | bytearray) or not public_key:
        raise UsageError("report data needs the release's public key bytes")
    encoded = base64.urlsafe_b64encode(bytes(public_key)).rstrip(b"=").decode("ascii")
    digest = hashlib.sha384(canonical_json({"nonce": nonce, "public_key": encoded})).digest()
    return digest.ljust(REPORT_DATA_SIZE, b"\x00")
