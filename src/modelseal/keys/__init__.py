"""The keystore: an owner's (or controller's, or device's) signing key, certificate and CSR.

See :mod:`modelseal.keys.keystore` for the directory layout.
"""

from modelseal.keys.keystore import (
    Keystore,
    KeystoreError,
    create_keystore,
    import_certificate,
)

__all__ = ["Keystore", "KeystoreError", "create_keystore", "import_certificate"]
