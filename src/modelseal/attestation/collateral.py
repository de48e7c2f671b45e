"""DCAP collateral: TCB info, QE identity, CRLs and their issuer chains, for one FMSPC.

The file format is dcap-qvl's ``QuoteCollateralV3`` JSON (``pck_crl_issuer_chain``,
``root_ca_crl``, ``pck_crl``, ``tcb_info_issuer_chain``, ``tcb_info``, ``tcb_info_signature``,
``qe_identity_issuer_chain``, ``qe_identity``, ``qe_identity_signature``), which is what
``fetch_collateral`` writes. Collateral is signed by Intel, so where it comes from does not matter
for its integrity; only its freshness does, and the verifier checks that at its ``now``.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from modelseal.attestation.errors import AttestationError
from modelseal.licensing import format_datetime

__all__ = ["Collateral", "fetch_collateral", "load_collateral"]

_KEYS = (
    "pck_crl_issuer_chain",
    "root_ca_crl",
    "pck_crl",
    "tcb_info_issuer_chain",
    "tcb_info",
    "tcb_info_signature",
    "qe_identity_issuer_chain",
    "qe_identity",
    "qe_identity_signature",
)


@dataclass(frozen=True)
class Collateral:
    """One collateral document (its JSON text, as dcap-qvl reads it)."""

    text: str
    tee: str  # "SGX" or "TDX", from tcb_info.id
    fmspc: str  # upper-case hex
    tcb_info_window: tuple[dt.datetime, dt.datetime]
    qe_identity_window: tuple[dt.datetime, dt.datetime]

    def freshness_problems(self, now: dt.datetime) -> list[str]:
        """One sentence per collateral part that is not valid at ``now``."""
        problems = []
        for what, (issued, next_update) in (
            ("TCB info", self.tcb_info_window),
            ("QE identity", self.qe_identity_window),
        ):
            if now < issued:
                problems.append(f"{what} is not yet valid (issued {format_datetime(issued)})")
            elif now > next_update:
                problems.append(f"{what} expired at {format_datetime(next_update)} (next update)")
        return problems


def load_collateral(data: bytes | str, *, what: str = "collateral") -> Collateral:
    """Read collateral JSON; :class:`AttestationError` names what is missing."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        doc = json.loads(text)
    except (UnicodeDecodeError, ValueError) as exc:
        raise AttestationError(f"{what} is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise AttestationError(f"{what} must be a JSON object")
    missing = [k for k in _KEYS if not isinstance(doc.get(k), str)]
    if missing:
        raise AttestationError(
            f"{what} is not DCAP collateral (dcap-qvl QuoteCollateralV3 JSON): missing "
            f"{', '.join(missing)}"
        )
    try:
        tcb = json.loads(doc["tcb_info"])
        qe = json.loads(doc["qe_identity"])
        tee = str(tcb.get("id", "SGX"))
        return Collateral(
            text=text,
            tee=tee,
            fmspc=str(tcb["fmspc"]).upper(),
            tcb_info_window=(_time(tcb["issueDate"]), _time(tcb["nextUpdate"])),
            qe_identity_window=(_time(qe["issueDate"]), _time(qe["nextUpdate"])),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise AttestationError(f"{what}: tcb_info or qe_identity is malformed ({exc})") from exc


def fetch_collateral(quote: bytes, url: str, *, timeout: float = 30.0) -> Collateral:
    """Fetch collateral for ``quote`` from the collateral service (PCCS or Intel PCS) at ``url``.

    There is no default URL: the caller names the service it trusts to be available."""
    import asyncio

    import dcap_qvl

    if not url.startswith("https://"):
        raise AttestationError(f"collateral service URL {url!r} must be https://")

    async def get() -> Any:
        return await asyncio.wait_for(dcap_qvl.get_collateral(url, quote), timeout)

    try:
        fetched = asyncio.run(get())
    except (ValueError, RuntimeError, TimeoutError, OSError) as exc:
        raise AttestationError(f"cannot fetch collateral from {url}: {exc}") from exc
    return load_collateral(fetched.to_json(), what=f"collateral from {url}")


def _time(value: object) -> dt.datetime:
    if not isinstance(value, str):
        raise ValueError("time is not a string")
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("time has no zone")
    return parsed.astimezone(dt.UTC)
