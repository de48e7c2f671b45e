#!/usr/bin/env bash
# The modelseal demo: the five phases of a protected model's life, with three separate homes on
# this machine (owner, controller, device) talking over loopback only.
#   1. Publish            owner: keystore, seal the PP-OCRv4 det + rec models, verify
#   2. Set up the vault   controller: vault serve (SQLite, software master key), register models
#   3. Request access     controller: customer, one-time enrolment token for the device
#   4. Provision          device: enrol (its key is made there); controller: licenses with limits
#   5. Load and infer     device: modelseal serve, OCR through tritonclient, limits, revocation
# Everything it starts is stopped on exit; everything it writes is in demo-output/.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
WORK=demo-output
CLIENT=../../demo/infer.py    # the inference client, as seen from a home in $WORK
TEXT="Sealed with modelseal"
export MODELSEAL_OWNER_PASSPHRASE="owner demo passphrase, not a secret"
export MODELSEAL_VAULT_PASSPHRASE="vault demo passphrase, not a secret"

bold() { printf '\n\033[1m%s\033[0m\n' "$1"; }
note() { printf '  %s\n' "$*"; }
quoted() { # the command line as one would type it
    local arg out=""
    for arg in "$@"; do
        if [[ -z $arg || $arg =~ [[:space:]\"\'\$\&\;\|\<\>\(\)\*] ]]; then out+="\"$arg\" "; else out+="$arg "; fi
    done
    printf '%s' "${out% }"
}
indent() { if [ -n "${SHOW:-}" ]; then sed -n "1,${SHOW}p"; else cat; fi | sed 's/^/      /'; }
enter() { # enter ROLE: go to ROLE's home and drop the other roles' secrets (inside a subshell)
    cd "$WORK/$1"
    [ "$1" = owner ] || unset MODELSEAL_OWNER_PASSPHRASE
    [ "$1" = controller ] || unset MODELSEAL_VAULT_PASSPHRASE MODELSEAL_VAULT MODELSEAL_ADMIN
}
in_home() { local role=$1; shift; (enter "$role" && "$@"); }
start() { # start ROLE LOG CMD...: show CMD, run it in the background in ROLE's home; pid in $PID
    local role=$1 log=$2; shift 2
    BG=1 prompt "$role" "$@"
    (enter "$role" && exec "$@") >"$log" 2>&1 &    # exec: $! is the command itself
    PID=$!
    PIDS+=("$PID")
    LOG=$log
}
prompt() { printf '\033[2m  %-10s $ %s%s\033[0m\n' "$1" "$(quoted "${@:2}")" "${BG:+ &}"; }
as() { # as ROLE CMD...: show CMD, run it in ROLE's home, show its output indented (SHOW=N lines)
    prompt "$@"
    in_home "$@" 2>&1 | indent
}
refused() { # refused ROLE CMD...: like `as`, but CMD must fail
    if as "$@"; then echo "    expected a refusal, but the command succeeded" >&2; exit 1; fi
}
free_port() { python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_until() { # wait_until WHAT PID SECONDS CMD...: poll CMD until it succeeds while PID lives
    local what=$1 pid=$2 deadline=$((SECONDS + $3)); shift 3
    until "$@" >/dev/null 2>&1; do
        kill -0 "$pid" 2>/dev/null || { echo "    $what exited; its log:" >&2; cat "$LOG" >&2; exit 1; }
        [ $SECONDS -lt "$deadline" ] || { echo "    $what is not up after $deadline s" >&2; exit 1; }
        sleep 0.2
    done
}

# Background processes: stopped on any exit, first politely (SIGTERM), then not.
PIDS=() PID="" LOG=""
ours() { [ "$(ps -o ppid= -p "$1" 2>/dev/null | tr -d ' ')" = "$$" ]; }    # still our child?
cleanup() {
    local pid i
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do    # the server before the vault it renews with
        if ours "${PIDS[i]}"; then kill -TERM "${PIDS[i]}" 2>/dev/null || true; fi
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do ours "$pid" || break; sleep 0.2; done
        if ours "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM
stop() { # stop NAME PID: SIGTERM, wait, report the exit status
    local rc=0
    kill -TERM "$2"
    wait "$2" || rc=$?
    local kept=() pid
    for pid in "${PIDS[@]}"; do [ "$pid" = "$2" ] || kept+=("$pid"); done
    PIDS=("${kept[@]}")    # gone: never signal its pid again
    note "$1 stopped (pid $2, exit status $rc)"
    [ $rc -eq 0 ]
}

rm -rf "$WORK" && mkdir -p "$WORK"/{owner/models/det,owner/models/rec,controller,device/models}
MODELS=$(python -c 'import pathlib, rapidocr_onnxruntime as r; print(pathlib.Path(r.__file__).parent / "models")')
cp "$MODELS"/*det*.onnx "$WORK/owner/models/det/" && cp "$MODELS"/*rec*.onnx "$WORK/owner/models/rec/"
VAULT_PORT=$(free_port) REST_PORT=$(free_port) GRPC_PORT=$(free_port)
printf '\033[1mmodelseal demo\033[0m: three homes in %s/ (owner, controller, device), loopback only\n' "$WORK"

bold "1. Publish — the owner seals the PP-OCRv4 text detection and recognition models"
note "models from rapidocr-onnxruntime: $(cd "$WORK/owner/models" && du -h det/* rec/* | tr "\t\n" "  " | sed "s/ *$//")"
SHOW=1 as owner modelseal keys create --name acme-models --subject "CN=Acme Models,O=Acme" \
    --out keystore --passphrase-env MODELSEAL_OWNER_PASSPHRASE
note "the owner seals to the vault's import public key, so the controller creates the vault first:"
prompt controller modelseal vault init --home vault --port "$VAULT_PORT" --passphrase-env MODELSEAL_VAULT_PASSPHRASE
in_home controller modelseal vault init --home vault --port "$VAULT_PORT" \
    --passphrase-env MODELSEAL_VAULT_PASSPHRASE >"$WORK/controller/vault.env" 2>"$WORK/controller/init.log" ||
    { cat "$WORK/controller/init.log" >&2; exit 1; }
tail -n 1 "$WORK/controller/init.log" | indent
indent <"$WORK/controller/vault.env"
# shellcheck disable=SC1091
source "$WORK/controller/vault.env"    # MODELSEAL_VAULT, MODELSEAL_ADMIN: the controller's only
cp "$WORK/controller/vault/import-key.pem" "$WORK/owner/vault-import-key.pem"
note "controller → owner: vault/import-key.pem (a public key; also at GET /v1/import-key)"
for part in det rec; do
    SHOW=1 as owner modelseal seal "models/$part" --keystore keystore --name "ppocr-$part" --version 1 \
        --out "sealed/ppocr-$part" --vault-import-key vault-import-key.pem \
        --passphrase-env MODELSEAL_OWNER_PASSPHRASE
done
SHOW=1 as owner modelseal verify sealed/ppocr-rec --trust keystore/certificate.pem
note "a copy with one byte flipped is refused (and would never load):"
cp -r "$WORK/owner/sealed/ppocr-rec" "$WORK/owner/tampered"
python -c 'import sys; p = sys.argv[1]; b = bytearray(open(p, "rb").read()); b[5000] ^= 1; open(p, "wb").write(b)' \
    "$WORK/owner/tampered/payload/ch_PP-OCRv4_rec_infer.onnx"
SHOW=1 refused owner modelseal verify tampered --trust keystore/certificate.pem

bold "2. Set up the vault — the controller serves it and registers the sealed models"
start controller "$WORK/controller/vault.log" modelseal vault serve --home vault \
    --passphrase-env MODELSEAL_VAULT_PASSPHRASE
VAULT_PID=$PID
wait_until "the vault" "$VAULT_PID" 30 curl -sf --cacert "$WORK/controller/vault/ca/ca.pem" "$MODELSEAL_VAULT/healthz"
note "healthy at $MODELSEAL_VAULT (pid $VAULT_PID): $(curl -s --cacert "$WORK/controller/vault/ca/ca.pem" "$MODELSEAL_VAULT/healthz")"
for part in det rec; do
    as controller modelseal model register "../owner/sealed/ppocr-$part"
done

bold "3. Request access — the device sends nothing secret; the controller prepares its enrolment"
as controller modelseal customer create acme
prompt controller modelseal device enroll-token --customer acme --ttl 15m
TOKEN=$(in_home controller modelseal device enroll-token --customer acme --ttl 15m)
note "    ${TOKEN:0:14}… (one-time secret) ….${TOKEN##*.} (pin of the vault CA) → given to the device"

bold "4. Provision — the device enrols (its key is made on it); the controller issues licenses"
MODELSEAL_ENROLL_TOKEN=$TOKEN SHOW=1 as device modelseal agent enroll --vault "$MODELSEAL_VAULT" --home agent
note "    (the token came in MODELSEAL_ENROLL_TOKEN, out of the process list)"
note "    device key: $(stat -c '%A' "$WORK/device/agent/device-key.pem") agent/device-key.pem, never sent anywhere"
mkdir -p "$WORK/controller/licenses"
prompt controller modelseal license issue --customer acme --model ppocr-det:1 --lease 30s --heartbeat 2s \
    --out licenses/ppocr-det.jws
DET_LICENSE=$(in_home controller modelseal license issue --customer acme --model ppocr-det:1 --lease 30s \
    --heartbeat 2s --out licenses/ppocr-det.jws)
note "    $DET_LICENSE"
prompt controller modelseal license issue --customer acme --model ppocr-rec:1 --lease 30s --heartbeat 2s \
    --max-loads 2 --max-inferences-per 1h=5 --out licenses/ppocr-rec.jws
REC_LICENSE=$(in_home controller modelseal license issue --customer acme --model ppocr-rec:1 --lease 30s \
    --heartbeat 2s --max-loads 2 --max-inferences-per 1h=5 --out licenses/ppocr-rec.jws)
note "    $REC_LICENSE: 2 loads in total, 5 inferences per hour, lease 30 s renewed every 2 s"
for part in det rec; do
    mkdir -p "$WORK/device/models/ppocr-$part"
    cp -r "$WORK/owner/sealed/ppocr-$part" "$WORK/device/models/ppocr-$part/1"
    cp "$WORK/controller/licenses/ppocr-$part.jws" "$WORK/device/models/ppocr-$part/license.jws"
    note "→ device: models/ppocr-$part/1/ (sealed package from the owner), models/ppocr-$part/license.jws"
done

bold "5. Load and infer — modelseal serve decrypts in memory; the license decides how long"
cat >"$WORK/device/config.json" <<'EOF'
{"model_config_list": [
  {"config": {"name": "ppocr-det", "base_path": "models/ppocr-det"}},
  {"config": {"name": "ppocr-rec", "base_path": "models/ppocr-rec"}}]}
EOF
note "config.json (OpenVINO Model Server format): ppocr-det and ppocr-rec, licenses beside the packages"
start device "$WORK/device/serve.log" modelseal serve --config config.json --agent-home agent \
    --rest-port "$REST_PORT" --grpc-port "$GRPC_PORT"
SERVE_PID=$PID
wait_until "modelseal serve" "$SERVE_PID" 60 curl -sf "http://127.0.0.1:$REST_PORT/v2/health/ready"
grep -o 'loaded model.*(sealed[^)]*)\|serving KServe.*' "$LOG" | indent
note "OCR on a generated image: detection and recognition through KServe v2 (tritonclient):"
as device python "$CLIENT" ocr "127.0.0.1:$REST_PORT" "$TEXT"
note "the license allows 5 inferences per hour (one is used); the server meters them:"
as device python "$CLIENT" until-refused "127.0.0.1:$REST_PORT" "$TEXT"
note "the license allows 2 loads in total (the server's was the first):"
as device modelseal agent check --home agent --license models/ppocr-rec/license.jws --model ppocr-rec:1
refused device modelseal agent check --home agent --license models/ppocr-rec/license.jws --model ppocr-rec:1
note "the controller revokes the recognition license; the server's next renewal ends the lease:"
export DEMO_SINCE=$EPOCHREALTIME    # wait-unready measures from here
as controller modelseal license revoke "$REC_LICENSE"
as device python "$CLIENT" wait-unready "127.0.0.1:$REST_PORT" ppocr-rec 5    # two heartbeats + slack
note "ppocr-det, under its own license, still serves: GET /v2/models/ppocr-det/ready →" \
    "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$REST_PORT/v2/models/ppocr-det/ready")"
as controller modelseal vault audit verify --home vault

bold "Shut down"
stop "modelseal serve" "$SERVE_PID"
stop "vault serve" "$VAULT_PID"
if [ -n "$(jobs -pr)" ]; then echo "    still running: $(jobs -r)" >&2; exit 1; fi
for port in "$VAULT_PORT" "$REST_PORT" "$GRPC_PORT"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "    port $port is still open" >&2; exit 1; fi
done
note "nothing left running: no demo process alive, ports $VAULT_PORT $REST_PORT $GRPC_PORT closed"

bold "Summary ($SECONDS s)"
note "owner       sealed ppocr-det and ppocr-rec (AES-256-GCM streaming, Ed25519-signed manifest);"
note "            a tampered copy was refused"
note "controller  vault on SQLite with a software master key; registered both; enrolled the device;"
note "            issued licenses; revoked one; the audit chain verifies"
note "device      enrolled with a one-time token; served both sealed models from memory;"
note "            read \"$TEXT\" over KServe v2 (tritonclient); was refused at the"
note "            inference limit (429), the load limit (USAGE_EXHAUSTED) and after revocation (503)"
note "everything is in $WORK/ (logs: controller/vault.log, device/serve.log)"
