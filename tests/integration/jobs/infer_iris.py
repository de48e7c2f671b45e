"""A plain inference program, as a user would write it: it loads the iris ONNX model from a path
with onnxruntime and prints its prediction for three flowers as one JSON line.

    python infer_iris.py MODEL.onnx
"""

from __future__ import annotations

import json
import sys

FLOWERS = [[5.1, 3.5], [6.0, 0.0], [5.9, 3.0]]


def predict(model: str) -> dict[str, object]:
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: np.array(FLOWERS, dtype=np.float32)}
    labels, probabilities = session.run(None, feed)
    return {
        "labels": [int(label) for label in labels],
        "probabilities": [[round(p[c], 4) for c in sorted(p)] for p in probabilities],
    }


if __name__ == "__main__":
    print(json.dumps(predict(sys.argv[1])), flush=True)
