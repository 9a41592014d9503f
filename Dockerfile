# syntax=docker/dockerfile:1
# One image per service, all from this file:
#   docker build --target api     -t videoq-api .
#   docker build --target worker  -t videoq-worker .
#   docker build --target janitor -t videoq-janitor .
#   docker build --target notifier -t videoq-notifier .
#   docker build --target migrate -t videoq-migrate .   # `videoq migrate`, then exits
# Each container runs exactly one service. Configuration comes from VIDEOQ_*
# environment variables at run time; nothing secret is baked in.

# ---- build: resolve and install the project into a virtualenv -------------
# Every dependency ships a manylinux wheel (PyAV and opencv-python-headless
# bundle FFmpeg and OpenCV), so no compiler is needed, here or below.
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ONLY_BINARY=:all: \
    PYTHONDONTWRITEBYTECODE=1
# pip lives in a venv of its own and installs into /opt/venv (`--python`), so
# the shipped venv holds no pip or setuptools (25 MB no service runs).
RUN python -m venv /opt/pip \
    && python -m venv --without-pip /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
# The project itself is a local path (pinned by this checkout), its
# dependencies are bounded in pyproject.toml.
# hadolint ignore=DL3013
RUN /opt/pip/bin/pip --python /opt/venv/bin/python install --no-cache-dir --no-compile . \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib

# ---- build-video: the same venv plus the video stack (the worker's) ---------
# PyAV, OpenCV and NumPy are most of an image's size; only the worker decodes
# video, so only its venv has the `video` extra.
FROM build AS build-video
# hadolint ignore=DL3013
RUN /opt/pip/bin/pip --python /opt/venv/bin/python install --no-cache-dir --no-compile ".[video]" \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib

# ---- base: what every service image shares, but its venv --------------------
FROM python:3.11-slim-bookworm AS base
LABEL org.opencontainers.image.title="videoq" \
      org.opencontainers.image.description="Asynchronous video-analysis job service" \
      org.opencontainers.image.licenses="MIT"
# A fixed, high, unprivileged uid/gid (Kubernetes runAsNonRoot checks the uid).
RUN groupadd --system --gid 10001 videoq \
    && useradd --system --uid 10001 --gid videoq --home-dir /nonexistent \
       --no-create-home --shell /usr/sbin/nologin videoq
# The root filesystem may be read-only: bytecode is precompiled above, and
# anything temporary goes to /tmp (an emptyDir or tmpfs in deployments).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp
WORKDIR /tmp
USER 10001:10001

# ---- runtime: the services that decode no video (api, janitor, migrate) ----
FROM base AS runtime
COPY --from=build /opt/venv /opt/venv

# ---- api: HTTP on 8000 --------------------------------------------------------
FROM runtime AS api
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["videoq-api", "--host", "0.0.0.0", "--port", "8000"]

# ---- worker: consumes videoq.jobs.process; health and metrics on VIDEOQ_OPS_PORT
FROM base AS worker
ARG TESSERACT_VERSION=5.3.0-2
USER 0
# Tesseract for the OCR analyzer (with its English and script-detection data).
RUN apt-get update \
    && apt-get install -y --no-install-recommends "tesseract-ocr=${TESSERACT_VERSION}" \
    && rm -rf /var/lib/apt/lists/*
USER 10001:10001
# After the packages: a change of the code leaves that layer cached.
COPY --from=build-video /opt/venv /opt/venv
EXPOSE 9100
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('VIDEOQ_OPS_PORT', '9100'), timeout=4)"]
CMD ["videoq-worker"]

# ---- janitor: the periodic sweeps; health and metrics on VIDEOQ_OPS_PORT ------
FROM runtime AS janitor
EXPOSE 9100
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('VIDEOQ_OPS_PORT', '9100'), timeout=4)"]
CMD ["videoq-janitor"]

# ---- notifier: delivers the signed webhooks; health and metrics on VIDEOQ_OPS_PORT
FROM runtime AS notifier
EXPOSE 9100
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('VIDEOQ_OPS_PORT', '9100'), timeout=4)"]
CMD ["videoq-notifier"]

# ---- migrate: applies the SQL migrations once and exits (a one-shot) ---------
FROM runtime AS migrate
HEALTHCHECK NONE
CMD ["videoq", "migrate"]
