"""The manifest of a sealed package: what was sealed, how, and by whom (see docs/format.md).

The manifest is canonical JSON (RFC 8785); the owner signs exactly its bytes. Parsing is strict:
unknown format versions, missing or mistyped fields and non-canonical bytes are refused with a
sentence that names the field.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from modelseal.crypto import (
    SEGMENT_SIZE,
    SUITE,
    canonical_json,
    ciphertext_size,
    parse_canonical_json,
)
from modelseal.crypto.errors import FormatError
from modelseal.package.errors import PackageError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "PAYLOAD_DIR",
    "SIGNATURE_NAME",
    "FileEntry",
    "Manifest",
    "ModelInfo",
    "WrappedKey",
    "file_associated_data",
    "files_digest",
    "validate_model_name",
    "validate_relative_path",
]

FORMAT = "modelseal.sealed-package"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.sig"
PAYLOAD_DIR = "payload"
_HEX64 = re.compile(r"\A[0-9a-f]{64}\Z")
_NAME = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
_BAD_PATH_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")


def validate_relative_path(path: str) -> str:
    """A payload path: relative, POSIX separators, no empty, ``.`` or ``..`` parts, no controls."""
    parts = path.split("/")
    if (
        not path
        or path.startswith("/")
        or _BAD_PATH_CHARS.search(path)
        or any(part in ("", ".", "..") for part in parts)
    ):
        raise PackageError(
            f"unsafe path {path!r}: package paths are relative, without '..', '.' or '//'"
        )
    return path


def validate_model_name(name: str) -> str:
    if not _NAME.match(name):
        raise PackageError(
            f"model name {name!r} is not allowed: use letters, digits, '.', '_' or '-' (max 128), "
            "starting with a letter or digit"
        )
    return name


def files_digest(files: Iterable[tuple[str, int]]) -> str:
    """SHA-256 (hex) of the canonical JSON ``[[path, size], …]`` sorted by path: the file set."""
    return hashlib.sha256(canonical_json(sorted([path, size] for path, size in files))).hexdigest()


def file_associated_data(model: ModelInfo, files: str, path: str) -> bytes:
    """The streaming-AEAD associated data of one payload file.

    It binds the ciphertext to its package (model id, name, version), its place (path) and the
    whole file set (``files``, from :func:`files_digest`), so a file cannot be moved, renamed or
    swapped in, and no file can be dropped or added, without decryption failing, even when the
    manifest is re-signed by someone else.
    """
    return canonical_json(
        {
            "files": files,
            "format": f"{FORMAT}/{FORMAT_VERSION}",
            "model_id": model.id,
            "name": model.name,
            "path": path,
            "version": model.version,
        }
    )


@dataclass(frozen=True)
class ModelInfo:
    id: str
    name: str
    version: int


@dataclass(frozen=True)
class WrappedKey:
    """The data key sealed to a recipient public key (the vault's import key)."""

    algorithm: str
    recipient: str  # SHA-256 (hex) of the recipient's SubjectPublicKeyInfo
    wrapped: str  # base64 of enc ‖ ciphertext


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    sha256: str
    ciphertext_size: int
    ciphertext_sha256: str

    @property
    def payload_name(self) -> str:
        return f"{PAYLOAD_DIR}/{self.path}"


@dataclass(frozen=True)
class Manifest:
    model: ModelInfo
    key_id: str
    files: tuple[FileEntry, ...]
    created: str
    tool: str
    wrapped_keys: tuple[WrappedKey, ...] = ()
    suite: str = SUITE
    segment_size: int = SEGMENT_SIZE

    @cached_property
    def _by_path(self) -> dict[str, FileEntry]:
        return {entry.path: entry for entry in self.files}

    def file(self, path: str) -> FileEntry:
        try:
            return self._by_path[path]
        except KeyError:
            raise PackageError(f"the package has no file {path!r}") from None

    @property
    def total_size(self) -> int:
        return sum(entry.size for entry in self.files)

    @cached_property
    def files_digest(self) -> str:
        return files_digest((entry.path, entry.size) for entry in self.files)

    def associated_data(self, entry: FileEntry) -> bytes:
        return file_associated_data(self.model, self.files_digest, entry.path)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model": {"id": self.model.id, "name": self.model.name, "version": self.model.version},
            "created": self.created,
            "tool": self.tool,
            "encryption": {
                "suite": self.suite,
                "segment_size": self.segment_size,
                "key_id": self.key_id,
                "wrapped_keys": [
                    {"algorithm": w.algorithm, "recipient": w.recipient, "wrapped": w.wrapped}
                    for w in self.wrapped_keys
                ],
            },
            "files": [
                {
                    "path": e.path,
                    "size": e.size,
                    "sha256": e.sha256,
                    "ciphertext_size": e.ciphertext_size,
                    "ciphertext_sha256": e.ciphertext_sha256,
                }
                for e in self.files
            ],
        }

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_dict())

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        try:
            doc = parse_canonical_json(data, what=MANIFEST_NAME)
        except FormatError as exc:
            raise PackageError(exc.message) from exc
        return _parse(doc)


