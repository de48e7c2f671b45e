"""tritonclient's HTTP client, closed on the thread that made it.

The HTTP client runs on gevent, and its ``__del__`` closes it again: gevent refuses that from any
thread other than the one that made the client, and the error surfaces, as an unraisable
exception, in whatever test happens to be running when the garbage collector finds it. So every
test closes its client here, and drops it here.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def triton_http(url: str, **options: Any) -> Iterator[Any]:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url, **options)
    try:
        yield client
    finally:
        release_http(client)


def release_http(client: Any) -> None:
    """Close ``client`` and collect it on this thread (the caller holds no other reference)."""
    client.close()
    del client
    gc.collect()
