"""The vault: master key, model keys, licenses, device enrolment, key release, leases and audit."""

__all__: list[str] = []
