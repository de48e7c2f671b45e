"""Every way a package, a key or an output path can be wrong: refused exactly, nothing left behind.

Each case checks the exact exception class, that the message names the file (and the segment when
it is known), and that no output and no plaintext remain (hidden ``.partial-*`` paths included).
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from modelseal.crypto import (
    SEGMENT_SIZE,
    DataKey,
    SigningKey,
    canonical_json,
    create_self_signed,
    dump_data_key,
    load_data_key,
    parse_subject,
)
from modelseal.package import (
    IntegrityError,
    PackageError,
    SealedPackage,
    TrustError,
    open_package,
    seal,
    verify_package,
)
from modelseal.package.signature import sign_manifest, verify_manifest_signature
from tests.conftest import (
    Identity,
    MiB,
    SealFactory,
    assert_failed_cleanly,
    assert_no_plaintext,
    entry_bytes,
    expect_error,
    find_plaintext,
    flip_byte,
    random_bytes,
    read_tree,
    replace_entries,
    write_archive,
)

BIG = "payload/weights/big.bin"
FORMS = pytest.mark.parametrize("archive", [False, True], ids=["directory", "archive"])


def refuse_open(
    path: Path,
    key: DataKey,
    opened_parent: Path,
    plaintexts: list[bytes],
    kind: type[Exception],
    *fragments: str,
    trust: tuple[Identity, ...] = (),
) -> Exception:
    """``open_package`` must fail exactly so, and leave nothing at all in ``opened_parent``."""
    error = expect_error(
        kind,
        lambda: open_package(
            path, key, opened_parent / "out", trust=[t.cert for t in trust], workers=1
        ),
        *fragments,
    )
    assert_failed_cleanly(opened_parent, plaintexts)
    return error


def refuse_everything(
    path: Path,
    key: DataKey,
    owner: Identity,
    opened_parent: Path,
    plaintexts: list[bytes],
    kind: type[Exception],
    *fragments: str,
) -> None:
    """A package refused before any decision: by inspect, verify and open alike."""
    expect_error(kind, lambda: SealedPackage.open(path), *fragments)
    expect_error(kind, lambda: verify_package(path, trust=[owner.cert]), *fragments)
    refuse_open(path, key, opened_parent, plaintexts, kind, *fragments)


def resign(path: Path, signer: Identity, manifest: bytes | None = None) -> None:
    """Replace the manifest (optionally) and its signature, signed by ``signer``."""
    manifest = manifest if manifest is not None else entry_bytes(path, "manifest.json")
    replace_entries(
        path,
        {
            "manifest.json": manifest,
            "manifest.sig": sign_manifest(manifest, signer.key, [signer.cert]),
        },
    )


def manifest_doc(path: Path) -> dict[str, object]:
    doc = json.loads(entry_bytes(path, "manifest.json"))
    assert isinstance(doc, dict)
    return doc


# --- the leak detector can fail ------------------------------------------------------------------


def test_the_leak_detector_finds_a_window_in_a_hidden_partial_directory(tmp_path: Path) -> None:
    plain = random_bytes(MiB + 1000, seed=9)
    hidden = tmp_path / ".out.partial-1a2b3c4d" / "weights"
    hidden.mkdir(parents=True)
    (tmp_path / "ciphertext").write_bytes(random_bytes(MiB, seed=10))
    assert find_plaintext(tmp_path, [plain]) == []
    for offset in (0, 12345, MiB + 7, len(plain) - 64):
        (hidden / "big.bin").write_bytes(b"junk" + plain[offset : offset + 64] + b"more junk")
        assert find_plaintext(tmp_path, [plain]) == [".out.partial-1a2b3c4d/weights/big.bin"]
        with pytest.raises(AssertionError, match="plaintext left on disk"):
            assert_no_plaintext(tmp_path, [plain])
    (hidden / "big.bin").write_bytes(plain[100:163])  # 63 bytes: below the window
    assert_no_plaintext(tmp_path, [plain])
    with pytest.raises(ValueError, match="at least 64 bytes"):
        find_plaintext(tmp_path, [b"short"])


# --- flipped bytes in the payload ----------------------------------------------------------------

PAYLOAD_FLIPS = [
    # (case, entry, offset, what open says besides the entry name)
    ("header-length-byte", BIG, 0, ": not a streaming AEAD ciphertext"),
    ("header-salt", BIG, 1, ", segment 0: failed authentication"),
    ("header-nonce-prefix", BIG, 39, ", segment 0: failed authentication"),
    ("first-segment", BIG, 40, ", segment 0: failed authentication"),
    ("middle-segment", BIG, 3 * MiB // 2, ", segment 1: failed authentication"),
    ("last-tag", BIG, -1, ", segment 2: failed authentication"),
    ("first-file", "payload/config.json", 50, ", segment 0: failed authentication"),
    ("empty-file-tag", "payload/empty.txt", -1, ", segment 0: failed authentication"),
    ("last-file", "payload/weights/extra/small.bin", -1, ", segment 0: failed authentication"),
]


@FORMS
@pytest.mark.parametrize(
    ("entry", "offset", "opened"),
    [case[1:] for case in PAYLOAD_FLIPS],
    ids=[case[0] for case in PAYLOAD_FLIPS],
)
def test_flipped_payload_byte(
    sealed: SealFactory,
    owner: Identity,
    opened_parent: Path,
    plaintexts: list[bytes],
    archive: bool,
    entry: str,
    offset: int,
    opened: str,
) -> None:
    path, key = sealed(archive=archive)
    flip_byte(path, entry, offset)
    SealedPackage.open(path).close()  # the structure is intact: only the bytes changed
    expect_error(
        IntegrityError,
        lambda: verify_package(path, trust=[owner.cert]),
        f"{entry} does not match the SHA-256 in the signed manifest",
    )
    refuse_open(path, key, opened_parent, plaintexts, IntegrityError, entry + opened)


# --- flipped bytes in the manifest and its signature ---------------------------------------------


def _signature_offset(path: Path) -> int:
    """The offset of a letter well inside the base64 signature value of ``manifest.sig``."""
    sig = entry_bytes(path, "manifest.sig")
    start = sig.index(b'"signature":"') + len(b'"signature":"') + 20
    return next(i for i in range(start, len(sig)) if chr(sig[i]).isalpha())


def _certificate_key_offset(path: Path, owner: Identity) -> int:
    """The offset of a letter in ``manifest.sig`` that encodes the certificate's public key."""
    sig = entry_bytes(path, "manifest.sig")
    doc = json.loads(sig)
    der = base64.b64decode(doc["certificates"][0])
    key_at = der.index(owner.key.verifying_key().public_bytes_der()[-32:])
    cert_at = sig.index(doc["certificates"][0].encode())
    start = cert_at + (key_at + 8) * 4 // 3  # 8 bytes into the 32-byte raw key
    return next(i for i in range(start, start + 12) if chr(sig[i]).isalpha())


