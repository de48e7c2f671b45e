"""``python -m modelseal`` is ``modelseal``."""

from modelseal.cli.main import main

main()
