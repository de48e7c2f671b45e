# syntax=docker/dockerfile:1
# The modelseal vault: key and license service, HTTPS with client certificates on port 8443.
#
#   docker build -f deploy/docker/vault.Dockerfile -t modelseal-vault .      (from the repository root)
#
# State: the volume /var/lib/modelseal holds the vault home /var/lib/modelseal/vault (a directory
# *inside* the volume, because `vault init` builds the home beside it and renames it into place).
# Secrets come at run time only: MODELSEAL_VAULT_PASSPHRASE_FILE / PGPASSWORD_FILE /
# MODELSEAL_PKCS11_PIN_FILE name secret files (see entrypoint.sh). deploy/README.md has the steps.

FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/modelseal
WORKDIR /src
COPY requirements/lock.txt requirements/lock.txt
COPY pyproject.toml README.md ./
COPY src src
# The lock file pins every dependency; the vault needs no optional extra.
RUN /opt/modelseal/bin/pip install --constraint requirements/lock.txt .

FROM python:3.11-slim-bookworm
# curl: the health check speaks HTTPS to the vault, trusting only the vault's own CA.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 modelseal \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/modelseal \
        --shell /usr/sbin/nologin modelseal \
    && install --directory --owner=10001 --group=10001 --mode=0750 /var/lib/modelseal
COPY --from=build /opt/modelseal /opt/modelseal
COPY deploy/docker/entrypoint.sh /usr/local/bin/modelseal-entrypoint
ENV PATH=/opt/modelseal/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MODELSEAL_VAULT_PASSPHRASE_FILE=/run/secrets/vault_passphrase

USER 10001:10001
WORKDIR /var/lib/modelseal
VOLUME ["/var/lib/modelseal"]
EXPOSE 8443
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["curl", "--fail", "--silent", "--show-error", "--output", "/dev/null", "--cacert", "/var/lib/modelseal/vault/ca/ca.pem", "https://127.0.0.1:8443/healthz"]
ENTRYPOINT ["modelseal-entrypoint"]
CMD ["modelseal", "vault", "serve", "--home", "/var/lib/modelseal/vault", "--host", "0.0.0.0", "--port", "8443", "--passphrase-env", "MODELSEAL_VAULT_PASSPHRASE"]