MANIFEST_FLIPS: list[tuple[str, str, Callable[[Path, Identity], int], str]] = [
    ("manifest-first-byte", "manifest.json", lambda p, o: 0, "manifest.json does not match"),
    (
        "manifest-middle",
        "manifest.json",
        lambda p, o: len(entry_bytes(p, "manifest.json")) // 2,
        "manifest.json does not match its signature: the manifest or manifest.sig was changed",
    ),
    ("manifest-last-byte", "manifest.json", lambda p, o: -1, "manifest.json does not match"),
    ("sig-structure", "manifest.sig", lambda p, o: 0, "manifest.sig is not valid UTF-8 JSON"),
    (
        "sig-signature-value",
        "manifest.sig",
        lambda p, o: _signature_offset(p),
        "manifest.json does not match its signature",
    ),
    ("sig-certificate-key", "manifest.sig", _certificate_key_offset, "manifest.sig"),
]


@FORMS
@pytest.mark.parametrize(
    ("entry", "where", "message"),
    [case[1:] for case in MANIFEST_FLIPS],
    ids=[case[0] for case in MANIFEST_FLIPS],
)
def test_flipped_manifest_or_signature_byte(
    sealed: SealFactory,
    owner: Identity,
    opened_parent: Path,
    plaintexts: list[bytes],
    archive: bool,
    entry: str,
    where: Callable[[Path, Identity], int],
    message: str,
) -> None:
    path, key = sealed(archive=archive)
    # a letter's case swapped keeps base64 valid; other bytes get their lowest bit flipped
    offset = where(path, owner)
    byte = entry_bytes(path, entry)[offset]
    flip_byte(path, entry, offset, 0x20 if chr(byte).isalpha() and entry == "manifest.sig" else 1)
    refuse_everything(path, key, owner, opened_parent, plaintexts, IntegrityError, message)


