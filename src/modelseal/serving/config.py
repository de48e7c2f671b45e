"""The model server's ``config.json``, in the OpenVINO Model Server format.

::

    {"model_config_list": [{"config": {
         "name": "ocr", "base_path": "models/ocr",
         "model_version_policy": {"latest": {"num_versions": 1}},
         "target_device": "CPU", "nireq": 2, "plugin_config": {}, "backend": "onnxruntime",
         "license": "licenses/ocr.jws"}}],
     "monitoring": {"metrics": {"enable": true}}}

``backend`` and ``license`` are modelseal's additions. Relative paths are relative to the directory
of ``config.json`` (as in OVMS). Every error names the field, e.g.
``model_config_list[0].config.base_path: field required``. OVMS fields that change nothing here
(``batch_size``, ``shape``, ``layout``, …) are accepted and logged as ignored; anything else
unknown is refused, so a typo is not silently dropped.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from modelseal.serving.errors import ConfigError

__all__ = [
    "ModelConfig",
    "ServerConfig",
    "VersionPolicy",
    "load_config",
    "parse_config",
    "single_model_config",
]

_log = logging.getLogger(__name__)
_NAME = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
_NAME_RULE = "use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"
_OVMS_IGNORED = frozenset(
    {
        "batch_size",
        "shape",
        "layout",
        "stateful",
        "idle_sequence_cleanup",
        "max_sequence_number",
        "low_latency_transformation",
        "allow_cache",
        "graph_path",
    }
)
_STRICT = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class VersionPolicy:
    """Which version directories to serve: ``latest`` N (default 1), ``all``, or ``specific``."""

    kind: Literal["latest", "all", "specific"] = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def select(self, available: Sequence[int]) -> list[int]:
        ordered = sorted(set(available))
        if self.kind == "all":
            return ordered
        if self.kind == "latest":
            return ordered[-self.num_versions :]
        return [v for v in ordered if v in self.versions]


@dataclass(frozen=True)
class ModelConfig:
    """One served model: its name, where its versions live, and how to load them."""

    name: str
    base_path: Path
    version_policy: VersionPolicy = field(default_factory=VersionPolicy)
    target_device: str = "CPU"
    nireq: int | None = None
    plugin_config: Mapping[str, Any] = field(default_factory=dict)
    backend: Literal["onnxruntime", "openvino"] | None = None
    """None: ONNX Runtime for ONNX models, OpenVINO for OpenVINO IR."""
    license: Path | None = None
    """The license of every sealed version of this model; None: ``license.jws`` beside it."""


@dataclass(frozen=True)
class ServerConfig:
    models: tuple[ModelConfig, ...]
    metrics_enabled: bool | None = None
    """``monitoring.metrics.enable``; None when the file does not say."""


# --- the schema ----------------------------------------------------------------------------------


class _Latest(BaseModel):
    model_config = _STRICT
    num_versions: int = Field(default=1, ge=1)


class _All(BaseModel):
    model_config = _STRICT


class _Specific(BaseModel):
    model_config = _STRICT
    versions: list[int] = Field(min_length=1)

    @field_validator("versions")
    @classmethod
    def _positive(cls, versions: list[int]) -> list[int]:
        if any(v < 1 for v in versions):
            raise ValueError("versions are integers ≥ 1")
        return versions


class _Policy(BaseModel):
    model_config = _STRICT
    latest: _Latest | None = None
    all: _All | None = None
    specific: _Specific | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> _Policy:
        chosen = [k for k in ("latest", "all", "specific") if getattr(self, k) is not None]
        if len(chosen) != 1:
            raise ValueError("give exactly one of latest, all, specific")
        return self

    def policy(self) -> VersionPolicy:
        if self.latest is not None:
            return VersionPolicy("latest", num_versions=self.latest.num_versions)
        if self.specific is not None:
            return VersionPolicy("specific", versions=tuple(sorted(set(self.specific.versions))))
        return VersionPolicy("all")


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    name: str
    base_path: str = Field(min_length=1)
    model_version_policy: _Policy | None = None
    target_device: str = Field(default="CPU", min_length=1)
    nireq: int | None = Field(default=None, ge=1)
    plugin_config: dict[str, str | int | float | bool] = Field(default_factory=dict)
    backend: Literal["onnxruntime", "openvino"] | None = None
    license: str | None = Field(default=None, min_length=1)

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not _NAME.match(name):
            raise ValueError(_NAME_RULE)
        return name

    @model_validator(mode="after")
    def _extras(self) -> _Model:
        unknown = sorted(set(self.model_extra or {}) - _OVMS_IGNORED)
        if unknown:
            raise ValueError(f"unknown field {unknown[0]!r}")
        return self


class _Entry(BaseModel):
    model_config = _STRICT
    config: _Model


class _Metrics(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    enable: bool = False


class _Monitoring(BaseModel):
    model_config = _STRICT
    metrics: _Metrics = Field(default_factory=_Metrics)


class _Document(BaseModel):
    model_config = _STRICT
    model_config_list: list[_Entry]
    monitoring: _Monitoring | None = None


def _where(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "the document"


def _first_error(exc: ValidationError, source: str) -> ConfigError:
    error = exc.errors()[0]
    loc = tuple(p for p in error["loc"] if not str(p).startswith(("function-", "literal[")))
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "missing":
        message = "field required"
    elif error["type"] == "extra_forbidden":
        message = "unknown field"
    more = len(exc.errors()) - 1
    return ConfigError(
        f"{source}: {_where(loc)}: {message}" + (f" (and {more} more problems)" if more else "")
    )


def parse_config(doc: Any, *, root: Path, source: str = "config.json") -> ServerConfig:
    """Check a parsed ``config.json``; relative paths are resolved against ``root``."""
    for unsupported in (
        "pipeline_config_list",
        "mediapipe_config_list",
        "custom_loader_config_list",
    ):
        if isinstance(doc, dict) and doc.get(unsupported):
            raise ConfigError(f"{source}: {unsupported} is not supported by modelseal serve")
    cleaned = (
        {k: v for k, v in doc.items() if not k.endswith("_config_list") or k == "model_config_list"}
        if isinstance(doc, dict)
        else doc
    )
    try:
        parsed = _Document.model_validate(cleaned)
    except ValidationError as exc:
        raise _first_error(exc, source) from None
    models: list[ModelConfig] = []
    seen: set[str] = set()
    for index, entry in enumerate(parsed.model_config_list):
        model = entry.config
        if model.name in seen:
            raise ConfigError(
                f"{source}: model_config_list[{index}].config.name: {model.name!r} is used twice"
            )
        seen.add(model.name)
        for ignored in sorted(model.model_extra or {}):
            _log.warning(
                "%s: model %s: %s is ignored by modelseal serve", source, model.name, ignored
            )
        models.append(
            ModelConfig(
                name=model.name,
                base_path=root / model.base_path,
                version_policy=model.model_version_policy.policy()
                if model.model_version_policy
                else VersionPolicy(),
                target_device=model.target_device,
                nireq=model.nireq,
                plugin_config=dict(model.plugin_config),
                backend=model.backend,
                license=root / model.license if model.license else None,
            )
        )
    if not models:
        raise ConfigError(f"{source}: model_config_list is empty; list at least one model")
    metrics = parsed.monitoring.metrics.enable if parsed.monitoring else None
    return ServerConfig(tuple(models), metrics)


def load_config(path: Path) -> ServerConfig:
    """Read and check ``config.json``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} cannot be read: {exc}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    return parse_config(doc, root=path.resolve().parent, source=str(path))


def single_model_config(
    name: str,
    base_path: Path,
    *,
    license: Path | None = None,
    backend: Literal["onnxruntime", "openvino"] | None = None,
) -> ServerConfig:
    """``--model-name N --model-path PATH``: one model, latest version, like OVMS."""
    if not _NAME.match(name):
        raise ConfigError(f"model name {name!r} is not allowed: {_NAME_RULE}")
    return ServerConfig((ModelConfig(name, base_path, license=license, backend=backend),))
