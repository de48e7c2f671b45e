#!/bin/sh
# Entry point of the modelseal images: turn secret files into the environment variables that
# modelseal (and libpq) read, then run the command.
#
# For each NAME below, when NAME_FILE is set (e.g. to a Compose/Docker secret under /run/secrets/),
# NAME is set to the file's content without its trailing newlines and NAME_FILE is unset. So no
# secret is ever in the image, the compose file or `docker inspect`; the value exists only in the
# environment of the one process that needs it.
#
#   MODELSEAL_VAULT_PASSPHRASE  software master key (vault init/serve --passphrase-env)
#   MODELSEAL_PKCS11_PIN        PKCS#11 master key's user PIN (vault init/serve)
#   PGPASSWORD                  PostgreSQL password (libpq reads it; not stored in vault.json)
#   MODELSEAL_ENROLL_TOKEN      one-time enrolment token (agent enroll --token)
set -eu

for name in MODELSEAL_VAULT_PASSPHRASE MODELSEAL_PKCS11_PIN PGPASSWORD MODELSEAL_ENROLL_TOKEN; do
    eval "file=\${${name}_FILE:-}"
    if [ -n "$file" ]; then
        if [ ! -r "$file" ]; then
            echo "modelseal-entrypoint: ${name}_FILE names $file, which this user ($(id -u)) cannot read" >&2
            exit 1
        fi
        value=$(cat "$file")
        export "$name=$value"
        unset "${name}_FILE"
    fi
done
unset file value name

exec "$@"