def _edit_certificate(path: Path, edit: Callable[[bytearray], None]) -> None:
    doc = json.loads(entry_bytes(path, "manifest.sig"))
    der = bytearray(base64.b64decode(doc["certificates"][0]))
    edit(der)
    doc["certificates"][0] = base64.b64encode(bytes(der)).decode()
    replace_entries(path, {"manifest.sig": canonical_json(doc)})


def test_an_ecdsa_certificate_whose_key_no_longer_parses(tmp_path: Path) -> None:
    """The certificate still decodes but its public key is off the curve: refused, not a crash."""
    key = SigningKey.generate("ecdsa-p256")
    cert = create_self_signed(key, parse_subject("CN=Acme Models"))
    manifest = b'{"format":"modelseal.sealed-package"}'
    doc = json.loads(sign_manifest(manifest, key, [cert]))
    der = bytearray(cert.der())
    der[der.index(key.verifying_key().public_bytes_der()[-64:]) + 10] ^= 0x01  # the point's x
    doc["certificates"] = [base64.b64encode(bytes(der)).decode()]
    expect_error(
        IntegrityError,
        lambda: verify_manifest_signature(manifest, canonical_json(doc)),
        "manifest.sig holds malformed base64 or certificates",
    )


@FORMS
def test_flipped_byte_in_the_certificate_name_breaks_trust(
    sealed: SealFactory,
    owner: Identity,
    opened_parent: Path,
    plaintexts: list[bytes],
    archive: bool,
) -> None:
    path, key = sealed(archive=archive)

    def flip_issuer(der: bytearray) -> None:
        der[der.index(b"Acme Models") + 10] ^= 0x01  # the issuer comes first: 'Acme Modelr'

    _edit_certificate(path, flip_issuer)
    expect_error(
        TrustError,
        lambda: verify_package(path, trust=[owner.cert]),
        "the package is signed by 'CN=Acme Models'",
        "which is not trusted",
    )
    refuse_open(path, key, opened_parent, plaintexts, TrustError, "not trusted", trust=(owner,))


@FORMS
def test_undecodable_certificate_is_refused(
    sealed: SealFactory,
    owner: Identity,
    opened_parent: Path,
    plaintexts: list[bytes],
    archive: bool,
) -> None:
    path, key = sealed(archive=archive)

    def break_der(der: bytearray) -> None:
        der[0] ^= 0x01  # no longer a DER SEQUENCE

    _edit_certificate(path, break_der)
    refuse_everything(
        path,
        key,
        owner,
        opened_parent,
        plaintexts,
        IntegrityError,
        "manifest.sig holds malformed base64 or certificates",
    )


# --- truncated, extended, missing and added files ------------------------------------------------


@FORMS
@pytest.mark.parametrize(
    ("change", "how"),
    [
        (lambda b: b[:-1], "truncated"),
        (lambda b: b[:-SEGMENT_SIZE], "truncated"),
        (lambda b: b[:40], "truncated"),
        (lambda b: b"", "truncated"),
        (lambda b: b + b"\x00", "extended"),
        (lambda b: b + random_bytes(SEGMENT_SIZE, seed=5), "extended"),
    ],
    ids=["cut-1", "cut-segment", "header-only", "emptied", "plus-1", "plus-segment"],
)
def test_truncated_or_extended_payload_file(
    sealed: SealFactory,
    owner: Identity,
    opened_parent: Path,
    plaintexts: list[bytes],
    archive: bool,
    change: Callable[[bytes], bytes],
    how: str,
) -> None:
    path, key = sealed(archive=archive)
    original = entry_bytes(path, BIG)
    changed = change(original)
    replace_entries(path, {BIG: changed})
    refuse_everything(
        path,
        key,
        owner,
        opened_parent,
        plaintexts,
        IntegrityError,
        f"{BIG} is {len(changed)} bytes but the manifest says {len(original)}: it was {how}",
    )


@pytest.mark.parametrize("cut", [700, 2 * MiB, 1], ids=["in-signature", "in-payload", "last-byte"])
def test_truncated_archive(
    sealed: SealFactory,
    owner: Identity,
    opened_parent: Path,
    plaintexts: list[bytes],
    cut: int,
) -> None:
    path, key = sealed(archive=True)
    with tarfile.open(path) as tar:
        signature = tar.getmember("manifest.sig")
    end = signature.offset_data + signature.size
    os.truncate(path, end - cut if cut != 1 else end - 1)
    refuse_everything(
        path,
        key,
        owner,
        opened_parent,
        plaintexts,
        PackageError,
        f"{path}: the archive is damaged or truncated",
    )


