"""The demo's inference client: PP-OCRv4 through `modelseal serve` with tritonclient (KServe v2).

Usage:
  python demo/infer.py ocr HOST:PORT TEXT           render TEXT, detect it, recognise it; exit 1 if
                                                    what was read differs from TEXT
  python demo/infer.py until-refused HOST:PORT TEXT send recognition requests until one is refused
  python demo/infer.py wait-unready HOST:PORT MODEL TIMEOUT
                                                    wait until MODEL is not ready, then show the
                                                    answer an inference gets (the wait counts from
                                                    the Unix time in DEMO_SINCE, default now)

The client never sees a model file: the server decrypted the sealed models in its memory. Only
the character dictionary of the recognition model comes from rapidocr-onnxruntime's own copy
(it is the model's ONNX metadata, which KServe v2 does not serve).
"""

from __future__ import annotations

import functools
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import tritonclient.http as httpclient
from ocr import render
from tritonclient.utils import InferenceServerException

DET, REC = "ppocr-det", "ppocr-rec"
REC_HEIGHT, REC_MIN_WIDTH = 48, 320

Array = npt.NDArray[Any]


@functools.cache
def _dictionary() -> list[str]:
    """The recognition model's characters, from the ONNX metadata of rapidocr's copy."""
    import onnxruntime
    import rapidocr_onnxruntime

    models = Path(rapidocr_onnxruntime.__file__).parent / "models"
    session = onnxruntime.InferenceSession(str(next(models.glob("*rec*.onnx"))))
    characters: str = session.get_modelmeta().custom_metadata_map["character"]
    return characters.splitlines()


def _infer(client: httpclient.InferenceServerClient, model: str, tensor: Array) -> Array:
    meta = client.get_model_metadata(model)
    request = httpclient.InferInput(meta["inputs"][0]["name"], list(tensor.shape), "FP32")
    request.set_data_from_numpy(tensor.astype(np.float32), binary_data=True)
    output = meta["outputs"][0]["name"]
    result = client.infer(model, [request], outputs=[httpclient.InferRequestedOutput(output)])
    answer: Array = result.as_numpy(output)
    return answer


def detect(client: httpclient.InferenceServerClient, image: Array) -> Array:
    """The text boxes (4 points each) the detection model finds in ``image`` (BGR)."""
    from rapidocr_onnxruntime.ch_ppocr_det.utils import DBPostProcess, DetPreProcess

    tensor = DetPreProcess(limit_side_len=960, limit_type="max")(image)
    heatmap = _infer(client, DET, tensor)
    post = DBPostProcess(thresh=0.3, box_thresh=0.5, unclip_ratio=1.6, use_dilation=True)
    boxes, _scores = post(heatmap, (image.shape[0], image.shape[1]))
    return np.asarray(boxes)


def rec_tensor(line: Array) -> Array:
    """A text line (BGR) as the recognition model's input: height 48, values in [-1, 1]."""
    import cv2

    height, width = line.shape[:2]
    resized_width = max(1, round(REC_HEIGHT * width / height))
    resized = cv2.resize(line, (resized_width, REC_HEIGHT)).astype(np.float32)
    chw = (resized.transpose(2, 0, 1) / 255.0 - 0.5) / 0.5
    padded = np.zeros((3, REC_HEIGHT, max(REC_MIN_WIDTH, resized_width)), np.float32)
    padded[:, :, :resized_width] = chw
    return padded[np.newaxis]


def recognise(client: httpclient.InferenceServerClient, line: Array) -> tuple[str, float]:
    """The text in one line image and its confidence (greedy CTC decoding)."""
    from rapidocr_onnxruntime.ch_ppocr_rec.utils import CTCLabelDecode

    scores = _infer(client, REC, rec_tensor(line))
    ((text, confidence),) = CTCLabelDecode(character=_dictionary())(scores)
    return str(text), float(confidence)


def crop(image: Array, box: Array, margin: int = 4) -> Array:
    """The axis-aligned crop around a detected box."""
    x0, y0 = np.floor(box.min(axis=0)).astype(int) - margin
    x1, y1 = np.ceil(box.max(axis=0)).astype(int) + margin
    height, width = image.shape[:2]
    return image[max(0, y0) : min(height, y1), max(0, x0) : min(width, x1)]


def bgr(text: str) -> Array:
    return np.asarray(render(text))[:, :, ::-1].copy()


def ocr(url: str, text: str) -> int:
    image = bgr(text)
    with httpclient.InferenceServerClient(url) as client:
        boxes = detect(client, image)
        print(f"{DET}: {len(boxes)} text line(s) in the {image.shape[1]}x{image.shape[0]} image")
        found = []
        for box in sorted(boxes, key=lambda b: float(b[:, 1].min())):
            read, confidence = recognise(client, crop(image, box))
            print(f"{REC}: read {read!r} (confidence {confidence:.3f})")
            found.append(read)
    same = " ".join(found) == text
    print("the same text as rendered" if same else f"expected {text!r}")
    return 0 if same else 1


def _refusal(error: InferenceServerException) -> str:
    return f"HTTP {error.status()}: {error.message()}"


def until_refused(url: str, text: str, limit: int = 1000) -> int:
    tensor = rec_tensor(bgr(text))
    with httpclient.InferenceServerClient(url) as client:
        for number in range(1, limit + 1):
            try:
                _infer(client, REC, tensor)
            except InferenceServerException as error:
                print(f"inferences 1-{number - 1} answered; inference {number} refused:")
                print(_refusal(error))
                return 0 if error.status() == "429" else 1
    print(f"{limit} inferences answered, none refused")
    return 1


def wait_unready(url: str, model: str, timeout: float, since: float) -> int:
    with httpclient.InferenceServerClient(url) as client:
        while client.is_model_ready(model):
            if time.time() - since > timeout:
                print(f"{model} is still ready after {timeout:.0f} s")
                return 1
            time.sleep(0.1)
        waited = time.time() - since
        try:
            _infer(client, model, rec_tensor(bgr("x")))
        except InferenceServerException as error:
            print(f"unloaded {waited:.1f} s after the revocation; an inference now gets")
            print(_refusal(error))
            return 0 if error.status() == "503" and "REVOKED" in str(error.message()) else 1
    print(f"{model} is not ready but answered an inference")
    return 1


def main(argv: list[str]) -> int:
    match argv:
        case ["ocr", url, text]:
            return ocr(url, text)
        case ["until-refused", url, text]:
            return until_refused(url, text)
        case ["wait-unready", url, model, timeout]:
            since = float(os.environ.get("DEMO_SINCE") or time.time())
            return wait_unready(url, model, float(timeout), since)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
