"""The committed gRPC modules are exactly what ``make proto`` generates, and the messages keep
the KServe v2 field numbers that tritonclient uses."""

from __future__ import annotations

from pathlib import Path

from google.protobuf import descriptor_pb2
from grpc_tools import protoc

import modelseal
from modelseal.serving.grpc_server import METHODS, SERVICE

SOURCE = Path(modelseal.__file__).parent / "serving" / "kserve_v2.proto"
GENERATED = Path(modelseal.__file__).parent / "_generated"
FILES = ("kserve_v2_pb2.py", "kserve_v2_pb2.pyi")


def _protoc(*args: str) -> None:
    include = str(Path(protoc.__file__).parent / "_proto")
    assert protoc.main(["protoc", f"-I{SOURCE.parent}", f"-I{include}", *args, str(SOURCE)]) == 0


def test_committed_modules_are_regenerated_identically(tmp_path: Path) -> None:
    _protoc(f"--python_out={tmp_path}", f"--pyi_out={tmp_path}")
    for name in FILES:
        assert (GENERATED / name).read_text() == (tmp_path / name).read_text(), name


def _fields(descriptor: descriptor_pb2.DescriptorProto, prefix: str = "") -> dict[str, int]:
    out = {f"{prefix}{descriptor.name}.{f.name}": f.number for f in descriptor.field}
    for nested in descriptor.nested_type:
        if not nested.options.map_entry:
            out |= _fields(nested, f"{prefix}{descriptor.name}.")
    return out


def test_field_numbers_match_tritonclient(tmp_path: Path) -> None:
    """Same messages, same fields, same numbers (the package name differs on purpose: see the
    .proto; it never goes on the wire)."""
    _protoc(f"--descriptor_set_out={tmp_path / 'set.pb'}")
    ours = descriptor_pb2.FileDescriptorSet.FromString((tmp_path / "set.pb").read_bytes()).file[0]
    from tritonclient.grpc import service_pb2

    theirs = descriptor_pb2.FileDescriptorProto()
    service_pb2.DESCRIPTOR.CopyToProto(theirs)
    their_fields: dict[str, int] = {}
    for message in theirs.message_type:
        their_fields |= _fields(message)
    our_fields: dict[str, int] = {}
    for message in ours.message_type:
        our_fields |= _fields(message)
    assert len(our_fields) > 50
    assert {name: their_fields.get(name) for name in our_fields} == our_fields
    (service,) = ours.service
    assert ours.package == "modelseal.kserve.v2" and service.name == "GRPCInferenceService"
    assert f"{theirs.package}.{theirs.service[0].name}" == SERVICE  # the path clients call

    def short(name: str) -> str:
        return name.rpartition(".")[2]

    their_methods = {
        m.name: (short(m.input_type), short(m.output_type)) for m in theirs.service[0].method
    }
    for method in service.method:
        assert their_methods[method.name] == (short(method.input_type), short(method.output_type))
    assert {m.name for m in service.method} == set(METHODS)