def test_archive_cut_before_its_manifest_is_not_a_package(
    sealed: SealFactory, owner: Identity, opened_parent: Path, plaintexts: list[bytes]
) -> None:
    path, key = sealed(archive=True)
    with tarfile.open(path) as tar:
        manifest = tar.getmember("manifest.json")
    os.truncate(path, manifest.offset)  # exactly at the manifest's header
    refuse_everything(
        path,
        key,
        owner,
        opened_parent,
        plaintexts,
        PackageError,
        f"{path} is not a sealed package: manifest.json is missing",
    )


@FORMS
def test_missing_payload_file(
    sealed: SealFactory,
    owner: Identity,
    opened_parent: Path,
    plaintexts: list[bytes],
    archive: bool,
) -> None:
    path, key = sealed(archive=archive)
    replace_entries(path, {"payload/model.onnx": None})
    refuse_everything(
        path,
        key,
        owner,
        opened_parent,
        plaintexts,
        IntegrityError,
        "payload/model.onnx is listed in the manifest but missing from the package",
    )


@FORMS
@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("payload/extra.bin", "payload/extra.bin is not listed in the signed manifest"),
        ("payload/weights/extra/more.bin", "payload/weights/extra/more.bin is not listed"),
        ("notes.txt", "notes.txt (outside payload/) is not listed in the signed manifest"),
    ],
)
def test_unlisted_file_is_refused(
    sealed: SealFactory,
    owner: Identity,
    opened_parent: Path,
    plaintexts: list[bytes],
    archive: bool,
    name: str,
    message: str,
) -> None:
    path, key = sealed(archive=archive)
    replace_entries(path, {name: b"added after sealing"})
    refuse_everything(path, key, owner, opened_parent, plaintexts, IntegrityError, message)


@pytest.mark.parametrize("missing", ["manifest.json", "manifest.sig"])
@FORMS
def test_missing_manifest_or_signature_is_not_a_package(
    sealed: SealFactory,
    owner: Identity,
    opened_parent: Path,
    plaintexts: list[bytes],
    archive: bool,
    missing: str,
) -> None:
    path, key = sealed(archive=archive)
    replace_entries(path, {missing: None})
    refuse_everything(
        path,
        key,
        owner,
        opened_parent,
        plaintexts,
        PackageError,
        f"{path} is not a sealed package: {missing} is missing",
    )


def test_an_empty_directory_is_not_a_package(tmp_path: Path, owner: Identity) -> None:
    (tmp_path / "empty").mkdir()
    expect_error(
        PackageError,
        lambda: verify_package(tmp_path / "empty", trust=[owner.cert]),
        "is not a sealed package: manifest.json is missing",
    )


# --- swapped files -------------------------------------------------------------------------------


@pytest.fixture
def twin_model(tmp_path: Path) -> Path:
    """Two different files of the same size, so a swap keeps every size right."""
    root = tmp_path / "twins"
    root.mkdir()
    (root / "a.bin").write_bytes(random_bytes(300_000, seed=11))
    (root / "b.bin").write_bytes(random_bytes(300_000, seed=12))
    return root


@FORMS
def test_two_files_swapped_inside_a_package(
    sealed: SealFactory,
    owner: Identity,
    opened_parent: Path,
    twin_model: Path,
    archive: bool,
) -> None:
    path, key = sealed(twin_model, archive=archive)
    a, b = entry_bytes(path, "payload/a.bin"), entry_bytes(path, "payload/b.bin")
    replace_entries(path, {"payload/a.bin": b, "payload/b.bin": a})
    expect_error(
        IntegrityError,
        lambda: verify_package(path, trust=[owner.cert]),
        "payload/a.bin does not match the SHA-256 in the signed manifest",
    )
    refuse_open(
        path,
        key,
        opened_parent,
        list(read_tree(twin_model).values()),
        IntegrityError,
        "payload/a.bin, segment 0: failed authentication",
    )


