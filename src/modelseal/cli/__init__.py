"""The ``modelseal`` command line: thin commands over the library."""

from modelseal.cli.main import main

__all__ = ["main"]
