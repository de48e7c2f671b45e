"""Sealing: encrypt every file of a model with a fresh data key and sign the manifest."""

from __future__ import annotations

import base64
import datetime as dt
import os
import stat
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from modelseal import __version__
from modelseal._files import write_new
from modelseal.crypto import (
    WRAP_ALGORITHM,
    Certificate,
    DataKey,
    ImportPublicKey,
    SigningKey,
    ciphertext_size,
    dump_data_key,
    encrypt_stream,
    wrap_data_key,
    wrap_info,
)
from modelseal.package._hashing import BackgroundSha256
from modelseal.package.errors import PackageError
from modelseal.package.manifest import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    FileEntry,
    Manifest,
    ModelInfo,
    WrappedKey,
    file_associated_data,
    files_digest,
    validate_model_name,
    validate_relative_path,
)
from modelseal.package.signature import sign_manifest
from modelseal.package.writer import PackageWriter, open_writer
from modelseal.progress import NO_PROGRESS, Progress

__all__ = ["SealResult", "collect_model_files", "seal", "write_data_key"]


@dataclass(frozen=True)
class SealResult:
    path: Path
    manifest: Manifest
    data_key: DataKey


def collect_model_files(model: Path) -> list[tuple[str, Path]]:
    """(package path, source path) of every file of ``model``, a file or a directory, sorted."""
    try:
        info = os.lstat(model)
    except FileNotFoundError:
        raise PackageError(f"{model} does not exist") from None
    if stat.S_ISREG(info.st_mode):
        return [(validate_relative_path(model.name), model)]
    if not stat.S_ISDIR(info.st_mode):
        raise PackageError(f"{model} is neither a file nor a directory")
    found: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(model):
        dirnames.sort()
        for name in [*dirnames, *filenames]:
            full = Path(dirpath, name)
            mode = os.lstat(full).st_mode
            rel = full.relative_to(model).as_posix()
            if stat.S_ISLNK(mode):
                raise PackageError(
                    f"{model}: {rel} is a symbolic link; copy the file it points to into the model directory"
                )
            if stat.S_ISREG(mode):
                found.append((validate_relative_path(rel), full))
            elif not stat.S_ISDIR(mode):
                raise PackageError(f"{model}: {rel} is not a regular file")
    if not found:
        raise PackageError(f"{model} holds no files to seal")
    return sorted(found)


def write_data_key(path: Path, key: DataKey) -> None:
    """Write the owner's key file with mode 0600 (fsynced); refuses to overwrite."""
    try:
        write_new(path, dump_data_key(key), 0o600)
    except FileExistsError:
        raise PackageError(f"{path} already exists; refusing to overwrite a key file") from None


def _check_destination(model: Path, out: Path) -> None:
    if out.exists() or out.is_symlink():
        raise PackageError(
            f"{out} already exists; nothing was written", hint="choose a new --out path"
        )
    model_abs, out_abs = model.resolve(), out.resolve()
    if model_abs == out_abs or model_abs in out_abs.parents:
        raise PackageError(f"{out} is inside the model being sealed; write the package elsewhere")


def seal(
    model: Path,
    out: Path,
    *,
    name: str,
    version: int,
    signing_key: SigningKey,
    certificates: Sequence[Certificate],
    import_keys: Sequence[ImportPublicKey] = (),
    data_key: DataKey | None = None,
    data_key_out: Path | None = None,
    archive: bool = False,
    model_id: str | None = None,
    progress: Progress = NO_PROGRESS,
    now: dt.datetime | None = None,
) -> SealResult:
    """Seal ``model`` (a file or directory) into a new package at ``out``.

    The data key is fresh unless given (the vault's generate-data-key). It leaves this function only
    wrapped to ``import_keys`` (stored in the manifest) and/or in the owner's ``data_key_out`` file;
    with neither, nobody could ever open the package, so that is refused.
    """
    validate_model_name(name)
    if version < 1:
        raise PackageError(f"version must be a positive integer, not {version}")
    if not import_keys and data_key_out is None and data_key is None:
        raise PackageError(
            "the data key would be lost: nobody could ever open this package",
            hint="pass --data-key-out FILE, --vault-import-key FILE, or both",
        )
    if data_key_out is not None and (data_key_out.exists() or data_key_out.is_symlink()):
        raise PackageError(f"{data_key_out} already exists; refusing to overwrite a key file")
    files = collect_model_files(model)
    _check_destination(model, out)
    now = now or dt.datetime.now(dt.UTC)
    key = data_key or DataKey.generate()
    model_info = ModelInfo(id=model_id or str(uuid.uuid4()), name=name, version=version)
    wrapped = tuple(
        WrappedKey(
            algorithm=WRAP_ALGORITHM,
            recipient=recipient.key_id,
            wrapped=base64.b64encode(
                wrap_data_key(
                    key,
                    recipient,
                    info=wrap_info(key_id=key.key_id, model_id=model_info.id, version=version),
                )
            ).decode("ascii"),
        )
        for recipient in import_keys
    )
    writer = open_writer(out, archive=archive, mtime=int(now.timestamp()))
    key_written = False
    try:
        sizes = [(rel, src, src.stat().st_size) for rel, src in files]
        digest = files_digest((rel, size) for rel, _, size in sizes)
        entries = [
            _seal_file(writer, model_info, digest, key, rel, src, size, progress)
            for rel, src, size in sizes
        ]
        manifest = Manifest(
            model=model_info,
            key_id=key.key_id,
            wrapped_keys=wrapped,
            files=tuple(entries),
            created=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            tool=f"modelseal {__version__}",
        )
        manifest_bytes = manifest.to_bytes()
        writer.add(MANIFEST_NAME, manifest_bytes)
        writer.add(SIGNATURE_NAME, sign_manifest(manifest_bytes, signing_key, certificates))
        if data_key_out is not None:
            write_data_key(data_key_out, key)
            key_written = True
        writer.commit()
    except BaseException:
        writer.abort()
        if key_written and data_key_out is not None:
            data_key_out.unlink(missing_ok=True)
        raise
    return SealResult(out, manifest, key)


def _seal_file(
    writer: PackageWriter,
    model: ModelInfo,
    files: str,
    key: DataKey,
    rel: str,
    src: Path,
    size: int,
    progress: Progress,
) -> FileEntry:
    with open(src, "rb", buffering=0) as handle:
        ct_size = ciphertext_size(size)
        progress.start(f"sealing {rel}", size)
        sink = writer.begin(f"payload/{rel}", ct_size)
        with BackgroundSha256() as plain_hash, BackgroundSha256() as cipher_hash:

            def emit(data: bytes) -> None:
                cipher_hash.update(data)
                sink(data)

            def seen(data: bytes) -> None:
                plain_hash.update(data)
                progress.advance(len(data))

            total = encrypt_stream(
                key,
                file_associated_data(model, files, rel),
                handle,
                emit,
                on_plaintext=seen,
            )
            if total != size:
                raise PackageError(
                    f"{src} changed size while it was being sealed ({size} → {total} bytes)"
                )
            writer.end()
            return FileEntry(
                path=rel,
                size=size,
                sha256=plain_hash.hexdigest(),
                ciphertext_size=ct_size,
                ciphertext_sha256=cipher_hash.hexdigest(),
            )
