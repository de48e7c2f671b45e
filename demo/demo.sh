#!/usr/bin/env bash
# The modelseal demo: seal a real model (the PP-OCRv4 models shipped with rapidocr-onnxruntime),
# verify, inspect and open it, show that a tampered copy is refused, and run OCR on the result.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
WORK=demo-output
export MODELSEAL_DEMO_PASSPHRASE="demo passphrase, not a secret"

step() { printf '\n\033[1m==> %s\033[0m\n' "$1"; }
run() { printf '\033[2m$ %s\033[0m\n' "$*"; "$@"; }

rm -rf "$WORK" && mkdir -p "$WORK"
MODELS=$($BIN/python -c 'import pathlib, rapidocr_onnxruntime as r; print(pathlib.Path(r.__file__).parent / "models")')
mkdir "$WORK/ppocr-v4" && cp "$MODELS"/*.onnx "$WORK/ppocr-v4/"

step "1. The owner creates a keystore (Ed25519 key, self-signed certificate, CSR)"
run $BIN/modelseal keys create --name acme-models --subject "CN=Acme Models,O=Acme" \
    --out "$WORK/owner-keystore" --passphrase-env MODELSEAL_DEMO_PASSPHRASE

step "2. Seal the PP-OCRv4 models: a fresh data key, every file encrypted, the manifest signed"
ls -l "$WORK/ppocr-v4"
run $BIN/modelseal seal "$WORK/ppocr-v4" --keystore "$WORK/owner-keystore" --name pp-ocrv4 --version 1 \
    --out "$WORK/sealed/pp-ocrv4" --data-key-out "$WORK/pp-ocrv4.key" --passphrase-env MODELSEAL_DEMO_PASSPHRASE
run $BIN/modelseal seal "$WORK/ppocr-v4" --keystore "$WORK/owner-keystore" --name pp-ocrv4 --version 1 \
    --out "$WORK/sealed/pp-ocrv4.tar" --archive --data-key-out "$WORK/pp-ocrv4-archive.key" \
    --passphrase-env MODELSEAL_DEMO_PASSPHRASE -q
ls -lR "$WORK/sealed"

step "3. Anyone can verify the package without a key (signature, signer, digests)"
run $BIN/modelseal verify "$WORK/sealed/pp-ocrv4" --trust "$WORK/owner-keystore/certificate.pem"
run $BIN/modelseal verify "$WORK/sealed/pp-ocrv4.tar" --trust "$WORK/owner-keystore/certificate.pem"

step "4. Inspect the signed manifest"
run $BIN/modelseal inspect "$WORK/sealed/pp-ocrv4"

step "5. A tampered copy is refused (one byte flipped in a model file)"
cp -r "$WORK/sealed/pp-ocrv4" "$WORK/tampered"
$BIN/python -c 'import sys; p=sys.argv[1]; b=bytearray(open(p,"rb").read()); b[5000]^=1; open(p,"wb").write(b)' \
    "$WORK/tampered/payload/ch_PP-OCRv4_rec_infer.onnx"
if run $BIN/modelseal verify "$WORK/tampered" --trust "$WORK/owner-keystore/certificate.pem"; then
    echo "tampering was not detected" >&2; exit 1
fi
if run $BIN/modelseal open "$WORK/tampered" --data-key "$WORK/pp-ocrv4.key" --out "$WORK/tampered-open"; then
    echo "tampering was not detected" >&2; exit 1
fi
test ! -e "$WORK/tampered-open" && echo "    nothing decrypted was left behind"

step "6. The owner opens the package with the data key"
run $BIN/modelseal open "$WORK/sealed/pp-ocrv4" --data-key "$WORK/pp-ocrv4.key" --out "$WORK/opened" \
    --trust "$WORK/owner-keystore/certificate.pem"
run cmp "$WORK/opened/ch_PP-OCRv4_rec_infer.onnx" "$WORK/ppocr-v4/ch_PP-OCRv4_rec_infer.onnx"
echo "    the opened files are byte-identical to the originals"

step "7. The opened models still work: OCR on a generated image"
echo "  with the original models:"
$BIN/python demo/ocr.py "$WORK/ppocr-v4" "Sealed with modelseal"
echo "  with the models opened from the sealed package:"
$BIN/python demo/ocr.py "$WORK/opened" "Sealed with modelseal"

step "Done. Everything is in $WORK/"
