"""Recognise text in a generated image with PP-OCRv4 models from a directory (demo helper).

Usage: python demo/ocr.py MODEL_DIR TEXT
Draws TEXT into an image, runs RapidOCR with the det/cls/rec models found in MODEL_DIR, and prints
what it read. ``render`` draws the image; demo/infer.py uses it for the same OCR over KServe v2.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont


def render(text: str) -> Image.Image:
    """One line of black text on white, large enough for the PP-OCRv4 models."""
    image = Image.new("RGB", (40 + 26 * len(text), 90), "white")
    ImageDraw.Draw(image).text((20, 20), text, fill="black", font=ImageFont.load_default(size=44))
    return image


def _find(models: Path, pattern: str) -> str:
    return str(next(models.glob(pattern)))


def main(models: Path, text: str) -> None:
    from rapidocr_onnxruntime import RapidOCR

    with tempfile.TemporaryDirectory() as tmp:
        picture = Path(tmp, "text.png")
        render(text).save(picture)
        engine = RapidOCR(
            det_model_path=_find(models, "*det*.onnx"),
            cls_model_path=_find(models, "*cls*.onnx"),
            rec_model_path=_find(models, "*rec*.onnx"),
        )
        result, _ = engine(str(picture))
    for _box, found, score in result or []:
        print(f"    read {found!r} (confidence {float(score):.3f})")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
