# syntax=docker/dockerfile:1
# NGINX terminating mutual TLS in front of `modelseal serve`: Debian bookworm's own nginx package,
# the same build the tests check deploy/nginx/modelseal-serve.conf against (`nginx -t`). Runs as an
# unprivileged user on ports 8443 (REST) and 9443 (gRPC).
#
# Mount the configuration at /etc/modelseal-nginx/nginx.conf and its tls/ directory (server.pem,
# server-key.pem, client-ca.pem) at /etc/modelseal-nginx/tls; the key must be readable by uid 10002.

FROM debian:bookworm-slim
# curl: health check.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends nginx curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10002 modelseal-nginx \
    && useradd --system --uid 10002 --gid 10002 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin modelseal-nginx \
    && install --directory --mode=0755 /etc/modelseal-nginx /etc/modelseal-nginx/tls

USER 10002:10002
EXPOSE 8443 9443
# Any HTTP answer means NGINX is up: without a client certificate it is a 400, by design.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["curl", "--silent", "--insecure", "--output", "/dev/null", "https://127.0.0.1:8443/"]
# Temporary files and the pid file go to /tmp (the prefix), the only place NGINX writes.
CMD ["nginx", "-p", "/tmp/", "-c", "/etc/modelseal-nginx/nginx.conf", "-e", "stderr", "-g", "daemon off; pid /tmp/nginx.pid;"]
