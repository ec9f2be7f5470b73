#!/usr/bin/env bash
# Builds (or pushes) the three step images: cp-migrator, cp-backup, cp-cleaner.
#
#   hack/images.sh build     # wheelhouse on the host, then the three images
#   hack/images.sh push
#   hack/images.sh names     # the three image references, one per line
#
# Environment:
#   IMAGE_REGISTRY    where the images are named (default localhost/cp-migration)
#   IMAGE_TAG         their tag (default: the project version from pyproject.toml)
#   BASE_IMAGE        the base of every stage (default: the Dockerfiles' pinned python slim)
#   CONTAINER_ENGINE  docker or podman (default: docker when a docker engine answers, else podman)
#   PYTHON            the host python whose pip fills the wheelhouse (default: python3)
#   REFRESH_WHEELS=1  download the dependency wheels again even when the lock did not change
#
# Containers may not reach PyPI (here a TLS-intercepting proxy stands in the way), so the host
# fills build/wheelhouse/: deps/ by `pip download` of exactly what requirements.lock pins
# (hash-checked; `make lock` writes the lock from pyproject.toml), app/ by `pip wheel` of the
# project; the builds install from there with --no-index and --require-hashes.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGES=(migrator backup cleaner)
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml | head -n 1)
IMAGE_REGISTRY=${IMAGE_REGISTRY:-localhost/cp-migration}
IMAGE_TAG=${IMAGE_TAG:-$version}
BASE_IMAGE=${BASE_IMAGE:-}
PYTHON=${PYTHON:-python3}
WHEELHOUSE=build/wheelhouse

engine() {
    if [ -n "${CONTAINER_ENGINE:-}" ]; then
        echo "$CONTAINER_ENGINE"
    elif command -v docker >/dev/null && docker info >/dev/null 2>&1; then
        echo docker
    else
        # Like every target here, install what is missing: podman, set up for this machine.
        command -v podman >/dev/null || bash hack/podman-setup.sh >&2
        echo podman
    fi
}

image_ref() { echo "$IMAGE_REGISTRY/cp-$1:$IMAGE_TAG"; }

# Replace $2 by the contents of $1, keeping files whose bytes did not change (and so their
# layer caches), with a fixed mtime so that only content decides whether a layer is rebuilt.
sync_dir() {
    local from=$1 to=$2 file
    mkdir -p "$to"
    for file in "$to"/*; do
        [ -e "$file" ] || continue
        [ -e "$from/$(basename "$file")" ] || rm -f "$file"
    done
    for file in "$from"/*; do
        cmp -s "$file" "$to/$(basename "$file")" || cp "$file" "$to/"
    done
    touch -d @0 "$to" "$to"/*
}

# What decides the dependency wheels: the lock and the python they are for.
deps_key() {
    { cat requirements.lock; "$PYTHON" -c 'import sys; print(sys.version_info[:2])'; } |
        sha256sum | cut -c1-16
}

wheelhouse() {
    local fresh key
    fresh=$(mktemp -d)
    key=$(deps_key)
    # Downloaded again only when the lock changed (or REFRESH_WHEELS=1): unchanged wheels keep
    # their layer cached.
    if [ -n "${REFRESH_WHEELS:-}" ] || [ ! -f "$WHEELHOUSE/deps.key" ] ||
        [ "$(cat "$WHEELHOUSE/deps.key")" != "$key" ]; then
        echo "pip download: requirements.lock -> $WHEELHOUSE/deps" >&2
        "$PYTHON" -m pip download --quiet --disable-pip-version-check --require-hashes \
            --only-binary=:all: --no-deps --dest "$fresh/deps" -r requirements.lock
        sync_dir "$fresh/deps" "$WHEELHOUSE/deps"
        echo "$key" >"$WHEELHOUSE/deps.key"
    fi
    # setuptools builds in-tree: a stale build/lib would put deleted modules into the wheel.
    rm -rf build/lib build/bdist.*
    echo "pip wheel: the project -> $WHEELHOUSE/app" >&2
    SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)} \
        "$PYTHON" -m pip wheel --quiet --disable-pip-version-check --no-deps \
        --wheel-dir "$fresh/app" .
    sync_dir "$fresh/app" "$WHEELHOUSE/app"
    # What the builds read besides the wheels (the build context is the wheelhouse alone).
    mkdir -p "$fresh/build"
    cp requirements.lock hack/bytecode.py "$fresh/build/"
    sync_dir "$fresh/build" "$WHEELHOUSE/build"
    rm -rf "$fresh"
}

build() {
    local tool started revision created dirty
    tool=$(engine)
    started=$(date +%s)
    wheelhouse
    revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
    dirty=$(git status --porcelain --untracked-files=no 2>/dev/null | head -n 1)
    [ -z "$dirty" ] || revision="$revision-dirty"
    created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    local args=(
        --build-arg "VERSION=$IMAGE_TAG"
        --build-arg "REVISION=$revision"
        --build-arg "CREATED=$created"
        --network none
    )
    [ -z "$BASE_IMAGE" ] || args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
    if [ "$tool" = podman ]; then
        # runc: crun fails on hybrid cgroups; --pull=never with a local base (no registry here).
        ! command -v runc >/dev/null || args+=(--runtime runc)
        case "$BASE_IMAGE" in localhost/*) args+=(--pull=never) ;; esac
        args+=(--layers)
    fi
    for image in "${IMAGES[@]}"; do
        echo "$tool build: $(image_ref "$image")" >&2
        "$tool" build "${args[@]}" -f "Dockerfile.$image" -t "$(image_ref "$image")" . >&2
    done
    echo "built ${IMAGES[*]} with $tool in $(($(date +%s) - started))s" >&2
    names
}

push() {
    local tool image
    tool=$(engine)
    case "$IMAGE_REGISTRY" in
    localhost | localhost/*)
        echo "set IMAGE_REGISTRY to a registry to push to (now: $IMAGE_REGISTRY)" >&2
        exit 2
        ;;
    esac
    for image in "${IMAGES[@]}"; do
        "$tool" push "$(image_ref "$image")"
    done
}

names() {
    local image
    for image in "${IMAGES[@]}"; do image_ref "$image"; done
}

case "${1:-build}" in
build) build ;;
push) push ;;
names) names ;;
*)
    echo "usage: $0 build|push|names" >&2
    exit 2
    ;;
esac
