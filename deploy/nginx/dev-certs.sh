#!/bin/sh
# Make a DEVELOPMENT set of certificates for the NGINX mTLS front (deploy/nginx/modelseal-serve.conf):
# a server CA and a server certificate, a client CA and one client certificate. ECDSA P-256.
#
#   deploy/nginx/dev-certs.sh OUT [SERVER_NAME ...]      (default names: localhost; 127.0.0.1 always)
#
# OUT/nginx/   server.pem, server-key.pem, client-ca.pem     -> mount as NGINX's tls/ directory
# OUT/client/  client.pem, client-key.pem, server-ca.pem     -> give to one inference client
# OUT/ca/      the two CA keys (keep them offline; they issue more server or client certificates)
#
# For production, use certificates from your own PKI; only the three file names in OUT/nginx matter.
set -eu

if [ $# -lt 1 ]; then
    echo "usage: $0 OUT [SERVER_NAME ...]" >&2
    exit 2
fi
out=$1
shift
[ $# -gt 0 ] || set -- localhost
if [ -e "$out" ] && [ -n "$(ls -A "$out" 2>/dev/null)" ]; then
    echo "$0: $out exists and is not empty; refusing to overwrite certificates" >&2
    exit 1
fi

umask 077
mkdir -p "$out/ca" "$out/nginx" "$out/client"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

san="IP:127.0.0.1"
for name in "$@"; do
    case $name in
        *[!0-9.]*) san="$san,DNS:$name" ;;
        *) san="$san,IP:$name" ;;
    esac
done

new_ca() {  # new_ca FILE-STEM SUBJECT
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 -days 3650 \
        -subj "$2" -keyout "$out/ca/$1-key.pem" -out "$work/$1.pem" \
        -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}

issue() {  # issue CA-STEM SUBJECT EXTENSIONS CERT KEY
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 \
        -subj "$2" -keyout "$5" -out "$work/request.csr" 2>/dev/null
    printf '%s\n' "$3" >"$work/extensions.cnf"
    openssl x509 -req -in "$work/request.csr" -CA "$work/$1.pem" -CAkey "$out/ca/$1-key.pem" \
        -CAcreateserial -CAserial "$work/$1.srl" -sha256 -days 825 \
        -extfile "$work/extensions.cnf" -out "$4" 2>/dev/null
}

new_ca server-ca "/CN=modelseal serve development server CA"
new_ca client-ca "/CN=modelseal serve development client CA"

issue server-ca "/CN=$1" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=$san" "$out/nginx/server.pem" "$out/nginx/server-key.pem"

issue client-ca "/CN=inference-client" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth" "$out/client/client.pem" "$out/client/client-key.pem"

cp "$work/client-ca.pem" "$out/nginx/client-ca.pem"
cp "$work/server-ca.pem" "$out/client/server-ca.pem"
cp "$work/server-ca.pem" "$out/ca/server-ca.pem"
cp "$work/client-ca.pem" "$out/ca/client-ca.pem"
# NGINX and the client read these; the private keys stay 0600.
chmod 0644 "$out/nginx/server.pem" "$out/nginx/client-ca.pem" "$out/client/client.pem" \
    "$out/client/server-ca.pem" "$out/ca/server-ca.pem" "$out/ca/client-ca.pem"
chmod 0755 "$out/nginx" "$out/client"
echo "certificates in $out: nginx/ (server, client CA), client/ (client certificate), ca/ (CA keys)"