@FORMS
def test_a_file_swapped_between_two_packages_of_the_same_model(
    sealed: SealFactory,
    owner: Identity,
    opened_parent: Path,
    twin_model: Path,
    tmp_path: Path,
    archive: bool,
) -> None:
    other_model = tmp_path / "other"
    other_model.mkdir()
    (other_model / "a.bin").write_bytes(random_bytes(300_000, seed=13))
    (other_model / "b.bin").write_bytes(random_bytes(300_000, seed=14))
    path, key = sealed(twin_model, archive=archive, name="twins", version=1)
    other, _ = sealed(other_model, archive=archive, name="twins", version=1)
    replace_entries(path, {"payload/a.bin": entry_bytes(other, "payload/a.bin")})
    expect_error(
        IntegrityError,
        lambda: verify_package(path, trust=[owner.cert]),
        "payload/a.bin does not match the SHA-256 in the signed manifest",
    )
    refuse_open(
        path,
        key,
        opened_parent,
        [*read_tree(twin_model).values(), *read_tree(other_model).values()],
        IntegrityError,
        "payload/a.bin, segment 0: failed authentication",
    )


def test_a_file_swapped_between_packages_sharing_model_id_and_key(
    sealed: SealFactory, opened_parent: Path, twin_model: Path, tmp_path: Path
) -> None:
    """Same model id, version, path and key: the segments authenticate, the signed digest does not."""
    other_model = tmp_path / "other"
    other_model.mkdir()
    (other_model / "a.bin").write_bytes(random_bytes(300_000, seed=15))
    (other_model / "b.bin").write_bytes((twin_model / "b.bin").read_bytes())
    key = DataKey.generate()
    path, _ = sealed(twin_model, data_key=key, model_id="1c8f1d6e-0f0a-4f3e-8a8b-5d6c7e8f9a0b")
    other, _ = sealed(other_model, data_key=key, model_id="1c8f1d6e-0f0a-4f3e-8a8b-5d6c7e8f9a0b")
    replace_entries(path, {"payload/a.bin": entry_bytes(other, "payload/a.bin")})
    with SealedPackage.open(path) as package:  # the AEAD alone would accept it
        assert package.reader("a.bin", key).read(0, 10) == (other_model / "a.bin").read_bytes()[:10]
    refuse_open(
        path,
        key,
        opened_parent,
        [*read_tree(twin_model).values(), *read_tree(other_model).values()],
        IntegrityError,
        "payload/a.bin does not match the SHA-256 in the signed manifest",
    )


# --- signers -------------------------------------------------------------------------------------


@FORMS
def test_a_package_re_signed_by_an_untrusted_key(
    sealed: SealFactory,
    owner: Identity,
    attacker: Identity,
    opened_parent: Path,
    plaintexts: list[bytes],
    archive: bool,
) -> None:
    path, key = sealed(archive=archive)
    resign(path, attacker)
    report = verify_package(path)  # without trust, only the signature itself is checked
    assert report.signer.certificate == attacker.cert and report.trusted_by is None
    expect_error(
        TrustError,
        lambda: verify_package(path, trust=[owner.cert]),
        "the package is signed by 'CN=Mallory'",
        f"(SHA-256 {attacker.cert.fingerprint[:16]}…), which is not trusted",
    )
    refuse_open(path, key, opened_parent, plaintexts, TrustError, "'CN=Mallory'", trust=(owner,))


@FORMS
def test_an_edited_manifest_re_signed_by_an_attacker(
    sealed: SealFactory,
    owner: Identity,
    attacker: Identity,
    opened_parent: Path,
    plaintexts: list[bytes],
    archive: bool,
) -> None:
    path, key = sealed(archive=archive)
    doc = manifest_doc(path)
    doc["model"] = {**doc["model"], "name": "approved-model"}  # type: ignore[dict-item]
    resign(path, attacker, canonical_json(doc))
    error = expect_error(
        TrustError, lambda: verify_package(path, trust=[owner.cert]), "'CN=Mallory'"
    )
    assert error.hint is not None and "--trust" in error.hint
    refuse_open(path, key, opened_parent, plaintexts, TrustError, "not trusted", trust=(owner,))


def test_an_expired_signer_is_not_trusted(sealed: SealFactory, owner: Identity) -> None:
    path, _ = sealed()
    expect_error(
        TrustError,
        lambda: verify_package(
            path, trust=[owner.cert], now=dt.datetime(2099, 1, 1, tzinfo=dt.UTC)
        ),
        "which is not trusted: certificate 'CN=Acme Models' is not valid at 2099-01-01 00:00 UTC",
    )


