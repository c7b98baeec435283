# syntax=docker/dockerfile:1
# acr-helper controller image.
#   docker build -t ghcr.io/acr-helper/acr-helper:0.1.0 \
#     --build-arg REVISION="$(git rev-parse HEAD)" --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" .
# Needs BuildKit (the default since Docker 23) for `RUN --mount`.
#
# Base image: pinned by tag. A digest pin (python:3.12-slim-bookworm@sha256:<digest>) is better
# (reproducible, immune to a re-pushed tag); it could not be resolved where this file was written
# (no registry access). Release builds should pin it, e.g. with
#   docker buildx imagetools inspect python:3.12-slim-bookworm --format '{{json .Manifest.Digest}}'
# and let Renovate/Dependabot keep it current. Both stages must use the same base (same Python).

# ---- builder: build wheels for the project and every dependency -------------------------------
FROM python:3.12-slim-bookworm AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY acr_helper ./acr_helper
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# ---- runtime: only the built wheels, installed into a venv, run as a non-root user -------------
FROM python:3.12-slim-bookworm

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown

LABEL org.opencontainers.image.title="acr-helper" \
      org.opencontainers.image.description="Kubernetes controller that keeps Alibaba Cloud Container Registry pull Secrets fresh (drop-in for ACK's aliyun-acr-credential-helper)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/acr-helper/acr-helper" \
      org.opencontainers.image.url="https://github.com/acr-helper/acr-helper" \
      org.opencontainers.image.documentation="https://github.com/acr-helper/acr-helper/blob/main/docs/operations.md" \
      org.opencontainers.image.vendor="acr-helper" \
      org.opencontainers.image.base.name="docker.io/library/python:3.12-slim-bookworm"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/acr-helper \
    PATH=/opt/acr-helper/bin:$PATH \
    HOME=/tmp

# The wheels are bind-mounted from the builder, so they never become a layer of this image; the
# venv gets no pip of its own (the base image's pip installs into it), and nothing else is added.
# pip compiles the .pyc files at install time: the root filesystem is read-only at run time.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m venv --without-pip "${VIRTUAL_ENV}" \
    && pip --python "${VIRTUAL_ENV}/bin/python" install --no-cache-dir --no-index --find-links=/wheels \
       "acr-helper==${VERSION}" \
    && rm -rf /root/.cache \
    && acr-helper --version

# The same UID/GID as the Deployment's securityContext (65532, "nonroot" by convention).
USER 65532:65532
WORKDIR /tmp
EXPOSE 8080
ENTRYPOINT ["acr-helper", "run"]