# --- strict parsing -----------------------------------------------------------------------------


class _Fields:
    """Typed access to one JSON object, with errors that name the field."""

    def __init__(self, doc: Any, where: str) -> None:
        if not isinstance(doc, dict):
            raise PackageError(f"{MANIFEST_NAME}: {where or 'the document'} must be an object")
        self.doc, self.where = doc, where

    def _name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def get(self, key: str, kind: type[Any]) -> Any:
        value = self.doc.get(key)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise PackageError(
                f"{MANIFEST_NAME}: {self._name(key)} is missing or not a {kind.__name__}"
            )
        return value

    def count(self, key: str, minimum: int = 0) -> int:
        value: int = self.get(key, int)
        if value < minimum:
            raise PackageError(f"{MANIFEST_NAME}: {self._name(key)} must be ≥ {minimum}")
        return value

    def digest(self, key: str) -> str:
        value: str = self.get(key, str)
        if not _HEX64.match(value):
            raise PackageError(
                f"{MANIFEST_NAME}: {self._name(key)} must be 64 lowercase hex characters"
            )
        return value

    def checked(self, key: str, check: Callable[[str], str]) -> str:
        """A string that must pass ``check``; its error then names the file and the field."""
        value: str = self.get(key, str)
        try:
            return check(value)
        except PackageError as exc:
            raise PackageError(f"{MANIFEST_NAME}: {self._name(key)}: {exc.message}") from None

    def objects(self, key: str) -> list[_Fields]:
        items = self.get(key, list)
        return [_Fields(item, f"{self._name(key)}[{i}]") for i, item in enumerate(items)]


def _parse(doc: Any) -> Manifest:
    top = _Fields(doc, "")
    if doc.get("format") != FORMAT:
        raise PackageError(
            f"{MANIFEST_NAME}: not a modelseal sealed package (format is {doc.get('format')!r})"
        )
    version = doc.get("format_version")
    if version != FORMAT_VERSION:
        raise PackageError(
            f"{MANIFEST_NAME}: unknown format version {version!r}; this modelseal reads version "
            f"{FORMAT_VERSION}",
            hint="upgrade modelseal, or ask the owner to seal with a compatible version",
        )
    model = _Fields(top.get("model", dict), "model")
    enc = _Fields(top.get("encryption", dict), "encryption")
    suite, segment_size = enc.get("suite", str), enc.count("segment_size", 1)
    if suite != SUITE or segment_size != SEGMENT_SIZE:
        raise PackageError(
            f"{MANIFEST_NAME}: unsupported cipher suite {suite} with segment size {segment_size}"
        )
    model_id = model.get("id", str)
    try:
        uuid.UUID(model_id)
    except ValueError:
        raise PackageError(f"{MANIFEST_NAME}: model.id {model_id!r} is not a UUID") from None
    files = tuple(
        FileEntry(
            path=f.checked("path", validate_relative_path),
            size=f.count("size"),
            sha256=f.digest("sha256"),
            ciphertext_size=f.count("ciphertext_size"),
            ciphertext_sha256=f.digest("ciphertext_sha256"),
        )
        for f in top.objects("files")
    )
    for entry in files:
        if entry.ciphertext_size != ciphertext_size(entry.size):
            raise PackageError(
                f"{MANIFEST_NAME}: {entry.path}: ciphertext_size {entry.ciphertext_size} does not fit size "
                f"{entry.size}"
            )
    paths = [entry.path for entry in files]
    if paths != sorted(set(paths)):
        raise PackageError(f"{MANIFEST_NAME}: files must be sorted by path and unique")
    directories = {p.rsplit("/", 1)[0] for p in paths if "/" in p}
    clash = next((p for p in paths if p in directories), None)
    if clash is not None:
        raise PackageError(f"{MANIFEST_NAME}: {clash!r} is both a file and a directory")
    return Manifest(
        model=ModelInfo(
            id=model_id,
            name=model.checked("name", validate_model_name),
            version=model.count("version", 1),
        ),
        key_id=enc.get("key_id", str),
        wrapped_keys=tuple(
            WrappedKey(
                algorithm=w.get("algorithm", str),
                recipient=w.digest("recipient"),
                wrapped=w.get("wrapped", str),
            )
            for w in enc.objects("wrapped_keys")
        ),
        files=files,
        created=top.get("created", str),
        tool=top.get("tool", str),
    )
