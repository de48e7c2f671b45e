"""An unmodified-style inference program for the tests: it knows only file paths.

    python infer.py onnx MODEL.onnx           -> JSON of the iris model's outputs on fixed inputs
    python infer.py ocr DET.onnx REC.onnx PNG -> JSON of the texts RapidOCR reads in PNG

Several jobs joined by ``+`` run in one process, one JSON line each.
"""

from __future__ import annotations

import json
import sys


def onnx(model: str) -> object:
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    feed = {
        session.get_inputs()[0].name: np.array(
            [[5.1, 3.5], [6.7, 3.0], [5.9, 3.0]], dtype=np.float32
        )
    }
    outputs = session.run(None, feed)
    return [o.tolist() if hasattr(o, "tolist") else [sorted(d.items()) for d in o] for o in outputs]


def ocr(det: str, rec: str, image: str) -> object:
    from rapidocr_onnxruntime import RapidOCR

    engine = RapidOCR(det_model_path=det, rec_model_path=rec, use_cls=False)
    result, _ = engine(image)
    return [[text, round(float(score), 4)] for _box, text, score in result or []]


if __name__ == "__main__":
    jobs: list[list[str]] = [[]]
    for arg in sys.argv[1:]:
        if arg == "+":
            jobs.append([])
        else:
            jobs[-1].append(arg)
    for task, *paths in jobs:
        print(json.dumps(onnx(*paths) if task == "onnx" else ocr(*paths)), flush=True)
