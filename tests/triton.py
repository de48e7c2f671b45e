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


def infer_http(client: Any, model: str, array: Any, *, binary: bool) -> dict[str, Any]:
    """One FP32 inference of ``model`` over REST, every output by name (binary or JSON both
    ways), with the input and output names read from the model's metadata."""
    import tritonclient.http as httpclient

    meta = client.get_model_metadata(model)
    tensor = httpclient.InferInput(meta["inputs"][0]["name"], list(array.shape), "FP32")
    tensor.set_data_from_numpy(array, binary_data=binary)
    outputs = [
        httpclient.InferRequestedOutput(o["name"], binary_data=binary) for o in meta["outputs"]
    ]
    result = client.infer(model, [tensor], outputs=outputs)
    return {o["name"]: result.as_numpy(o["name"]) for o in meta["outputs"]}


def infer_grpc(client: Any, model: str, array: Any) -> dict[str, Any]:
    """The same over gRPC (every output, raw contents both ways)."""
    import tritonclient.grpc as grpcclient

    meta = client.get_model_metadata(model, as_json=True)
    tensor = grpcclient.InferInput(meta["inputs"][0]["name"], list(array.shape), "FP32")
    tensor.set_data_from_numpy(array)
    result = client.infer(model, [tensor])
    return {o["name"]: result.as_numpy(o["name"]) for o in meta["outputs"]}
