"""Reading a sealed package: signature, structure, trust, ciphertext digests, random access.

Opening a :class:`SealedPackage` checks everything that needs no key and no trust decision: the
signature over the manifest, the manifest itself, and that the payload holds exactly the files the
manifest lists with exactly their sizes. Trust in the signer, the ciphertext digests and decryption
are separate steps, so each caller pays only for what it needs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from modelseal._closing import Closing
from modelseal.crypto import Certificate, DataKey, DecryptionError, FormatError, SegmentReader
from modelseal.package.container import Container, FileSource, open_container
from modelseal.package.errors import IntegrityError, PackageError
from modelseal.package.manifest import (
    MANIFEST_NAME,
    PAYLOAD_DIR,
    SIGNATURE_NAME,
    FileEntry,
    Manifest,
)
from modelseal.package.signature import Signer, check_trust, verify_manifest_signature
from modelseal.progress import NO_PROGRESS, Progress

__all__ = ["FileReader", "SealedPackage", "VerifyReport", "verify_package"]

_HASH_CHUNK = 4 << 20


class FileReader:
    """Random-access plaintext of one package file; decryption failures name file and segment."""

    def __init__(self, entry: FileEntry, reader: SegmentReader) -> None:
        self.entry = entry
        self._reader = reader
        self.size = reader.plaintext_size
        self.segment_count = reader.segment_count

    def _failed(self, exc: DecryptionError) -> IntegrityError:
        return IntegrityError(
            f"{self.entry.payload_name}, segment {exc.segment}: failed authentication; the file was "
            "tampered with, truncated or swapped, the package's file list was changed, or the data "
            "key is wrong"
        )

    def read(self, offset: int, length: int) -> bytes:
        try:
            return self._reader.read(offset, length)
        except DecryptionError as exc:
            raise self._failed(exc) from None

    def segment(self, index: int) -> bytes:
        try:
            return self._reader.segment(index)
        except DecryptionError as exc:
            raise self._failed(exc) from None

    def read_all(self, *, workers: int = 1) -> bytes | memoryview:
        """The whole plaintext in anonymous memory."""
        try:
            data = self._reader.decrypt_all(workers=workers)
        except DecryptionError as exc:
            raise self._failed(exc) from None
        return data if isinstance(data, bytes) else memoryview(data)

    def write_to_fd(self, fd: int, *, workers: int = 1, progress: Progress = NO_PROGRESS) -> None:
        try:
            self._reader.decrypt_to_fd(fd, workers=workers, progress=progress.advance)
        except DecryptionError as exc:
            raise self._failed(exc) from None


@dataclass(frozen=True)
class VerifyReport:
    path: Path
    manifest: Manifest
    signer: Signer
    trusted_by: Certificate | None  # the anchor the signer chained to, None when no anchors given


def _digest(source: FileSource, progress: Progress) -> str:
    digest = hashlib.sha256()
    for offset in range(0, source.size, _HASH_CHUNK):
        chunk = source.pread(offset, _HASH_CHUNK)
        digest.update(chunk)
        progress.advance(len(chunk))
    return digest.hexdigest()


class SealedPackage(Closing):
    """An open sealed package (directory or archive). Use as a context manager."""

    def __init__(self, container: Container, manifest: Manifest, signer: Signer) -> None:
        self.container = container
        self.manifest = manifest
        self.signer = signer

    @property
    def path(self) -> Path:
        return self.container.path

    @classmethod
    def open(cls, path: Path) -> SealedPackage:
        container = open_container(path)
        try:
            for required in (MANIFEST_NAME, SIGNATURE_NAME):
                if not container.has(required):
                    raise PackageError(f"{path} is not a sealed package: {required} is missing")
            manifest_bytes = container.read(MANIFEST_NAME)
            signer = verify_manifest_signature(manifest_bytes, container.read(SIGNATURE_NAME))
            manifest = Manifest.from_bytes(manifest_bytes)
            cls._check_structure(container, manifest)
        except BaseException:
            container.close()
            raise
        return cls(container, manifest, signer)

    @staticmethod
    def _check_structure(container: Container, manifest: Manifest) -> None:
        listed = {entry.payload_name for entry in manifest.files}
        for name in container.names():
            if name not in listed and name not in (MANIFEST_NAME, SIGNATURE_NAME):
                where = "" if name.startswith(f"{PAYLOAD_DIR}/") else " (outside payload/)"
                raise IntegrityError(
                    f"{name}{where} is not listed in the signed manifest: it was added after sealing"
                )
        for entry in manifest.files:
            if not container.has(entry.payload_name):
                raise IntegrityError(
                    f"{entry.payload_name} is listed in the manifest but missing from the package"
                )
            actual = container.source(entry.payload_name).size
            if actual != entry.ciphertext_size:
                change = "truncated" if actual < entry.ciphertext_size else "extended"
                raise IntegrityError(
                    f"{entry.payload_name} is {actual} bytes but the manifest says {entry.ciphertext_size}: "
                    f"it was {change} (or swapped with another file)"
                )

    def check_trust(
        self, anchors: Sequence[Certificate], *, now: dt.datetime | None = None
    ) -> Certificate:
        """Raise :class:`TrustError` unless the signer chains to one of ``anchors``; return that anchor."""
        path = check_trust(self.signer, anchors, now=now or dt.datetime.now(dt.UTC))
        return path[-1]

    def verify_ciphertexts(self, progress: Progress = NO_PROGRESS) -> None:
        """Check every payload file against the ciphertext SHA-256 in the signed manifest."""
        progress.start("verifying", sum(e.ciphertext_size for e in self.manifest.files))
        for entry in self.manifest.files:
            self.verify_ciphertext(entry, progress)

    def verify_ciphertext(self, entry: FileEntry, progress: Progress = NO_PROGRESS) -> None:
        if _digest(self.container.source(entry.payload_name), progress) != entry.ciphertext_sha256:
            raise IntegrityError(
                f"{entry.payload_name} does not match the SHA-256 in the signed manifest: it was tampered "
                "with or swapped with another file"
            )

    def check_key(self, key: DataKey) -> None:
        if key.key_id != self.manifest.key_id:
            raise PackageError(
                f"wrong data key: this package was sealed with key {self.manifest.key_id}, "
                f"the key given is {key.key_id}"
            )

    def reader(self, path: str, key: DataKey) -> FileReader:
        """Random-access plaintext of the package file ``path`` (as listed in the manifest)."""
        self.check_key(key)
        entry = self.manifest.file(path)
        source = self.container.source(entry.payload_name)
        try:
            segments = SegmentReader(key, self.manifest.associated_data(entry), source)
        except FormatError as exc:
            raise IntegrityError(f"{entry.payload_name}: {exc.message}") from None
        return FileReader(entry, segments)

    def close(self) -> None:
        self.container.close()


def verify_package(
    path: Path,
    *,
    trust: Sequence[Certificate] = (),
    now: dt.datetime | None = None,
    progress: Progress = NO_PROGRESS,
) -> VerifyReport:
    """Everything that can be checked without a key: signature, structure, trust, digests."""
    with SealedPackage.open(path) as package:
        anchor = package.check_trust(trust, now=now) if trust else None
        package.verify_ciphertexts(progress)
        return VerifyReport(path, package.manifest, package.signer, anchor)