@FORMS
def test_an_unknown_format_version(
    sealed: SealFactory,
    owner: Identity,
    opened_parent: Path,
    plaintexts: list[bytes],
    archive: bool,
) -> None:
    path, key = sealed(archive=archive)
    resign(path, owner, canonical_json(manifest_doc(path) | {"format_version": 2}))
    refuse_everything(
        path,
        key,
        owner,
        opened_parent,
        plaintexts,
        PackageError,
        "manifest.json: unknown format version 2; this modelseal reads version 1",
    )


@FORMS
def test_a_non_canonical_manifest_even_when_signed(
    sealed: SealFactory,
    owner: Identity,
    opened_parent: Path,
    plaintexts: list[bytes],
    archive: bool,
) -> None:
    path, key = sealed(archive=archive)
    resign(path, owner, json.dumps(manifest_doc(path), indent=2, sort_keys=True).encode())
    refuse_everything(
        path,
        key,
        owner,
        opened_parent,
        plaintexts,
        PackageError,
        "manifest.json is not in canonical JSON form (RFC 8785)",
    )


# --- keys ----------------------------------------------------------------------------------------


@FORMS
def test_a_wrong_data_key(
    sealed: SealFactory,
    opened_parent: Path,
    plaintexts: list[bytes],
    archive: bool,
) -> None:
    path, key = sealed(archive=archive)
    _, other_key = sealed(archive=archive)
    refuse_open(
        path,
        other_key,
        opened_parent,
        plaintexts,
        PackageError,
        f"wrong data key: this package was sealed with key {key.key_id}, "
        f"the key given is {other_key.key_id}",
    )
    with SealedPackage.open(path) as package:
        expect_error(
            PackageError, lambda: package.reader("model.onnx", other_key), "wrong data key"
        )


@FORMS
def test_a_key_with_the_right_id_but_wrong_bytes(
    sealed: SealFactory,
    opened_parent: Path,
    plaintexts: list[bytes],
    archive: bool,
) -> None:
    path, key = sealed(archive=archive)
    doc = json.loads(dump_data_key(key))
    doc["key"] = base64.b64encode(random_bytes(32, seed=6)).decode()
    forged = load_data_key(canonical_json(doc))
    assert forged.key_id == key.key_id and forged != key
    refuse_open(
        path,
        forged,
        opened_parent,
        plaintexts,
        IntegrityError,
        "payload/config.json, segment 0: failed authentication",
    )
    with SealedPackage.open(path) as package:
        reader = package.reader("weights/big.bin", forged)
        expect_error(IntegrityError, lambda: reader.read(2 * MiB, 1), f"{BIG}, segment 2")


# --- unsafe archives and directories -------------------------------------------------------------


def _member(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    if kind == tarfile.REGTYPE:
        info.size = 4
        return info, b"evil"
    return info, b""


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (
            _member("../evil", tarfile.REGTYPE),
            "archive entry '../evil' has an absolute or '..' path",
        ),
        (
            _member("payload/../../evil", tarfile.REGTYPE),
            "archive entry 'payload/../../evil' has an absolute or '..' path",
        ),
        (
            _member("/tmp/evil", tarfile.REGTYPE),
            "archive entry '/tmp/evil' has an absolute or '..' path",
        ),
        (
            _member("payload/link", tarfile.SYMTYPE, "/etc/shadow"),
            "archive entry 'payload/link' is a link; only plain files are allowed",
        ),
        (
            _member("payload/hard", tarfile.LNKTYPE, "payload/model.onnx"),
            "archive entry 'payload/hard' is a link; only plain files are allowed",
        ),
        (
            _member("payload/model.onnx", tarfile.REGTYPE),
            "archive entry 'payload/model.onnx' appears twice",
        ),
    ],
    ids=["dotdot", "inner-dotdot", "absolute", "symlink", "hardlink", "duplicate"],
)
def test_an_unsafe_archive_entry_is_refused_by_name(
    sealed: SealFactory,
    owner: Identity,
    opened_parent: Path,
    plaintexts: list[bytes],
    member: tuple[tarfile.TarInfo, bytes],
    message: str,
) -> None:
    path, key = sealed(archive=True)
    info, data = member
    with tarfile.open(path) as tar:
        names = [m.name for m in tar.getmembers()]
    entries = [(name, entry_bytes(path, name)) for name in names]
    write_archive(path, entries)
    with tarfile.open(path, "a:") as tar:  # appended after every genuine entry
        tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    refuse_everything(path, key, owner, opened_parent, plaintexts, PackageError, message)
    assert not (opened_parent.parent / "evil").exists()


