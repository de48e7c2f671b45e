"""Sealed models: generate-data-key, registration (checked signature, key rewrapped), listing.

A registered model is its manifest as signed, the owner's certificate, and the data key wrapped
by the master key under the context (model id, version, key id, master-key version) — never the
key in clear. Registration accepts the key two ways:

* ``wrapped=None``: the owner sealed offline to this vault's import key; the manifest carries the
  HPKE-wrapped key, which the vault opens with its import key and rewraps under the master key;
* ``wrapped=<blob>``: the owner asked this vault for the key (:meth:`generate_data_key`); the blob
  is handed back and must unwrap, under this manifest's context, to the manifest's key id.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime
from typing import Final

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from modelseal.crypto import (
    DataKey,
    DecryptionError,
    FormatError,
    load_certificates,
    unwrap_data_key,
    wrap_info,
)
from modelseal.crypto.masterkey import data_key_context, master_version_of
from modelseal.package import Manifest, PackageError
from modelseal.package.signature import verify_manifest_signature
from modelseal.vault.db import from_micros, to_micros
from modelseal.vault.db import schema as s
from modelseal.vault.service._core import Core
from modelseal.vault.service.errors import BadRequest, Conflict
from modelseal.vault.service.views import GeneratedKey, ModelView

__all__ = ["Models"]

_MAX_VERSION: Final = 2**31 - 1  # models.version is an INTEGER column


class Models:
    def __init__(self, core: Core) -> None:
        self._core = core

    def generate_data_key(self, actor: str, *, model_id: str, version: int) -> GeneratedKey:
        try:
            model_id = str(uuid.UUID(model_id))
        except (ValueError, TypeError, AttributeError):
            raise BadRequest(f"model id {model_id!r} is not a UUID") from None
        _check_version(version)
        master = self._core.vault.master_key
        key = DataKey.generate()
        context = data_key_context(
            model_id=model_id, version=version, key_id=key.key_id, master_version=master.version
        )
        wrapped = master.wrap(key, context=context)
        now = self._core.now()
        with self._core.engine.begin() as conn:
            self._core.audit.append(
                conn,
                at=now,
                actor=actor,
                action="data_key.generate",
                subject=model_id,
                outcome="ok",
                details={"model_id": model_id, "version": version, "key_id": key.key_id},
            )
        return GeneratedKey(key=key, wrapped=wrapped, model_id=model_id, version=version)

    def register_model(
        self, actor: str, *, manifest: bytes, signature: bytes, wrapped: bytes | None = None
    ) -> ModelView:
        try:
            parsed = Manifest.from_bytes(manifest)
        except PackageError as exc:
            raise BadRequest(f"the manifest is not valid: {exc.message}") from None
        try:
            signer = verify_manifest_signature(manifest, signature)
        except PackageError as exc:  # IntegrityError: malformed or not matching
            raise BadRequest(f"the manifest signature does not verify: {exc.message}") from None
        model = parsed.model
        _check_version(model.version)
        if wrapped is None:
            blob, how = self._rewrap_imported(parsed), "import-key"
        else:
            blob, how = self._check_wrapped(parsed, wrapped), "data-key"
        owner = signer.certificate
        now = self._core.now()
        row = {
            "name": model.name,
            "version": model.version,
            "model_id": model.id,
            "key_id": parsed.key_id,
            "wrapped_key": blob,
            "master_version": self._core.vault.master_key.version,
            "manifest": manifest,
            "owner_cert": owner.der(),
            "registered_at": to_micros(now),
        }
        exists = select(s.models.c.id).where(
            s.models.c.name == model.name, s.models.c.version == model.version
        )
        try:
            with self._core.engine.begin() as conn:
                if conn.execute(exists).first() is not None:
                    raise _conflict(model.name, model.version)
                conn.execute(insert(s.models).values(row))
                self._core.audit.append(
                    conn,
                    at=now,
                    actor=actor,
                    action="model.register",
                    subject=f"{model.name}:{model.version}",
                    outcome="ok",
                    details={
                        "model_id": model.id,
                        "key_id": parsed.key_id,
                        "key_from": how,
                        "owner": owner.subject,
                        "owner_sha256": owner.fingerprint,
                    },
                )
        except IntegrityError:  # registered by another vault process between check and insert
            raise _conflict(model.name, model.version) from None
        return _view(parsed, owner.subject, owner.fingerprint, now)

    def list_models(self) -> list[ModelView]:
        query = select(s.models.c.manifest, s.models.c.owner_cert, s.models.c.registered_at)
        with self._core.reader.begin() as conn:
            rows = conn.execute(query.order_by(s.models.c.name, s.models.c.version)).all()
        views = []
        for manifest, owner_der, registered_at in rows:
            owner = load_certificates(bytes(owner_der), what="an owner certificate")[0]
            views.append(
                _view(
                    Manifest.from_bytes(bytes(manifest)),
                    owner.subject,
                    owner.fingerprint,
                    from_micros(registered_at),
                )
            )
        return views

    # --- the data key ---------------------------------------------------------------------------

    def _rewrap_imported(self, manifest: Manifest) -> bytes:
        """Open the manifest's copy of the key with the import key; wrap it under the master key."""
        import_key = self._core.vault.import_key
        ours = import_key.public_key().key_id
        copies = [w for w in manifest.wrapped_keys if w.recipient == ours]
        if not copies:
            others = ", ".join(w.recipient[:16] + "…" for w in manifest.wrapped_keys)
            if not others:
                raise BadRequest(
                    "the package carries no data key for a vault: it was sealed without "
                    "--vault-import-key",
                    hint="seal it again with --vault-import-key (the vault's import key) or "
                    "with --vault, or register it with its data key",
                )
            raise BadRequest(
                f"the package was sealed for another vault (import key {others}); this vault's "
                f"import key is {ours[:16]}…",
                hint="seal it again with this vault's import key (GET /v1/import-key)",
            )
        model = manifest.model
        info = wrap_info(key_id=manifest.key_id, model_id=model.id, version=model.version)
        try:
            blob = base64.b64decode(copies[0].wrapped, validate=True)
            key = unwrap_data_key(blob, import_key, key_id=manifest.key_id, info=info)
        except (binascii.Error, DecryptionError):
            raise BadRequest(
                "the data key wrapped to this vault's import key does not open for this "
                f"manifest (model {model.id}, version {model.version}, key {manifest.key_id}): "
                "it was altered or copied from another package"
            ) from None
        master = self._core.vault.master_key
        context = data_key_context(
            model_id=model.id,
            version=model.version,
            key_id=manifest.key_id,
            master_version=master.version,
        )
        return master.wrap(key, context=context)

    def _check_wrapped(self, manifest: Manifest, wrapped: bytes) -> bytes:
        """The blob from :meth:`generate_data_key`, checked to open for this manifest."""
        master = self._core.vault.master_key
        model = manifest.model
        try:
            version = master_version_of(wrapped)
            if version != master.version:
                raise DecryptionError()
            context = data_key_context(
                model_id=model.id,
                version=model.version,
                key_id=manifest.key_id,
                master_version=version,
            )
            master.unwrap(wrapped, context=context, key_id=manifest.key_id)
        except (FormatError, DecryptionError):
            raise BadRequest(
                f"the wrapped data key was not generated by this vault for model {model.id} "
                f"version {model.version} with key {manifest.key_id}",
                hint="ask this vault for a data key for exactly this model id and version, and "
                "seal with it",
            ) from None
        return bytes(wrapped)


def _check_version(version: int) -> None:
    if (
        isinstance(version, bool)
        or not isinstance(version, int)
        or not 1 <= version <= _MAX_VERSION
    ):
        raise BadRequest(f"the model version must be a whole number from 1 to {_MAX_VERSION}")


def _conflict(name: str, version: int) -> Conflict:
    return Conflict(
        f"model {name} version {version} is registered already",
        hint="seal the new model as another version",
    )


def _view(
    manifest: Manifest, owner: str, owner_fingerprint: str, registered_at: datetime
) -> ModelView:
    return ModelView(
        name=manifest.model.name,
        version=manifest.model.version,
        model_id=manifest.model.id,
        key_id=manifest.key_id,
        owner=owner,
        owner_fingerprint=owner_fingerprint,
        files=len(manifest.files),
        size=manifest.total_size,
        registered_at=registered_at,
    )
