"""The model repository: ``<base_path>/<version>/``, plain or sealed, side by side.

A version directory (a positive integer name) holds one of:

* a plain model: ``*.onnx`` (plus any external data files), or OpenVINO IR ``*.xml`` + ``*.bin``;
* a sealed package directory: the version directory itself, with ``manifest.json``;
* one sealed package archive file (any name), optionally with ``license.jws`` beside it.

The license of a sealed version is the model entry's ``license`` file when set, else
``license.jws`` in the version directory (archive form), else ``license.jws`` in the base path
(beside the version directories; needed when the version directory *is* the package, since
nothing may be added inside a package).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from modelseal.package.manifest import MANIFEST_NAME
from modelseal.serving.config import ModelConfig
from modelseal.serving.errors import ConfigError

__all__ = ["LICENSE_NAME", "ModelFormat", "VersionSource", "find_model_file", "scan"]

LICENSE_NAME = "license.jws"
ModelFormat = Literal["onnx", "openvino"]


@dataclass(frozen=True)
class VersionSource:
    """Where one version of a model comes from."""

    name: str
    version: int
    path: Path
    """The version directory."""
    sealed: Path | None
    """The sealed package (directory or archive) when the version is sealed."""
    license: Path | None
    """The license file of a sealed version (it may not exist yet)."""


def _versions(base: Path, model: str) -> list[int]:
    try:
        entries = list(os.scandir(base))
    except FileNotFoundError:
        raise ConfigError(f"model {model}: base_path {base} does not exist") from None
    except NotADirectoryError:
        raise ConfigError(f"model {model}: base_path {base} is not a directory") from None
    return [
        int(entry.name)
        for entry in entries
        if entry.is_dir() and entry.name.isdigit() and int(entry.name) >= 1
    ]


def find_model_file(paths: list[str], where: str) -> tuple[str, ModelFormat]:
    """The model file among ``paths`` and its format: one ``.onnx``, or one ``.xml`` IR."""
    onnx = sorted(p for p in paths if p.endswith(".onnx"))
    xml = sorted(p for p in paths if p.endswith(".xml") and p[: -len(".xml")] + ".bin" in paths)
    if len(onnx) + len(xml) == 1:
        return (onnx[0], "onnx") if onnx else (xml[0], "openvino")
    for preferred, fmt in (("model.onnx", "onnx"), ("model.xml", "openvino")):
        if preferred in paths:
            return preferred, fmt  # type: ignore[return-value]
    if not onnx and not xml:
        raise ConfigError(f"{where} holds no model: expected a .onnx file or .xml + .bin (IR)")
    raise ConfigError(
        f"{where} holds several models ({', '.join(onnx + xml)}); name one model.onnx or model.xml"
    )


def _source(model: ModelConfig, version: int) -> VersionSource:
    path = model.base_path / str(version)
    beside = model.base_path / LICENSE_NAME
    if (path / MANIFEST_NAME).is_file():
        return VersionSource(model.name, version, path, path, model.license or beside)
    files = sorted(p for p in path.iterdir() if p.is_file() and p.name != LICENSE_NAME)
    plain = [p for p in files if p.suffix in (".onnx", ".xml", ".bin")]
    if plain or not files:
        return VersionSource(model.name, version, path, None, None)
    if len(files) > 1:
        raise ConfigError(
            f"{path} holds no model file and several other files; a sealed version holds one "
            "package archive (and optionally license.jws)"
        )
    own = path / LICENSE_NAME
    license_file = model.license or (own if own.exists() else beside)
    return VersionSource(model.name, version, path, files[0], license_file)


def scan(model: ModelConfig) -> list[VersionSource]:
    """The versions of ``model`` its version policy selects, lowest first."""
    available = _versions(model.base_path, model.name)
    chosen = model.version_policy.select(available)
    if not chosen:
        raise ConfigError(
            f"model {model.name}: no version directory under {model.base_path} matches its "
            "model_version_policy (version directories are named 1, 2, …)"
        )
    return [_source(model, version) for version in chosen]