@pytest.mark.parametrize("target", ["payload/model.onnx", "outside"])
def test_a_sealed_directory_with_a_symlink_is_refused(
    sealed: SealFactory,
    owner: Identity,
    opened_parent: Path,
    plaintexts: list[bytes],
    tmp_path: Path,
    target: str,
) -> None:
    path, key = sealed()
    (tmp_path / "outside").write_bytes(b"x")
    link = path / "payload" / "weights" / "link.bin"
    link.symlink_to(path / target if target != "outside" else tmp_path / "outside")
    refuse_everything(
        path,
        key,
        owner,
        opened_parent,
        plaintexts,
        PackageError,
        "payload/weights/link.bin is a symbolic link; sealed packages hold only plain files",
    )


def test_a_payload_file_replaced_by_a_symlink_is_refused(
    sealed: SealFactory, owner: Identity, opened_parent: Path, plaintexts: list[bytes]
) -> None:
    path, key = sealed()
    other, _ = sealed()
    (path / "payload" / "model.onnx").unlink()
    (path / "payload" / "model.onnx").symlink_to(other / "payload" / "model.onnx")
    refuse_everything(
        path,
        key,
        owner,
        opened_parent,
        plaintexts,
        PackageError,
        "payload/model.onnx is a symbolic link",
    )


# --- what sealing refuses ------------------------------------------------------------------------


def _seal(owner: Identity, model: Path, out: Path, **options: object) -> None:
    seal(
        model,
        out,
        name="iris",
        version=1,
        signing_key=owner.key,
        certificates=options.pop("certificates", [owner.cert]),  # type: ignore[arg-type]
        data_key_out=options.pop("data_key_out", out.parent / "data.key"),  # type: ignore[arg-type]
        **options,  # type: ignore[arg-type]
    )


def test_a_model_with_a_symlink_is_refused(
    tmp_path: Path, owner: Identity, model_dir: Path
) -> None:
    (model_dir / "weights" / "alias.bin").symlink_to(model_dir / "weights" / "big.bin")
    (tmp_path / "pkgs").mkdir()
    expect_error(
        PackageError,
        lambda: _seal(owner, model_dir, tmp_path / "pkgs" / "out"),
        f"{model_dir}: weights/alias.bin is a symbolic link; copy the file it points to",
    )
    assert list((tmp_path / "pkgs").iterdir()) == []


def _dir_with_fifo(model: Path) -> None:
    model.mkdir()
    (model / "weights.bin").write_bytes(b"w" * 100)
    os.mkfifo(model / "pipe")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (Path.mkdir, "holds no files to seal"),
        (lambda m: None, "does not exist"),
        (os.mkfifo, "is neither a file nor a directory"),
        (_dir_with_fifo, "pipe is not a regular file"),
    ],
    ids=["empty-dir", "missing", "fifo", "fifo-inside"],
)
def test_a_model_that_cannot_be_sealed(
    tmp_path: Path, owner: Identity, make: Callable[[Path], object], message: str
) -> None:
    model = tmp_path / "model"
    make(model)
    (tmp_path / "pkgs").mkdir()
    expect_error(
        PackageError, lambda: _seal(owner, model, tmp_path / "pkgs" / "out"), f"{model}", message
    )
    assert list((tmp_path / "pkgs").iterdir()) == []


@FORMS
def test_seal_refuses_an_existing_output_and_leaves_it_untouched(
    tmp_path: Path, owner: Identity, model_dir: Path, archive: bool
) -> None:
    out = tmp_path / "pkgs" / "existing"
    out.mkdir(parents=True)
    (out / "keep.txt").write_text("mine")
    expect_error(
        PackageError,
        lambda: _seal(owner, model_dir, out, archive=archive),
        f"{out} already exists; nothing was written",
    )
    assert read_tree(out) == {"keep.txt": b"mine"}
    assert sorted(p.name for p in out.parent.iterdir()) == ["existing"]


def test_seal_refuses_an_output_inside_the_model(owner: Identity, model_dir: Path) -> None:
    before = read_tree(model_dir)
    for out in (model_dir / "sealed", model_dir / "weights" / "sealed.tar"):
        expect_error(
            PackageError,
            lambda out=out: seal(  # type: ignore[misc]
                model_dir,
                out,
                name="iris",
                version=1,
                signing_key=owner.key,
                certificates=[owner.cert],
                data_key=DataKey.generate(),
                archive=out.suffix == ".tar",
            ),
            f"{out} is inside the model being sealed",
        )
        assert read_tree(model_dir) == before
        assert sorted(p.name for p in model_dir.iterdir()) == [
            "config.json",
            "empty.txt",
            "model.onnx",
            "weights",
        ]


