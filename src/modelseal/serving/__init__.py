"""The KServe v2 model server for plain and sealed models (see docs/serving.md).

Importing this package stays light (no numpy, backends, gRPC or web framework): the server
itself is :class:`modelseal.serving.server.ModelServer`, the protocol-free core
:class:`modelseal.serving.dataplane.DataPlane`, the model lifecycle
:class:`modelseal.serving.models.ModelManager`. Nothing here imports the vault's service,
database or API: the server reaches the vault only through the agent, over HTTP.
"""

from modelseal.serving.config import (
    ModelConfig,
    ServerConfig,
    VersionPolicy,
    load_config,
    parse_config,
    single_model_config,
)
from modelseal.serving.errors import (
    STATUS,
    ConfigError,
    InternalServerError,
    InvalidRequestError,
    ModelNotFoundError,
    ModelUnavailableError,
    PayloadTooLargeError,
    ServingError,
    Status,
    TooManyInferencesError,
)
from modelseal.serving.settings import ServeSettings

__all__ = [
    "STATUS",
    "ConfigError",
    "InternalServerError",
    "InvalidRequestError",
    "ModelConfig",
    "ModelNotFoundError",
    "ModelUnavailableError",
    "PayloadTooLargeError",
    "ServeSettings",
    "ServerConfig",
    "ServingError",
    "Status",
    "TooManyInferencesError",
    "VersionPolicy",
    "load_config",
    "parse_config",
    "single_model_config",
]
