"""modelseal: seal, license and serve AI models on devices their owner does not control."""

from modelseal.errors import Error

__all__ = ["Error", "__version__"]

__version__ = "0.1.0"