def test_seal_refuses_an_existing_data_key_file(
    tmp_path: Path, owner: Identity, model_dir: Path
) -> None:
    (tmp_path / "pkgs").mkdir()
    key_file = tmp_path / "pkgs" / "data.key"
    key_file.write_bytes(b"an older key, not to be lost")
    expect_error(
        PackageError,
        lambda: _seal(owner, model_dir, tmp_path / "pkgs" / "out", data_key_out=key_file),
        f"{key_file} already exists; refusing to overwrite a key file",
    )
    assert key_file.read_bytes() == b"an older key, not to be lost"
    assert sorted(p.name for p in key_file.parent.iterdir()) == ["data.key"]


@FORMS
def test_a_seal_that_fails_late_leaves_nothing(
    tmp_path: Path,
    owner: Identity,
    attacker: Identity,
    model_dir: Path,
    plaintexts: list[bytes],
    archive: bool,
) -> None:
    """Signing fails after every file was encrypted: the partial package and key file go away."""
    parent = tmp_path / "pkgs"
    parent.mkdir()
    write_archive(parent / "neighbour.tar", [("x", random_bytes(MiB, seed=7))])
    expect_error(
        PackageError,
        lambda: _seal(
            owner,
            model_dir,
            parent / ("out.tar" if archive else "out"),
            archive=archive,
            certificates=[attacker.cert],
            data_key_out=parent / "data.key",
        ),
        "the signing certificate does not belong to the signing key",
    )
    assert_failed_cleanly(parent, plaintexts, "neighbour.tar")


# --- what opening refuses ------------------------------------------------------------------------


def test_open_refuses_an_existing_output_and_leaves_it_untouched(
    sealed: SealFactory, opened_parent: Path, plaintexts: list[bytes]
) -> None:
    path, key = sealed()
    out = opened_parent / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    expect_error(
        PackageError,
        lambda: open_package(path, key, out),
        f"{out} already exists; nothing was written",
    )
    assert read_tree(out) == {"keep.txt": b"mine"}
    assert_failed_cleanly(opened_parent, plaintexts, "out")


def test_open_creates_missing_parents_but_refuses_a_file_as_parent(
    sealed: SealFactory, opened_parent: Path, model_dir: Path
) -> None:
    path, key = sealed()
    (opened_parent / "file").write_bytes(b"not a directory")
    expect_error(
        PackageError,
        lambda: open_package(path, key, opened_parent / "file" / "out"),
        f"{opened_parent / 'file'} is not a directory",
    )
    assert sorted(p.name for p in opened_parent.iterdir()) == ["file"]
    open_package(path, key, opened_parent / "new" / "deeper" / "out")
    assert read_tree(opened_parent / "new" / "deeper" / "out") == read_tree(model_dir)


@FORMS
@pytest.mark.parametrize("change", ["drop a file", "add a file", "rename the model"])
def test_a_re_signed_file_set_fails_decryption_even_without_trust(
    sealed: SealFactory,
    attacker: Identity,
    opened_parent: Path,
    plaintexts: list[bytes],
    archive: bool,
    change: str,
) -> None:
    """Without --trust anyone may re-sign; the file set and name are still bound to the key."""
    path, key = sealed(archive=archive)
    doc = manifest_doc(path)
    files = doc["files"]
    assert isinstance(files, list)
    replacements: dict[str, bytes | None] = {}
    if change == "drop a file":
        dropped = files.pop(0)
        replacements[f"payload/{dropped['path']}"] = None
    elif change == "add a file":
        extra = dict(files[0], path="zz-extra.bin")
        files.append(extra)
        replacements["payload/zz-extra.bin"] = entry_bytes(path, f"payload/{files[0]['path']}")
    else:
        doc["model"] = {**doc["model"], "name": "renamed"}  # type: ignore[dict-item]
    replace_entries(path, replacements)
    resign(path, attacker, canonical_json(doc))
    SealedPackage.open(path).close()  # structurally fine and validly signed, by someone
    refuse_open(path, key, opened_parent, plaintexts, IntegrityError, "failed authentication")
