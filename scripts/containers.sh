#!/usr/bin/env bash
# What the container lanes need, on a machine that cannot pull images: a
# Docker engine (Debian's docker.io, started here when it is not running) and
# the stand-in images, built locally from Debian's packages. Each image is
# tagged with a hash of its build inputs and built only when that tag is
# missing, so a second run builds nothing. Idempotent; run it as root.
#
# stdout: one `export NAME=image` line per image (also written to
# var/containers.env), for `eval "$(bash scripts/containers.sh)"`.
# stderr: progress, with how long each step took.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
mkdir -p var/standins

log() { printf '== containers: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
now() { date +%s.%N; }
took() { log "$1: $(awk -v a="$2" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }')"; }
# A short, stable name for a set of build inputs (read from stdin).
digest() { sha256sum | cut -c1-12; }

# Two runs at once would race on the engine's start-up and on the same tags.
exec 9>/tmp/videoq-containers.lock
flock -w 1800 9 || die "another scripts/containers.sh holds /tmp/videoq-containers.lock"

# --- packages -------------------------------------------------------------------
started=$(now)
need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
if ((${#need[@]})); then
    [ "$(id -u)" = 0 ] || die "missing ${need[*]}: install them (or run this as root)"
    log "installing ${need[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
took "packages" "$started"

# --- the engine ------------------------------------------------------------------
started=$(now)
engine_up() { timeout 20 docker info >/dev/null 2>&1; }
if ! engine_up; then
    [ "$(id -u)" = 0 ] || die "no Docker engine answers, and starting one needs root"
    log "starting dockerd (log: var/dockerd.log)"
    # Its own session: the engine outlives this script and its caller's job
    # (and without our lock, or it would hold it as long as it runs).
    setsid dockerd >var/dockerd.log 2>&1 </dev/null 9>&- &
    for _ in $(seq 60); do engine_up && break; sleep 1; done
    engine_up || { tail -20 var/dockerd.log >&2; die "dockerd did not answer within 60 s"; }
fi
took "engine" "$started"

# --- the bases: minimal Debian, trusting this machine's CA bundle -------------------
# Containers reach the package mirror only through this machine's TLS
# interception, so the stand-ins (never the images we ship) carry its CA.
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
MIRROR=$(awk '$1 == "URIs:" { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
MIRROR=${MIRROR:-http://deb.debian.org/debian}

rootfs=""
remove_rootfs() {
    # A failed debootstrap can leave /proc or /sys mounted inside: unmount
    # first, and never cross into another file system while deleting.
    if [ -n "$rootfs" ] && [ -d "$rootfs" ]; then
        findmnt -rn -o TARGET | grep -F "$rootfs/" | sort -r | xargs -r umount -l || true
        rm -rf --one-file-system "$rootfs"
    fi
}

# debian_base TAG_PREFIX SUITE INCLUDE TRIM [DOCKER_IMPORT_CHANGE...]: a
# debootstrap of SUITE (minbase, plus the comma-separated INCLUDE packages),
# imported as TAG_PREFIX-<hash of the recipe>; TRIM=1 drops the docs, man pages
# and locales, as the official slim images do. Sets $base to the tag.
debian_base() {
    local prefix=$1 suite=$2 include=$3 trim=$4 started
    shift 4
    # (A plain base hashes as recipe 1 did, so the images built on it stay cached.)
    base="$prefix-$(
        {
            printf 'recipe 1\nsuite %s\nvariant minbase\nmirror %s\nca %s\n' \
                "$suite" "$MIRROR" "$(sha256sum <"$CA_BUNDLE")"
            if [ -n "$include$*" ] || [ "$trim" != 0 ]; then
                printf 'include %s\ntrim %s\nchanges %s\n' "$include" "$trim" "$*"
            fi
        } | digest
    )"
    started=$(now)
    if docker image inspect "$base" >/dev/null 2>&1; then
        log "base $base: cached"
    else
        rootfs="$ROOT/var/standins/rootfs-$suite"
        log "base $base: debootstrap $suite from $MIRROR (log: var/standins/debootstrap-$suite.log)"
        trap remove_rootfs EXIT
        remove_rootfs
        debootstrap --variant=minbase ${include:+--include="$include"} "$suite" "$rootfs" "$MIRROR" \
            >"var/standins/debootstrap-$suite.log" 2>&1 \
            || { tail -20 "var/standins/debootstrap-$suite.log" >&2; die "debootstrap failed"; }
        install -D -m 0644 "$CA_BUNDLE" "$rootfs/etc/ssl/certs/ca-certificates.crt"
        # Kept there too: installing ca-certificates later rebuilds the bundle.
        install -D -m 0644 "$CA_BUNDLE" "$rootfs/usr/local/share/ca-certificates/build-host.crt"
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
        if [ "$trim" = 1 ]; then
            rm -rf "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
                "$rootfs"/usr/share/locale/* "$rootfs"/var/cache/debconf/*-old "$rootfs"/var/log/*.log
        fi
        local changes=(--change 'CMD ["/bin/bash"]')
        for change in "$@"; do changes+=(--change "$change"); done
        tar -C "$rootfs" -c . | docker import "${changes[@]}" - "$base" >/dev/null
        remove_rootfs
        trap - EXIT
    fi
    took "base $base" "$started"
}

debian_base videoq-standin/debian:trixie trixie "" 0
base_tag=$base

# The stand-in for python:3.11-slim-bookworm (what the Dockerfile and compose's
# one-shot rabbitmq-definitions start from): Debian bookworm's Python 3.11 with
# venv and pip's wheel, trimmed. Also tagged under the official name, so the
# Dockerfile builds unchanged.
debian_base videoq-standin/python:3.11-slim-bookworm bookworm \
    python3,python3-venv,python-is-python3,ca-certificates 1 \
    'ENV LANG=C.UTF-8' 'CMD ["python3"]'
python_tag=$base
docker tag "$python_tag" python:3.11-slim-bookworm

# --- stand-ins ---------------------------------------------------------------------
# build NAME CONTEXT: build CONTEXT's Dockerfile FROM the base (build argument
# BASE; PYTHON_BASE names the Python stand-in, for a stage that needs pip),
# tagged by a hash of both bases' tags and every file in CONTEXT; print the tag.
build() {
    local name=$1 context=$2 tag started
    tag="videoq-standin/$name-$(
        {
            echo "$base_tag"
            if grep -q PYTHON_BASE "$context/Dockerfile"; then echo "$python_tag"; fi
            (cd "$context" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
        } | digest
    )"
    started=$(now)
    if docker image inspect "$tag" >/dev/null 2>&1; then
        log "$tag: cached"
    else
        log "$tag: building (log: var/standins/${name%%:*}.log)"
        # The legacy builder: BuildKit would try to pull its frontend.
        DOCKER_BUILDKIT=0 docker build --build-arg "BASE=$base_tag" \
            --build-arg "PYTHON_BASE=$python_tag" -t "$tag" "$context" \
            >"var/standins/${name%%:*}.log" 2>&1 \
            || { tail -30 "var/standins/${name%%:*}.log" >&2; die "building $tag failed"; }
    fi
    took "$tag" "$started"
    printf '%s\n' "$tag"
}

rabbitmq=$(build rabbitmq:4.0 tests/cluster/standins/rabbitmq)
# The compose lane's (scripts/compose_check.sh): PostgreSQL 17 and an S3 server
# standing in for postgres:16 and MinIO with its mc client (enforcing the users
# and bucket policies mc sets up, as MinIO does).
postgres=$(build postgres:17 tests/compose/standins/postgres)
s3=$(build s3:rclone tests/compose/standins/s3)

{
    printf 'export VIDEOQ_TEST_RABBITMQ4_IMAGE=%s\n' "$rabbitmq"
    printf 'export VIDEOQ_STANDIN_PYTHON_IMAGE=%s\n' "$python_tag"
    printf 'export VIDEOQ_STANDIN_POSTGRES_IMAGE=%s\n' "$postgres"
    printf 'export VIDEOQ_STANDIN_S3_IMAGE=%s\n' "$s3"
} | tee var/containers.env
