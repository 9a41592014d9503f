#!/usr/bin/env bash
# The compose lane: compose.yaml, as shipped, up in containers on a machine
# that cannot pull images, then tests/compose against it.
#
#   1. scripts/containers.sh: the Docker engine and the stand-in images
#      (RabbitMQ 4, PostgreSQL, S3, python:3.11-slim-bookworm), cached by hash;
#   2. Docker Compose v2 (the engine's plugin, or Debian trixie's package
#      unpacked into var/tools: bookworm's docker-compose is 1.29);
#   3. the project's images from the Dockerfile, unchanged, with the legacy
#      builder, tagged by a hash of the build context (built only when that tag
#      is missing): every service of the compose files that has a `build:`;
#   4. pytest tests/compose, whose fixture runs `docker compose up` with
#      tests/compose/compose.standins.yaml over compose.yaml, and
#      `docker compose down -v` at the end, however it ends.
# Secrets are random for each run, every port is a free one on 127.0.0.1, the
# networks are compose's own. Run it as root (the engine). Arguments go to
# pytest; `--images-only` (first) stops after step 3, so that `make test` can
# build while other tests run.
set -euo pipefail
images_only=false
if [ "${1:-}" = --images-only ]; then images_only=true; shift; fi
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=.venv
PATH="$ROOT/$VENV/bin:$PATH"
mkdir -p var/compose var/tools

