# syntax=docker/dockerfile:1
# The modelseal edge runtime: `modelseal serve` (KServe v2 REST on 8000, gRPC on 9000) and, from the
# same image, its key agent `modelseal agent serve` (run as a second container, see compose.yaml).
#
#   docker build -f deploy/docker/runtime.Dockerfile -t modelseal-runtime .   (from the repository root)
#
# Volumes: /models (the model repository with config.json, read-only), /run/modelseal (the agent's
# Unix socket, shared between the agent and the server), /var/lib/modelseal (holds the agent home
# /var/lib/modelseal/agent; only the agent container mounts it, so the server never sees the device
# key). The default command serves /models/config.json with keys from the agent's socket.

FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/modelseal
WORKDIR /src
COPY requirements/lock.txt requirements/lock.txt
COPY pyproject.toml README.md ./
COPY src src
# openvino: the OpenVINO backend; fuse: `modelseal mount` / `modelseal run` (crypto filesystem).
RUN /opt/modelseal/bin/pip install --constraint requirements/lock.txt ".[openvino,fuse]"

FROM python:3.11-slim-bookworm
# curl: health check; libfuse3-3 + fuse3: the crypto filesystem (needs /dev/fuse and CAP_SYS_ADMIN
# at run time, which compose.yaml does not grant: `modelseal serve` decrypts in memory without it).
RUN apt-get update \
    && apt-get install --yes --no-install-recommends curl libfuse3-3 fuse3 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 modelseal \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/modelseal \
        --shell /usr/sbin/nologin modelseal \
    && install --directory --owner=10001 --group=10001 --mode=0750 /var/lib/modelseal \
    && install --directory --owner=10001 --group=10001 --mode=0750 /run/modelseal \
    && install --directory --mode=0755 /models
COPY --from=build /opt/modelseal /opt/modelseal
COPY deploy/docker/entrypoint.sh /usr/local/bin/modelseal-entrypoint
ENV PATH=/opt/modelseal/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

USER 10001:10001
WORKDIR /var/lib/modelseal
VOLUME ["/var/lib/modelseal", "/run/modelseal", "/models"]
EXPOSE 8000 9000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["curl", "--fail", "--silent", "--show-error", "--output", "/dev/null", "http://127.0.0.1:8000/v2/health/ready"]
ENTRYPOINT ["modelseal-entrypoint"]
CMD ["modelseal", "serve", "--config", "/models/config.json", "--rest-host", "0.0.0.0", "--rest-port", "8000", "--grpc-host", "0.0.0.0", "--grpc-port", "9000", "--agent-socket", "/run/modelseal/agent.sock"]