log() { printf '== compose: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
now() { date +%s.%N; }
took() { log "$1: $(awk -v a="$2" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }')"; }

# --- 1. engine and stand-ins --------------------------------------------------------
started=$(now)
bash scripts/containers.sh >/dev/null
# shellcheck disable=SC1091
source var/containers.env
took "engine and stand-ins" "$started"

# --- 2. Docker Compose v2 -----------------------------------------------------------
compose_is_v2() { "$@" version --short 2>/dev/null | grep -Eq '^v?2\.'; }
TRIXIE_COMPOSE=var/tools/docker-compose
if compose_is_v2 docker compose; then
    COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null && compose_is_v2 docker-compose; then
    COMPOSE=(docker-compose)
else
    if ! compose_is_v2 "$TRIXIE_COMPOSE"; then
        # Debian's own package of Compose v2 (trixie: 2.26), fetched with apt
        # into var/ alone: the machine's sources and packages stay as they are.
        started=$(now)
        log "Compose v2: Debian trixie's docker-compose into $TRIXIE_COMPOSE"
        apt_dir=$(mktemp -d)
        trap 'rm -rf "$apt_dir"' EXIT
        mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
        # The mirror the machine uses (as scripts/containers.sh does).
        mirror=$(awk '$1 == "URIs:" { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
        echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${mirror:-http://deb.debian.org/debian} trixie main" \
            >"$apt_dir/sources.list"
        apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
            -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
            -o Dir::State::status=/dev/null -o APT::Sandbox::User=root)
        apt-get "${apt_opts[@]}" update -qq >/dev/null
        (cd "$apt_dir" && apt-get "${apt_opts[@]}" download -qq docker-compose >/dev/null)
        dpkg-deb -x "$apt_dir"/docker-compose_*.deb "$apt_dir/x"
        install -m 0755 "$apt_dir/x/usr/libexec/docker/cli-plugins/docker-compose" "$TRIXIE_COMPOSE"
        rm -rf "$apt_dir"
        trap - EXIT
        took "Compose v2" "$started"
    fi
    COMPOSE=("$ROOT/$TRIXIE_COMPOSE")
fi
log "using $("${COMPOSE[@]}" version)"

# A run that was killed (SIGKILL, a lost machine session) could not take its
# project down: take down those whose script is gone, volumes and all.
"${COMPOSE[@]}" ls --all --format json | python3 -c '
import json, sys
for project in json.load(sys.stdin) or []:
    print(project["Name"])
' | while read -r project; do
    pid=${project#videoq-ci-}
    if [ "$pid" != "$project" ] && ! kill -0 "$pid" 2>/dev/null; then
        log "taking down $project, left over by a run that ended without doing so"
        "${COMPOSE[@]}" --project-name "$project" down --volumes --remove-orphans --timeout 5 >/dev/null 2>&1 || true
    fi
done

# --- this run's settings: random secrets, free ports ------------------------------------
# The stand-ins, named for the override file.
export VIDEOQ_STANDIN_RABBITMQ_IMAGE=$VIDEOQ_TEST_RABBITMQ4_IMAGE
# The project's images, tagged by what goes into them (the Dockerfile, its
# context as .dockerignore lets it through, and the base image).
context_hash=$(python3 scripts/context_hash.py --base "$(docker image inspect -f '{{.Id}}' python:3.11-slim-bookworm)")
export VIDEOQ_TAG="ci-$context_hash"

ENV_FILE=var/compose/run.env
python3 - "$ENV_FILE" <<'PY'
import base64, hashlib, secrets, socket, sys

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

api_key = secrets.token_hex(24)
s3_port = free_port()
values = {
    name: secrets.token_hex(24)
    for name in (
        "VIDEOQ_RABBITMQ_API_PASSWORD", "VIDEOQ_RABBITMQ_WORKER_PASSWORD",
        "VIDEOQ_RABBITMQ_JANITOR_PASSWORD", "VIDEOQ_RABBITMQ_NOTIFIER_PASSWORD",
        "RABBITMQ_ADMIN_PASSWORD", "POSTGRES_PASSWORD",
        "VIDEOQ_DB_OWNER_PASSWORD", "VIDEOQ_DB_APP_PASSWORD", "MINIO_ROOT_PASSWORD",
        "VIDEOQ_S3_SECRET_KEY",
    )
}
values |= {
    "RABBITMQ_ADMIN_USER": "admin",
    "MINIO_ROOT_USER": "minioadmin",
    "VIDEOQ_S3_ACCESS_KEY": "videoq",
    # `videoq hash-key --client ci KEY` prints the same.
    "VIDEOQ_API_KEYS": "ci:" + hashlib.sha256(api_key.encode()).hexdigest(),
    "VIDEOQ_TEST_COMPOSE_API_KEY": api_key,
    "VIDEOQ_WEBHOOK_SECRETS": "ci:whsec_" + base64.b64encode(secrets.token_bytes(24)).decode(),
    "API_HOST_PORT": free_port(),
    "RABBITMQ_AMQP_HOST_PORT": free_port(),
    "RABBITMQ_MANAGEMENT_HOST_PORT": free_port(),
    "MINIO_CONSOLE_HOST_PORT": free_port(),
    # Direct uploads' part URLs name the S3 port as clients reach it.
    "MINIO_S3_HOST_PORT": s3_port,
    "VIDEOQ_S3_PUBLIC_ENDPOINT_URL": f"http://127.0.0.1:{s3_port}",
}
with open(sys.argv[1], "w", encoding="utf-8") as out:
    out.writelines(f"{k}={v}\n" for k, v in values.items())
PY
chmod 0600 "$ENV_FILE"
# What the override files name, for anyone who runs `pytest tests/compose` again.
printf '%s=%s\n' VIDEOQ_TAG "$VIDEOQ_TAG" \
    VIDEOQ_STANDIN_RABBITMQ_IMAGE "$VIDEOQ_STANDIN_RABBITMQ_IMAGE" \
    VIDEOQ_STANDIN_POSTGRES_IMAGE "$VIDEOQ_STANDIN_POSTGRES_IMAGE" \
    VIDEOQ_STANDIN_S3_IMAGE "$VIDEOQ_STANDIN_S3_IMAGE" >>"$ENV_FILE"
FILES=(-f compose.yaml -f tests/compose/compose.standins.yaml -f tests/compose/compose.test.yaml)

# --- 3. the project's images ----------------------------------------------------------------
started=$(now)
# service<TAB>image<TAB>target of every service that builds from a Dockerfile.
mapfile -t builds < <(
    "${COMPOSE[@]}" --env-file "$ENV_FILE" "${FILES[@]}" config --format json | python3 -c '
import json, sys
for name, service in sorted(json.load(sys.stdin)["services"].items()):
    build = service.get("build")
    if build:
        print(name, service["image"], build.get("context", "."), build.get("dockerfile", "Dockerfile"),
              build.get("target", ""), sep="\t")
'
)
((${#builds[@]})) || die "no service of compose.yaml builds an image"
for line in "${builds[@]}"; do
    IFS=$'\t' read -r service image context dockerfile target <<<"$line"
    if docker image inspect "$image" >/dev/null 2>&1; then
        log "$image ($service): cached"
        continue
    fi
    step=$(now)
    log "$image ($service): building target ${target:-last} (log: var/compose/build-$service.log)"
    # The legacy builder: BuildKit would try to pull its Dockerfile frontend.
    DOCKER_BUILDKIT=0 docker build ${target:+--target "$target"} -f "$context/$dockerfile" \
        -t "$image" "$context" >"var/compose/build-$service.log" 2>&1 \
        || { tail -30 "var/compose/build-$service.log" >&2; die "building $image failed"; }
    took "$image" "$step"
done
took "project images" "$started"
# Only the current tag of each is kept: every change of the context makes new
# images, and the old ones would fill the disk (their layers stay cached while
# the current images share them).
for line in "${builds[@]}"; do
    image=$(cut -f2 <<<"$line")
    docker image ls --format '{{.Repository}}:{{.Tag}}' "${image%:*}" | grep -F ":ci-" \
        | grep -vxF "$image" | xargs -r docker image rm >/dev/null || true
done
log "image sizes:"
{
    for line in "${builds[@]}"; do cut -f2 <<<"$line"; done
    printf '%s\n' python:3.11-slim-bookworm "$VIDEOQ_STANDIN_RABBITMQ_IMAGE" \
        "$VIDEOQ_STANDIN_POSTGRES_IMAGE" "$VIDEOQ_STANDIN_S3_IMAGE"
} | sort -u | while read -r image; do
    printf '   %-60s %s\n' "$image" "$(docker image ls --format '{{.Size}}' "$image")" >&2
done

$images_only && exit 0

# --- 4. the tests -----------------------------------------------------------------------------
export VIDEOQ_TEST_COMPOSE="${COMPOSE[*]}"
export VIDEOQ_TEST_COMPOSE_ENV_FILE="$ROOT/$ENV_FILE"
export VIDEOQ_TEST_COMPOSE_PROJECT="videoq-ci-$$"
started=$(now)
status=0
pytest --no-cov -p no:cacheprovider tests/compose "$@" || status=$?
took "tests/compose" "$started"
exit "$status"
